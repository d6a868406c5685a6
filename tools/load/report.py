"""The human report on stdout: the line describing the load, each engine's table of
windows with its backups, errors and stopped clients, and the jetstore / SQLite
comparison line."""

from __future__ import annotations

from .workload import ValueSize


def describe(config: dict) -> str:
    """The load in one line: clients, length, mix, sizes, keys, commits, seed, backups."""
    length = (
        f"{config['duration']:g} s"
        if config["duration"]
        else f"{config['transactions']:,} transactions"
    )
    keys = f"{config['keys']:,} keys {config['key_dist']}"
    if config["key_dist"] == "zipfian":
        keys += f" (s={config['zipf_s']:g})"
    backups = ""
    if config["backup_every"]:
        backups = f", {config['backup_mode']} backup every {config['backup_every']:g} s"
    return (
        f"{config['clients']} clients, {length} after {config['warmup']:g} s warm-up, "
        f"{config['read_ratio']:.0%} reads, {config['keys_per_tx']} op/tx, "
        f"{ValueSize(config['value_size']).describe()} values, {keys}, "
        f"{'lazy' if config['lazy'] else 'durable'} commits, seed {config['seed']}{backups}"
    )


def _fmt(value, width: int, digits: int = 2) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width},.{digits}f}"


def print_result(title: str, result: dict) -> None:
    print(f"\n{title}")
    print(
        f"  {'window':14s} {'seconds':>8s} {'tx':>10s} {'tx/s':>10s} {'p50 ms':>8s} "
        f"{'p90 ms':>8s} {'p99 ms':>8s} {'p99.9 ms':>9s} {'max ms':>8s} {'errors':>7s}"
    )
    windows = [("overall", "overall")]
    if result["backups"]:  # without a backup, "no backup" is "overall" and "during" empty
        windows += [("no backup", "no_backup"), ("during backup", "during_backup")]
    for label, key in windows:
        w = result[key]
        print(
            f"  {label:14s} {w['seconds']:8.2f} {w['transactions']:10,d} "
            f"{_fmt(w['tx_per_s'], 10, 1)} {_fmt(w['p50_ms'], 8)} {_fmt(w['p90_ms'], 8)} "
            f"{_fmt(w['p99_ms'], 8)} {_fmt(w['p99_9_ms'], 9)} {_fmt(w['max_ms'], 8)} "
            f"{w['errors']:7,d}"
        )
    summary = result["backup_summary"]
    if summary["count"]:
        mean = summary["mean_mb_per_s"]
        print(
            f"  backups: {summary['succeeded']} ok, {summary['failed']} failed, "
            f"{summary['bytes_total'] / 1e6:,.1f} MB in {summary['seconds_total']:.2f} s"
            + (f", {mean:,.1f} MB/s" if mean is not None else "")
        )
        for b in result["backups"]:
            if b["ok"]:
                lsn = f"  roll_lsn {b['roll_lsn']:#x}" if b.get("roll_lsn") is not None else ""
                print(
                    f"    #{b['n']:<3d} {b['type']:11s} at {b['start_s']:7.2f} s "
                    f"{b['seconds']:7.3f} s {b['bytes'] / 1e6:9.2f} MB "
                    f"{_fmt(b['mb_per_s'], 8, 1)} MB/s{lsn}"
                )
            else:
                print(
                    f"    #{b['n']:<3d} {b['type']:11s} at {b['start_s']:7.2f} s FAILED "
                    f"{b['error']}: {b.get('message', '')}"
                )
    if result["errors"]:
        print("  errors: " + ", ".join(f"{n} {c:,d}" for n, c in result["errors"].items()))
    aborted = [c for c in result["clients"] if c["aborted"]]
    for client in aborted:
        print(f"  client {client['client']} stopped: {client['aborted']}")


def print_comparison(comparison: dict) -> None:
    overall = comparison["overall"]
    throughput, p99 = overall["tx_per_s_ratio"], overall["p99_ms_ratio"]
    print(
        "\njetstore / sqlite: throughput "
        + (f"{throughput:.2f}x" if throughput else "-")
        + ", p99 latency "
        + (f"{p99:.2f}x" if p99 else "-")
        + " (throughput > 1 and latency < 1 favour jetstore)"
    )

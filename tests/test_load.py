"""`jetstore load` (tools/load/): smoke runs of a few seconds each, what its user sees (the
progress lines agree with the report, no empty backup rows, one-line usage errors), and
unit tests of the pieces its figures rest on - the HDR-style histogram (bounded relative
error, merging across processes), the window split, the seeded workload."""

from __future__ import annotations

import argparse
import json
import pickle
import random
import re
import sys

import pytest

from jetstore.engine import Instance, verify_backup
from jetstore.tools import cli, load
from jetstore.tools.load import Histogram, ValueSize, Workload, Zipf, exact_percentile
from jetstore.tools.load.driver import Collector
from jetstore.tools.load.progress_lines import ProgressLines
from jetstore.tools.load.shared import new_second, wire_second
from jetstore.tools.load.summary import summarize

FAST = ["--clients", "2", "--warmup", "0.3", "--keys", "300"]
PERCENTS = (0.1, 1, 10, 50, 90, 99, 99.9, 99.99, 100)
WINDOW_FIELDS = {
    "seconds",
    "transactions",
    "tx_per_s",
    "read_tx",
    "write_tx",
    "errors",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p99_9_ms",
    "max_ms",
    "mean_ms",
    "histogram_us",
}


def run_load(tmp_path, *args: str, expect: int = 0) -> dict:
    out = tmp_path / "report.json"
    quiet = [] if "-P" in args else ["--quiet"]
    code = load.main([str(tmp_path / "inst"), *FAST, *quiet, *args, "--json-file", str(out)])
    report = json.loads(out.read_text())
    assert code == expect == report["exit_code"], report.get("clients")
    return report


def check_window(window: dict) -> None:
    assert WINDOW_FIELDS <= set(window)
    if window["transactions"]:
        figures = [window[f"{p}_ms"] for p in ("p50", "p90", "p99", "p99_9", "max")]
        assert 0 < figures[0] and figures == sorted(figures)
        assert window["read_tx"] + window["write_tx"] == window["transactions"]
        assert sum(count for _low, _high, count in window["histogram_us"]) == window["transactions"]


def table_rows(out: str) -> list[str]:
    """The windows of the printed table, in order."""
    return re.findall(r"^  (overall|no backup|during backup) +\d", out, re.MULTILINE)


def one_usage_error(err: str, needle: str) -> bool:
    """A usage error as every jetstore command prints it: one line, then where help is."""
    lines = err.splitlines()
    return (
        len(lines) == 2
        and lines[0].startswith("jetstore load: error: ")
        and needle in lines[0]
        and lines[1] == "see 'jetstore load --help'"
    )


# -- smoke runs --------------------------------------------------------------------------------
def test_plain_run_reports_every_figure(tmp_path, capsys):
    report = run_load(tmp_path, "--duration", "1.5", "--read-ratio", "0.5")
    assert table_rows(capsys.readouterr().out) == ["overall"]
    assert report["config"]["clients"] == 2 and report["config"]["duration"] == 1.5
    assert report["machine"]["cores"] >= 1
    assert report["instance"]["mode"] == "opened" and report["instance"]["populated_keys"] == 300
    overall = report["overall"]
    assert overall["transactions"] > 0 and overall["tx_per_s"] > 0
    assert overall["read_tx"] > 0 and overall["write_tx"] > 0
    for window in ("overall", "no_backup", "during_backup"):
        check_window(report[window])
    assert report["during_backup"]["transactions"] == 0 and report["backups"] == []
    timeline = report["timeline"]
    assert [row["t"] for row in timeline] == [0, 1]
    assert timeline[1]["seconds"] == pytest.approx(0.5)
    assert sum(row["tx"] for row in timeline) == overall["transactions"]
    assert report["warmup_transactions"] > 0  # run, but in no figure
    assert isinstance(report["errors"], dict)
    assert all(c["aborted"] is None for c in report["clients"])


def test_backups_while_attached_split_the_windows(tmp_path, capsys):
    """An instance another process opened: attach, full then incremental backups over its
    control socket, both windows measured, and the backup taken under load verifies."""
    with Instance.open(tmp_path / "inst"):
        report = run_load(
            tmp_path,
            "--duration",
            "2.2",
            "--backup-every",
            "0.6",
            "--backup-mode",
            "incremental",
            "--backup-dir",
            str(tmp_path / "backups"),
        )
    assert report["instance"]["mode"] == "attached"
    assert table_rows(capsys.readouterr().out) == ["overall", "no backup", "during backup"]
    backups = report["backups"]
    assert backups and all(b["ok"] for b in backups), backups
    assert [b["type"] for b in backups] == ["full"] + ["incremental"] * (len(backups) - 1)
    for b in backups:
        assert b["bytes"] > 0 and b["mb_per_s"] > 0 and isinstance(b["roll_lsn"], int)
        assert 0 < b["start_s"] < b["end_s"] and b["seconds"] == pytest.approx(
            b["end_s"] - b["start_s"]
        )
    assert [b["roll_lsn"] for b in backups] == sorted({b["roll_lsn"] for b in backups})
    during, quiet = report["during_backup"], report["no_backup"]
    assert during["transactions"] > 0 and quiet["transactions"] > 0
    check_window(during)
    check_window(quiet)
    assert during["seconds"] + quiet["seconds"] == pytest.approx(2.2)
    assert during["transactions"] + quiet["transactions"] == report["overall"]["transactions"]
    assert any(row["backup_fraction"] > 0 for row in report["timeline"])
    assert report["backup_summary"]["succeeded"] == len(backups)
    verify_backup(backups[0]["dest"])  # the chain: full + incrementals


def test_compare_sqlite_runs_the_identical_workload(tmp_path):
    report = run_load(
        tmp_path,
        "--transactions",
        "300",
        "--keys-per-tx",
        "2",
        "--key-dist",
        "zipfian",
        "--value-size",
        "uniform:10-200",
        "--compare",
        "sqlite",
    )
    sqlite = report["sqlite"]
    assert report["overall"]["transactions"] == sqlite["overall"]["transactions"] == 300
    assert sqlite["settings"]["synchronous"] == "FULL"
    assert sqlite["settings"]["journal_mode"] == "WAL"
    check_window(sqlite["overall"])
    ratio = report["comparison"]["overall"]["tx_per_s_ratio"]
    assert ratio == pytest.approx(report["overall"]["tx_per_s"] / sqlite["overall"]["tx_per_s"])
    assert ratio > 0 and report["comparison"]["overall"]["p99_ms_ratio"] > 0


def test_plot_draws_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "load.png"
    report = run_load(
        tmp_path, "--transactions", "100", "--clients", "1", "--lazy", "--plot", str(png)
    )
    assert report["overall"]["transactions"] == 100
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_plot_without_matplotlib_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(SystemExit) as stop:
        load.main([str(tmp_path / "inst"), "--plot", str(tmp_path / "x.png")])
    assert stop.value.code == 2
    assert one_usage_error(capsys.readouterr().err, "matplotlib")
    assert not (tmp_path / "inst").exists()  # refused before anything started


def test_subcommand_registration_and_help():
    parser = argparse.ArgumentParser(prog="jetstore")
    sub = parser.add_subparsers(dest="command")
    load.add_parser(sub)
    args = parser.parse_args(["load", "d", "--clients", "3", "--key-dist", "zipfian"])
    assert args.func is load.run and args.clients == 3 and args.key_dist == "zipfian"
    text = sub.choices["load"].format_help()
    for option in (
        "--clients",
        "--duration",
        "--transactions",
        "--read-ratio",
        "--value-size",
        "--keys",
        "--key-dist",
        "--zipf-s",
        "--keys-per-tx",
        "--lazy",
        "--backup-every",
        "--backup-mode",
        "--backup-dir",
        "--json-file",
        "--plot",
        "--compare",
        "--seed",
        "--warmup",
        "--quiet",
    ):
        assert option in text
    with pytest.raises(SystemExit):
        parser.parse_args(["load", "d", "--duration", "1", "--transactions", "5"])
    with pytest.raises(SystemExit):
        parser.parse_args(["load", "d", "--read-ratio", "1.5"])
    examples = text.index("examples:")
    assert text.count("  jetstore load ", examples) >= 3
    assert "Exit codes: 0 ok; 1 the run failed" in text[examples:]
    assert "2 usage" in text[examples:]


# -- what the user sees -------------------------------------------------------------------------
def test_progress_lines_count_what_the_report_counts(tmp_path, capsys):
    """-P 1: a line per measured second whose figures are exactly the report's for that
    second, backups and all (a line waits until every client has moved past its interval)."""
    report = run_load(tmp_path, "--duration", "3", "-P", "1", "--backup-every", "1")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("progress:")]
    expected = [
        f"progress: {row['t'] + 1:.1f} s, {row['tx']:,.1f} tx/s, p50 {row['p50_ms']:,.2f} ms, "
        f"p99 {row['p99_ms']:,.2f} ms, {row['errors']} error{'' if row['errors'] == 1 else 's'}"
        for row in report["timeline"]
    ]
    assert len(expected) == 3 and lines == expected
    assert sum(row["tx"] for row in report["timeline"]) == report["overall"]["transactions"]
    assert report["backups"] and "jetstore backup #1 full" in err


def test_a_progress_line_waits_for_every_client_to_finish_its_interval(capsys):
    collector = Collector(clients=2)
    progress = ProgressLines("jetstore", every=2, duration=None)

    def second(client: int, sec: int, moved_to: int, tx: int) -> None:
        record = new_second()
        for _ in range(tx):
            record[0][0].record(1000)
        collector.take(("second", client, (sec, wire_second(record), moved_to)))

    second(0, 0, 1, 10)
    second(0, 1, 2, 10)
    second(1, 0, 1, 5)  # client 1 is still in second 1: [0, 2) is not complete
    progress.poll(collector, 2.5)
    assert capsys.readouterr().err == ""
    second(1, 1, 3, 7)  # client 1 moved on (to second 3: nothing started in second 2)
    progress.poll(collector, 1.9)  # complete, but not over yet
    assert capsys.readouterr().err == ""
    progress.poll(collector, 2.5)
    progress.poll(collector, 2.6)  # printed once
    assert capsys.readouterr().err == (
        "progress: 2.0 s, 16.0 tx/s, p50 1.00 ms, p99 1.00 ms, 0 errors\n"
    )
    collector.take(("done", 0, {}))
    collector.take(("done", 1, {}))
    progress.poll(collector, 3.9)  # [2, 4) has not ended
    assert capsys.readouterr().err == ""


def test_no_backup_rows_when_no_backup_ran(tmp_path, capsys):
    """--backup-every longer than the run: no backup, so the table shows "overall" alone (a
    "during backup" row would be zeros and "no backup" a copy of "overall")."""
    report = run_load(tmp_path, "--transactions", "60", "--backup-every", "60")
    assert report["backups"] == [] and report["during_backup"]["transactions"] == 0
    assert table_rows(capsys.readouterr().out) == ["overall"]


BAD_VALUES = {
    "no clients": ["--clients", "0"],
    "more clients than reader slots": ["--clients", "127"],
    "negative duration": ["--duration", "-1"],
    "endless duration": ["--duration", "inf"],
    "ratio above 1": ["--read-ratio", "1.5"],
    "negative warm-up": ["--warmup", "-0.5"],
    "no keys": ["--keys", "0"],
    "no transactions": ["--transactions", "0"],
    "no operations": ["--keys-per-tx", "0"],
    "empty table name": ["--table", ""],
    "page size": ["--page-size", "1000"],
    "value too large": ["--value-size", "17M"],
    "negative progress": ["--progress", "-1"],
    "progress and quiet": ["-P", "1", "--quiet"],
}


@pytest.mark.parametrize("args", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_a_value_that_makes_no_sense_is_a_one_line_usage_error(tmp_path, capsys, args):
    with pytest.raises(SystemExit) as stop:
        cli.main(["load", str(tmp_path / "inst"), *args])
    assert stop.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and one_usage_error(err, args[0]), err
    assert not (tmp_path / "inst").exists()


def test_paths_are_checked_before_the_run(tmp_path, capsys):
    a_file, inst = tmp_path / "file", tmp_path / "inst"
    a_file.write_text("not a directory")
    inst.mkdir()
    cases = [
        ([str(a_file)], "not a directory"),
        ([str(tmp_path / "missing" / "inst")], "does not exist"),
        ([str(inst), "--json-file", str(tmp_path / "missing" / "r.json")], "no such directory"),
        ([str(inst), "--plot", str(tmp_path)], "is a directory"),
        ([str(inst), "--backup-every", "1", "--backup-dir", str(inst / "bk")], "inside"),
    ]
    for args, needle in cases:
        with pytest.raises(SystemExit) as stop:
            cli.main(["load", *args])
        assert stop.value.code == 2
        assert one_usage_error(capsys.readouterr().err, needle), args
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "inst"]
    assert list(inst.iterdir()) == []


def test_an_engine_error_is_one_line_and_exit_code_1(tmp_path, capsys):
    """A DIR whose database file is not a database: the ESE error, no traceback."""
    (tmp_path / "inst").mkdir()
    (tmp_path / "inst" / "jet.edb").write_bytes(random.Random(1).randbytes(65536))
    assert cli.main(["load", str(tmp_path / "inst"), "--quiet", "--duration", "1"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and re.fullmatch(r"jetstore load: JET_err\w+ \(-\d+\): .+", err[0]), err


# -- histogram ----------------------------------------------------------------------------------
def latency_like(rng: random.Random, n: int) -> list[int]:
    """Microseconds: mostly around a millisecond, a long tail, a few stalls."""
    out = [int(rng.lognormvariate(6.5, 0.8)) for _ in range(n)]
    out += [rng.randrange(0, 300) for _ in range(n // 50)]
    out += [rng.randrange(100_000, 5_000_000) for _ in range(max(1, n // 1000))]
    return out


@pytest.mark.parametrize("n", [1, 7, 100, 1000, 25_000])
def test_percentiles_are_within_the_relative_error_of_the_exact_ones(n):
    samples = latency_like(random.Random(n), n)
    hist = Histogram()
    for value in samples:
        hist.record(value)
    assert hist.count == len(samples) and hist.sum == sum(samples)
    assert (hist.min, hist.max) == (min(samples), max(samples))
    for percent in PERCENTS:
        exact, reported = exact_percentile(samples, percent), hist.percentile(percent)
        assert exact <= reported <= exact * (1 + hist.relative_error), (percent, exact, reported)
    assert hist.percentile(100) == max(samples)


def test_small_values_are_exact_and_buckets_tile_the_line():
    hist = Histogram()
    assert hist.relative_error == 1 / 128
    for value in range(256):
        assert hist.bucket_range(hist.index(value)) == (value, value)
    previous_high = -1
    for index in range(0, hist.index(10**9) + 1):
        low, high = hist.bucket_range(index)
        assert low == previous_high + 1 and high >= low
        assert high - low + 1 <= max(1, low * hist.relative_error)
        assert hist.index(low) == hist.index(high) == index
        previous_high = high
    finer = Histogram(significant_digits=3)
    assert finer.relative_error == 1 / 1024


def test_merging_bucket_counts_equals_one_histogram_of_all_samples():
    """What the driver does with what client processes send: wires, pickled, merged."""
    samples = latency_like(random.Random(3), 20_000)
    whole = Histogram()
    for value in samples:
        whole.record(value)
    parts = [Histogram() for _ in range(5)]
    for n, value in enumerate(samples):
        parts[n % 5].record(value)
    merged = Histogram()
    for part in parts:
        merged.merge(Histogram.from_wire(pickle.loads(pickle.dumps(part.to_wire()))))
    assert merged.counts == whole.counts
    assert (merged.count, merged.sum, merged.min, merged.max) == (
        whole.count,
        whole.sum,
        whole.min,
        whole.max,
    )
    for percent in PERCENTS:
        assert merged.percentile(percent) == whole.percentile(percent)
        exact = exact_percentile(samples, percent)
        assert exact <= merged.percentile(percent) <= exact * (1 + 1 / 128)
    assert Histogram().merge(Histogram()).percentile(99) is None


def test_windows_split_by_backup_phase_and_time():
    """Per-second, per-phase slots -> overall / no backup / during backup windows."""
    collector = Collector(clients=1)
    for sec in range(4):
        second = new_second()
        for value in range(100):  # 100 tx with no backup running, 1..100 ms
            second[0][0].record((value + 1) * 1000)
        second[0][2] = 100
        if sec == 2:  # a backup from 2.0 to 2.5 s: 10 slow tx started during it
            for _ in range(10):
                second[1][0].record(500_000)
            second[1][2] = 10
            second[1][3] = 1
        collector.take(("second", 0, (sec, wire_second(second), sec + 1)))
    backups = [{"start_s": 2.0, "end_s": 2.5, "ok": True, "seconds": 0.5, "bytes": 10**6}]
    result = summarize(collector, 4.0, backups)
    assert result["overall"]["transactions"] == 410
    assert result["no_backup"]["transactions"] == 400
    assert result["no_backup"]["seconds"] == pytest.approx(3.5)
    assert result["no_backup"]["tx_per_s"] == pytest.approx(400 / 3.5)
    assert 50 <= result["no_backup"]["p50_ms"] <= 50 * (1 + 1 / 128)  # a bucket's top
    assert result["no_backup"]["max_ms"] == 100  # exact
    during = result["during_backup"]
    assert during["seconds"] == pytest.approx(0.5) and during["tx_per_s"] == pytest.approx(20)
    assert during["p99_ms"] == during["max_ms"] == 500 and during["errors"] == 1
    assert [row["backup_fraction"] for row in result["timeline"]] == [0, 0, 0.5, 0]
    assert result["timeline"][2]["tx"] == 110 and result["backup_summary"]["mean_mb_per_s"] == 2


# -- workload -----------------------------------------------------------------------------------
CONFIG = {
    "seed": 7,
    "keys": 1000,
    "read_ratio": 0.3,
    "keys_per_tx": 3,
    "value_size": "uniform:10-2K",
    "key_dist": "zipfian",
    "zipf_s": 0.99,
}


def test_workload_is_reproducible_per_seed_and_stream():
    stream = [Workload(CONFIG, "client0/run").transaction() for _ in range(1)]
    a, b = Workload(CONFIG, "client0/run"), Workload(CONFIG, "client0/run")
    first = [a.transaction() for _ in range(200)]
    assert first == [b.transaction() for _ in range(200)] and first[0] == stream[0]
    other = Workload(CONFIG, "client1/run")
    assert first != [other.transaction() for _ in range(200)]
    ops = [op for tx in first for op in tx]
    assert all(len(tx) == 3 for tx in first)
    reads = sum(value is None for _key, value in ops) / len(ops)
    assert 0.2 < reads < 0.4
    assert all(10 <= len(value) <= 2048 for _key, value in ops if value is not None)
    assert all(0 <= int(key[3:]) < 1000 for key, _value in ops)


def test_zipf_matches_its_distribution_and_hot_keys_are_shared():
    rng = random.Random(1)
    zipf = Zipf(100, 1.0)
    draws = [zipf.draw(rng) for _ in range(40_000)]
    harmonic = sum(1 / k for k in range(1, 101))
    assert min(draws) == 1 and max(draws) <= 100
    for rank in (1, 2, 10):
        assert draws.count(rank) / len(draws) == pytest.approx(1 / rank / harmonic, rel=0.1)
    hot = [Workload({**CONFIG, "read_ratio": 1.0}, f"client{n}/run") for n in range(2)]
    top = [
        max(set(keys), key=keys.count)
        for keys in ([w.key_index() for _ in range(5000)] for w in hot)
    ]
    assert top[0] == top[1]  # the same scrambled rank 1 for every client


def test_value_size_specs():
    assert ValueSize("4K").draw(random.Random()) == 4096
    assert ValueSize("fixed:100").draw(random.Random()) == 100
    rng = random.Random(2)
    sizes = [ValueSize("lognormal:1K,0.5").draw(rng) for _ in range(4000)]
    assert sorted(sizes)[2000] == pytest.approx(1024, rel=0.1)
    for bad in ("uniform:9-3", "lognormal:1K", "normal:5", "12Q", "uniform:1-99M"):
        with pytest.raises(argparse.ArgumentTypeError):
            ValueSize(bad)


def test_json_prints_the_report_on_stdout_and_its_text_on_stderr(tmp_path, capsys):
    args = [str(tmp_path / "inst"), *FAST, "--quiet", "--transactions", "200", "--json"]
    assert load.main(args) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)  # nothing else on stdout
    assert report["overall"]["transactions"] == 200 and "jetstore (" in err


def test_json_with_a_file_writes_the_report_there_as_the_design_spells_it(tmp_path, capsys):
    out = tmp_path / "r.json"
    args = [str(tmp_path / "inst"), *FAST, "--quiet", "--transactions", "100"]
    assert load.main([*args, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["overall"]["transactions"] == 100
    assert "jetstore (" in capsys.readouterr().out  # the text stays on stdout

"""``load --plot``: throughput and p99 latency per second of each engine's run, with its
backup windows shaded (matplotlib, Agg)."""

from __future__ import annotations

import math

from .workload import ValueSize


def plot(path: str, report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [("jetstore", report, "tab:blue", "-", "tab:orange")]
    if "sqlite" in report:
        runs.append(("sqlite", report["sqlite"], "tab:gray", "--", "tab:green"))
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(11, 6.5))
    for name, result, color, style, shade in runs:
        rows = result["timeline"]
        if rows:  # steps over each second, closed at the end of the last one
            x = [row["t"] for row in rows] + [rows[-1]["t"] + rows[-1]["seconds"]]
            rate = [row["tx_per_s"] for row in rows]
            p99 = [math.nan if row["p99_ms"] is None else row["p99_ms"] for row in rows]
            top.step(
                x,
                [*rate, rate[-1]],
                where="post",
                color=color,
                linestyle=style,
                label=f"{name} tx/s",
            )
            bottom.step(
                x, [*p99, p99[-1]], where="post", color=color, linestyle=style, label=f"{name} p99"
            )
        for n, b in enumerate(result["backups"]):
            for axis in (top, bottom):
                axis.axvspan(
                    b["start_s"],
                    b["end_s"],
                    color=shade,
                    alpha=0.25 if name == "jetstore" else 0.15,
                    label=f"{name} backup" if n == 0 and axis is top else None,
                )
    config = report["config"]
    top.set_title(
        f"jetstore load: {config['clients']} clients, read {config['read_ratio']:.0%}, "
        f"{config['keys_per_tx']} key/tx, {ValueSize(config['value_size']).describe()}, "
        f"{config['keys']:,} keys {config['key_dist']}, "
        f"{'lazy' if config['lazy'] else 'durable'} commits"
    )
    top.set_ylabel("transactions / s")
    top.set_ylim(bottom=0)
    bottom.set_ylabel("p99 latency (ms)")
    bottom.set_xlabel("seconds since the end of warm-up")
    bottom.set_ylim(bottom=0)
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
        axis.legend(loc="best", fontsize="small", framealpha=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

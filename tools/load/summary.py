"""The figures of a run, from the per-second records the clients streamed: the
timeline, the overall / no backup / during backup windows (tx/s, latency percentiles,
histograms), the backups' totals, errors by name, and the jetstore / SQLite ratios."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .histogram import Histogram
from .shared import new_second

if TYPE_CHECKING:
    from .driver import Collector

PERCENTILES = (("p50", 50), ("p90", 90), ("p99", 99), ("p99_9", 99.9))


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _ms(micros: int | None) -> float | None:
    return None if micros is None else micros / 1000


def window_summary(slots: list[list], seconds: float) -> dict:
    """tx/s, latency percentiles (ms) and the histogram of some (second, phase) slots."""
    hist = Histogram()
    reads = writes = errors = 0
    for slot in slots:
        hist.merge(slot[0])
        reads += slot[1]
        writes += slot[2]
        errors += slot[3]
    summary = {
        "seconds": round(seconds, 6),
        "transactions": hist.count,
        "read_tx": reads,
        "write_tx": writes,
        "errors": errors,
        "tx_per_s": hist.count / seconds if seconds > 0 else None,
    }
    for name, percent in PERCENTILES:
        summary[f"{name}_ms"] = _ms(hist.percentile(percent))
    summary.update(
        max_ms=_ms(hist.max),
        min_ms=_ms(hist.min),
        mean_ms=hist.sum / hist.count / 1000 if hist.count else None,
        histogram_us=hist.buckets(),
    )
    return summary


def summarize(collector: Collector, measured: float, backups: list[dict]) -> dict:
    windows = [(b["start_s"], b["end_s"]) for b in backups]
    during = sum(_overlap(s, e, 0.0, measured) for s, e in windows)
    seconds = collector.seconds
    last = max([math.ceil(measured) - 1, *seconds]) if seconds or measured else -1
    timeline = []
    for sec in range(0, last + 1):
        slot = seconds.get(sec, new_second())
        width = max(min(1.0, measured - sec), 0.0) or 1.0
        hist = Histogram().merge(slot[0][0]).merge(slot[1][0])
        p = {name: hist.percentile(pct) for name, pct in PERCENTILES}
        timeline.append(
            {
                "t": sec,
                "seconds": width,
                "tx": hist.count,
                "tx_per_s": hist.count / width,
                "read_tx": slot[0][1] + slot[1][1],
                "write_tx": slot[0][2] + slot[1][2],
                "errors": slot[0][3] + slot[1][3],
                **{f"{name}_ms": _ms(v) for name, v in p.items()},
                "max_ms": _ms(hist.max),
                "backup_fraction": round(
                    sum(_overlap(s, e, sec, sec + width) for s, e in windows) / width, 4
                ),
            }
        )
    errors: dict[str, int] = {}
    for done in collector.done.values():
        for name, n in done.get("errors", {}).items():
            errors[name] = errors.get(name, 0) + n
    ok = [b for b in backups if b["ok"]]
    return {
        "measured_seconds": measured,
        "overall": window_summary([p for s in seconds.values() for p in s], measured),
        "no_backup": window_summary([s[0] for s in seconds.values()], measured - during),
        "during_backup": window_summary([s[1] for s in seconds.values()], during),
        "timeline": timeline,
        "backups": backups,
        "backup_summary": {
            "count": len(backups),
            "succeeded": len(ok),
            "failed": len(backups) - len(ok),
            "seconds_total": sum(b["seconds"] for b in backups),
            "bytes_total": sum(b["bytes"] for b in ok),
            "mean_seconds": sum(b["seconds"] for b in ok) / len(ok) if ok else None,
            "mean_mb_per_s": (
                sum(b["bytes"] for b in ok) / 1e6 / sum(b["seconds"] for b in ok)
                if ok and sum(b["seconds"] for b in ok) > 0
                else None
            ),
        },
        "errors": dict(sorted(errors.items(), key=lambda item: -item[1])),
        "warmup_transactions": sum(d.get("warmup_tx", 0) for d in collector.done.values()),
        "warmup_errors": sum(d.get("warmup_errors", 0) for d in collector.done.values()),
        "clients": [
            {
                "client": n,
                "transactions": d.get("measured_tx", 0),
                "aborted": d.get("aborted"),
            }
            for n, d in sorted(collector.done.items())
        ],
    }


def comparison(jet: dict, sql: dict) -> dict:
    def ratio(a, b):
        return a / b if a is not None and b else None

    out = {}
    for window in ("overall", "no_backup", "during_backup"):
        j, s = jet[window], sql[window]
        out[window] = {
            "tx_per_s_ratio": ratio(j["tx_per_s"], s["tx_per_s"]),
            **{
                f"{name}_ms_ratio": ratio(j[f"{name}_ms"], s[f"{name}_ms"])
                for name in ("p50", "p90", "p99", "p99_9", "max")
            },
        }
    out["meaning"] = "jetstore / sqlite: tx/s above 1 = jetstore faster; latency below 1 = better"
    return out

"""Printing a campaign: the summary table, torn tails, each violation with the command that
replays it, and the one line per trial of ``-v``."""

from __future__ import annotations

import sys

from jetstore.tools.corrupt.catalogue import OUTCOMES, TARGETS
from jetstore.tools.corrupt.trials import TrialResult


def print_summary(report: dict, out=None) -> None:
    out = out or sys.stdout
    print(
        f"corruption campaign: seed {report['seed']}, {report['trials']} trials in "
        f"{report['seconds']:.1f} s (fixture {report['fixture_seconds']:.1f} s)",
        file=out,
    )
    print(f"{'target':14s} {'trials':>6s} " + " ".join(f"{o:>9s}" for o in OUTCOMES), file=out)
    for target, counts in report["counts"].items():
        total = sum(counts.values())
        print(f"{target:14s} {total:6d} " + " ".join(f"{counts[o]:9d}" for o in OUTCOMES), file=out)
    torn = [r for r in report["results"] if r["lost_commits"]]
    if torn:
        print(
            f"torn tails: {len(torn)} trial(s) in the last generation; recovery dropped "
            f"{report['lost_commits']} acknowledged commits in all, without an error",
            file=out,
        )
    only = ""
    if set(report["targets"]) != set(TARGETS):
        only = "".join(f" --target {target}" for target in report["targets"])
    if report.get("actors"):
        only += " --actors"
    for violation in report["violations"]:
        print(
            f"VIOLATION trial {violation['trial']} ({violation['target']}): {violation['file']} "
            f"offset {violation['offset']} bit {violation['bit']} - {violation['area']}\n"
            f"  {violation['reason']}\n"
            f"  replay: python -m jetstore.tools.corrupt --seed {report['seed']} "
            f"--trial {violation['trial']}{only} -v",
            file=out,
        )


def print_trial(result: TrialResult) -> None:
    print(
        f"#{result.trial:<4d} {result.target:13s} {result.outcome:9s} {result.file} "
        f"+{result.offset} bit {result.bit}: {result.area}\n      {result.reason}",
        flush=True,
    )

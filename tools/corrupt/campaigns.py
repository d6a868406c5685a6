"""The campaign: trials over a built fixture, counted per target class and outcome into a
JSON-friendly report; ``campaign`` also builds the fixture in a scratch directory."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict

from jetstore.tools.corrupt.catalogue import OUTCOMES, TARGETS, VIOLATION
from jetstore.tools.corrupt.fixture import Fixture, build_fixture
from jetstore.tools.corrupt.trials import TrialResult, run_trial


def run_campaign(
    fx: Fixture,
    trials: int,
    seed: int,
    *,
    targets: tuple[str, ...] = TARGETS,
    only_trial: int | None = None,
    keep: str | None = None,
    actors: bool = False,
    progress: Callable[[TrialResult], None] | None = None,
) -> dict:
    """Run ``trials`` trials (or only trial ``only_trial``) on a built fixture; a JSON-friendly
    report: counts per target class and outcome, every result, the violations."""
    started = time.monotonic()
    numbers = [only_trial] if only_trial is not None else range(trials)
    results = []
    for trial in numbers:
        result = run_trial(fx, seed, trial, targets, keep=keep, actors=actors)
        results.append(result)
        if progress is not None:
            progress(result)
    counts = {t: dict.fromkeys(OUTCOMES, 0) for t in targets}
    for result in results:
        counts[result.target][result.outcome] += 1
    return {
        "seed": seed,
        "targets": list(targets),
        "actors": actors,
        "trials": len(results),
        "fixture_seconds": round(fx.seconds, 3),
        "seconds": round(time.monotonic() - started, 3),
        "counts": counts,
        "lost_commits": sum(r.lost_commits for r in results),
        "violations": [asdict(r) for r in results if r.outcome == VIOLATION],
        "results": [asdict(r) for r in results],
    }


def campaign(trials: int, seed: int, *, workdir: str | None = None, **options) -> dict:
    """Build the fixture in a scratch directory, run the campaign, remove the directory."""
    root = tempfile.mkdtemp(prefix="jetstore-corrupt-", dir=workdir)
    try:
        return run_campaign(build_fixture(root), trials, seed, **options)
    finally:
        shutil.rmtree(root, ignore_errors=True)

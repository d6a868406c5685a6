"""One trial: copy the tree a flip damages, apply it, run the matching judge (and, with
``--actors``, the actor check), and record the result."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field

from jetstore.tools.corrupt.actors import agree_with_actors, open_through_actors
from jetstore.tools.corrupt.backup_judge import judge_backup
from jetstore.tools.corrupt.catalogue import BACKUP_TARGETS, DB_TARGETS, TARGETS, VIOLATION
from jetstore.tools.corrupt.db_judge import judge_database
from jetstore.tools.corrupt.detectors import run
from jetstore.tools.corrupt.fixture import Fixture
from jetstore.tools.corrupt.flips import Flip, pick_flip
from jetstore.tools.corrupt.log_judge import judge_log


@dataclass
class TrialResult:
    trial: int
    target: str
    tree: str
    file: str
    offset: int
    bit: int
    area: str
    outcome: str
    reason: str
    seen: list[dict] = field(default_factory=list)
    lost_commits: int = 0


def check_flip(
    fx: Fixture, flip: Flip, *, trial: int = -1, keep: str | None = None, actors: bool = False
) -> TrialResult:
    """Apply ``flip`` to a fresh copy of its tree, run the detectors, judge the outcome.

    With ``actors``, a damaged instance is also opened by ``Instance.open`` (recovery in the
    buffer manager process): it must fail with the same ESE number as in process, or serve
    the same data - an actor never crashes on a damaged file.
    """
    work = tempfile.mkdtemp(prefix=f"trial-{trial}-", dir=fx.root)
    try:
        if flip.target in BACKUP_TARGETS:
            shutil.copytree(fx.backup, os.path.join(work, "backup"))
            flip.apply(os.path.join(work, "backup"))
            outcome, reason, seen, lost = judge_backup(fx, flip, work)
        else:
            instance = os.path.join(work, "instance")
            shutil.copytree(fx.instances[flip.tree].path, instance)
            flip.apply(instance)
            if actors:
                shutil.copytree(instance, os.path.join(work, "actors"))
            judge = judge_database if flip.target in DB_TARGETS else judge_log
            outcome, reason, seen, lost = judge(fx, flip, instance)
            if actors:
                through = run(
                    "Instance.open (actors)",
                    lambda: open_through_actors(os.path.join(work, "actors")),
                )
                in_process = next(s for s in seen if s.detector == "open+scan+integrity")
                seen.append(through)
                disagreement = agree_with_actors(in_process, through)
                if disagreement is not None:
                    problem = f"actors disagree: {disagreement}"
                    reason = problem if outcome != VIOLATION else f"{reason}; {problem}"
                    outcome = VIOLATION
    finally:
        if keep is not None:
            os.makedirs(keep, exist_ok=True)
            shutil.move(work, os.path.join(keep, f"trial-{trial}"))
        else:
            shutil.rmtree(work, ignore_errors=True)
    return TrialResult(
        trial,
        flip.target,
        flip.tree,
        flip.file,
        flip.offset,
        flip.bit,
        flip.area,
        outcome,
        reason,
        [s.public() for s in seen],
        lost,
    )


def run_trial(
    fx: Fixture,
    seed: int,
    trial: int,
    targets: tuple[str, ...] = TARGETS,
    keep: str | None = None,
    actors: bool = False,
) -> TrialResult:
    """Trial ``trial`` of campaign ``seed``: its own random stream picks the class and the bit."""
    rng = random.Random(f"{seed}/{trial}")
    flip = pick_flip(fx, rng.choice(targets), rng)
    return check_flip(fx, flip, trial=trial, keep=keep, actors=actors)

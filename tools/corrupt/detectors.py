"""Running a detector and judging what it did: ``run`` records an answer, a JetError or a
crash; a ``Verdict`` collects the expectations a trial failed; ``conclude`` makes the outcome."""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from jetstore.engine.errors import JetError
from jetstore.tools.corrupt.catalogue import VIOLATION
from jetstore.tools.corrupt.model import State, diff_states


@dataclass
class Seen:
    """What one detector did: ok (with a value), a JetError, or a crash (any other exception)."""

    detector: str
    result: str  # "ok", "error", "crash"
    err: int | None = None
    name: str | None = None
    message: str = ""
    value: object = None

    def public(self) -> dict:
        seen = {"detector": self.detector, "result": self.result}
        if self.result != "ok":
            seen.update(err=self.err, name=self.name, message=self.message)
        elif self.message:
            seen.update(message=self.message)
        return seen


def run(detector: str, call: Callable[[], object]) -> Seen:
    try:
        return Seen(detector, "ok", value=call())
    except JetError as exc:
        return Seen(
            detector, "error", exc.err, exc.name, exc.message, getattr(exc, "scanned", None)
        )
    except Exception as exc:  # a crash: exactly what the campaign looks for
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        return Seen(detector, "crash", None, type(exc).__name__, f"{exc} (at {where})")


def names(seen: Seen, file: str, place: str | None) -> bool:
    """Does the error message name the file (its base name) and the place (a regex)?"""
    text = seen.message
    return os.path.basename(file) in text and (place is None or re.search(place, text) is not None)


def describe_seen(seen: Seen) -> str:
    if seen.result == "ok":
        return f"{seen.detector}: no error"
    if seen.result == "crash":
        return f"{seen.detector}: CRASH {seen.name}: {seen.message}"
    return f"{seen.detector}: {seen.name} ({seen.err}): {seen.message}"


Judged = tuple[str, str, list[Seen], int]  # outcome, reason, what the detectors did, commits lost


class Verdict:
    """Collects the checks of one trial: any failed expectation makes it a VIOLATION."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def expect_error(
        self,
        seen: Seen,
        errs: set[int],
        file: str,
        place: str | None,
        what: str,
        want: State | None = None,
    ) -> None:
        """``seen`` must fail with one of ``errs`` naming ``file`` and ``place``; with ``want``,
        data it served (an open+scan whose integrity check failed) must be ``want``."""
        if seen.result == "crash":
            self.failures.append(f"crash in {describe_seen(seen)}")
        elif seen.result == "ok":
            data = ""
            if want is not None and isinstance(seen.value, tuple):
                data = f"; data: {diff_states(seen.value[0], want)}"
            self.failures.append(f"{seen.detector} accepted the damage silently ({what}){data}")
        elif seen.err not in errs:
            self.failures.append(
                f"wrong error: {describe_seen(seen)}; expected {sorted(errs)} ({what})"
            )
        elif not names(seen, file, place):
            self.failures.append(
                f"the error does not name {os.path.basename(file)} and {place}: "
                f"{describe_seen(seen)}"
            )
        elif want is not None and seen.value is not None and seen.value != want:
            self.failures.append(
                f"{seen.detector} served wrong data before the integrity check failed: "
                f"{diff_states(seen.value, want)}"
            )

    def expect_data(self, seen: Seen, want: State, what: str) -> None:
        """``seen`` (an open+scan, a restore) must succeed and return exactly ``want``."""
        if seen.result == "crash":
            self.failures.append(f"crash in {describe_seen(seen)}")
        elif seen.result == "error":
            served = ""
            if seen.value is not None and seen.value != want:
                served = f"; it served wrong data first: {diff_states(seen.value, want)}"
            self.failures.append(f"false alarm: {describe_seen(seen)} ({what}){served}")
        elif seen.value[0] != want:
            self.failures.append(
                f"{seen.detector} returned wrong data: {diff_states(seen.value[0], want)}"
            )
        elif seen.value[2]:
            self.failures.append(f"{seen.detector}: {seen.value[2]}")

    def crashed(self, *seen: Seen) -> None:
        for one in seen:
            if one.result == "crash":
                self.failures.append(f"crash in {describe_seen(one)}")


def conclude(
    verdict: Verdict, outcome: str, reason: str, seen: list[Seen], lost: int = 0
) -> Judged:
    if verdict.failures:
        return VIOLATION, "; ".join(verdict.failures), seen, lost
    return outcome, reason, seen, lost

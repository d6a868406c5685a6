"""The one progress display of every ``jetstore`` command (demo, ctl backup, restore,
verify-backup, load).

On a terminal it is a tqdm bar redrawn in place and as wide as the terminal (it
follows a resize); anywhere else - a file, a pipe, CI - it prints a plain line when
a phase starts, at most every ``interval`` seconds while it runs, and once at the
end, so a log holds a few readable lines instead of frames glued together by
carriage returns.  Its clock is injectable: tests drive the plain lines without
waiting.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from tqdm import tqdm

from jetstore.actors.control_commands import megabytes

PLAIN_INTERVAL_S = 5.0


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class ProgressDisplay:
    """Progress of one piece of work in bytes, in phases (pages, logs, verify...)."""

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        interval: float = PLAIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.clock = clock
        self.bar: tqdm | None = None
        self.phase: str | None = None
        self.last_line = -float("inf")
        self.printed: tuple | None = None  # the state the last plain line showed
        self.done = self.total = 0
        self.detail = ""

    def update(self, phase: str, done: int, total: int, detail: str | None = None) -> None:
        new_phase = phase != self.phase
        if new_phase and not is_terminal(self.stream) and self.phase is not None:
            if self.printed != (self.phase, self.done, self.total):
                self._line()  # how the phase ended, not only how it began
        self.phase, self.done, self.total, self.detail = phase, done, total, detail or ""
        if is_terminal(self.stream):
            self._draw(new_phase)
        elif new_phase or self.clock() - self.last_line >= self.interval:
            self._line()

    def note(self, text: str) -> None:
        """A line of its own, printed above a bar on a terminal."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self, outcome: str = "done") -> None:
        """The last state as a line of its own, whatever the output is."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.phase is not None:
            self._line(outcome)
            self.phase = None

    def _draw(self, new_phase: bool) -> None:
        if self.bar is None or new_phase:
            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(
                total=self.total or None,
                desc=self._title(),
                unit="B",
                unit_scale=True,
                dynamic_ncols=True,
                file=self.stream,
                leave=False,
            )
        if self.total and self.bar.total != self.total:
            self.bar.total = self.total
        self.bar.n = self.done
        self.bar.set_postfix_str(self.detail, refresh=False)
        self.bar.update(0)  # redrawn at most every mininterval (0.1 s), as tqdm paces it

    def _title(self) -> str:
        return self.label if self.phase == self.label else f"{self.label} {self.phase}"

    def _line(self, outcome: str | None = None) -> None:
        self.last_line = self.clock()
        self.printed = (self.phase, self.done, self.total)
        if self.total:
            figures = f"{megabytes(self.done)} of {megabytes(self.total)}"
            figures += f" ({100 * self.done / self.total:.0f}%)"
        else:
            figures = megabytes(self.done) if self.done else "starting"
        text = f"{self._title()}: {figures}"
        if outcome is not None:
            text += f" - {outcome}"
        elif self.detail:
            text += f" {self.detail}"
        print(text, file=self.stream, flush=True)


def status_callback(label: str, stream: TextIO | None = None) -> Callable:
    """A ``status=`` callback for backup, restore and verify_backup that drives a display."""
    display = ProgressDisplay(label, stream)

    def show(progress) -> None:
        if progress.snt in ("complete", "fail"):
            display.update(progress.phase, progress.done, progress.total, progress.file)
            display.close("complete" if progress.snt == "complete" else "failed")
            return
        display.update(progress.phase, progress.done, progress.total, progress.file)

    return show

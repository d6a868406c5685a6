"""pgbench-style progress of a run (``load -P N``): every N seconds of the measured
window, a line with that interval's tx/s, p50, p99 and errors; and the running backup
on the display every ``jetstore`` command shows progress on (a bar on a terminal,
plain lines elsewhere), the lines printed above it.

A line is computed from the per-second records the final report sums, once every
client has moved past the interval or stopped: no record of those seconds can come
later, so the line's figures are the report's."""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING

from jetstore.tools.progress import ProgressDisplay

from .summary import window_summary

if TYPE_CHECKING:
    from .driver import Collector


def progress_line(end: int, window: dict) -> str:
    """``progress: 10.0 s, 3,912.4 tx/s, p50 1.02 ms, p99 4.10 ms, 0 errors``."""

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.2f} ms"

    errors = window["errors"]
    return (
        f"progress: {end:.1f} s, {window['tx_per_s']:,.1f} tx/s, p50 {ms(window['p50_ms'])}, "
        f"p99 {ms(window['p99_ms'])}, {errors:,d} error{'' if errors == 1 else 's'}"
    )


class ProgressLines:
    """The progress of one engine's run on stderr; silent when ``every`` is 0."""

    def __init__(self, engine: str, every: int, duration: float | None) -> None:
        self.every, self.duration = every, duration
        self.display = ProgressDisplay(f"{engine} backup") if every else None
        self.lock = threading.Lock()  # the backup thread draws while the driver prints
        self.next_end = every

    def note(self, text: str) -> None:
        """A line of its own (above the backup's bar on a terminal)."""
        if self.display is not None:
            with self.lock:
                self.display.note(text)

    def poll(self, collector: Collector, reached: float) -> None:
        """Print every interval that ends within the first ``reached`` seconds of the
        measured window and whose records have all arrived."""
        if not self.every:
            return
        limit = min(reached, collector.complete_before(), self.duration or math.inf)
        while self.next_end <= limit:
            seconds = range(self.next_end - self.every, self.next_end)
            slots = [phase for sec in seconds for phase in collector.seconds.get(sec, ())]
            self.note(progress_line(self.next_end, window_summary(slots, self.every)))
            self.next_end += self.every

    def backup_update(self, label: str, event: dict) -> None:
        """A backup's progress event (``phase``, ``done`` and ``total`` bytes)."""
        if self.display is not None:
            with self.lock:
                self.display.update(
                    f"{label} {event.get('phase', '')}",
                    event.get("done", 0),
                    event.get("total", 0),
                    event.get("file"),
                )

    def backup_end(self, ok: bool) -> None:
        if self.display is not None:
            with self.lock:
                self.display.close("complete" if ok else "failed")

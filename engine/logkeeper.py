"""What the log writer actor does with its stream, free of sockets: batched appends,
group sync, rolls, and truncation that never removes what recovery or a pin needs.

A generation is *needed* while it is at or above the checkpoint's generation
(recovery replays from there) or at or above a pinned floor (a backup copies
from there).  ``truncate`` refuses to go past either; circular logging
truncates on its own at every checkpoint, within the same limits.  Read views
(read_view.py) hold no generation: what a view has read is in its memory, and a
view whose next generation is gone starts again from the newest checkpoint,
whose log this floor always keeps.

With archiving on (``ArchivePolicy``), the archive is one more reader that needs
generations: every generation above the last one the archiver reported archived is
kept, in circular logging too, until the archiver reports it (``archived``).  Two
limits come with it.  ``timeout``: the current generation is rolled once it is that
old and holds a record, so it can be archived (PostgreSQL's archive_timeout).
``max_lag_bytes``: when the unarchived local log grows past it (an archive down for
long), the archive lets go of its pin rather than fill the log's disk and stop the
commits - pgBackRest's archive-push-queue-max.  The generations truncated meanwhile
are then missing from the archive: an event says so at once, the archiver records
the gap, and a restore through the archive stops there with -528 naming them.  The
pin holds again once the lag is back under the limit.  None (the default): no limit,
the log grows for as long as the archive fails (PostgreSQL's behaviour).

With a ``published`` state (published_format.py), every sync is published -
the durable LSN and the records durable so far - before ``append_batches``
returns, so before the buffer manager can acknowledge any commit of the batch.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from .errors import JetError
from .events_format import EventLog
from .log_format import RECORDS_START, lsn_gen, lsn_offset
from .log_stream import LogStream
from .published_format import Published


def log_write_error(exc: JetError) -> JetError:
    """ESE reports a failed log write as a log error, whatever the file layer saw."""
    if exc.name in ("JET_errDiskFull", "JET_errLogDiskFull"):
        return JetError("JET_errLogDiskFull", exc.message)
    return JetError("JET_errLogWriteFail", exc.message)


@dataclass(frozen=True)
class ArchivePolicy:
    timeout: float | None = None  # seconds: roll at least this often while commits arrive
    max_lag_bytes: int | None = None  # unarchived local log past which the pin lets go


class LogKeeper:
    def __init__(
        self,
        stream: LogStream,
        checkpoint_lsn: int,
        published: Published | None = None,
        *,
        archiving: ArchivePolicy | None = None,
        events: EventLog | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.checkpoint_lsn = checkpoint_lsn
        self.pins: Counter[int] = Counter()
        self.failure: JetError | None = None
        self.published = published
        self.archiving = archiving
        # Nothing is known archived until the archiver says so: until then, keep all.
        self.archived_through = 0
        self.archive_released = False  # the pin let go: the lag passed max_lag_bytes
        self.events = events
        self.clock = clock
        self._timed_generation = stream.current_generation
        self._generation_since = clock()
        self._publish()

    def _publish(self) -> None:
        if self.published is not None:
            self.published.publish_durable(self.stream.durable_lsn, self.stream.appended)

    def append_batches(self, batches: list[list[bytes]]) -> list[list[int]]:
        """Append every record of every batch, then one fdatasync for all of them.

        Returns the end LSN of each record, per batch.  After a failure the
        stream's state on disk is unknown: every later append fails too, and the
        instance must be reopened (recovery finds what reached the disk).
        """
        if self.failure is not None:
            raise self.failure
        try:
            ends = []
            for records in batches:
                batch_ends = []
                for payload in records:
                    self.stream.append(payload)
                    batch_ends.append(self.stream.end_lsn)
                ends.append(batch_ends)
            self.stream.sync()
        except JetError as exc:
            self.failure = log_write_error(exc)
            raise self.failure from exc
        self._publish()
        return ends

    @property
    def needed(self) -> int:
        """The oldest generation recovery or a backup still needs."""
        return min([lsn_gen(self.checkpoint_lsn), *self.pins])

    @property
    def floor(self) -> int:
        """The oldest generation something still needs, the archive included."""
        return min(self.needed, self._archive_floor())

    def _archive_floor(self) -> int:
        """The oldest generation the archive still needs (beyond any: no archiving)."""
        if self.archiving is None:
            return self.stream.current_generation
        waiting_from = max(self.archived_through + 1, self.stream.oldest_generation)
        lag = (self.stream.current_generation - waiting_from) * self.stream.log_file_size
        limit = self.archiving.max_lag_bytes
        released = limit is not None and lag > limit
        if released != self.archive_released:
            self.archive_released = released
            if self.events is not None:
                self.events.emit(
                    "archive-lag-limit" if released else "archive-pin-restored",
                    unarchived_from=waiting_from,
                    lag_bytes=lag,
                    max_lag_bytes=limit,
                )
        return self.stream.current_generation if released else self.archived_through + 1

    def archived(self, generation: int) -> None:
        """The archiver holds every generation up to ``generation``: they may go."""
        self.archived_through = max(self.archived_through, generation)
        if self.stream.circular:
            self.stream.truncate_below(self.floor)

    def seconds_to_roll(self) -> float | None:
        """How long until ``roll_if_due`` may roll (None: never, archive_timeout unset)."""
        if self.archiving is None or self.archiving.timeout is None:
            return None
        if self.stream.current_generation != self._timed_generation:
            self._timed_generation = self.stream.current_generation
            self._generation_since = self.clock()
        return max(0.0, self._generation_since + self.archiving.timeout - self.clock())

    def roll_if_due(self) -> int | None:
        """Roll a generation that holds records and is archive_timeout old."""
        wait = self.seconds_to_roll()
        if wait is None or wait > 0 or self.failure is not None:
            return None
        if lsn_offset(self.stream.end_lsn) <= RECORDS_START:
            return None  # nothing committed in it: an idle log is not rolled
        return self.roll()

    def checkpointed(self, checkpoint_lsn: int) -> list[int]:
        """A checkpoint became durable; circular logging drops what nothing needs now."""
        self.checkpoint_lsn = max(self.checkpoint_lsn, checkpoint_lsn)
        if not self.stream.circular:
            return []
        return self.stream.truncate_below(self.floor)

    def roll(self) -> int:
        if self.failure is not None:
            raise self.failure
        try:
            # Circular logging deletes as it rolls: no lower than what pins and the
            # archive still need (the checkpoint's generation alone is not enough).
            return self.stream.roll(self.checkpoint_lsn, floor_gen=self.floor)
        except JetError as exc:
            self.failure = log_write_error(exc)
            raise self.failure from exc

    def truncate(self, below: int, checkpoint_lsn: int = 0) -> list[int]:
        """Delete generations < ``below``; refused if recovery or a pin needs one of them.

        ``checkpoint_lsn``: a durable checkpoint the caller knows of, maybe newer than ours.
        """
        self.checkpoint_lsn = max(self.checkpoint_lsn, checkpoint_lsn)
        if below > self.needed:
            raise JetError(
                "JET_errInvalidParameter",
                f"cannot truncate below generation {below}: generation {self.needed} and later "
                "are still needed (checkpoint or backup pin)",
            )
        # What the archive has not taken yet stays, for the archiver to take later.
        return self.stream.truncate_below(min(below, self.floor))

    def pin(self, generation: int) -> None:
        if generation < self.stream.oldest_generation:
            raise JetError(
                "JET_errMissingFileToBackup",
                f"generation {generation} is no longer on disk "
                f"(oldest is {self.stream.oldest_generation})",
            )
        self.pins[generation] += 1

    def unpin(self, generation: int) -> None:
        if self.pins[generation] <= 0:
            raise JetError("JET_errInvalidParameter", f"generation {generation} is not pinned")
        self.pins[generation] -= 1
        if not self.pins[generation]:
            del self.pins[generation]

    def status(self) -> dict:
        return {
            "current_generation": self.stream.current_generation,
            "oldest_generation": self.stream.oldest_generation,
            "durable_lsn": self.stream.durable_lsn,
            "checkpoint_lsn": self.checkpoint_lsn,
            "pins": sorted(self.pins),
            "floor": self.floor,
            "circular": self.stream.circular,
            "archived_through": None if self.archiving is None else self.archived_through,
            "archive_pin_released": self.archive_released,
            "failure": None if self.failure is None else str(self.failure),
        }

"""What the log writer actor does with its stream, free of sockets: batched appends,
group sync, rolls, and truncation that never removes what recovery or a pin needs.

A generation is *needed* while it is at or above the checkpoint's generation
(recovery replays from there) or at or above a pinned floor (a backup copies
from there).  ``truncate`` refuses to go past either; circular logging
truncates on its own at every checkpoint, within the same limits.  Read views
(read_view.py) hold no generation: what a view has read is in its memory, and a
view whose next generation is gone starts again from the newest checkpoint,
whose log this floor always keeps.

With a ``published`` state (published_format.py), every sync is published -
the durable LSN and the records durable so far - before ``append_batches``
returns, so before the buffer manager can acknowledge any commit of the batch.
"""

from __future__ import annotations

from collections import Counter

from .errors import JetError
from .log_format import lsn_gen
from .log_stream import LogStream
from .published_format import Published


def log_write_error(exc: JetError) -> JetError:
    """ESE reports a failed log write as a log error, whatever the file layer saw."""
    if exc.name in ("JET_errDiskFull", "JET_errLogDiskFull"):
        return JetError("JET_errLogDiskFull", exc.message)
    return JetError("JET_errLogWriteFail", exc.message)


class LogKeeper:
    def __init__(
        self,
        stream: LogStream,
        checkpoint_lsn: int,
        published: Published | None = None,
    ) -> None:
        self.stream = stream
        self.checkpoint_lsn = checkpoint_lsn
        self.pins: Counter[int] = Counter()
        self.failure: JetError | None = None
        self.published = published
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
    def floor(self) -> int:
        """The oldest generation something still needs."""
        return min([lsn_gen(self.checkpoint_lsn), *self.pins])

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
            generation = self.stream.roll(self.checkpoint_lsn)
        except JetError as exc:
            self.failure = log_write_error(exc)
            raise self.failure from exc
        if self.stream.circular:
            self.stream.truncate_below(self.floor)
        return generation

    def truncate(self, below: int, checkpoint_lsn: int = 0) -> list[int]:
        """Delete generations < ``below``; refused if recovery or a pin needs one of them.

        ``checkpoint_lsn``: a durable checkpoint the caller knows of, maybe newer than ours.
        """
        self.checkpoint_lsn = max(self.checkpoint_lsn, checkpoint_lsn)
        if below > self.floor:
            raise JetError(
                "JET_errInvalidParameter",
                f"cannot truncate below generation {below}: generation {self.floor} and later "
                "are still needed (checkpoint or backup pin)",
            )
        return self.stream.truncate_below(below)

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
            "failure": None if self.failure is None else str(self.failure),
        }

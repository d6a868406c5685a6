"""Continuous archiving (DESIGN.md section 6): every closed generation, copied into the
archive (archive_format.py), verified and fsynced there, before the log writer may
delete it.

``Archiver.step`` is the whole job, free of sockets: the archiver actor calls it on
every turn and tells the log writer how far the archive reaches (``archived_through``),
which is what pins the unarchived generations (logkeeper.py).  A generation goes in
this order, each step surviving a ``kill -9`` before the next:

1. verify it in the live log directory, record by record (-612 naming the offset), and
   against the header chain of the archived generation before it (-590 / -515);
2. copy it to ``incoming/`` (replacing what an interrupted copy left there), fdatasync;
3. read the copy back and compare its CRC32C with the source's;
4. rename it to its final name in the stream directory, fsync the directory;
5. report it archived (only now may the log writer delete it).

A copy already under its final name (a kill between 4 and 5) is compared with the
source and adopted if identical; one that differs is an error, never overwritten.

A failure (full disk, vanished or read-only directory, damage) is retried with
backoff (``BACKOFF``) for as long as it lasts, and is an event at every attempt:
the generations wait in the local log meanwhile, so no acknowledged commit is lost.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import crc32c

from . import archive_format
from .backup import COPY_CHUNK, copy_file
from .errors import JetError
from .events_format import EventLog
from .fileio import Env
from .log_format import generation_file_name
from .log_reader import LogReader, generation_path, list_generations

BACKOFF = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)  # seconds before the next attempt
# Where a fault plan may kill the archiver (actors/fault_plan.py crash_at_step).
ARCHIVE_STEPS = ("archive-verified", "archive-copied", "archive-renamed")


def file_crc(env: Env, path: str) -> tuple[int, int]:
    """(size, CRC32C) of a whole file, read in COPY_CHUNK pieces."""
    file = env.open_read(path)
    try:
        crc, offset = 0, 0
        while chunk := file.pread(COPY_CHUNK, offset):
            crc = crc32c.crc32c(chunk, value=crc)
            offset += len(chunk)
        return offset, crc
    finally:
        file.close()


class ArchiveStream:
    """The directory of one log stream in an archive."""

    def __init__(self, env: Env, archive: str, db_signature: bytes, log_signature: bytes) -> None:
        archive_format.claim(env, archive, db_signature, create=False)  # the open claimed it
        self.env = env
        self.archive = archive
        self.log_signature = log_signature
        self.path = archive_format.stream_dir(archive, log_signature)
        self.incoming = archive_format.incoming_dir(archive, log_signature)
        if not os.path.isdir(self.path):
            env.makedirs(self.path)
            env.sync_dir(archive)
        env.makedirs(self.incoming)

    def generations(self) -> list[int]:
        return list_generations(self.env, self.path)

    def summary(self, generation: int) -> dict:
        """The verified summary of an archived generation (its chain fields)."""
        reader = LogReader(self.env, self.path, signature=self.log_signature)
        return reader.verify_generation(generation, context="backup")

    def add(
        self,
        logs_dir: str,
        generation: int,
        previous: dict | None,
        fault_point: Callable[[str], None] = lambda name: None,
    ) -> dict:
        """Archive one closed generation of ``logs_dir``; its verified summary.

        ``previous``: the summary of generation - 1 if the archive holds it, whose
        creation time and final checksum this one's header must repeat."""
        env = self.env
        reader = LogReader(env, logs_dir, signature=self.log_signature)
        summary = reader.verify_generation(generation, context="backup")
        source = generation_path(logs_dir, generation)
        if not summary["closed"]:
            raise JetError(
                "JET_errLogReadVerifyFailure",
                f"{source}: generation {generation} is not closed and cannot be archived yet",
            )
        if previous is not None:
            check_chain(previous, summary, source)
        fault_point("archive-verified")
        final = generation_path(self.path, generation)
        if env.exists(final):
            if file_crc(env, final) != file_crc(env, source):
                raise JetError(
                    "JET_errLogSequenceChecksumMismatch",
                    f"{final}: the archive already holds a generation {generation} of stream "
                    f"{self.log_signature.hex()} that differs from {source}; it is left as it is",
                )
            return summary  # archived before a kill kept it from being reported
        temporary = os.path.join(self.incoming, generation_file_name(generation))
        if env.exists(temporary):  # what a copy cut short left
            env.remove(temporary)
        copied = copy_file(env, source, temporary, None)  # (size, CRC32C) of what it read
        if file_crc(env, temporary) != copied:
            raise JetError(
                "JET_errLogReadVerifyFailure",
                f"{temporary}: the copy of {source} does not read back as written",
            )
        fault_point("archive-copied")
        env.rename(temporary, final)
        env.sync_dir(self.path)
        fault_point("archive-renamed")
        return summary


def _identity(env: Env, logs_dir: str, generation: int) -> tuple:
    """What tells one generation from another of the same number: its stream, its
    creation time and its link to the one before."""
    header = LogReader(env, logs_dir).read_header(generation)
    return (
        header.signature,
        header.create_time_ns,
        header.prev_create_time_ns,
        header.prev_final_checksum,
    )


def check_chain(previous: dict, summary: dict, path: str) -> None:
    """``summary``'s header must name ``previous``'s creation time and final checksum."""
    if summary["prev_create_time_ns"] != previous["create_time_ns"]:
        raise JetError(
            "JET_errInvalidLogSequence",
            f"{path}: previous generation created at {summary['prev_create_time_ns']} ns, "
            f"but the archived generation {previous['generation']} was created at "
            f"{previous['create_time_ns']} ns",
        )
    if summary["prev_final_checksum"] != previous["final_checksum"]:
        raise JetError(
            "JET_errLogSequenceChecksumMismatch",
            f"{path}: previous generation's final checksum {summary['prev_final_checksum']:#010x}, "
            f"but the archived generation {previous['generation']} ends with "
            f"{previous['final_checksum']:#010x}",
        )


class Archiver:
    """Keeps an archive stream caught up with the closed generations of a logs directory."""

    def __init__(
        self,
        env: Env,
        logs_dir: str,
        archive: str,
        *,
        db_signature: bytes,
        log_signature: bytes,
        events: EventLog,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], int] = time.time_ns,
        fault_point: Callable[[str], None] = lambda name: None,
    ) -> None:
        self.env = env
        self.logs_dir = logs_dir
        self.archive = archive
        self.db_signature = db_signature
        self.log_signature = log_signature
        self.events = events
        self.clock = clock
        self.wall_clock = wall_clock
        self.fault_point = fault_point
        self.stream: ArchiveStream | None = None  # opened by the first step that can
        self.archived_through = 0  # every generation of the stream up to it is archived
        self.previous: dict | None = None  # summary of archived_through, for the chain
        self.stream_begins: int | None = None  # this stream's first local generation
        self.behind = False  # the last step left closed generations for the next ones
        self.archived_at_ns = 0
        self.failures = 0
        self.last_failure: dict | None = None
        self.retry_at = 0.0

    def due_in(self) -> float:
        """Seconds until a failed attempt may be retried (0: now)."""
        return max(0.0, self.retry_at - self.clock())

    def open(self) -> None:
        """Check the archive (-555: another database's; -1811: vanished, never
        recreated) and find where this stream's archiving resumes (``_resume``)."""
        if self.stream is not None:
            if not archive_format.is_archive(self.archive):
                raise JetError(
                    "JET_errFileNotFound",
                    f"archive {self.archive} vanished ({archive_format.IDENTITY_FILE} is "
                    "gone; an unmounted disk?): the local log keeps every generation until "
                    "it is back, or until the instance is reopened with another archive",
                )
            return
        stream = ArchiveStream(self.env, self.archive, self.db_signature, self.log_signature)
        self.archived_through, self.previous = self._resume(stream)
        self.stream = stream

    def _resume(self, stream: ArchiveStream) -> tuple[int, dict | None]:
        """Where archiving resumes: after the newest closed local generation that the
        archive holds with every closed local one before it.  What both hold must be the
        same generation - the headers of all, the bytes of the newest - or this is
        another copy of the database archiving into the same stream (a copied
        directory, a VM snapshot rolled back): -590, and the local log keeps everything.
        """
        archived = set(stream.generations())
        closed = self.local_closed()
        shared = [g for g in closed if g in archived]
        for generation in shared:
            local = generation_path(self.logs_dir, generation)
            theirs = generation_path(stream.path, generation)
            same = _identity(self.env, self.logs_dir, generation) == _identity(
                self.env, stream.path, generation
            )
            if same and generation == shared[-1]:
                same = file_crc(self.env, local) == file_crc(self.env, theirs)
            if not same:
                raise JetError(
                    "JET_errLogSequenceChecksumMismatch",
                    f"{theirs}: the archive holds a generation {generation} of this stream "
                    f"that differs from {local}: another copy of this database (a copied "
                    "directory, a restored VM snapshot) archives into it.  Nothing is "
                    "archived or deleted; reopen this instance with an archive of its own",
                )
        missing = next((g for g in closed if g not in archived), None)
        if missing is not None:
            through = missing - 1
        else:  # never past this log's own closed generations, whatever the archive has
            present = list_generations(self.env, self.logs_dir)
            through = closed[-1] if closed else present[-1] - 1
        return through, stream.summary(through) if through in archived else None

    def step(self, limit: int | None = None) -> bool:
        """Archive the closed generations not archived yet, at most ``limit`` of them
        (``behind`` tells whether any were left); whether ``archived_through`` moved.
        A failure is recorded, logged and retried later, never raised."""
        if self.clock() < self.retry_at:
            return False
        before, generation = self.archived_through, None
        try:
            self.open()
            pending = self.pending()
            self.behind = limit is not None and len(pending) > limit
            for generation in pending[:limit]:
                previous = self.previous if generation == self.archived_through + 1 else None
                if previous is None and self.archived_through:
                    self.events.emit(
                        "archive-gap",
                        archive=self.stream.path,
                        missing=[self.archived_through + 1, generation - 1],
                        reason="gone from the local log before they were archived",
                    )
                self.previous = self.stream.add(
                    self.logs_dir, generation, previous, self.fault_point
                )
                self.archived_through = generation
                self.archived_at_ns = self.wall_clock()
                self.events.emit(
                    "log-archived",
                    generation=generation,
                    path=generation_path(self.stream.path, generation),
                )
        except JetError as exc:
            self._failed(exc, generation)
        else:
            if self.failures:
                self.events.emit("archive-recovered", after_attempts=self.failures)
            self.failures = 0  # last_failure stays: what went wrong, and when
        return self.archived_through != before

    def _failed(self, exc: JetError, generation: int | None) -> None:
        delay = BACKOFF[min(self.failures, len(BACKOFF) - 1)]
        self.failures += 1
        self.retry_at = self.clock() + delay
        self.last_failure = {
            **exc.as_dict(),
            "generation": generation,
            "time_ns": self.wall_clock(),
            "attempts": self.failures,
            "retry_in_s": delay,
        }
        self.events.failure(
            "archive-failed",
            exc,
            archive=self.archive,
            generation=generation,
            attempts=self.failures,
            retry_in_s=delay,
        )

    def local_closed(self) -> list[int]:
        """The closed generations of this stream in the local log, in order.

        All but the highest generation are closed.  Older generations of another
        stream (the log restarted below this one) are not this stream's to archive;
        where this stream begins is read once, from the headers, newest first.
        """
        present = list_generations(self.env, self.logs_dir)
        if self.stream_begins is None:
            self.stream_begins = present[0]
            for generation in reversed(present):
                header = LogReader(self.env, self.logs_dir).read_header(generation)  # any stream
                if header.signature != self.log_signature:
                    self.stream_begins = generation + 1
                    break
        return [g for g in present[:-1] if g >= self.stream_begins]

    def pending(self) -> list[int]:
        """The closed generations of this stream not archived yet, in order."""
        return [g for g in self.local_closed() if g > self.archived_through]

    def status(self) -> dict:
        """Archived-up-to, lag (generations, bytes, seconds) and the last failure."""
        waiting = []
        present = list_generations(self.env, self.logs_dir)
        for generation in present[:-1]:
            if generation > self.archived_through:
                waiting.append(generation)
        lag_bytes = 0
        for generation in waiting:
            try:
                lag_bytes += os.path.getsize(generation_path(self.logs_dir, generation))
            except OSError:
                pass  # deleted meanwhile
        lag_seconds = 0.0
        if waiting:
            # The oldest waiting generation closed when the one after it was created.
            try:
                closed_ns = (
                    LogReader(self.env, self.logs_dir).read_header(waiting[0] + 1).create_time_ns
                )
                lag_seconds = max(0.0, (self.wall_clock() - closed_ns) / 1e9)
            except JetError:
                pass
        return {
            "archive_dir": self.archive,
            "stream": self.log_signature.hex(),
            "archived_through": self.archived_through,
            "archived_at_ns": self.archived_at_ns,
            "lag_generations": len(waiting),
            "lag_bytes": lag_bytes,
            "lag_seconds": round(lag_seconds, 3),
            "failing": self.failures > 0,
            "failures": self.failures,
            "last_failure": self.last_failure,
        }

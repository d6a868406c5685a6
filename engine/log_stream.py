"""Writing log generations: LogStream.

The byte layout is in ``log_format``.  What this module adds is the protocol around it:

- A generation file appears complete or not at all: it is built under ``jettmp.log`` (header,
  then zeros up to ``log_file_size``), fdatasynced, renamed to its final name, and the
  directory is fsynced.
- Appends go to the current (highest) generation.  Fragments are buffered and written with one
  pwrite at the next sync or roll (or every PENDING_LIMIT bytes): a group commit of any
  number of records costs one write and one fdatasync.  A payload that does
  not fit in what is left of the generation is split into FIRST / MIDDLE / LAST fragments, and
  the generation is closed (END_OF_GENERATION, fdatasync) and the next one created in between.
- Reopening after a crash zero-fills the last generation from the end of its valid records:
  bytes of a batch that was never acknowledged must not become valid later, e.g. once new
  appends fill the gap before them.
"""

from __future__ import annotations

import os
import time

from crc32c import crc32c

from .errors import JetError
from .fileio import Env, File
from .log_format import (
    EOG_RECORD_SIZE,
    FLAG_CIRCULAR_EVER,
    FLAG_CIRCULAR_NOW,
    FORMAT_VERSION,
    HEADER_SIZE,
    LOG_FILE_SIZE_OFFSET,
    LOG_FILE_SIZE_UNIT,
    MAX_GENERATION,
    MAX_LOG_FILE_SIZE,
    MIN_LOG_FILE_SIZE,
    RECORD_FIRST,
    RECORD_FULL,
    RECORD_HEADER_SIZE,
    RECORD_LAST,
    RECORD_MIDDLE,
    RECORD_SYNCED,
    RECORDS_START,
    SIGNATURE_SIZE,
    SYNCED_PAYLOAD,
    TEMP_FILE_NAME,
    LogHeader,
    format_lsn,
    lsn_gen,
    lsn_offset,
    make_lsn,
    pack_end_of_generation,
    pack_record,
)
from .log_reader import LogReader, at_offset, generation_path, list_generations
from .redo_sink import Ticket

_ZEROS = bytes(1 << 20)  # the largest single write used to zero-fill a generation
PENDING_LIMIT = 1 << 20  # appended bytes held in memory before a write (lazy commits)


def _zero_fill(file: File, start: int, end: int) -> None:
    while start < end:
        size = min(len(_ZEROS), end - start)
        file.pwrite(memoryview(_ZEROS)[:size], start)
        start += size


def _check_stream_parameters(log_file_size: int, signature: bytes) -> None:
    if (
        log_file_size % LOG_FILE_SIZE_UNIT
        or not MIN_LOG_FILE_SIZE <= log_file_size <= MAX_LOG_FILE_SIZE
    ):
        raise JetError(
            "JET_errInvalidParameter",
            f"log_file_size {log_file_size}: must be a multiple of {LOG_FILE_SIZE_UNIT} "
            f"from {MIN_LOG_FILE_SIZE} to {MAX_LOG_FILE_SIZE}",
        )
    if len(signature) != SIGNATURE_SIZE:
        raise JetError(
            "JET_errInvalidParameter",
            f"log signature of {len(signature)} bytes: must be {SIGNATURE_SIZE}",
        )


# -- writing -----------------------------------------------------------------------------------


class LogStream:
    """Appends records to a log stream.  Not thread-safe; one writer per logs directory.

    After an error from ``append``, ``sync`` or ``roll`` the stream must not be used again:
    what reached the disk is then known only to a reader, so the caller recovers the way it
    does after a crash (``LogReader.records`` to the end, then ``LogStream.open``).
    """

    def __init__(
        self, env: Env, logs_dir: str, log_file_size: int, signature: bytes, circular: bool
    ) -> None:
        _check_stream_parameters(log_file_size, signature)
        self._env = env
        self._logs_dir = logs_dir
        self._log_file_size = log_file_size
        self._limit = log_file_size - EOG_RECORD_SIZE  # data records end at or before this
        self._signature = bytes(signature)
        self._circular = circular
        self._circular_ever = circular
        self._checkpoint_lsn = 0  # the latest known: written into every new header
        self._file: File | None = None
        self._generation = 0
        self._appended = 0  # records appended by this stream: the next ticket's number
        self._create_time_ns = 0
        self._offset = RECORDS_START  # of the next append in the current generation
        self._durable_offset = RECORDS_START
        self._checksum = 0  # running checksum of the current generation
        self._fragments = 0
        self._marked_offset = RECORDS_START  # synced offset the last SYNCED record claimed
        # Records appended since the last write: written with ONE pwrite at the next sync,
        # roll or PENDING_LIMIT, so a group commit costs one write however many records.
        self._pending = bytearray()
        self._pending_offset = RECORDS_START

    @classmethod
    def create(
        cls,
        env: Env,
        logs_dir: str,
        *,
        log_file_size: int,
        signature: bytes,
        circular: bool = False,
        checkpoint_lsn: int = 0,
        first_generation: int = 1,
    ) -> LogStream:
        """Start a new stream at ``first_generation`` in ``logs_dir``, which must hold no
        generation at or above it.  A stream that replaces a broken one starts above the old
        one's generations, which stay for the roll-forward of the old stream's backups."""
        stream = cls(env, logs_dir, log_file_size, signature, circular)
        env.makedirs(logs_dir)
        if any(g >= first_generation for g in list_generations(env, logs_dir)):
            raise JetError(
                "JET_errInvalidLogDirectory",
                f"{logs_dir}: already holds log generations from {first_generation} on; "
                "open that stream instead",
            )
        stream._checkpoint_lsn = checkpoint_lsn
        stream._start_generation(first_generation, prev_create_time_ns=0, prev_final_checksum=0)
        return stream

    @classmethod
    def open(
        cls,
        env: Env,
        logs_dir: str,
        *,
        log_file_size: int,
        signature: bytes,
        circular: bool,
        end_lsn: int,
    ) -> LogStream:
        """Reopen a stream for appending at ``end_lsn``, the end a LogReader found.

        The rest of the last generation is zero-filled and fdatasynced first.  If that
        generation was already closed (a crash during a roll), the next one is started.
        """
        stream = cls(env, logs_dir, log_file_size, signature, circular)
        stream._remove_stale_temp()
        reader = LogReader(env, logs_dir, signature=signature)
        present = reader.generations()
        generation = lsn_gen(end_lsn)
        if not present or generation != present[-1]:
            raise JetError(
                "JET_errInvalidParameter",
                f"{at_offset(reader.path(generation), lsn_offset(end_lsn))}: end_lsn "
                f"{format_lsn(end_lsn)} is not in the last generation of {logs_dir}",
            )
        tail = reader.verify_generation(generation)
        header = reader.last_header
        if header.log_file_size != log_file_size:
            raise JetError(
                "JET_errLogFileSizeMismatch",
                f"{at_offset(header.path, LOG_FILE_SIZE_OFFSET)}: generation of "
                f"{header.log_file_size} bytes, the stream is configured for {log_file_size}",
            )
        if tail["end_lsn"] != end_lsn:
            raise JetError(
                "JET_errInvalidParameter",
                f"{at_offset(header.path, lsn_offset(end_lsn))}: end_lsn {format_lsn(end_lsn)} is "
                f"not where the valid records end, {format_lsn(tail['end_lsn'])}",
            )
        stream._circular_ever = circular or header.circular_ever
        stream._checkpoint_lsn = header.checkpoint_lsn
        if tail["closed"]:
            stream._start_generation(generation + 1, header.create_time_ns, tail["final_checksum"])
            return stream
        file = env.open(header.path)
        try:
            _zero_fill(file, lsn_offset(end_lsn), log_file_size)
            file.sync()
        except BaseException:
            file.close()
            raise
        stream._file = file
        stream._generation = generation
        stream._create_time_ns = header.create_time_ns
        stream._offset = stream._durable_offset = lsn_offset(end_lsn)
        stream._checksum = tail["final_checksum"]
        stream._fragments = tail["fragments"]
        return stream

    # -- properties ---------------------------------------------------------------------------

    @property
    def current_generation(self) -> int:
        return self._generation

    @property
    def log_file_size(self) -> int:
        return self._log_file_size

    @property
    def oldest_generation(self) -> int:
        return list_generations(self._env, self._logs_dir)[0]

    @property
    def end_lsn(self) -> int:
        """Where the next append goes."""
        return make_lsn(self._generation, self._offset)

    @property
    def appended(self) -> int:
        """Records appended by this stream so far."""
        return self._appended

    @property
    def durable_lsn(self) -> int:
        """Everything before this position is on disk."""
        return make_lsn(self._generation, self._durable_offset)

    @property
    def signature(self) -> bytes:
        return self._signature

    @property
    def circular(self) -> bool:
        return self._circular

    # -- appending ----------------------------------------------------------------------------

    def append(self, payload: bytes) -> Ticket:
        """Append one logical record (not durable until ``sync``); its ticket names the LSN
        of its first fragment.

        Each fragment is built in one buffer and checksummed once; the write waits for the
        next sync.  The first append after an fdatasync is preceded by a SYNCED record
        (log_format).
        """
        marker_size = RECORD_HEADER_SIZE + SYNCED_PAYLOAD.size
        if (
            self._durable_offset > self._marked_offset
            and self._limit - self._offset > marker_size + RECORD_HEADER_SIZE
        ):  # (no room: the append below rolls, and a new generation needs no marker yet)
            self._write_fragment(RECORD_SYNCED, SYNCED_PAYLOAD.pack(self._durable_offset))
            self._marked_offset = self._durable_offset
        view = memoryview(payload)
        remaining = len(view)
        first_lsn = None
        while True:
            room = self._limit - self._offset - RECORD_HEADER_SIZE
            if room < (1 if remaining else 0):  # an empty payload still needs its header
                self._roll()
                continue
            size = min(room, remaining)
            is_first, is_last = first_lsn is None, size == remaining
            if is_first:
                record_type = RECORD_FULL if is_last else RECORD_FIRST
            else:
                record_type = RECORD_LAST if is_last else RECORD_MIDDLE
            start = len(view) - remaining
            lsn = self._write_fragment(record_type, view[start : start + size])
            remaining -= size
            if is_first:
                first_lsn = lsn
            if is_last:
                self._appended += 1
                return Ticket(self._appended - 1, first_lsn)

    def _write_fragment(self, record_type: int, data) -> int:
        """One record at the current position (room already checked); its LSN."""
        lsn = make_lsn(self._generation, self._offset)
        record = pack_record(lsn, record_type, data)
        self._checksum = crc32c(record, value=self._checksum)
        self._fragments += 1
        if not self._pending:
            self._pending_offset = self._offset
        self._pending += record
        self._offset += len(record)
        if len(self._pending) >= PENDING_LIMIT:
            self._write_pending()
        return lsn

    def _write_pending(self) -> None:
        if self._pending:
            # Cleared before the write: after a failed write the stream is broken - its owner
            # appends and syncs nothing more - and no later call may retry these bytes.
            data = bytes(self._pending)
            self._pending.clear()
            self._file.pwrite(data, self._pending_offset)

    def sync(self) -> int:
        """Write what is pending and fdatasync the current generation; the durable end LSN."""
        if self._durable_offset != self._offset:
            self._write_pending()
            self._file.sync()
            self._durable_offset = self._offset
        return self.durable_lsn

    def roll(self, checkpoint_lsn: int = 0, floor_gen: int | None = None) -> int:
        """Close the current generation and start the next; the new generation number.

        ``checkpoint_lsn`` goes into the new header (and every later one until a newer is
        given).  With circular logging, generations below both the checkpoint's generation and
        ``floor_gen`` (a backup's pin) are deleted afterwards; if that fails, the roll itself
        has completed and the error is raised.  Rolls that ``append`` makes when a generation
        fills delete nothing: only this call brings a new checkpoint.
        """
        self._checkpoint_lsn = max(self._checkpoint_lsn, checkpoint_lsn)
        self._roll()
        if self._circular:
            keep_from = lsn_gen(checkpoint_lsn)
            if floor_gen is not None:
                keep_from = min(keep_from, floor_gen)
            self.truncate_below(keep_from)
        return self._generation

    def _roll(self) -> None:
        self._write_pending()
        eog = pack_end_of_generation(self.end_lsn, self._checksum, self._fragments)
        self._file.pwrite(eog, self._offset)
        self._file.sync()
        closed = self._file  # closed once the new file is current: _file is never a closed fd
        self._start_generation(self._generation + 1, self._create_time_ns, self._checksum)
        closed.close()

    def _remove_stale_temp(self) -> None:
        temp = os.path.join(self._logs_dir, TEMP_FILE_NAME)
        if self._env.exists(temp):
            self._env.remove(temp)
            self._env.sync_dir(self._logs_dir)

    def _start_generation(
        self, generation: int, prev_create_time_ns: int, prev_final_checksum: int
    ) -> None:
        """Create the file of ``generation`` complete under a temporary name, then publish it."""
        if generation > MAX_GENERATION:
            raise JetError(
                "JET_errLogSequenceEnd",
                f"{self._logs_dir}: generation {generation} is past the last possible one",
            )
        flags = (FLAG_CIRCULAR_NOW if self._circular else 0) | (
            FLAG_CIRCULAR_EVER if self._circular_ever else 0
        )
        header = LogHeader(
            version=FORMAT_VERSION,
            flags=flags,
            generation=generation,
            signature=self._signature,
            # Strictly increasing, even with a coarse or stepped-back clock: the chain check
            # must tell every generation of a stream apart.
            create_time_ns=max(time.time_ns(), prev_create_time_ns + 1),
            prev_create_time_ns=prev_create_time_ns,
            checkpoint_lsn=self._checkpoint_lsn,
            log_file_size=self._log_file_size,
            prev_final_checksum=prev_final_checksum,
        )
        self._remove_stale_temp()
        temp = os.path.join(self._logs_dir, TEMP_FILE_NAME)
        file = self._env.open(temp, create=True, exclusive=True)
        try:
            file.pwrite(header.pack(), 0)
            _zero_fill(file, HEADER_SIZE, self._log_file_size)
            file.sync()
        finally:
            file.close()
        path = generation_path(self._logs_dir, generation)
        self._env.rename(temp, path)
        self._env.sync_dir(self._logs_dir)
        # Reopened under its final name, so that writes are attributed to the right file.
        self._file = self._env.open(path)
        self._generation = generation
        self._create_time_ns = header.create_time_ns
        self._offset = self._durable_offset = self._marked_offset = RECORDS_START
        self._checksum = 0
        self._fragments = 0

    def truncate_below(self, generation: int) -> list[int]:
        """Delete the generations below ``generation``, oldest first; the ones deleted.

        The current generation is never deleted.  A file already gone is skipped.  Any other
        failure stops the loop, so that the log stays contiguous, and is raised (the fileio
        JetError naming the file) once the deletions already made have been made durable.
        """
        keep_from = min(generation, self._generation)
        deleted: list[int] = []
        failure: JetError | None = None
        for old in list_generations(self._env, self._logs_dir):
            if old >= keep_from:
                break
            try:
                self._env.remove(generation_path(self._logs_dir, old))
            except JetError as exc:
                if exc.name == "JET_errFileNotFound":
                    continue
                failure = exc
                break
            deleted.append(old)
        if deleted:
            self._env.sync_dir(self._logs_dir)
        if failure is not None:
            raise failure
        return deleted

    def close(self) -> None:
        """Close the file.  Appends since the last ``sync`` are dropped, as a crash drops
        them: a clean shutdown syncs first, and a failed one must write nothing more."""
        self._pending.clear()
        if self._file is not None:
            self._file.close()
            self._file = None

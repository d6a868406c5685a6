"""Log generations: the writer (LogStream), the verifying reader (LogReader) and dump_log.

The byte layout is in ``log_format``.  What this module adds is the protocol around it:

- A generation file appears complete or not at all: it is built under ``jettmp.log`` (header,
  then zeros up to ``log_file_size``), fdatasynced, renamed to its final name, and the
  directory is fsynced.
- Appends go to the current (highest) generation.  Fragments are buffered and written with one
  pwrite at the next sync or roll (or every PENDING_LIMIT bytes): a group commit of any
  number of records costs one write and one fdatasync.  A payload that does
  not fit in what is left of the generation is split into FIRST / MIDDLE / LAST fragments, and
  the generation is closed (END_OF_GENERATION, fdatasync) and the next one created in between.
- Only the highest generation may end in a torn tail.  Every lower one was closed by a roll
  that fdatasynced it, so a bad record there is corruption, never a crash.
- Reopening after a crash zero-fills the last generation from the end of its valid records:
  bytes of a batch that was never acknowledged must not become valid later, e.g. once new
  appends fill the gap before them.
- A logical record cut short by a crash in a multi-generation append leaves FIRST (and MIDDLE)
  fragments in closed generations that no LAST ever follows; after reopening, the next record
  starts with FULL or FIRST.  The reader drops such an unfinished record: it was never
  acknowledged, and every byte around it is verified by record crcs and the generation chain.

One parser, ``_GenerationScan``, walks the records of a generation; ``LogReader.records``,
``verify_generation``, ``dump_log`` and ``LogStream.open`` all go through it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import NamedTuple

from crc32c import crc32c

from .errors import JetError
from .fileio import DEFAULT_ENV, Env, File
from .log_format import (
    DATA_RECORD_TYPES,
    EOG_PAYLOAD,
    EOG_RECORD_SIZE,
    FLAG_CIRCULAR_EVER,
    FLAG_CIRCULAR_NOW,
    FORMAT_VERSION,
    GENERATION_OFFSET,
    HEADER_CRC_OFFSET,
    HEADER_SIZE,
    LOG_FILE_SIZE_OFFSET,
    LOG_FILE_SIZE_UNIT,
    MAGIC,
    MAX_GENERATION,
    MAX_LOG_FILE_SIZE,
    MIN_LOG_FILE_SIZE,
    PREV_CREATE_TIME_OFFSET,
    PREV_FINAL_CHECKSUM_OFFSET,
    RECORD_END_OF_GENERATION,
    RECORD_FIRST,
    RECORD_FULL,
    RECORD_HEADER_SIZE,
    RECORD_LAST,
    RECORD_MIDDLE,
    RECORD_SYNCED,
    RECORD_TYPE_NAMES,
    RECORD_ZERO,
    RECORDS_START,
    SIGNATURE_OFFSET,
    SIGNATURE_SIZE,
    SYNCED_PAYLOAD,
    TEMP_FILE_NAME,
    VERSION_OFFSET,
    LogHeader,
    format_lsn,
    generation_file_name,
    header_crc_ok,
    header_version,
    lsn_gen,
    lsn_offset,
    make_lsn,
    pack_end_of_generation,
    pack_record,
    parse_generation_file_name,
    record_crc,
    unpack_end_of_generation,
    unpack_header,
    unpack_record_header,
)

__all__ = ["LogHeader", "LogReader", "LogRecord", "LogStream", "dump_log", "list_generations"]

# A bad record in a closed generation is reported as ESE does: a replay (recovery, restore)
# finds a corrupt log file, a backup fails to read-verify it.
_CORRUPTION_ERRORS = {"replay": "JET_errLogFileCorrupt", "backup": "JET_errLogReadVerifyFailure"}
_ZEROS = bytes(1 << 20)  # the largest single write used to zero-fill a generation
PENDING_LIMIT = 1 << 20  # appended bytes held in memory before a write (lazy commits)


class LogRecord(NamedTuple):
    """One logical record: the LSN of its first fragment, the position after its last one."""

    lsn: int
    end_lsn: int
    payload: bytes


def _at(path: str, offset: int) -> str:
    return f"{path} at offset {offset}"


def _corruption_error(context: str) -> str:
    try:
        return _CORRUPTION_ERRORS[context]
    except KeyError:
        choices = ", ".join(_CORRUPTION_ERRORS)
        raise JetError(
            "JET_errInvalidParameter", f"context {context!r}: not one of {choices}"
        ) from None


def list_generations(env: Env, logs_dir: str) -> list[int]:
    """The generation numbers whose files are in ``logs_dir``, ascending."""
    names = (parse_generation_file_name(name) for name in env.listdir(logs_dir))
    return sorted(generation for generation in names if generation is not None)


def _generation_path(logs_dir: str, generation: int) -> str:
    return os.path.join(logs_dir, generation_file_name(generation))


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


# -- reading -----------------------------------------------------------------------------------


class _GenerationScan:
    """Walks and verifies the records of one generation file held in memory.

    Iterating yields the data fragments as (lsn, type, payload view).  Where the records stop,
    a closed generation (any but the highest present) must hold its END_OF_GENERATION record,
    or the scan raises ``corrupt_err``; in the highest one the first invalid record is a torn
    tail and the scan simply ends.  Afterwards the attributes describe what was found.
    """

    def __init__(self, header: LogHeader, data: bytes, *, is_last: bool, corrupt_err: str):
        self.header = header
        self.data = data
        self.is_last = is_last
        self.corrupt_err = corrupt_err
        self.end_offset = RECORDS_START  # after the last valid record, END_OF_GENERATION included
        self.checksum = 0  # of the records read (set when the scan ends): the final one if closed
        self.fragments = 0
        self.records = 0  # logical records whose last fragment is here
        self.first_lsn: int | None = None
        self.last_lsn: int | None = None
        self.closed = False
        self.torn = False  # non-zero bytes after end_offset

    def _corrupt(self, offset: int, problem: str) -> JetError:
        return JetError(self.corrupt_err, f"{_at(self.header.path, offset)}: {problem}")

    def __iter__(self) -> Iterator[tuple[int, int, memoryview]]:
        data, view = self.data, memoryview(self.data)
        data_limit = len(data) - EOG_RECORD_SIZE  # the writer's reserve for closing
        position = make_lsn(self.header.generation, 0)
        offset = RECORDS_START
        while True:
            # The common case, a valid data record, tested inline (``_problem`` is the same
            # test, spelled out to say why a record is not valid): this loop is where
            # recovery, restore and every backup's log verification spend their time.
            if offset + RECORD_HEADER_SIZE <= data_limit:
                crc, length, lsn, record_type = unpack_record_header(data, offset)
                end = offset + RECORD_HEADER_SIZE + length
                if (
                    record_type in DATA_RECORD_TYPES
                    and end <= data_limit
                    and lsn == position + offset
                    and record_crc(view[offset:end]) == crc
                ):
                    payload = view[offset + RECORD_HEADER_SIZE : end]
                else:
                    payload = None
            else:
                payload = None
            if payload is None:
                record = self._record_at(view, offset)
                if record is None:
                    break
                lsn, record_type, payload, end = record
                if record_type == RECORD_END_OF_GENERATION:
                    self.checksum = crc32c(view[RECORDS_START:offset])
                    self._close(offset, payload)
                    self.end_offset = end
                    break
            self.fragments += 1
            self.records += record_type in (RECORD_FULL, RECORD_LAST)
            if self.first_lsn is None:
                self.first_lsn = lsn
            self.last_lsn = lsn
            self.end_offset = offset = end
            yield lsn, record_type, payload
        if not self.closed:
            # Records lie end to end from RECORDS_START: one crc over them all is the
            # running checksum the writer kept.
            self.checksum = crc32c(view[RECORDS_START : self.end_offset])
        self.torn = data.count(0, self.end_offset) != len(data) - self.end_offset

    def _record_at(self, view: memoryview, offset: int) -> tuple[int, int, memoryview, int] | None:
        """(lsn, type, payload, end) of the valid record at ``offset``; None where records end."""
        if offset + RECORD_HEADER_SIZE > len(self.data):
            problem = "no room for a record before the end of the file"
        else:
            crc, length, lsn, record_type = unpack_record_header(self.data, offset)
            end = offset + RECORD_HEADER_SIZE + length
            problem = self._problem(view, offset, crc, length, lsn, record_type)
            if problem is None:
                return lsn, record_type, view[offset + RECORD_HEADER_SIZE : end], end
        if self.is_last:
            synced = self._synced_past(view, offset)
            if synced is None:
                return None  # the torn tail, or the zeros after the last record
            raise self._corrupt(
                offset,
                f"{problem}, yet the SYNCED record at offset {synced} says this part of the "
                "generation had been fdatasynced: damage to durable records, not a torn write",
            )
        raise self._corrupt(
            offset,
            f"{problem}; generation {self.header.generation} is not the last one, so it must "
            "end with an END_OF_GENERATION record",
        )

    def _synced_past(self, view: memoryview, hole: int) -> int | None:
        """Offset of a valid SYNCED record after ``hole`` that claims the hole was synced.

        Candidates are found with a C-speed search for this generation's number, which sits
        in the upper half of every record's LSN field; each is then fully verified.
        """
        generation = self.header.generation.to_bytes(4, "little")
        found = self.data.find(generation, hole + 1 + 12)
        while found != -1:
            offset = found - 12
            if int.from_bytes(self.data[offset + 8 : offset + 12], "little") == offset:
                crc, length, lsn, record_type = unpack_record_header(self.data, offset)
                if (
                    record_type == RECORD_SYNCED
                    and self._problem(view, offset, crc, length, lsn, record_type) is None
                    and SYNCED_PAYLOAD.unpack_from(self.data, offset + RECORD_HEADER_SIZE)[0] > hole
                ):
                    return offset
            found = self.data.find(generation, found + 1)
        return None

    def _problem(
        self, view: memoryview, offset: int, crc: int, length: int, lsn: int, record_type: int
    ) -> str | None:
        """Why the record header read at ``offset`` is not a valid record, or None."""
        if record_type not in RECORD_TYPE_NAMES:
            return f"unknown record type {record_type}"
        if record_type == RECORD_ZERO:
            return "no record here (type 0: the zero-filled end, or garbage)"
        if record_type == RECORD_END_OF_GENERATION:
            if length != EOG_PAYLOAD.size:
                return f"END_OF_GENERATION record with a {length}-byte payload"
            limit = len(self.data)
        else:
            limit = len(self.data) - EOG_RECORD_SIZE  # the writer's reserve for closing
        end = offset + RECORD_HEADER_SIZE + length
        if end > limit:
            return f"record length {length} runs past the end of the records area"
        if record_crc(view[offset:end]) != crc:
            return "record checksum mismatch"
        position = make_lsn(self.header.generation, offset)
        if lsn != position:
            return f"record LSN {format_lsn(lsn)} is not its position {format_lsn(position)}"
        return None

    def _close(self, offset: int, payload: memoryview) -> None:
        final_checksum, record_count = unpack_end_of_generation(payload)
        if (final_checksum, record_count) != (self.checksum, self.fragments):
            raise self._corrupt(
                offset,
                f"END_OF_GENERATION covers {record_count} records with checksum "
                f"{final_checksum:#010x}, the generation holds {self.fragments} records "
                f"with checksum {self.checksum:#010x}",
            )
        self.closed = True

    def summary(self) -> dict:
        """Header fields and what the scan found, as plain JSON-friendly values."""
        described = asdict(self.header)
        described["signature"] = self.header.signature.hex()
        described.update(
            circular_now=self.header.circular_now,
            circular_ever=self.header.circular_ever,
            fragments=self.fragments,
            records=self.records,
            first_lsn=self.first_lsn,
            last_lsn=self.last_lsn,
            end_lsn=make_lsn(self.header.generation, self.end_offset),
            final_checksum=self.checksum,
            closed=self.closed,
            torn=self.torn,
        )
        return described


class LogReader:
    """Reads a log stream, verifying headers, the generation chain and every record.

    After ``records()`` has run to its end: ``end_lsn`` is the position after the last valid
    record of the last generation read (what ``LogStream.open`` needs), ``torn`` tells whether
    non-zero bytes followed it, ``last_header`` is that generation's header and ``verified``
    holds ``verify_generation``-style summaries of every generation read.
    """

    def __init__(self, env: Env, logs_dir: str, *, signature: bytes | None = None) -> None:
        self.env = env
        self.logs_dir = logs_dir
        self.signature = signature  # None: the first header read sets it
        self.end_lsn = 0
        self.torn = False
        self.last_header: LogHeader | None = None
        self.verified: list[dict] = []

    def generations(self) -> list[int]:
        return list_generations(self.env, self.logs_dir)

    def path(self, generation: int) -> str:
        return _generation_path(self.logs_dir, generation)

    def read_header(self, generation: int, *, context: str = "replay") -> LogHeader:
        """The verified header of one generation (the records are not read)."""
        file = self.env.open_read(self.path(generation))
        try:
            return self._check_header(
                file.pread(HEADER_SIZE, 0), file.size(), generation, context, file.path
            )
        finally:
            file.close()

    def _check_header(
        self, block: bytes, file_size: int, generation: int, context: str, path: str
    ) -> LogHeader:
        corrupt_err = _corruption_error(context)
        if len(block) < HEADER_SIZE or block[: len(MAGIC)] != MAGIC:
            raise JetError(corrupt_err, f"{_at(path, 0)}: not a log file (bad magic)")
        # The version before the crc: a newer format may have moved the crc.
        version = header_version(block)
        if version != FORMAT_VERSION:
            raise JetError(
                "JET_errBadLogVersion",
                f"{_at(path, VERSION_OFFSET)}: log format version {version}, "
                f"this engine reads version {FORMAT_VERSION}",
            )
        if not header_crc_ok(block):
            raise JetError(corrupt_err, f"{_at(path, HEADER_CRC_OFFSET)}: header checksum mismatch")
        header = unpack_header(block, path)
        if header.generation != generation:
            raise JetError(
                "JET_errLogGenerationMismatch",
                f"{_at(path, GENERATION_OFFSET)}: header says generation "
                f"{header.generation}, the file name says {generation}",
            )
        if self.signature is None:
            self.signature = header.signature
        elif header.signature != self.signature:
            raise JetError(
                "JET_errBadLogSignature",
                f"{_at(path, SIGNATURE_OFFSET)}: log signature {header.signature.hex()} "
                f"is not this stream's {self.signature.hex()}",
            )
        if header.log_file_size != file_size:
            raise JetError(
                "JET_errLogFileSizeMismatch",
                f"{_at(path, LOG_FILE_SIZE_OFFSET)}: header says {header.log_file_size} "
                f"bytes, the file has {file_size}",
            )
        return header

    def _scan(self, generation: int, *, is_last: bool, context: str) -> _GenerationScan:
        file = self.env.open_read(self.path(generation))
        try:
            data = file.pread(file.size(), 0)
        finally:
            file.close()
        header = self._check_header(
            data[:HEADER_SIZE], len(data), generation, context, self.path(generation)
        )
        return _GenerationScan(
            header, data, is_last=is_last, corrupt_err=_corruption_error(context)
        )

    @staticmethod
    def _check_chain(previous: _GenerationScan, scan: _GenerationScan) -> None:
        """A generation must name the creation time and final checksum of the one before it."""
        header, path = scan.header, scan.header.path
        if header.prev_create_time_ns != previous.header.create_time_ns:
            raise JetError(
                "JET_errInvalidLogSequence",
                f"{_at(path, PREV_CREATE_TIME_OFFSET)}: previous generation created at "
                f"{header.prev_create_time_ns} ns, but {previous.header.path} was created at "
                f"{previous.header.create_time_ns} ns",
            )
        if header.prev_final_checksum != previous.checksum:
            raise JetError(
                "JET_errLogSequenceChecksumMismatch",
                f"{_at(path, PREV_FINAL_CHECKSUM_OFFSET)}: previous generation's final "
                f"checksum {header.prev_final_checksum:#010x}, but {previous.header.path} "
                f"ends with {previous.checksum:#010x}",
            )

    def records(
        self,
        start_lsn: int = 0,
        *,
        end_gen: int | None = None,
        context: str = "replay",
        all_closed: bool = False,
    ) -> Iterator[LogRecord]:
        """The logical records with lsn >= ``start_lsn``, from its generation to ``end_gen``.

        ``start_lsn`` 0 starts at the oldest generation present, ``end_gen`` None ends at the
        highest.  Every generation read is verified from its start, whatever ``start_lsn``.
        ``all_closed``: every generation read must be closed - a backup's are - so the
        highest one gets no torn-tail allowance either.
        """
        corrupt_err = _corruption_error(context)
        ordered = self.generations()
        present = set(ordered)
        highest = ordered[-1] if ordered else 0
        first = lsn_gen(start_lsn) or (ordered[0] if ordered else 1)
        last = highest if end_gen is None else end_gen
        if first not in present:
            raise JetError(
                "JET_errMissingPreviousLogFile",
                f"{_at(self.path(first), lsn_offset(start_lsn))}: generation {first}, "
                "where reading starts, is missing",
            )
        self.end_lsn, self.torn, self.last_header, self.verified = 0, False, None, []
        previous: _GenerationScan | None = None
        pieces: list[memoryview] = []  # fragments of the logical record being reassembled
        record_lsn = 0
        started = False  # a FULL or FIRST was seen: no continuation can be an orphan any more
        for generation in range(first, last + 1):
            if generation not in present:
                raise JetError(
                    "JET_errMissingLogFile",
                    f"{_at(self.path(generation), 0)}: generation {generation} is missing "
                    f"between {first} and {last}",
                )
            is_last = generation == highest and not all_closed
            scan = self._scan(generation, is_last=is_last, context=context)
            if previous is not None:
                self._check_chain(previous, scan)
            for lsn, record_type, payload in scan:
                if record_type == RECORD_SYNCED:
                    continue  # bookkeeping of the writer's fdatasyncs, no data
                if record_type in (RECORD_FULL, RECORD_FIRST):
                    # Any unfinished record before this one was cut by a crash: drop it.
                    pieces, record_lsn, started = [payload], lsn, True
                elif pieces:
                    pieces.append(payload)
                elif started:
                    raise JetError(
                        corrupt_err,
                        f"{_at(scan.header.path, lsn_offset(lsn))}: "
                        f"{RECORD_TYPE_NAMES[record_type]} fragment without a FIRST",
                    )
                else:
                    continue  # the rest of a record that began before the first generation read
                if record_type in (RECORD_FULL, RECORD_LAST):
                    if record_lsn >= start_lsn:
                        end = make_lsn(generation, scan.end_offset)
                        yield LogRecord(record_lsn, end, b"".join(pieces))
                    pieces = []
            self.end_lsn = make_lsn(generation, scan.end_offset)
            self.torn, self.last_header = scan.torn, scan.header
            self.verified.append(scan.summary())
            previous = scan

    def verify_generation(self, generation: int, *, context: str = "replay") -> dict:
        """Verify one generation on its own; its header fields and what its records hold."""
        for _record in self.records(make_lsn(generation, 0), end_gen=generation, context=context):
            pass
        return self.verified[-1]


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
                f"{_at(reader.path(generation), lsn_offset(end_lsn))}: end_lsn "
                f"{format_lsn(end_lsn)} is not in the last generation of {logs_dir}",
            )
        tail = reader.verify_generation(generation)
        header = reader.last_header
        if header.log_file_size != log_file_size:
            raise JetError(
                "JET_errLogFileSizeMismatch",
                f"{_at(header.path, LOG_FILE_SIZE_OFFSET)}: generation of "
                f"{header.log_file_size} bytes, the stream is configured for {log_file_size}",
            )
        if tail["end_lsn"] != end_lsn:
            raise JetError(
                "JET_errInvalidParameter",
                f"{_at(header.path, lsn_offset(end_lsn))}: end_lsn {format_lsn(end_lsn)} is "
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
    def oldest_generation(self) -> int:
        return list_generations(self._env, self._logs_dir)[0]

    @property
    def end_lsn(self) -> int:
        """Where the next append goes."""
        return make_lsn(self._generation, self._offset)

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

    def append(self, payload: bytes) -> int:
        """Append one logical record (not durable until ``sync``); the LSN of its first fragment.

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
                return first_lsn

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
        path = _generation_path(self._logs_dir, generation)
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
                self._env.remove(_generation_path(self._logs_dir, old))
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


# -- inspection --------------------------------------------------------------------------------


def dump_log(path: str, env: Env | None = None) -> dict:
    """Verify one generation file or a whole logs directory and describe it (esentutl /ml).

    Never raises JetError: a damaged log is reported under "integrity" and "error", and the
    generations the error kept from being verified are listed with their header alone, or with
    the error reading it.
    """
    env = env or DEFAULT_ENV
    is_dir = os.path.isdir(path)
    reader = LogReader(env, path if is_dir else os.path.dirname(path) or ".")
    report: dict = {"path": path, "integrity": "ok", "error": None, "end_lsn": None, "torn": None}
    selected: list[int] = []
    try:
        if is_dir:
            selected = reader.generations()
            for _record in reader.records(0):
                pass
        else:
            generation = parse_generation_file_name(os.path.basename(path))
            if generation is None:
                raise JetError(
                    "JET_errInvalidParameter", f"{path}: not named like a log generation file"
                )
            selected = [generation]
            reader.verify_generation(generation)
        report.update(end_lsn=reader.end_lsn, torn=reader.torn)
    except JetError as exc:
        report.update(integrity="error", error=_describe_error(exc))
    report["generations"] = _describe_generations(reader, selected)
    return report


def _describe_error(exc: JetError) -> dict:
    return {"err": exc.err, "name": exc.name, "message": exc.message}


def _describe_generations(reader: LogReader, selected: list[int]) -> list[dict]:
    """The verified summaries, and the header alone of every generation the error cut off."""
    verified = {entry["generation"]: entry for entry in reader.verified}
    described = []
    for generation in selected:
        if generation in verified:
            described.append(dict(verified[generation], verified=True))
            continue
        entry: dict = {"generation": generation, "verified": False}
        try:
            header = reader.read_header(generation)
        except JetError as exc:
            entry.update(path=reader.path(generation), error=_describe_error(exc))
        else:
            entry.update(asdict(header), signature=header.signature.hex())
        described.append(entry)
    return described

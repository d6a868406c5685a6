"""Reading log generations: the verifying reader (LogReader) and dump_log.

The byte layout is in ``log_format``; the writer, and the rules that make what it
leaves readable, are in ``log_stream``.  What the reader relies on:

- Only the highest generation may end in a torn tail.  Every lower one was closed by a roll
  that fdatasynced it, so a bad record there is corruption, never a crash.
- A logical record cut short by a crash in a multi-generation append leaves FIRST (and MIDDLE)
  fragments in closed generations that no LAST ever follows; after reopening, the next record
  starts with FULL or FIRST.  The reader drops such an unfinished record: it was never
  acknowledged, and every byte around it is verified by record crcs and the generation chain.

One parser, ``_GenerationScan``, walks the records of a generation; ``LogReader.records``,
``verify_generation``, ``dump_log`` and ``LogStream.open`` all go through it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict
from typing import NamedTuple

from crc32c import crc32c

from .errors import JetError
from .fileio import DEFAULT_ENV, Env
from .log_format import (
    DATA_RECORD_TYPES,
    EOG_PAYLOAD,
    EOG_RECORD_SIZE,
    FORMAT_VERSION,
    GENERATION_OFFSET,
    HEADER_CRC_OFFSET,
    HEADER_SIZE,
    LOG_FILE_SIZE_OFFSET,
    MAGIC,
    PREV_CREATE_TIME_OFFSET,
    PREV_FINAL_CHECKSUM_OFFSET,
    RECORD_END_OF_GENERATION,
    RECORD_FIRST,
    RECORD_FULL,
    RECORD_HEADER_SIZE,
    RECORD_LAST,
    RECORD_SYNCED,
    RECORD_TYPE_NAMES,
    RECORD_ZERO,
    RECORDS_START,
    SIGNATURE_OFFSET,
    SYNCED_PAYLOAD,
    VERSION_OFFSET,
    LogHeader,
    format_lsn,
    generation_file_name,
    header_crc_ok,
    header_version,
    lsn_gen,
    lsn_offset,
    make_lsn,
    parse_generation_file_name,
    record_crc,
    unpack_end_of_generation,
    unpack_header,
    unpack_record_header,
)

# A bad record in a closed generation is reported as ESE does: a replay (recovery, restore)
# finds a corrupt log file, a backup fails to read-verify it.
_CORRUPTION_ERRORS = {"replay": "JET_errLogFileCorrupt", "backup": "JET_errLogReadVerifyFailure"}


class LogRecord(NamedTuple):
    """One logical record: the LSN of its first fragment, the position after its last one."""

    lsn: int
    end_lsn: int
    payload: bytes


def at_offset(path: str, offset: int) -> str:
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


def generation_path(logs_dir: str, generation: int) -> str:
    return os.path.join(logs_dir, generation_file_name(generation))


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
        return JetError(self.corrupt_err, f"{at_offset(self.header.path, offset)}: {problem}")

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
        return generation_path(self.logs_dir, generation)

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
            raise JetError(corrupt_err, f"{at_offset(path, 0)}: not a log file (bad magic)")
        # The version before the crc: a newer format may have moved the crc.
        version = header_version(block)
        if version != FORMAT_VERSION:
            raise JetError(
                "JET_errBadLogVersion",
                f"{at_offset(path, VERSION_OFFSET)}: log format version {version}, "
                f"this engine reads version {FORMAT_VERSION}"
                + (
                    " (an older jetstore wrote it: recover it with that version and take"
                    " a new full backup with this one)"
                    if version < FORMAT_VERSION
                    else ""
                ),
            )
        if not header_crc_ok(block):
            raise JetError(
                corrupt_err, f"{at_offset(path, HEADER_CRC_OFFSET)}: header checksum mismatch"
            )
        header = unpack_header(block, path)
        if header.generation != generation:
            raise JetError(
                "JET_errLogGenerationMismatch",
                f"{at_offset(path, GENERATION_OFFSET)}: header says generation "
                f"{header.generation}, the file name says {generation}",
            )
        if self.signature is None:
            self.signature = header.signature
        elif header.signature != self.signature:
            raise JetError(
                "JET_errBadLogSignature",
                f"{at_offset(path, SIGNATURE_OFFSET)}: log signature {header.signature.hex()} "
                f"is not this stream's {self.signature.hex()}",
            )
        if header.log_file_size != file_size:
            raise JetError(
                "JET_errLogFileSizeMismatch",
                f"{at_offset(path, LOG_FILE_SIZE_OFFSET)}: header says {header.log_file_size} "
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

    def fragments(self, generation: int) -> tuple[list[tuple[int, int, int]], int, bool]:
        """Where a generation's records are: (start, end, type) of each fragment up to the
        first invalid one, END_OF_GENERATION included; the end of the valid records; and
        whether the generation is closed.  (The corruption campaign aims its flips by it.)"""
        scan = self._scan(generation, is_last=True, context="replay")
        found = [
            (lsn_offset(lsn), lsn_offset(lsn) + RECORD_HEADER_SIZE + len(payload), kind)
            for lsn, kind, payload in scan
        ]
        if scan.closed:
            start = found[-1][1] if found else RECORDS_START
            found.append((start, scan.end_offset, RECORD_END_OF_GENERATION))
        return found, scan.end_offset, scan.closed

    @staticmethod
    def _check_chain(previous: _GenerationScan, scan: _GenerationScan) -> None:
        """A generation must name the creation time and final checksum of the one before it."""
        header, path = scan.header, scan.header.path
        if header.prev_create_time_ns != previous.header.create_time_ns:
            raise JetError(
                "JET_errInvalidLogSequence",
                f"{at_offset(path, PREV_CREATE_TIME_OFFSET)}: previous generation created at "
                f"{header.prev_create_time_ns} ns, but {previous.header.path} was created at "
                f"{previous.header.create_time_ns} ns",
            )
        if header.prev_final_checksum != previous.checksum:
            raise JetError(
                "JET_errLogSequenceChecksumMismatch",
                f"{at_offset(path, PREV_FINAL_CHECKSUM_OFFSET)}: previous generation's final "
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
                f"{at_offset(self.path(first), lsn_offset(start_lsn))}: generation {first}, "
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
                    f"{at_offset(self.path(generation), 0)}: generation {generation} is missing "
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
                        f"{at_offset(scan.header.path, lsn_offset(lsn))}: "
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


# -- inspection --------------------------------------------------------------------------------


def dump_log(path: str, env: Env | None = None) -> dict:
    """Verify one generation file or a whole logs directory and describe it (esentutl /ml).

    A damaged log is reported under "integrity" and "error", and the generations the
    error kept from being verified are listed with their header alone, or with the error
    reading it; a path that holds no log at all raises JetError (a wrong path is not
    damage).
    """
    env = env or DEFAULT_ENV
    is_dir = os.path.isdir(path)
    reader = LogReader(env, path if is_dir else os.path.dirname(path) or ".")
    if is_dir:
        selected = reader.generations()
        if not selected:
            raise JetError("JET_errFileNotFound", f"{path}: no log generation file in it")
    else:
        generation = parse_generation_file_name(os.path.basename(path))
        if generation is None:
            raise JetError(
                "JET_errInvalidParameter", f"{path}: not named like a log generation file"
            )
        selected = [generation]
    report: dict = {"path": path, "integrity": "ok", "error": None, "end_lsn": None, "torn": None}
    try:
        if is_dir:
            for _record in reader.records(0):
                pass
        else:
            reader.verify_generation(generation)
        report.update(end_lsn=reader.end_lsn, torn=reader.torn)
    except JetError as exc:
        report.update(integrity="error", error=exc.as_dict())
    report["generations"] = _describe_generations(reader, selected)
    return report


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
            entry.update(path=reader.path(generation), error=exc.as_dict())
        else:
            entry.update(asdict(header), signature=header.signature.hex())
        described.append(entry)
    return described

"""Following the log while it is written: the redo records between two LSNs.

A read view (read_view.py) keeps its overlay current by reading what the log
writer made durable since it last looked: ``LogTail.read(durable_lsn)`` yields
each whole redo record that ends at or before ``durable_lsn``, with the LSN
where it ends (what ``commit()`` returned for it).  Only bytes the log writer
reported durable are read, so every record there must be valid: a bad one is
corruption, named by file and offset, never the end of the log.  Fragments are
joined across generations; SYNCED and END_OF_GENERATION records are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from .errors import JetError
from .log_format import (
    DATA_RECORD_TYPES,
    RECORD_END_OF_GENERATION,
    RECORD_FIRST,
    RECORD_FULL,
    RECORD_HEADER_SIZE,
    RECORD_MIDDLE,
    RECORD_SYNCED,
    RECORDS_START,
    format_lsn,
    lsn_gen,
    lsn_offset,
    make_lsn,
    record_crc,
    unpack_record_header,
)
from .log_reader import at_offset, generation_path

READ_CHUNK = 1 << 20  # bytes read per pread while following


class LogTail:
    """Reads forward from ``start_lsn``, a record boundary (a checkpoint LSN or the end
    of a record already read)."""

    def __init__(self, logs_dir: str, start_lsn: int) -> None:
        self.logs_dir = logs_dir
        self.position = start_lsn  # the next byte to read
        self._fd: int | None = None
        self._fd_generation = 0
        self._fragments: list[bytes] = []  # of a record not yet complete

    def read(self, durable_lsn: int) -> Iterator[tuple[int, bytes]]:
        """(end LSN, payload) of every whole record before ``durable_lsn``, in order."""
        while self.position < durable_lsn:
            generation = lsn_gen(self.position)
            offset = max(lsn_offset(self.position), RECORDS_START)
            if generation == lsn_gen(durable_lsn):
                limit = lsn_offset(durable_lsn)
            else:
                limit = None  # this generation is closed: read to its END_OF_GENERATION
            data = self._pread(generation, offset, limit)
            closed = False
            cursor = 0
            while cursor + RECORD_HEADER_SIZE <= len(data):
                crc, length, lsn, record_type = unpack_record_header(data, cursor)
                end = cursor + RECORD_HEADER_SIZE + length
                here = offset + cursor
                problem = self._problem(data, cursor, crc, end, lsn, record_type, generation, here)
                if problem is not None:
                    raise JetError(
                        "JET_errLogCorrupted",
                        f"{at_offset(generation_path(self.logs_dir, generation), here)}: "
                        f"{problem} (reported durable up to {format_lsn(durable_lsn)})",
                    )
                cursor = end
                self.position = make_lsn(generation, offset + end)
                if record_type == RECORD_END_OF_GENERATION:
                    closed = True
                    break
                if record_type == RECORD_SYNCED:
                    continue
                payload = bytes(data[cursor - length : cursor])
                if record_type == RECORD_FULL:
                    yield self.position, payload
                elif record_type == RECORD_FIRST:
                    self._fragments = [payload]
                elif record_type == RECORD_MIDDLE:
                    self._fragments.append(payload)
                else:  # RECORD_LAST
                    self._fragments.append(payload)
                    whole, self._fragments = b"".join(self._fragments), []
                    yield self.position, whole
            if limit is None and closed:
                self.position = make_lsn(generation + 1, RECORDS_START)
            elif cursor != len(data) or limit is None:
                where = generation_path(self.logs_dir, generation)
                raise JetError(
                    "JET_errLogCorrupted",
                    f"{at_offset(where, offset + cursor)}: the records stop here, yet the log "
                    f"is durable up to {format_lsn(durable_lsn)}",
                )

    @staticmethod
    def _problem(data, cursor, crc, end, lsn, record_type, generation, here) -> str | None:
        if record_type not in DATA_RECORD_TYPES and record_type not in (
            RECORD_SYNCED,
            RECORD_END_OF_GENERATION,
        ):
            return f"no valid record here (type {record_type})"
        if end > len(data):
            return f"record length {end - cursor - RECORD_HEADER_SIZE} runs past the durable end"
        if lsn != make_lsn(generation, here):
            return f"record LSN {format_lsn(lsn)} is not its position"
        if record_crc(memoryview(data)[cursor:end]) != crc:
            return "record checksum mismatch"
        return None

    def _pread(self, generation: int, offset: int, limit: int | None) -> bytes:
        if self._fd_generation != generation:
            self.close()
            path = generation_path(self.logs_dir, generation)
            try:
                self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise JetError(
                    "JET_errMissingLogFile",
                    f"{path}: generation {generation} is gone (truncated) before this view read it",
                ) from None
            self._fd_generation = generation
        size = (limit - offset) if limit is not None else os.fstat(self._fd).st_size - offset
        return os.pread(self._fd, size, offset)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd, self._fd_generation = None, 0

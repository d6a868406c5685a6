"""``DIR/run/published``: what the actors tell every reader without a message.

Read views (read_view.py) map this file and look at it when a read starts: it
says how far the log is durable and which checkpoint is the newest durable one.
It lives in the run directory, is created afresh by every open, and is never
fsynced - it describes the running instance only.  All integers little-endian.

    offset  size  field
     0       8    magic               b"JETPUB\\r\\n"
     8       4    version             u32, FORMAT_VERSION
    12       4    (zero)
    --- written by the log writer, after each fdatasync and before the buffer
        manager hears of it (so before any commit in that batch is acknowledged)
    16       8    log_seq             u64, seqlock: odd while the two below change
    24       8    durable_lsn         u64, everything before it is durable in the log
    32       8    durable_records     u64, redo records made durable since the log
                                      writer started (the buffer manager's ticket numbers)
    40       8    (zero)
    --- written by the buffer manager when a checkpoint is durable, before it reuses
        any page that checkpoint freed (read_view.py: the pin protocol)
    48       8    checkpoint_seq_lock u64, seqlock: odd while the two below change
    56       8    checkpoint_seq      u64, the meta sequence number of the checkpoint
    64       8    checkpoint_lsn      u64, its checkpoint LSN
    --- written by the buffer manager at JetStopService, by the supervisor at close
    72       8    state               u64, RUNNING 0, STOPPED 1 (JetStopService: reads fail
                                      too), CLOSED 2 (the instance is gone: reads fail)
    80    4016    zeros

Each half has one writer; a reader copies a half and retries while its seqlock is
odd or changed under it, so it never sees a torn pair.
"""

from __future__ import annotations

import mmap
import os
import struct
from typing import NamedTuple

from .errors import JetError
from .fileio import io_error
from .run_dir_format import replace_file

PUBLISHED_FILE = "published"
MAGIC = b"JETPUB\r\n"
FORMAT_VERSION = 1
FILE_SIZE = 4096
HEADER = struct.Struct("<8sII")
LOG_HALF = struct.Struct("<QQQ8x")  # log_seq, durable_lsn, durable_records
CHECKPOINT_HALF = struct.Struct("<QQQ")  # checkpoint_seq_lock, checkpoint_seq, checkpoint_lsn
LOG_OFFSET = 16
CHECKPOINT_OFFSET = 48
assert HEADER.size == LOG_OFFSET
assert LOG_OFFSET + LOG_HALF.size == CHECKPOINT_OFFSET
STATE_OFFSET = 72
assert CHECKPOINT_OFFSET + CHECKPOINT_HALF.size == STATE_OFFSET
RUNNING, STOPPED, CLOSED = 0, 1, 2
WORDS = struct.Struct("<8Q")  # offsets 16 to 80, for version()


class Durable(NamedTuple):
    lsn: int
    records: int


class Checkpoint(NamedTuple):
    seq: int
    lsn: int


def create_published(run_dir: str) -> None:
    """A fresh file (nothing durable, no checkpoint yet): written beside, then renamed in."""
    path = os.path.join(run_dir, PUBLISHED_FILE)
    replace_file(path, HEADER.pack(MAGIC, FORMAT_VERSION, 0).ljust(FILE_SIZE, b"\0"))


class Published:
    """The mapped file, for its writers and its readers alike."""

    def __init__(self, run_dir: str) -> None:
        self.path = os.path.join(run_dir, PUBLISHED_FILE)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise io_error(exc, self.path) from exc
        try:
            if os.fstat(fd).st_size != FILE_SIZE:
                raise JetError(
                    "JET_errFileInvalidType", f"{self.path} is not {FILE_SIZE} bytes long"
                )
            self.map = mmap.mmap(fd, FILE_SIZE)
        finally:
            os.close(fd)
        magic, version, _zero = HEADER.unpack_from(self.map, 0)
        if magic != MAGIC or version != FORMAT_VERSION:
            self.map.close()
            raise JetError(
                "JET_errFileInvalidType",
                f"{self.path}: not a published-state file of version {FORMAT_VERSION}",
            )

    def publish_durable(self, lsn: int, records: int) -> None:
        seq = LOG_HALF.unpack_from(self.map, LOG_OFFSET)[0]
        self.map[LOG_OFFSET : LOG_OFFSET + 8] = (seq + 1).to_bytes(8, "little")
        LOG_HALF.pack_into(self.map, LOG_OFFSET, seq + 1, lsn, records)
        self.map[LOG_OFFSET : LOG_OFFSET + 8] = (seq + 2).to_bytes(8, "little")

    def publish_checkpoint(self, seq: int, lsn: int) -> None:
        lock = CHECKPOINT_HALF.unpack_from(self.map, CHECKPOINT_OFFSET)[0]
        self.map[CHECKPOINT_OFFSET : CHECKPOINT_OFFSET + 8] = (lock + 1).to_bytes(8, "little")
        CHECKPOINT_HALF.pack_into(self.map, CHECKPOINT_OFFSET, lock + 1, seq, lsn)
        self.map[CHECKPOINT_OFFSET : CHECKPOINT_OFFSET + 8] = (lock + 2).to_bytes(8, "little")

    def publish_state(self, state: int) -> None:
        self.map[STATE_OFFSET : STATE_OFFSET + 8] = state.to_bytes(8, "little")

    def state(self) -> int:
        return self.map[STATE_OFFSET]

    def version(self) -> tuple:
        """Everything after the header as raw words: equal to an earlier value only if
        nothing was published in between (each write moves a seqlock)."""
        return WORDS.unpack_from(self.map, LOG_OFFSET)

    def durable(self) -> Durable:
        while True:
            seq, lsn, records = LOG_HALF.unpack_from(self.map, LOG_OFFSET)
            if not seq & 1 and LOG_HALF.unpack_from(self.map, LOG_OFFSET)[0] == seq:
                return Durable(lsn, records)

    def checkpoint(self) -> Checkpoint:
        while True:
            lock, seq, lsn = CHECKPOINT_HALF.unpack_from(self.map, CHECKPOINT_OFFSET)
            if not lock & 1 and CHECKPOINT_HALF.unpack_from(self.map, CHECKPOINT_OFFSET)[0] == lock:
                return Checkpoint(seq, lsn)

    def close(self) -> None:
        self.map.close()

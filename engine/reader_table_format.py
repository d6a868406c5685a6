"""``DIR/run/readers``: the reader table, LMDB's lock-file reader slots.

Every read view (read_view.py) owns one slot and says in it what it reads
from: the oldest checkpoint its live snapshots use.  The buffer manager reuses
no page that checkpoint may reference (DESIGN.md 3a).  The log needs no slot: a
view keeps what it read of the log in memory, and starts again from the newest
checkpoint when the generation it would read next is gone.

    offset  size  field
     0       8    magic           b"JETRDR\\r\\n"
     8       4    version         u32, FORMAT_VERSION
    12       4    slots           u32, SLOTS
    16      16    (zeros)
    32 + 32 * i: slot i
     0       4    pid             u32, the owner (for status; liveness is the lock)
     4       2    snapshots       u16, snapshots open now (transactions, running scans)
     6       2    max_behind      u16, its max_snapshot_checkpoints: a checkpoint more
                                  than this (+1) behind the newest is held no longer
     8       8    checkpoint_seq  u64, the oldest checkpoint in use; 0: none
    16       8    snapshot_lsn    u64, its oldest open snapshot (for status); 0: none
    24       8    touched_ns      u64, CLOCK_MONOTONIC (system-wide) of the last read

A view owns slot i while it holds an open-file-description write lock
(F_OFD_SETLK) on the slot's 32 bytes; the kernel drops the lock when the
descriptor goes, and so when the process dies, however it dies.  A slot whose
lock nobody holds belongs to nobody and its contents are stale
(``mdb_reader_check`` without the pid test).  OFD locks, unlike classic fcntl
locks, belong to the descriptor and not the process: two views of one process
take two slots, and a probe by the buffer manager's own descriptor conflicts
with every owner.  (A child forked while a view is open shares its descriptor,
and with it the slot, until the child exits.)

A slot *holds* its checkpoint while it has open snapshots, or was touched less
than ``IDLE_GRACE_NS`` ago: an idle process holds nothing for long, and its view
re-validates its checkpoint before its next read (read_view.py).  The file is
created afresh by every open and never fsynced.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import time
from typing import NamedTuple

from .errors import JetError
from .fileio import io_error
from .run_dir_format import replace_file

READERS_FILE = "readers"
MAGIC = b"JETRDR\r\n"
FORMAT_VERSION = 1
HEADER = struct.Struct("<8sII16x")
SLOT = struct.Struct("<IHHQQQ")
SLOTS = 127
assert HEADER.size == SLOT.size == 32
FILE_SIZE = HEADER.size + SLOTS * SLOT.size
assert FILE_SIZE == 4096
IDLE_GRACE_NS = 5_000_000_000


class Slot(NamedTuple):
    pid: int
    snapshots: int
    max_behind: int
    checkpoint_seq: int
    snapshot_lsn: int
    touched_ns: int


def create_reader_table(run_dir: str) -> None:
    """An empty table, written beside and renamed in (a reader never sees it half made)."""
    path = os.path.join(run_dir, READERS_FILE)
    replace_file(path, HEADER.pack(MAGIC, FORMAT_VERSION, SLOTS).ljust(FILE_SIZE, b"\0"))


def _slot_offset(index: int) -> int:
    return HEADER.size + index * SLOT.size


_FLOCK = struct.Struct("@hhqqi4x")  # struct flock on Linux: type, whence, start, len, pid
assert _FLOCK.size == 32


def _lock(fd: int, command: int, lock_type: int, index: int) -> int:
    """One OFD lock operation on slot ``index``; for F_OFD_GETLK the type found."""
    request = _FLOCK.pack(lock_type, os.SEEK_SET, _slot_offset(index), SLOT.size, 0)
    return _FLOCK.unpack(fcntl.fcntl(fd, command, request))[0]


class ReaderTable:
    """One open of the table: the slot it owns (if it reads) and a look at the others."""

    def __init__(self, run_dir: str) -> None:
        path = os.path.join(run_dir, READERS_FILE)
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise io_error(exc, path) from exc
        header = os.pread(self.fd, HEADER.size, 0)
        if len(header) != HEADER.size or HEADER.unpack(header) != (MAGIC, FORMAT_VERSION, SLOTS):
            os.close(self.fd)
            raise JetError("JET_errFileInvalidType", f"{path} is not a reader table")
        self.slot: int | None = None  # the slot this open owns

    # -- the owner's side ------------------------------------------------------------------
    def claim(self) -> int:
        """Take a free slot (once); -1069 when every slot is owned."""
        if self.slot is not None:
            return self.slot
        for index in range(SLOTS):
            try:
                _lock(self.fd, fcntl.F_OFD_SETLK, fcntl.F_WRLCK, index)
            except OSError as exc:
                if exc.errno in (errno.EACCES, errno.EAGAIN):
                    continue
                raise io_error(exc, self.path) from exc
            self.slot = index
            self.write(Slot(os.getpid(), 0, 0, 0, 0, time.monotonic_ns()))
            return index
        raise JetError(
            "JET_errVersionStoreOutOfMemory",
            f"{self.path}: all {SLOTS} reader slots are taken by live processes",
        )

    def write(self, slot: Slot) -> None:
        os.pwrite(self.fd, SLOT.pack(*slot), _slot_offset(self.slot))

    # -- the buffer manager's and the log writer's side -------------------------------------
    def holding(self, now_ns: int | None = None) -> list[Slot]:
        """The slots of live owners that hold a checkpoint now (the module text)."""
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        data = os.pread(self.fd, FILE_SIZE, 0)
        held = []
        for index in range(SLOTS):
            slot = Slot(*SLOT.unpack_from(data, _slot_offset(index)))
            if not slot.checkpoint_seq or index == self.slot:
                continue
            if not slot.snapshots and now_ns - slot.touched_ns >= IDLE_GRACE_NS:
                continue
            if _lock(self.fd, fcntl.F_OFD_GETLK, fcntl.F_RDLCK, index) != fcntl.F_UNLCK:
                held.append(slot)  # someone holds the slot's lock: its owner lives
        return held

    def oldest_checkpoint(self, newest: int) -> int | None:
        """The oldest checkpoint a live read view holds, ``newest`` being the newest durable
        one: no page it references is reused.  A slot more than its ``max_behind`` (+1)
        behind holds nothing any more - its view fails that snapshot with -1069 before
        it reads another page of it (read_view.py) - which bounds the file's growth."""
        return min(
            (
                slot.checkpoint_seq
                for slot in self.holding()
                if newest - slot.checkpoint_seq <= slot.max_behind + 1
            ),
            default=None,
        )

    def status(self) -> dict:
        holding = self.holding()
        snapshots = [slot.snapshot_lsn for slot in holding if slot.snapshot_lsn]
        return {
            "readers": len(holding),
            "open_snapshots": sum(slot.snapshots for slot in holding),
            "oldest_snapshot_lsn": min(snapshots, default=None),
            "oldest_reader_checkpoint": min((s.checkpoint_seq for s in holding), default=None),
        }

    def close(self) -> None:
        """Give up the slot (cleared first) and the descriptor with its lock."""
        if self.slot is not None:
            os.pwrite(self.fd, bytes(SLOT.size), _slot_offset(self.slot))
            self.slot = None
        os.close(self.fd)

"""A file layer that can crash: lose unsynced writes, or fail at the Nth call.

``FaultEnv`` is a drop-in ``Env`` for tests and the fault campaign.  It records,
per path, every write made since that file's last ``sync`` (old and new bytes)
and the size at that sync.  ``crash()`` then puts every file back the way the
disk could have left it after a power cut: by default exactly the synced state
(LevelDB's fault-injection env), or - given a ``random.Random`` - with an
arbitrary subset of the unsynced writes kept, some of them torn at a 512-byte
boundary, which is what a real page cache may flush before dying.

``crash_at_write=N`` / ``crash_at_sync=N`` make the Nth ``pwrite``/``sync``
raise ``SimulatedCrash`` (a write may first be half done: a torn write), so a
test can run a workload once per N and check recovery after each - SQLite's
crash-test loop.  ``fail_at_write=(N, errno)`` makes the Nth write fail with an
OSError instead (ENOSPC, EIO), which the engine must report, not survive by luck.

Directory operations (create, rename, remove) are treated as durable at once;
the engine fsyncs directories after them anyway.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from .fileio import Env, File, io_error

SECTOR = 512


class SimulatedCrash(BaseException):
    """Raised at the injected crash point.  BaseException so no ``except Exception`` eats it."""


@dataclass
class _Pending:
    synced_size: int
    writes: list[tuple[int, bytes, bytes]] = field(default_factory=list)  # offset, old, new


class FaultFile(File):
    env: FaultEnv

    def pwrite(self, data: bytes | memoryview, offset: int) -> None:
        data = bytes(data)
        self.env._before_write(self, data, offset)
        pending = self.env._pending_for(self)
        old = os.pread(self.fd, len(data), offset)
        pending.writes.append((offset, old, data))
        super().pwrite(data, offset)

    def truncate(self, size: int) -> None:
        pending = self.env._pending_for(self)
        current = self.size()
        if size < current:
            old = os.pread(self.fd, current - size, size)
            pending.writes.append((size, old, b""))
        super().truncate(size)

    def sync(self) -> None:
        self.env._before_sync(self)
        super().sync()
        self.env.pending.pop(self.path, None)


class FaultEnv(Env):
    file_class = FaultFile

    def __init__(
        self,
        *,
        crash_at_write: int | None = None,
        crash_at_sync: int | None = None,
        fail_at_write: tuple[int, int] | None = None,
        torn_rng: random.Random | None = None,
        die: Callable[[], None] | None = None,
    ) -> None:
        self.crash_at_write = crash_at_write
        self.crash_at_sync = crash_at_sync
        self.fail_at_write = fail_at_write
        self.torn_rng = torn_rng
        self.die = die  # in an actor process: ends the process at the crash point, at once
        self.writes = 0
        self.syncs = 0
        self.crashed = False
        self.pending: dict[str, _Pending] = {}

    # -- counting and injection ------------------------------------------
    def _before_write(self, f: FaultFile, data: bytes, offset: int) -> None:
        if self.crashed:
            raise SimulatedCrash("write after the simulated crash")
        self.writes += 1
        if self.fail_at_write and self.writes == self.fail_at_write[0]:
            code = self.fail_at_write[1]
            raise io_error(OSError(code, os.strerror(code)), f"write {f.path} at offset {offset}")
        if self.crash_at_write is not None and self.writes >= self.crash_at_write:
            if self.torn_rng is not None and len(data) > SECTOR:
                cut = self.torn_rng.randrange(1, len(data) // SECTOR + 1) * SECTOR
                pending = self._pending_for(f)
                pending.writes.append((offset, os.pread(f.fd, cut, offset), data[:cut]))
                os.pwrite(f.fd, data[:cut], offset)
            self._crash(f"crash at write {self.writes} ({f.path} offset {offset})")

    def _before_sync(self, f: FaultFile) -> None:
        if self.crashed:
            raise SimulatedCrash("sync after the simulated crash")
        self.syncs += 1
        if self.crash_at_sync is not None and self.syncs >= self.crash_at_sync:
            self._crash(f"crash at sync {self.syncs} ({f.path})")

    def _crash(self, why: str) -> None:
        if self.die is not None:
            self.die()
        self.crashed = True
        raise SimulatedCrash(why)

    def _pending_for(self, f: File) -> _Pending:
        pending = self.pending.get(f.path)
        if pending is None:
            pending = self.pending[f.path] = _Pending(synced_size=f.size())
        return pending

    # -- directory operations keep the bookkeeping attached to the path ----
    def rename(self, src: str, dst: str) -> None:
        super().rename(src, dst)
        self.pending.pop(dst, None)
        if src in self.pending:
            self.pending[dst] = self.pending.pop(src)

    def remove(self, path: str) -> None:
        super().remove(path)
        self.pending.pop(path, None)

    # -- the power cut ----------------------------------------------------
    def crash(self, rng: random.Random | None = None) -> None:
        """Return every file to a state the disk could hold after a power cut now."""
        for path, pending in self.pending.items():
            if not os.path.exists(path):
                continue
            fd = os.open(path, os.O_RDWR)
            try:
                for offset, old, _new in reversed(pending.writes):
                    os.pwrite(fd, old, offset)
                os.ftruncate(fd, pending.synced_size)
                if rng is not None:
                    self._replay_some(fd, pending, rng)
                os.fsync(fd)
            finally:
                os.close(fd)
        self.pending.clear()
        self.crashed = False
        self.crash_at_write = self.crash_at_sync = self.fail_at_write = None

    @staticmethod
    def _replay_some(fd: int, pending: _Pending, rng: random.Random) -> None:
        for offset, _old, new in pending.writes:
            if not new or rng.random() < 0.5:
                continue  # this write never reached the platter
            if len(new) > SECTOR and rng.random() < 0.3:
                new = new[: rng.randrange(1, len(new) // SECTOR + 1) * SECTOR]
            os.pwrite(fd, new, offset)

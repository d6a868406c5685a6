"""The file layer every storage module goes through.

Storage code never calls ``open``/``os.write`` directly: it asks an ``Env`` for
``File`` objects.  Production uses ``Env`` (thin ``os`` wrappers, nothing more);
tests and the fault campaign substitute ``jetstore.engine.faults.FaultEnv``,
which can lose unsynced writes or fail the Nth call - the LevelDB
fault-injection-env idea.  Keeping the seam this small is what makes crash
testing honest: the engine under test is the production engine.
"""

from __future__ import annotations

import errno
import os

from .errors import JetError


def io_error(exc: OSError, what: str) -> JetError:
    """Translate an OSError into the ESE error an operator expects, naming the file."""
    if exc.errno == errno.ENOSPC:
        return JetError("JET_errDiskFull", f"{what}: no space left on device")
    if exc.errno == errno.ENOENT:
        return JetError("JET_errFileNotFound", f"{what}: {exc.strerror}")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return JetError("JET_errFileAccessDenied", f"{what}: {exc.strerror}")
    return JetError("JET_errDiskIO", f"{what}: {exc.strerror or exc}")


class File:
    """A file opened for positional reads and writes."""

    def __init__(self, env: Env, path: str, fd: int) -> None:
        self.env = env
        self.path = path
        self.fd = fd

    def pread(self, size: int, offset: int) -> bytes:
        try:
            return os.pread(self.fd, size, offset)
        except OSError as exc:
            raise io_error(exc, f"read {self.path} at offset {offset}") from exc

    def pwrite(self, data: bytes | memoryview, offset: int) -> None:
        try:
            done = 0
            view = memoryview(data)
            while done < len(view):
                done += os.pwrite(self.fd, view[done:], offset + done)
        except OSError as exc:
            raise io_error(exc, f"write {self.path} at offset {offset}") from exc

    def sync(self) -> None:
        """Make every write so far durable (fdatasync: data and the size, not times)."""
        try:
            os.fdatasync(self.fd)
        except OSError as exc:
            raise io_error(exc, f"fdatasync {self.path}") from exc

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def truncate(self, size: int) -> None:
        try:
            os.ftruncate(self.fd, size)
        except OSError as exc:
            raise io_error(exc, f"truncate {self.path} to {size}") from exc

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Env:
    """The real filesystem."""

    file_class = File

    def open(self, path: str, *, create: bool = False, exclusive: bool = False) -> File:
        flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
        if create:
            flags |= os.O_CREAT
        if exclusive:
            flags |= os.O_EXCL
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as exc:
            raise io_error(exc, f"open {path}") from exc
        return self.file_class(self, path, fd)

    def open_read(self, path: str) -> File:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise io_error(exc, f"open {path}") from exc
        return self.file_class(self, path, fd)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except OSError as exc:
            raise io_error(exc, f"list {path}") from exc

    def makedirs(self, path: str, mode: int = 0o755) -> None:
        try:
            os.makedirs(path, mode=mode, exist_ok=True)
        except OSError as exc:
            raise io_error(exc, f"create directory {path}") from exc

    def remove(self, path: str) -> None:
        try:
            os.remove(path)
        except OSError as exc:
            raise io_error(exc, f"delete {path}") from exc

    def rename(self, src: str, dst: str) -> None:
        try:
            os.replace(src, dst)
        except OSError as exc:
            raise io_error(exc, f"rename {src} to {dst}") from exc

    def sync_dir(self, path: str) -> None:
        """fsync a directory so that entries created, renamed or removed in it are durable."""
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise io_error(exc, f"fsync directory {path}") from exc


DEFAULT_ENV = Env()

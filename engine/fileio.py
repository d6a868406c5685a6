"""The file layer every storage module goes through.

Storage code never calls ``open``/``os.write`` directly: it asks an ``Env`` for
``File`` objects.  Production uses ``Env`` (thin ``os`` wrappers, nothing more);
tests and the fault campaign substitute ``jetstore.engine.faults.FaultEnv``,
which can lose unsynced writes or fail the Nth call - the LevelDB
fault-injection-env idea.  Keeping the seam this small is what makes crash
testing honest: the engine under test is the production engine.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import stat

from .errors import InvalidArgumentTypeError, JetError

# sync_file_range(2): start or await the writeback of a byte range, without flushing the
# device cache - no durability promise, only pacing (the os module does not offer it).
_SYNC_FILE_RANGE_WAIT_BEFORE, _SYNC_FILE_RANGE_WRITE, _SYNC_FILE_RANGE_WAIT_AFTER = 1, 2, 4


def _load_sync_file_range():
    try:
        function = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None  # not Linux: write-behind is then a no-op
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


_sync_file_range = _load_sync_file_range()


def io_error(exc: OSError, what: str) -> JetError:
    """Translate an OSError into the ESE error an operator expects, naming the file."""
    if exc.errno == errno.ENOSPC:
        return JetError("JET_errDiskFull", f"{what}: no space left on device")
    if exc.errno == errno.ENOENT:
        return JetError("JET_errFileNotFound", f"{what}: {exc.strerror}")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return JetError("JET_errFileAccessDenied", f"{what}: {exc.strerror}")
    return JetError("JET_errDiskIO", f"{what}: {exc.strerror or exc}")


def open_regular(path: str, flags: int = os.O_RDONLY) -> int:
    """A descriptor of the regular file at ``path``, opened with ``flags``.

    Anything else is -1022 naming it: a FIFO where a backup or archive holds a file
    would block the open, and then every read, until a writer came (hence O_NONBLOCK,
    which regular files ignore); a directory would fail at the first read.  OSError
    (a missing file, a symlink loop) is the caller's to translate."""
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        os.close(fd)
        raise
    if not regular:
        os.close(fd)
        raise JetError("JET_errDiskIO", f"{path}: not a regular file")
    return fd


def read_regular_file(path: str) -> bytes:
    """The whole regular file at ``path`` (``open_regular``'s errors)."""
    with os.fdopen(open_regular(path), "rb") as f:
        return f.read()


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

    def write_behind(self, offset: int, length: int, previous: tuple[int, int] | None) -> None:
        """Start writing back [offset, offset + length) and wait until ``previous``, a range
        started earlier, is on its way to the disk.  A pacing hint, not a durability point:
        a streaming writer keeps its dirty pages to two ranges instead of leaving them all
        to one final fdatasync that every other writer on the disk would queue behind."""
        if _sync_file_range is None:
            return
        if _sync_file_range(self.fd, offset, length, _SYNC_FILE_RANGE_WRITE) == 0 and previous:
            wait = _SYNC_FILE_RANGE_WAIT_BEFORE | _SYNC_FILE_RANGE_WRITE
            if _sync_file_range(self.fd, *previous, wait | _SYNC_FILE_RANGE_WAIT_AFTER) == 0:
                # Written back, so clean: drop it from the page cache rather than let a
                # backup's bytes push out the pages the live database is using.
                os.posix_fadvise(self.fd, *previous, os.POSIX_FADV_DONTNEED)
        # A failure here is harmless: the final sync() writes the range and reports errors.

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
        flags = os.O_RDWR
        if create:
            flags |= os.O_CREAT
        if exclusive:
            flags |= os.O_EXCL
        return self._open(path, flags)

    def open_read(self, path: str) -> File:
        return self._open(path, os.O_RDONLY)

    def _open(self, path: str, flags: int) -> File:
        try:
            return self.file_class(self, path, open_regular(path, flags))
        except OSError as exc:
            raise io_error(exc, f"open {path}") from exc

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


def fspath(path: str | bytes | os.PathLike) -> str:
    """Accept str, bytes and PathLike (ESE's A and W entry points), always give str."""
    try:
        path = os.fsdecode(os.fspath(path))
    except TypeError as exc:
        raise InvalidArgumentTypeError("JET_errInvalidPath", f"not a path: {path!r}") from exc
    if not path or "\0" in path:
        raise JetError("JET_errInvalidPath", f"invalid path {path!r}")
    return path

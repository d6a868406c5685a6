"""The steps of backup, verification and restore, free of sockets and processes.

The backup worker actor sequences these (DESIGN.md section 6); ``restore`` and
``verify_backup`` run wherever they are called.  Every page and every log
record is verified as it is read; every file written is fsynced before the
MANIFEST that names it, and the MANIFEST is written last.

Pages come straight from the instance's database file: the pinned checkpoint's
pages are never overwritten while the pin holds (pager.py), so reading them
under a running instance is exact, and only the pages the checkpoint uses are
read (its free pages may be rewritten concurrently).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import crc32c

from . import manifest_format
from .errors import JetError
from .fileio import DEFAULT_ENV, Env, File
from .log import LogReader, list_generations
from .log_format import generation_file_name, make_lsn
from .meta_format import META_SLOTS, Meta
from .page_format import verify_page, zero_page
from .pager import WRITE_BATCH_PAGES, Pager, used_pages
from .storage import DB_FILE, LOG_DIR, Storage, read_meta

ATOMIC_TEMP, ATOMIC_NEW, ATOMIC_OLD = "temp", "new", "old"
COPY_CHUNK = 1 << 20
WRITE_BEHIND_BYTES = 1 << 20  # a backup's writes go to disk this much at a time


@dataclass
class Progress:
    """What a ``status`` callback receives (ESE's JET_SNPROG, in bytes, with a phase)."""

    snt: str  # "begin", "progress", "complete", "fail"
    phase: str  # "pages", "logs", "verify", "replay", "truncate"
    done: int
    total: int
    file: str | None = None


class Throttle:
    """Limits bytes per second; the rate may change while a backup runs (0: unlimited)."""

    def __init__(self, rate: int = 0, clock=time.monotonic, sleep=time.sleep) -> None:
        self.clock, self.sleep = clock, sleep
        self.set_rate(rate)

    def set_rate(self, rate: int) -> None:
        if type(rate) is not int or rate < 0:
            raise JetError("JET_errInvalidParameter", f"backup rate {rate!r} must be an int >= 0")
        self.rate, self.started, self.sent = rate, self.clock(), 0

    def restart(self) -> None:
        """A new backup begins: time it from now (idle time earns no unthrottled burst)."""
        self.started, self.sent = self.clock(), 0

    def consume(self, size: int) -> None:
        self.sent += size
        if self.rate:
            ahead = self.sent / self.rate - (self.clock() - self.started)
            if ahead > 0:
                self.sleep(ahead)


Report = Callable[[Progress], None]


class WriteBehind:
    """Streams a file to disk while it is written, WRITE_BEHIND_BYTES at a time.

    A backup left to the page cache reaches the disk all at once in its final fdatasync,
    and the live log's fdatasyncs queue behind that flush: commits stall for its whole
    length.  Handing each window to writeback as it fills, and waiting for the window
    before, keeps at most two windows in flight - the foreground waits for little more.
    """

    def __init__(self, file: File) -> None:
        self.file = file
        self.start = 0  # the first byte not yet handed to writeback
        self.previous: tuple[int, int] | None = None

    def wrote_up_to(self, end: int) -> None:
        """Every byte before ``end`` has been written (the file grows front to back)."""
        if end - self.start >= WRITE_BEHIND_BYTES:
            window = (self.start, end - self.start)
            self.file.write_behind(*window, self.previous)
            self.previous, self.start = window, end


def _no_report(progress: Progress) -> None:
    pass


# -- reading a checkpoint ------------------------------------------------------


def checkpoint_page_runs(file: File, meta: Meta) -> Iterator[tuple[int, bytes]]:
    """Verified runs of the pages ``meta``'s checkpoint uses, read from ``file``.

    Yields (first page number, bytes of up to WRITE_BATCH_PAGES consecutive
    pages).  A page that fails its checksum or sits at the wrong offset raises
    -1018 / -1118 naming the file and page; a used page that is all zeros is -1019.
    """
    reader = Pager(file, meta.page_size, 1 << 20, page_count=meta.page_count, sealed_seq=meta.seq)
    used = used_pages(reader, meta)
    size = meta.page_size
    start = 0
    while start < len(used):
        end = start + 1
        while (
            end < len(used) and end - start < WRITE_BATCH_PAGES and used[end] == used[end - 1] + 1
        ):
            end += 1
        first = used[start]
        data = file.pread((end - start) * size, first * size)
        if len(data) != (end - start) * size:
            raise JetError(
                "JET_errFileIOBeyondEOF", f"{file.path}: ends before page {used[end - 1]}"
            )
        for i in range(end - start):
            verify_page(
                data[i * size : (i + 1) * size], first + i, file.path, allow_uninitialized=False
            )
        yield first, data
        start = end


def checkpoint_bytes(meta: Meta, file: File) -> int:
    """Bytes of the pages a checkpoint uses (the 'pages' phase total)."""
    reader = Pager(file, meta.page_size, 1 << 20, page_count=meta.page_count, sealed_seq=meta.seq)
    return len(used_pages(reader, meta)) * meta.page_size


def copy_database(
    env: Env,
    source: str,
    meta_page: bytes,
    destination: str,
    *,
    report: Report = _no_report,
    throttle: Throttle | None = None,
    should_stop: Callable[[], None] = lambda: None,
) -> dict:
    """Copy the pinned checkpoint's pages into a new database file; its manifest entry.

    The copy holds the checkpoint's meta in its slot, zeros in the other slot
    and in every page the checkpoint does not use.
    """
    src = env.open_read(source)
    meta = Meta.from_page(meta_page, meta_page_slot(meta_page), source)
    size = meta.page_size
    dest = env.open(destination, create=True, exclusive=True)
    streamed = WriteBehind(dest)
    try:
        total = checkpoint_bytes(meta, src)
        report(Progress("progress", "pages", 0, total, DB_FILE))
        crc, position, done = 0, 0, 0

        def put(data: bytes, offset: int) -> None:
            nonlocal crc, position
            while position < offset:  # the zeros of unused pages, for the file checksum
                gap = min(offset - position, COPY_CHUNK)
                crc = crc32c.crc32c(zero_page(size) * (gap // size), value=crc)
                position += gap
            dest.pwrite(data, offset)
            crc = crc32c.crc32c(data, value=crc)
            position += len(data)
            streamed.wrote_up_to(position)

        for slot in META_SLOTS:
            put(meta_page if slot == meta.slot else zero_page(size), slot * size)
        for first, data in checkpoint_page_runs(src, meta):
            should_stop()
            put(data, first * size)
            done += len(data)
            if throttle is not None:
                throttle.consume(len(data))
            report(Progress("progress", "pages", done, total, DB_FILE))
        end = meta.page_count * size
        if position < end:
            put(b"", end)
            dest.truncate(end)
        dest.sync()
        return {"size": end, "crc32c": crc}
    finally:
        src.close()
        dest.close()


def meta_page_slot(meta_page: bytes) -> int:
    return int.from_bytes(meta_page[4:8], "little")


# -- copying logs ---------------------------------------------------------------


def verify_generations(
    env: Env,
    logs: str,
    gen_low: int,
    gen_high: int,
    signature: bytes,
    context: str,
    all_closed: bool = True,
) -> None:
    """Every header, chain link and record of generations gen_low..gen_high.  A backup's
    are all closed (its roll closed them); a live log directory's last one may not be."""
    reader = LogReader(env, logs, signature=signature)
    records = reader.records(
        make_lsn(gen_low, 0), end_gen=gen_high, context=context, all_closed=all_closed
    )
    for _record in records:
        pass


def copy_generations(
    env: Env,
    source_logs: str,
    dest_logs: str,
    gen_low: int,
    gen_high: int,
    signature: bytes,
    *,
    report: Report = _no_report,
    throttle: Throttle | None = None,
    should_stop: Callable[[], None] = lambda: None,
) -> dict[str, dict]:
    """Verify generations gen_low..gen_high in the live log, then copy them; manifest entries."""
    try:
        verify_generations(env, source_logs, gen_low, gen_high, signature, "backup")
    except JetError as exc:
        if exc.name in ("JET_errMissingLogFile", "JET_errMissingPreviousLogFile"):
            raise JetError("JET_errMissingFileToBackup", exc.message) from exc
        raise
    env.makedirs(dest_logs)
    names = [generation_file_name(g) for g in range(gen_low, gen_high + 1)]
    total = sum(os.path.getsize(os.path.join(source_logs, name)) for name in names)
    done, entries = 0, {}
    for name in names:
        should_stop()
        size, crc = _copy_file(
            env, os.path.join(source_logs, name), os.path.join(dest_logs, name), throttle
        )
        done += size
        entries[f"{LOG_DIR}/{name}"] = {"size": size, "crc32c": crc}
        report(Progress("progress", "logs", done, total, f"{LOG_DIR}/{name}"))
    env.sync_dir(dest_logs)
    return entries


def _copy_file(
    env: Env, source: str, destination: str, throttle: Throttle | None
) -> tuple[int, int]:
    src = env.open_read(source)
    dest = env.open(destination, create=True, exclusive=True)
    streamed = WriteBehind(dest)
    try:
        crc, offset = 0, 0
        while chunk := src.pread(COPY_CHUNK, offset):
            dest.pwrite(chunk, offset)
            crc = crc32c.crc32c(chunk, value=crc)
            offset += len(chunk)
            streamed.wrote_up_to(offset)
            if throttle is not None:
                throttle.consume(len(chunk))
        dest.sync()
        return offset, crc
    finally:
        src.close()
        dest.close()


# -- the manifest ----------------------------------------------------------------


def new_backup_id() -> str:
    return uuid.uuid4().hex


def write_manifest(env: Env, directory: str, manifest: dict) -> None:
    """Publish: the MANIFEST replaces any previous one atomically, then the directory is synced."""
    tmp = os.path.join(directory, manifest_format.MANIFEST + ".tmp")
    file = env.open(tmp, create=True)
    try:
        file.truncate(0)
        file.pwrite(manifest_format.encode(manifest), 0)
        file.sync()
    except BaseException:
        file.close()
        _unlink(tmp)  # a half-written manifest must not outlive the failure
        raise
    file.close()
    env.rename(tmp, os.path.join(directory, manifest_format.MANIFEST))
    env.sync_dir(directory)


def read_manifest(directory: str) -> dict | None:
    path = os.path.join(directory, manifest_format.MANIFEST)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise JetError("JET_errInvalidBackup", f"{path}: {exc.strerror}") from None
    return manifest_format.decode(raw, path)


def locate_backup(path: str) -> tuple[str, dict]:
    """The directory holding a complete backup: DEST, DEST/new or DEST/old, in that order."""
    problems = []
    for candidate in (path, os.path.join(path, ATOMIC_NEW), os.path.join(path, ATOMIC_OLD)):
        try:
            manifest = read_manifest(candidate)
        except JetError as exc:
            problems.append(exc.message)
            continue
        if manifest is not None:
            return candidate, manifest
    detail = "; ".join(problems) or "no MANIFEST in it, nor in its new/ or old/"
    raise JetError("JET_errInvalidBackup", f"{path} holds no complete backup ({detail})")


def swap_atomic(
    env: Env, destination: str, step: Callable[[str], None] = lambda name: None
) -> None:
    """temp -> new, keeping the previous new as old: ``finish_atomic`` drops old once the
    backup is recorded, ``undo_atomic`` puts it back if that fails.

    At every instant a complete backup is in new or old (restore looks in both).
    """
    temp, new, old = (os.path.join(destination, n) for n in (ATOMIC_TEMP, ATOMIC_NEW, ATOMIC_OLD))
    if os.path.isdir(old) and os.path.isdir(new):
        shutil.rmtree(old)  # a swap interrupted before: new is complete, old is the spare
    if os.path.isdir(new):
        env.rename(new, old)
        step("swap-old-kept")
    env.rename(temp, new)
    step("swap-new-placed")
    env.sync_dir(destination)


def finish_atomic(env: Env, destination: str) -> None:
    shutil.rmtree(os.path.join(destination, ATOMIC_OLD), ignore_errors=True)
    env.sync_dir(destination)


def undo_atomic(env: Env, destination: str) -> None:
    """The swapped-in backup failed after all: the previous one becomes new again."""
    new, old = os.path.join(destination, ATOMIC_NEW), os.path.join(destination, ATOMIC_OLD)
    if os.path.isdir(old):
        shutil.rmtree(new, ignore_errors=True)
        env.rename(old, new)
    else:
        shutil.rmtree(new, ignore_errors=True)  # there was no previous backup
    env.sync_dir(destination)


# -- verification ---------------------------------------------------------------

_RESTORE_LOG_ERRORS = {
    "JET_errLogFileCorrupt": "JET_errLogCorruptDuringHardRestore",
    "JET_errBadLogSignature": "JET_errGivenLogFileHasBadSignature",
    "JET_errInvalidLogSequence": "JET_errGivenLogFileIsNotContiguous",
    "JET_errLogSequenceChecksumMismatch": "JET_errGivenLogFileIsNotContiguous",
    "JET_errMissingLogFile": "JET_errMissingRestoreLogFiles",
    "JET_errMissingPreviousLogFile": "JET_errMissingRestoreLogFiles",
    "JET_errLogGenerationMismatch": "JET_errGivenLogFileIsNotContiguous",
}


def verify_backup(backup_dir, *, env: Env = DEFAULT_ENV, report: Report = _no_report) -> dict:
    """Check a backup completely without restoring it: the manifest, every file's size and
    checksum, every page the checkpoint uses, every log record and the generation chain."""
    from .storage import fspath

    directory, manifest = locate_backup(fspath(backup_dir))
    total = sum(entry["size"] for entry in manifest["files"].values())
    done = 0
    report(Progress("begin", "verify", 0, total))
    for name, entry in sorted(manifest["files"].items()):
        path = os.path.join(directory, name)
        try:
            size, crc = _file_checksum(path)
        except FileNotFoundError:
            raise JetError(
                "JET_errMissingRestoreLogFiles"
                if name.startswith(LOG_DIR)
                else "JET_errInvalidBackup",
                f"{path}: listed in the manifest, missing",
            ) from None
        if (size, crc) != (entry["size"], entry["crc32c"]):
            raise JetError(
                "JET_errInvalidBackup",
                f"{path}: {size} bytes crc {crc:#x}, the manifest says "
                f"{entry['size']} bytes crc {entry['crc32c']:#x}",
            )
        done += size
        report(Progress("progress", "verify", done, total, name))
    db = env.open_read(os.path.join(directory, DB_FILE))
    try:
        meta = read_meta(db)
        if meta.db_signature.hex() != manifest["db_signature"]:
            raise JetError(
                "JET_errBadDbSignature", f"{db.path}: not the database the manifest names"
            )
        pages = sum(len(data) for _first, data in checkpoint_page_runs(db, meta))
    finally:
        db.close()
    logs = os.path.join(directory, LOG_DIR)
    try:
        verify_generations(
            env,
            logs,
            manifest["gen_low"],
            manifest["gen_high"],
            bytes.fromhex(manifest["log_signature"]),
            "replay",
        )
    except JetError as exc:
        raise _restore_error(exc) from exc
    report(Progress("complete", "verify", total, total))
    return {
        "directory": directory,
        "backup_id": manifest["backup_id"],
        "files": len(manifest["files"]),
        "bytes": total,
        "page_bytes": pages,
        "gen_low": manifest["gen_low"],
        "gen_high": manifest["gen_high"],
        "chain": manifest["chain"],
    }


def _restore_error(exc: JetError) -> JetError:
    name = _RESTORE_LOG_ERRORS.get(exc.name)
    if name is None:
        return exc
    return JetError(name, exc.message)


def _file_checksum(path: str) -> tuple[int, int]:
    crc, size = 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(COPY_CHUNK):
            crc = crc32c.crc32c(chunk, value=crc)
            size += len(chunk)
    return size, crc


# -- restore -----------------------------------------------------------------------

_ROLL_FORWARD_ERRORS = {
    "JET_errBadLogSignature": "JET_errExistingLogFileHasBadSignature",
    "JET_errInvalidLogSequence": "JET_errExistingLogFileIsNotContiguous",
    "JET_errLogSequenceChecksumMismatch": "JET_errExistingLogFileIsNotContiguous",
}


def restore(
    backup_dir, dest_dir, *, log_dir=None, status: Report | None = None, env: Env = DEFAULT_ENV
) -> dict:
    """JetRestore: verify the backup, copy it into ``dest_dir``, roll forward through the
    contiguous generations of ``log_dir`` after the backup's last, replay, finish clean."""
    from .storage import fspath

    started = time.monotonic()
    report = status or _no_report
    dest_dir = fspath(dest_dir)
    checked = verify_backup(backup_dir, env=env, report=report)
    directory, manifest = locate_backup(fspath(backup_dir))
    dest_logs = os.path.join(dest_dir, LOG_DIR)
    if os.path.exists(os.path.join(dest_dir, DB_FILE)) or (
        os.path.isdir(dest_logs) and os.listdir(dest_logs)
    ):
        raise JetError("JET_errInvalidPath", f"{dest_dir} already holds a database or logs")
    env.makedirs(dest_dir)
    created = [os.path.join(dest_dir, DB_FILE), dest_logs]
    try:
        total = checked["bytes"]
        report(Progress("begin", "restore", 0, total))
        _copy_file(env, os.path.join(directory, DB_FILE), created[0], None)
        env.makedirs(dest_logs)
        copied = 0
        for name in sorted(n for n in manifest["files"] if n.startswith(LOG_DIR + "/")):
            size, _crc = _copy_file(
                env, os.path.join(directory, name), os.path.join(dest_dir, name), None
            )
            copied += size
            report(Progress("progress", "logs", copied, total, name))
        rolled = _roll_forward(env, manifest, fspath(log_dir), dest_logs) if log_dir else []
        env.sync_dir(dest_logs)
        env.sync_dir(dest_dir)
        report(Progress("progress", "replay", 0, total))
        replay_started = time.monotonic()
        storage = Storage.open(dest_dir, create=False, env=env)
        try:
            storage.clear_backup_history()
            replayed = storage.replayed
            replay_seconds = time.monotonic() - replay_started
        finally:
            storage.close()
    except BaseException:
        for path in created:
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else _unlink(path)
        raise
    report(Progress("complete", "restore", total, total))
    return {
        "directory": directory,
        "dest": dest_dir,
        "replayed": replayed,
        "replay_seconds": replay_seconds,
        "rolled_forward": rolled,
        "seconds": time.monotonic() - started,
    }


def _roll_forward(env: Env, manifest: dict, log_dir: str, dest_logs: str) -> list[int]:
    """Copy generations gen_high+1, gen_high+2, ... of ``log_dir`` while they chain on."""
    present = set(list_generations(env, log_dir)) if os.path.isdir(log_dir) else set()
    rolled = []
    generation = manifest["gen_high"] + 1
    while generation in present:
        name = generation_file_name(generation)
        _copy_file(env, os.path.join(log_dir, name), os.path.join(dest_logs, name), None)
        rolled.append(generation)
        generation += 1
    if rolled:
        try:
            verify_generations(
                env,
                dest_logs,
                manifest["gen_low"],
                rolled[-1],
                bytes.fromhex(manifest["log_signature"]),
                "replay",
                all_closed=False,  # the live log's current generation is still open
            )
        except JetError as exc:
            mapped = _ROLL_FORWARD_ERRORS.get(exc.name)
            raise JetError(mapped, exc.message) if mapped else exc from exc
    return rolled


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import crc32c

from . import manifest_format
from .errors import JetError
from .fileio import DEFAULT_ENV, Env, File, read_regular_file
from .log_format import generation_file_name, lsn_gen, make_lsn
from .log_reader import LogReader, list_generations
from .meta_format import META_SLOTS, Meta
from .page_format import page_pgno, verify_page, zero_page
from .pager import WRITE_BATCH_PAGES, Pager, used_pages
from .storage import DB_FILE, LOG_DIR

ATOMIC_TEMP, ATOMIC_NEW, ATOMIC_OLD = "temp", "new", "old"
COPY_CHUNK = 1 << 20
WRITE_BEHIND_BYTES = 1 << 20  # a backup's writes go to disk this much at a time


@dataclass
class Progress:
    """One progress event of a backup, restore or verification: what a ``status=``
    callback receives (ESE's JET_SNPROG, counted in bytes, with the phase it is in).

    ``snt``: "begin" as a phase starts, "progress" as it goes on, "complete" at the end
    ("fail" is ESE's, kept for the compat layer's JET_sntFail).  ``phase``: "pages"
    (the database file), "logs" (log generations), "truncate" (log truncation alone),
    "verify", "restore" and "replay".  ``done`` of ``total`` bytes, ``total`` 0 while
    not known yet; ``file``: the file being copied or checked, relative to the backup.
    """

    snt: str  # "begin", "progress", "complete", "fail"
    phase: str  # "pages", "logs", "truncate", "verify", "restore", "replay"
    done: int
    total: int
    file: str | None = None


MIN_BACKUP_RATE = 48 << 20  # bytes/s a backup keeps up however busy the machine (0: none)
# While commits are arriving, the copy keeps to this share of the time: it sleeps after
# each chunk for as long as (1 - share) / share times the chunk took.  On one disk the
# live log's fdatasyncs queue behind the backup's writes (a destination on tmpfs costs
# the same load 15% of its commits, one on the database's disk 45-50%).
FOREGROUND_SHARE = 0.4
CATCH_UP_S = 0.5


# How the copying thread runs (``Throttle.on_pace``): it yields the CPU while it keeps
# ahead of its floor, catches up without yielding while behind, and is an ordinary
# thread of the backup worker outside a copy (pinning, rolling, publishing).
YIELD, CATCH_UP, STEADY = "yield", "catch-up", "steady"


class Throttle:
    """Paces a backup's copy between a ceiling and a floor, both in bytes per second.

    ``rate`` (0: unlimited) caps the copy; it may change while a backup runs.
    ``min_rate`` is the floor of a copy that yields to other work: ``on_pace`` is told
    YIELD when a copy starts, CATCH_UP whenever it falls behind the floor, YIELD when it
    leads again and STEADY when it ends, so the copier can stop yielding while behind -
    a backup under a saturating load still ends in a bounded time, and the log it
    retains stays bounded.  ``foreground()`` says whether commits are arriving; while
    they are (and the copy is not behind its floor) the copy keeps to ``share`` of the
    time (FOREGROUND_SHARE).
    """

    def __init__(
        self,
        rate: int = 0,
        clock=time.monotonic,
        sleep=time.sleep,
        *,
        min_rate: int = MIN_BACKUP_RATE,
        on_pace: Callable[[str], None] = lambda pace: None,
        foreground: Callable[[], bool] = lambda: False,
        share: float = FOREGROUND_SHARE,
    ) -> None:
        self.clock, self.sleep, self.on_pace = clock, sleep, on_pace
        self.foreground, self.share = foreground, share
        self.pace = STEADY
        self.set_rate(rate, min_rate)

    @property
    def behind(self) -> bool:
        return self.pace == CATCH_UP

    def set_rate(self, rate: int, min_rate: int | None = None) -> None:
        for name, value in (("rate", rate), ("min_rate", min_rate)):
            if value is not None and (type(value) is not int or value < 0):
                raise JetError(
                    "JET_errInvalidParameter", f"backup {name} {value!r} must be an int >= 0"
                )
        if min_rate is not None:
            self.min_rate = min_rate
        self.rate, self.started, self.sent = rate, self.clock(), 0
        self.chunk_started = self.started

    @contextmanager
    def copying(self) -> Iterator[Throttle]:
        """A copy runs: it is timed from now (idle time earns no unthrottled burst, and
        the time spent pinning and rolling puts it behind no floor).  Entered by the
        copying thread, since ``on_pace`` acts on the thread that calls it."""
        self.started, self.sent = self.clock(), 0
        self.chunk_started = self.started
        self._pace(YIELD)
        try:
            yield self
        finally:
            self._pace(STEADY)

    def consume(self, size: int) -> None:
        """``size`` bytes were copied (0: work that copies nothing, such as verifying)."""
        self.sent += size
        now = self.clock()
        elapsed, busy = now - self.started, now - self.chunk_started
        try:
            if self.rate:
                ahead = self.sent / self.rate - elapsed
                if ahead > 0:
                    self.sleep(ahead)
                    return
            floor = min(self.min_rate, self.rate) if self.rate else self.min_rate
            # Behind the floor, the copy stops yielding until it is CATCH_UP_S ahead of
            # it: a copy that yields again the moment it reaches the floor falls back at
            # once beside busy neighbours and averages below it.
            lead = CATCH_UP_S if self.behind else 0.0
            behind = floor > 0 and self.sent < floor * (elapsed + lead)
            self._pace(CATCH_UP if behind else YIELD)
            if not behind and self.share < 1 and self.foreground():
                self.sleep(busy * (1 - self.share) / self.share)
        finally:
            self.chunk_started = self.clock()

    def _pace(self, pace: str) -> None:
        if pace != self.pace:
            self.pace = pace
            self.on_pace(pace)


Report = Callable[[Progress], None]


class LogActivity:
    """Whether commits are arriving: the live log generation was written within ``window``
    seconds (its mtime, which every append updates; no message to any actor).

    The newest generation is looked up again whenever the one known looks idle (at most
    once per ``window``): after a roll the old one is idle at once, the new one busy.
    """

    def __init__(self, logs_dir: str, window: float = 0.1, clock=time.time) -> None:
        self.logs_dir, self.window, self.clock = logs_dir, window, clock
        self.current: str | None = None
        self.listed = float("-inf")

    def __call__(self) -> bool:
        now = self.clock()
        if self._written_since(now - self.window):
            return True
        if now - self.listed < self.window:
            return False
        self.listed = now
        generations = list_generations(DEFAULT_ENV, self.logs_dir)
        if not generations:
            self.current = None
            return False
        self.current = os.path.join(self.logs_dir, generation_file_name(generations[-1]))
        return self._written_since(now - self.window)

    def _written_since(self, moment: float) -> bool:
        if self.current is None:
            return False
        try:
            return os.stat(self.current).st_mtime > moment
        except OSError:  # rolled and truncated meanwhile
            return False


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


def no_report(progress: Progress) -> None:
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
    report: Report = no_report,
    throttle: Throttle | None = None,
    should_stop: Callable[[], None] = lambda: None,
) -> dict:
    """Copy the pinned checkpoint's pages into a new database file; its manifest entry.

    The copy holds the checkpoint's meta in its slot, zeros in the other slot
    and in every page the checkpoint does not use.
    """
    throttle = throttle or Throttle(min_rate=0)
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
        with throttle.copying():
            for first, data in checkpoint_page_runs(src, meta):
                should_stop()
                put(data, first * size)
                done += len(data)
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
    return page_pgno(meta_page)  # a meta page's number is its slot


# -- copying logs ---------------------------------------------------------------


def verify_generations(
    env: Env,
    logs: str,
    gen_low: int,
    gen_high: int,
    signature: bytes,
    context: str,
    all_closed: bool = True,
    tick: Callable[[], None] = lambda: None,
) -> None:
    """Every header, chain link and record of generations gen_low..gen_high.  A backup's
    are all closed (its roll closed them); a live log directory's last one may not be.
    ``tick`` is called after every COPY_CHUNK or so of log verified (a throttle's beat)."""
    reader = LogReader(env, logs, signature=signature)
    records = reader.records(
        make_lsn(gen_low, 0), end_gen=gen_high, context=context, all_closed=all_closed
    )
    ticked = make_lsn(gen_low, 0)
    for record in records:
        if lsn_gen(record.end_lsn) != lsn_gen(ticked) or record.end_lsn - ticked >= COPY_CHUNK:
            tick()
            ticked = record.end_lsn
    tick()


def copy_generations(
    env: Env,
    source_logs: str,
    dest_logs: str,
    gen_low: int,
    gen_high: int,
    signature: bytes,
    *,
    report: Report = no_report,
    throttle: Throttle | None = None,
    should_stop: Callable[[], None] = lambda: None,
) -> dict[str, dict]:
    """Verify generations gen_low..gen_high in the live log, then copy them; manifest entries.

    The verifying read is paced with the copy: its time counts against the floor (a
    verification starved beside busy neighbours puts the copy behind, so it stops
    yielding) and it yields its share while commits arrive.
    """
    throttle = throttle or Throttle(min_rate=0)
    names = [generation_file_name(g) for g in range(gen_low, gen_high + 1)]
    done, entries = 0, {}
    with throttle.copying():
        try:
            verify_generations(
                env,
                source_logs,
                gen_low,
                gen_high,
                signature,
                "backup",
                tick=lambda: throttle.consume(0),
            )
        except JetError as exc:
            if exc.name in ("JET_errMissingLogFile", "JET_errMissingPreviousLogFile"):
                raise JetError("JET_errMissingFileToBackup", exc.message) from exc
            raise
        env.makedirs(dest_logs)
        total = sum(os.path.getsize(os.path.join(source_logs, name)) for name in names)
        for name in names:
            should_stop()
            size, crc = copy_file(
                env, os.path.join(source_logs, name), os.path.join(dest_logs, name), throttle
            )
            done += size
            entries[f"{LOG_DIR}/{name}"] = {"size": size, "crc32c": crc}
            report(Progress("progress", "logs", done, total, f"{LOG_DIR}/{name}"))
    env.sync_dir(dest_logs)
    return entries


def copy_file(
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
            if throttle is not None:  # a restore's copies run flat out
                throttle.consume(len(chunk))
        dest.sync()
        return offset, crc
    finally:
        src.close()
        dest.close()


# -- the manifest ----------------------------------------------------------------


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
        remove_if_present(tmp)  # a half-written manifest must not outlive the failure
        raise
    file.close()
    env.rename(tmp, os.path.join(directory, manifest_format.MANIFEST))
    env.sync_dir(directory)


def read_manifest(directory: str) -> dict | None:
    path = os.path.join(directory, manifest_format.MANIFEST)
    try:
        raw = read_regular_file(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise JetError("JET_errInvalidBackup", f"{path}: {exc.strerror}") from None
    return manifest_format.decode(raw, path)


def backup_manifest_in(path: str) -> str | None:
    """The MANIFEST that makes ``path`` a backup directory (its own, new/'s or old/'s)."""
    for candidate in (path, os.path.join(path, ATOMIC_NEW), os.path.join(path, ATOMIC_OLD)):
        manifest = os.path.join(candidate, manifest_format.MANIFEST)
        if os.path.isfile(manifest):
            return manifest
    return None


def locate_backup(path: str) -> tuple[str, dict]:
    """The directory holding a complete backup: DEST, DEST/new or DEST/old, in that order."""
    if not os.path.isdir(path):
        what = "not a directory" if os.path.exists(path) else "no such directory"
        raise JetError("JET_errInvalidPath", f"{path}: {what}, so it holds no backup")
    problems = []
    for candidate in (path, os.path.join(path, ATOMIC_NEW), os.path.join(path, ATOMIC_OLD)):
        try:
            manifest = read_manifest(candidate)
        except JetError as exc:
            problems.append(exc.message)
            continue
        if manifest is not None:
            return candidate, manifest
    if not problems:
        raise JetError(
            "JET_errNoBackup",
            f"{path} holds no backup: no MANIFEST in it, nor in its new/ or old/ (a backup"
            " writes it last, so an interrupted one leaves none)",
        )
    raise JetError(
        "JET_errInvalidBackup", f"{path} holds no complete backup ({'; '.join(problems)})"
    )


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


def undo_atomic(env: Env, destination: str, had_previous: bool) -> None:
    """Put back the backup that was in new before ``swap_atomic`` began (``had_previous``:
    there was one), wherever the swap - or an earlier undo - stopped, and drop the one
    that failed.  Repeatable: a worker killed half-way through leaves its successor a
    directory it undoes the same way.

    Where the swap stopped is read from the directory: temp still there means the failed
    backup was never placed (new, or old if new had moved already, is the previous one);
    without temp, old is the previous backup if it is there, and new is the failed one
    unless there was a previous backup and an undo has already moved it back.
    """
    temp, new, old = (os.path.join(destination, n) for n in (ATOMIC_TEMP, ATOMIC_NEW, ATOMIC_OLD))
    if os.path.isdir(temp):
        if os.path.isdir(old) and not os.path.isdir(new):
            env.rename(old, new)
        shutil.rmtree(temp, ignore_errors=True)
    elif os.path.isdir(old):
        shutil.rmtree(new, ignore_errors=True)
        env.rename(old, new)
    elif not had_previous:
        shutil.rmtree(new, ignore_errors=True)
    env.sync_dir(destination)


def remove_if_present(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

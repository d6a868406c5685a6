"""Read views: snapshot reads in any process, without a message to any actor.

DESIGN.md sections 3 and 3a.  A ``ReadView`` serves the reads of one process:

- **Bases**: the B+trees of a durable checkpoint, read straight from ``jet.edb``
  and verified page by page (``CheckpointPages``).  Copy-on-write keeps those
  pages unchanged while a reader-table slot (reader_table_format.py) says the
  checkpoint is in use.
- **Overlay**: the redo committed since the oldest base in use, read from the log
  up to the durable LSN the log writer publishes (published_format.py) and kept
  as versions per key, so snapshots of different ages read at once.
- A **snapshot** is (LSN, base): it sees every commit whose record ends at or
  before its LSN - the base's trees hold those up to the checkpoint LSN, the
  overlay the rest - and nothing after.

The pin protocol (LMDB's): a view writes its slot, then re-reads the published
checkpoint.  The buffer manager publishes a new checkpoint before it releases
the pages that checkpoint freed, and the two newest checkpoints are protected
whatever the slots say, so a base within one of the published checkpoint is
safe from the moment the slot is written; an older one is re-based.

What the slot does not cover: a read outside a transaction is protected by the
slot's recent touch (``IDLE_GRACE_NS``), and a held snapshot past its bound only
by the one extra checkpoint the buffer manager waits; a thread stalled for that
long between its check and its ``pread`` could read a page reused meanwhile,
which would pass its checksum.  Both windows are seconds or checkpoints wide,
around a single page read.

A view catches up when a read starts, so a process that only writes pays
nothing.  ``max_overlay_bytes`` bounds its memory and ``max_snapshot_checkpoints``
how many checkpoints a snapshot may fall behind (each one it holds keeps the
pages freed since from reuse): past either bound, the old snapshots fail with
JET_errVersionStoreOutOfMemory (-1069), naming the bound.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

from . import btree, redo_format
from .database_file import read_meta
from .errors import JetError
from .fileio import DEFAULT_ENV, Env
from .log_format import format_lsn
from .log_tail import LogTail
from .meta_format import Meta
from .pager import Node, PageReader
from .published_format import RUNNING, STOPPED, Published
from .reader_table_format import IDLE_GRACE_NS, ReaderTable, Slot
from .writeset import overlay_changes

DEFAULT_MAX_OVERLAY_BYTES = 256 << 20
DEFAULT_MAX_SNAPSHOT_CHECKPOINTS = 16
DEFAULT_CACHE_BYTES = 64 << 20
VERSION_OVERHEAD = 64  # bytes an overlay version costs beyond its key and value


class CheckpointPages(PageReader):
    """The pages one checkpoint references: read, verified and decoded once.

    ``inherited``: the cache of the base this one replaced, when that base was
    still held at this one's creation.  A page both reference is then the same
    page (a changed page moves; a freed one is not reused while held), so a hit
    there is taken over.  Only pages reached through this checkpoint's trees
    enter its cache, which is what keeps the next inheritance sound.
    """

    def __init__(
        self,
        file,
        meta: Meta,
        cache_pages: int,
        inherited: dict[int, Node] | None,
        check_held: Callable[[], None],
    ) -> None:
        super().__init__(file, meta.page_size, meta.page_count)
        self.cache: dict[int, Node] = {}
        self.cache_pages = cache_pages
        self.inherited = inherited
        self.expired: JetError | None = None  # set when the view gives this base up
        # Raises once the buffer manager may reuse this checkpoint's pages: checked
        # before every read from the file, which is when a reused page could be read.
        self.check_held = check_held

    def node(self, pgno: int) -> Node:
        node = self.cache.get(pgno)
        if node is not None:
            return node
        if self.inherited is not None:
            node = self.inherited.get(pgno)
        if node is None:
            if self.expired is not None:
                raise self.expired  # its pages may be reused by now: never read them
            self.check_held()
            node = self.read_node(pgno)
        if len(self.cache) >= self.cache_pages:
            try:
                del self.cache[next(iter(self.cache))]  # the oldest entry
            except (KeyError, StopIteration, RuntimeError):
                pass  # another thread of this process evicted it first
        self.cache[pgno] = node
        return node

    def read_overflow(self, ref: list) -> bytes:
        if self.expired is not None:
            raise self.expired
        self.check_held()
        return super().read_overflow(ref)


class Base:
    """One durable checkpoint as a view reads it."""

    def __init__(self, meta: Meta, pages: CheckpointPages) -> None:
        self.meta = meta
        self.seq = meta.seq
        self.lsn = meta.checkpoint_lsn
        self.pages = pages
        self.tables = {
            key.decode(): int.from_bytes(value, "little")
            for key, value in btree.scan(pages, lambda: meta.catalog_root, None, None)
        }
        self.snapshots = 0  # open snapshots on it


class Overlay:
    """The committed redo after some LSN, kept as versions per key."""

    def __init__(self, start_lsn: int) -> None:
        self.start_lsn = start_lsn  # every record ending after it, up to end_lsn, is here
        self.end_lsn = start_lsn
        # (table, key) -> ([end LSN, ...], [value or None (deleted), ...]), LSNs ascending
        self.versions: dict[tuple[str, bytes], tuple[list[int], list]] = {}
        self.keys: dict[str, list[bytes]] = {}  # table -> its keys with versions, sorted
        self.catalog: dict[str, tuple[list[int], list[bool]]] = {}  # table -> created/dropped
        self.bytes = 0

    def add(self, end_lsn: int, record: redo_format.Record) -> None:
        kind, body = record
        if kind == redo_format.COMMIT:
            for table, items in redo_format.commit_tables(body):
                keys = self.keys.get(table)
                if keys is None:
                    keys = self.keys[table] = []
                for key, value in items:
                    versions = self.versions.get((table, key))
                    if versions is None:
                        versions = self.versions[(table, key)] = ([], [])
                        if keys and keys[-1] < key:
                            keys.append(key)
                        else:
                            bisect.insort(keys, key)
                    # The value first: a reader in another thread finds versions by
                    # their LSNs, so one whose LSN is not there yet is not seen.
                    versions[1].append(value)
                    versions[0].append(end_lsn)
                    self.bytes += VERSION_OVERHEAD + len(key) + (len(value) if value else 0)
        else:
            changes = self.catalog.setdefault(redo_format.record_table(body), ([], []))
            changes[1].append(kind == redo_format.CREATE_TABLE)
            changes[0].append(end_lsn)
            self.bytes += VERSION_OVERHEAD
        self.end_lsn = end_lsn

    def table_change(self, table: str, after: int, upto: int) -> tuple[int, bool] | None:
        """The table's last create or drop in (after, upto]: (its LSN, created)."""
        return _newest_between(self.catalog.get(table), after, upto)

    def version(self, table: str, key: bytes, after: int, upto: int) -> tuple[int, object] | None:
        """The key's newest version in (after, upto]: (its LSN, value or None)."""
        return _newest_between(self.versions.get((table, key)), after, upto)

    def keys_in(self, table: str, start: bytes | None, end: bytes | None) -> list[bytes]:
        keys = self.keys.get(table, ())
        lo = 0 if start is None else bisect.bisect_left(keys, start)
        hi = len(keys) if end is None else bisect.bisect_left(keys, end)
        return keys[lo:hi]

    def trim(self, upto: int) -> Overlay:
        """A copy without the versions at or before ``upto`` (a base holds them now)."""
        trimmed = Overlay(max(self.start_lsn, upto))
        trimmed.end_lsn = self.end_lsn
        for (table, key), (lsns, values) in self.versions.items():
            index = bisect.bisect_right(lsns, upto)
            if index < len(lsns):
                trimmed.versions[(table, key)] = (lsns[index:], values[index:])
                trimmed.bytes += sum(
                    VERSION_OVERHEAD + len(key) + (len(v) if v else 0) for v in values[index:]
                )
        for table, keys in self.keys.items():
            kept = [key for key in keys if (table, key) in trimmed.versions]
            if kept:
                trimmed.keys[table] = kept
        for table, (lsns, created) in self.catalog.items():
            index = bisect.bisect_right(lsns, upto)
            if index < len(lsns):
                trimmed.catalog[table] = (lsns[index:], created[index:])
                trimmed.bytes += VERSION_OVERHEAD * (len(lsns) - index)
        return trimmed


def _newest_between(history: tuple[list[int], list] | None, after: int, upto: int):
    """(LSN, what) of the last entry of ``history`` (LSNs ascending) in (after, upto]."""
    if history is None:
        return None
    index = bisect.bisect_right(history[0], upto) - 1
    if index < 0 or history[0][index] <= after:
        return None
    return history[0][index], history[1][index]


class Snapshot:
    """What one transaction (or one read outside a transaction) sees."""

    __slots__ = ("lsn", "records", "base", "overlay", "view", "held")

    def __init__(
        self, view: ReadView, lsn: int, records: int, base: Base, overlay: Overlay, held: bool
    ) -> None:
        self.view, self.lsn, self.base, self.overlay, self.held = view, lsn, base, overlay, held
        self.records = records  # redo records durable at lsn (published_format.py)

    def _check(self) -> None:
        if self.base.pages.expired is not None:
            raise self.base.pages.expired

    def _table_state(self, table: str) -> tuple[int, bool] | None:
        change = self.overlay.table_change(table, self.base.lsn, self.lsn)
        if change is not None and not change[1]:
            raise JetError("JET_errObjectNotFound", f"no table {table!r} in {self.view.path}")
        if change is None and table not in self.base.tables:
            raise JetError("JET_errObjectNotFound", f"no table {table!r} in {self.view.path}")
        return change

    def get(self, table: str, key: bytes) -> bytes | None:
        self._check()
        change = self._table_state(table)
        version = self.overlay.version(table, key, self.base.lsn, self.lsn)
        if version is not None and (change is None or version[0] > change[0]):
            return version[1]
        if change is not None:  # created anew after the base: only its own versions
            return None
        return btree.get(self.base.pages, self.base.tables[table], key)

    def scan(
        self, table: str, start: bytes | None, end: bytes | None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Entries with start <= key < end at this snapshot, in key order."""
        self._check()
        change = self._table_state(table)
        based: Iterator[tuple[bytes, bytes]] = iter(())
        if change is None:
            root = self.base.tables[table]
            based = btree.scan(self.base.pages, lambda: root, start, end)
        after = self.base.lsn if change is None else change[0]
        return overlay_changes(
            based,
            self.overlay.keys_in(table, start, end),
            lambda key: self.overlay.version(table, key, after, self.lsn),
        )

    def list_tables(self) -> list[str]:
        self._check()
        names = set(self.base.tables) | set(self.overlay.catalog)
        return sorted(name for name in names if self._exists(name))

    def _exists(self, table: str) -> bool:
        try:
            self._table_state(table)
        except JetError:
            return False
        return True

    def close(self) -> None:
        if self.held:
            self.held = False
            self.view.release(self)


class ReadView:
    """The read view of one process on one instance (see the module text)."""

    def __init__(
        self,
        path: str,
        run_dir: str,
        *,
        env: Env = DEFAULT_ENV,
        max_overlay_bytes: int = DEFAULT_MAX_OVERLAY_BYTES,
        max_snapshot_checkpoints: int = DEFAULT_MAX_SNAPSHOT_CHECKPOINTS,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        from .storage import DB_FILE, LOG_DIR  # (storage imports nothing of this module)

        self.path = path
        self.logs_dir = os.path.join(path, LOG_DIR)
        self.max_overlay_bytes = max_overlay_bytes
        self.max_snapshot_checkpoints = max_snapshot_checkpoints
        self.cache_bytes = cache_bytes
        self.clock_ns = clock_ns
        self.lock = threading.RLock()
        self.published = Published(run_dir)
        self.readers = ReaderTable(run_dir)
        self.file = env.open_read(os.path.join(path, DB_FILE))
        self.bases: list[Base] = []  # oldest first; the last is the newest
        self.overlay: Overlay | None = None
        self.tail: LogTail | None = None
        self.touched_ns = 0
        self.records = 0  # redo records durable at the overlay's end (published_format.py)
        self.held_lsns: Counter[int] = Counter()  # of the open snapshots
        # (published version, snapshot): the last unheld snapshot, while nothing changes
        self.current: tuple[tuple, Snapshot] | None = None
        self.slot_written: Slot | None = None
        self.closed = False

    # -- snapshots -----------------------------------------------------------------------------
    def snapshot(self, hold: bool = False) -> Snapshot:
        """The newest snapshot: every commit durable now.  ``hold``: it outlives this call
        (a transaction, a scan) and must be closed; until then its base stays."""
        current = self.current
        if (
            current is not None
            and not hold
            and self.published.version() == current[0]
            and self.clock_ns() - self.touched_ns < IDLE_GRACE_NS // 2
        ):
            return current[1]  # nothing published since: the last snapshot is the newest
        with self.lock:
            version = self.published.version()
            if self.closed:
                raise JetError("JET_errNotInitialized", f"{self.path}: this read view is closed")
            state = self.published.state()
            if state == STOPPED:
                raise JetError(
                    "JET_errClientRequestToStopJetService",
                    "the service was stopped (JetStopService)",
                )
            if state != RUNNING:
                raise JetError("JET_errInstanceUnavailable", f"{self.path} was closed")
            now = self.clock_ns()
            if now - self.touched_ns >= IDLE_GRACE_NS and not self._held():
                self._drop_everything()  # the slot protected nothing meanwhile
            fresh = not self.bases
            published = self.published.checkpoint()
            if fresh or published.seq > self.bases[-1].seq:
                self._add_base()
            if now - self.touched_ns >= IDLE_GRACE_NS // 2:
                self.touched_ns = now
                self._write_slot()
            if fresh:
                self._confirm_pin()
            self._expire_snapshots_behind(published.seq)
            self._catch_up()
            base = self.bases[-1]
            lsn = self.overlay.end_lsn
            if hold:
                base.snapshots += 1
                self.held_lsns[lsn] += 1
                self._write_slot()
            snapshot = Snapshot(self, lsn, self.records, base, self.overlay, hold)
            if not hold:
                self.current = (version, snapshot)
            return snapshot

    def release(self, snapshot: Snapshot) -> None:
        with self.lock:
            snapshot.base.snapshots -= 1
            self.held_lsns[snapshot.lsn] -= 1
            if not self.held_lsns[snapshot.lsn]:
                del self.held_lsns[snapshot.lsn]
            if self.closed:
                return
            self._drop_unused_bases()
            self._write_slot()

    def _held(self) -> bool:
        return any(base.snapshots for base in self.bases)

    def _held_count(self) -> int:
        return sum(base.snapshots for base in self.bases)

    # -- bases -------------------------------------------------------------------------------
    def _add_base(self) -> None:
        meta = read_meta(self.file)
        if self.bases and meta.seq <= self.bases[-1].seq:
            return  # (the published checkpoint is not on disk yet as far as we can see)
        inherited = self.bases[-1].pages.cache if self.bases else None
        cache_pages = max(64, self.cache_bytes // meta.page_size)
        pages = CheckpointPages(
            self.file, meta, cache_pages, inherited, lambda: self._check_held(meta.seq)
        )
        base = Base(meta, pages)
        self.bases.append(base)
        if self.overlay is None or self.overlay.end_lsn < base.lsn:
            # Nothing read yet, or this view has not followed the log to the checkpoint:
            # the overlay starts at it.
            self.overlay = Overlay(base.lsn)
            if self.tail is not None:
                self.tail.close()
            self.tail = LogTail(self.logs_dir, base.lsn)
        self._drop_unused_bases()
        self._write_slot()

    def _drop_unused_bases(self) -> None:
        newest = self.bases[-1] if self.bases else None
        kept = [base for base in self.bases if base.snapshots or base is newest]
        if len(kept) == len(self.bases):
            return
        for base in self.bases:
            if base not in kept and base.pages.expired is None:
                base.pages.expired = JetError(
                    "JET_errVersionStoreOutOfMemory",
                    f"{self.path}: checkpoint {base.seq} is no longer read by this view",
                )
        self.bases = kept
        if self.overlay is not None and self.overlay.start_lsn < kept[0].lsn:
            self.overlay = self.overlay.trim(kept[0].lsn)
        if len(kept) == 1:
            newest.pages.inherited = None  # nothing older is held: its pages may be reused

    def _drop_everything(self) -> None:
        self.current = None
        for base in self.bases:
            base.pages.expired = JetError(
                "JET_errVersionStoreOutOfMemory",
                f"{self.path}: checkpoint {base.seq} was released while this view was idle",
            )
        self.bases = []
        self.overlay = None

    def _expire(self, bases: list[Base], reason: str) -> None:
        """Give these bases up (never the newest); their snapshots fail with -1069."""
        for base in bases:
            base.pages.expired = JetError("JET_errVersionStoreOutOfMemory", reason)
            base.snapshots = 0
        self._drop_unused_bases()

    # -- the pin -----------------------------------------------------------------------------
    def _write_slot(self) -> None:
        self.readers.claim()
        oldest = self.bases[0] if self.bases else None
        slot = Slot(
            os.getpid(),
            min(self._held_count(), 0xFFFF),
            min(self.max_snapshot_checkpoints, 0xFFFF),
            oldest.seq if oldest else 0,
            min(self.held_lsns, default=0),
            self.touched_ns,
        )
        if slot != self.slot_written:
            self.readers.write(slot)
            self.slot_written = slot

    def _confirm_pin(self) -> None:
        """After a slot protected nothing: is the base just loaded safe (module text)?

        The slot is written; if the published checkpoint is still within one of the
        base, the buffer manager has released nothing that base references and will
        see the slot before it does.  Otherwise load the newer one and ask again.
        """
        for _attempt in range(1000):
            if self.published.checkpoint().seq <= self.bases[-1].seq + 1:
                return
            self._drop_everything()
            self._add_base()
        raise JetError(
            "JET_errInternalError", f"{self.path}: the checkpoint kept moving under this view"
        )

    def _check_held(self, seq: int) -> None:
        """-1069 if checkpoint ``seq`` is past this view's bound: the buffer manager
        keeps its pages for one checkpoint more, not longer (reader_table_format.py)."""
        newest = self.published.checkpoint().seq
        if newest - seq > self.max_snapshot_checkpoints:
            raise JetError(
                "JET_errVersionStoreOutOfMemory",
                f"{self.path}: a snapshot on checkpoint {seq} fell more than "
                f"max_snapshot_checkpoints={self.max_snapshot_checkpoints} checkpoints behind",
            )

    def _expire_snapshots_behind(self, published_seq: int) -> None:
        behind = [
            b for b in self.bases[:-1] if published_seq - b.seq > self.max_snapshot_checkpoints
        ]
        if behind:
            self._expire(
                behind,
                f"{self.path}: a snapshot on checkpoint {behind[0].seq} fell more than "
                f"max_snapshot_checkpoints={self.max_snapshot_checkpoints} checkpoints behind",
            )

    # -- the log -------------------------------------------------------------------------------
    def _catch_up(self) -> None:
        published = self.published.durable()
        durable, self.records = published.lsn, published.records
        if durable <= self.overlay.end_lsn:
            return
        while True:
            try:
                self._read_log(durable)
                break
            except JetError as exc:
                if exc.name != "JET_errMissingLogFile":
                    raise
                # Truncated since this view last read: the newest checkpoint holds all
                # that was in those generations, and its own log is kept - unless a newer
                # checkpoint and a truncation came meanwhile, hence the loop.
                newest = self.bases[-1]
                self._add_base()
                if self.bases[-1] is newest:
                    raise
        self.overlay.end_lsn = max(self.overlay.end_lsn, durable)
        if self.overlay.bytes > self.max_overlay_bytes and len(self.bases) > 1:
            self._expire(
                self.bases[:-1],
                f"{self.path}: the versions kept for old snapshots passed "
                f"max_overlay_bytes={self.max_overlay_bytes}",
            )

    def _read_log(self, durable: int) -> None:
        for end_lsn, payload in self.tail.read(durable):
            where = f"{self.logs_dir} record ending at {format_lsn(end_lsn)}"
            if end_lsn > self.overlay.end_lsn:
                self.overlay.add(end_lsn, redo_format.decode(payload, where))

    # -- status and closing ---------------------------------------------------------------------
    def status(self) -> dict:
        with self.lock:
            return {
                "bases": [base.seq for base in self.bases],
                "open_snapshots": self._held_count(),
                "oldest_snapshot_lsn": self.bases[0].lsn if self.bases else None,
                "overlay_bytes": self.overlay.bytes if self.overlay else 0,
                "caught_up_to": self.overlay.end_lsn if self.overlay else None,
            }

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.current = None
            self._drop_everything()
            if self.tail is not None:
                self.tail.close()
            self.readers.close()
            self.published.close()
            self.file.close()

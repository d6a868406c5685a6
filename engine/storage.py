"""The in-process storage engine: one instance directory, no sockets, no processes.

``Storage`` ties the formats together - the database file with its two meta
slots, the pager and its copy-on-write trees, the log stream - into
transactions, checkpoints and crash recovery.  The buffer manager actor hosts
one ``Storage``; tests drive it directly.

Files: ``DIR/jet.edb`` (database pages), ``DIR/logs/jetXXXXXXXX.log`` (log
generations), DESIGN.md section 3.  A commit is validated, checked for write
conflicts (transactions.py), appended to the log as one logical redo record,
applied to the trees, and (unless lazy) made durable by an fdatasync of the log
before ``commit`` returns.  Opened with ``ship_redo``, Storage hands its log to
the caller after recovery: records go to that redo sink (redo_sink.py), whose
owner makes them durable.  A checkpoint makes the log durable through everything
applied (write-ahead rule), writes the dirty pages and the free list, fsyncs,
then writes the meta slot and fsyncs again.  Recovery (recovery.py) replays every
redo record from the newest valid meta's checkpoint LSN on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from . import btree, redo_format, restore_marker_format
from .database_file import create_database_file, read_meta
from .errors import JetError
from .fileio import DEFAULT_ENV, Env, fspath
from .log_format import MAX_LOG_FILE_SIZE, lsn_gen
from .log_stream import LogStream
from .meta_format import (
    DB_CLEAN,
    DB_DIRTY,
    FLAG_CIRCULAR_EVER,
    FLAG_LOGGING,
    FLAG_RESTORED,
    FLAG_UNLOGGED,
    BackupRecord,
    Meta,
)
from .page_format import MAX_PAGE_SIZE, MIN_PAGE_SIZE, PageImage
from .pager import Node, Pager
from .published_format import Published
from .reader_table_format import ReaderTable
from .recovery import LogPaths, Replay, Restoring, recover_log
from .redo_sink import RedoSink, Ticket
from .transactions import Transaction, Transactions
from .writeset import check_key, check_range, check_table_name, check_value

DB_FILE = "jet.edb"
LOG_DIR = "logs"

# The log_file_size an instance accepts; the format itself allows smaller generations
# (log_format.MIN_LOG_FILE_SIZE, which the tests of the log use).
LOG_FILE_SIZE_RANGE = (64 << 10, MAX_LOG_FILE_SIZE)
# Automatic checkpoints keep recovery short and the cache from filling with dirty pages.
CHECKPOINT_LOG_DISTANCE = 4  # generations between the checkpoint and the log tip


@dataclass(frozen=True)
class PinnedCheckpoint:
    """A durable checkpoint whose pages stay untouched until ``unpin``."""

    seq: int
    meta: Meta

    @property
    def meta_page(self) -> bytes:
        return self.meta.to_page()


class Storage:
    wall_clock: Callable[[], int] = staticmethod(time.time_ns)  # record times; tests inject

    def __init__(self) -> None:  # use Storage.open
        self.closed = True
        self.last_record_ns = 0  # the newest record time this run wrote

    # -- open, create, recover --------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | bytes | os.PathLike,
        *,
        create: bool = True,
        logging: bool = True,
        circular_logging: bool = False,
        page_size: int = 8192,
        log_file_size: int = 1 << 20,
        cache_size: int = 64 << 20,
        auto_checkpoint: bool = True,
        env: Env = DEFAULT_ENV,
        restoring: Restoring | None = None,
        ship_redo: Callable[[int, int], RedoSink] | None = None,
        run_dir: str | None = None,
    ) -> Storage:
        """Open (or create) the database in ``path`` and recover it from its log.

        A directory marked by an unfinished restore is refused (-506) unless
        ``restoring``: that restore's own replay is the one open allowed there; it
        stops where ``restoring`` says and starts a new log stream (recovery.py), and
        ``replay`` tells what it did.
        ``ship_redo(end_lsn, generation)``: once recovered, hand the log files over and
        send every new record to the sink it returns (redo_sink.py); durability and
        checkpoints are then the caller's (the buffer manager beside a log writer).
        ``run_dir``: where the published state and the reader table are (read_view.py):
        checkpoints are published there, reused pages wait for the readers it lists,
        and - unless the log is shipped - so is the durable LSN after each sync.
        """
        self = cls()
        self.path = fspath(path)
        if restoring is None:
            restore_marker_format.refuse_open(self.path)
        self.db_path = os.path.join(self.path, DB_FILE)
        self.logs_path = os.path.join(self.path, LOG_DIR)
        self.env = env
        self.logging = bool(logging)
        self.circular = bool(circular_logging)
        self.auto_checkpoint = auto_checkpoint
        self.cache_size = _check_int("cache_size", cache_size, 1 << 20, 1 << 40)
        page_size = _check_int("page_size", page_size, MIN_PAGE_SIZE, MAX_PAGE_SIZE)
        if page_size & (page_size - 1):
            raise JetError("JET_errInvalidParameter", f"page_size {page_size} is not a power of 2")
        log_file_size = _check_int("log_file_size", log_file_size, *LOG_FILE_SIZE_RANGE)
        self.log: LogStream | RedoSink | None = None
        self.shipping = False  # the log files belong to someone else (ship_redo)
        self.failure: JetError | None = None
        self.transactions = Transactions()
        self.replayed = 0
        self.replay: Replay | None = None
        self.pins: list[PinnedCheckpoint] = []
        self.published = Published(run_dir) if run_dir is not None else None
        self.readers = ReaderTable(run_dir) if run_dir is not None else None
        if not env.exists(self.db_path):
            if not create:
                raise JetError("JET_errDatabaseNotFound", f"no database at {self.db_path}")
            env.makedirs(self.path)
            create_database_file(env, self.db_path, page_size, log_file_size, logging=self.logging)
        self.file = env.open(self.db_path)
        try:
            self._open_existing(restoring)
        except BaseException:
            self.close_files()
            raise
        if ship_redo is None and self.log is not None:
            self._publish_durable()
        if ship_redo is not None and self.log is not None:
            end_lsn, generation = self.log.end_lsn, self.log.current_generation
            self.log.close()
            self.log, self.shipping = ship_redo(end_lsn, generation), True
        self.closed = False
        return self

    def _open_existing(self, restoring: Restoring | None) -> None:
        meta = read_meta(self.file)
        self.page_size = meta.page_size
        self.log_file_size = meta.log_file_size
        self.meta = meta
        self.backup_history = (meta.last_full, meta.last_incremental)
        self.restored = False
        self.pager = Pager(
            self.file,
            meta.page_size,
            self.cache_size,
            page_count=meta.page_count,
            sealed_seq=meta.seq,
        )
        self.pager.load_freelist(meta.freelist_root)
        if self.readers is not None:
            self.pager.reader_floor = lambda: self.readers.oldest_checkpoint(self.pager.durable_seq)
        self.tables: dict[str, int] = {
            key.decode(): int.from_bytes(value, "little")
            for key, value in btree.scan(self.pager, lambda: meta.catalog_root, None, None)
        }
        self.changed_tables: set[str] = set()
        self.log_restart: dict | None = None
        if self.logging:
            paths = LogPaths(
                self.env,
                self.path,
                self.db_path,
                self.logs_path,
                self.log_file_size,
                self.circular,
            )
            recovered = recover_log(paths, meta, self._apply, restoring)
            self.log, self.meta, self.replayed = recovered.log, recovered.meta, recovered.replayed
            self.replay = recovered.replay
            if recovered.restart is not None:
                self.log_restart = recovered.restart
                self.backup_history = (BackupRecord(), BackupRecord())
        else:
            # An unlogged run's crash leaves nothing in the log to replay: the log ends
            # where the run began.
            logged = meta.flags & FLAG_LOGGING and not meta.flags & FLAG_UNLOGGED
            if logged and meta.state == DB_DIRTY:
                raise JetError(
                    "JET_errDatabaseDirtyShutdown",
                    f"{self.db_path} was not shut down cleanly and has log files to replay; "
                    "open it with logging enabled to recover",
                )
            # In the meta before any change can be: seal_checkpoint keeps the flag in
            # every later meta, so a durable unlogged change always carries it.
            self.meta = meta.evolve(flags=meta.flags | FLAG_UNLOGGED)
        self.checkpoint(state=DB_DIRTY)

    # -- failure -------------------------------------------------------------
    def check_usable(self) -> None:
        if self.closed:
            raise JetError("JET_errNotInitialized", f"{self.path} is not open")
        if self.failure is not None:
            raise JetError(
                "JET_errInstanceUnavailable",
                f"{self.path} stopped after a fatal error: {self.failure}",
            )

    def fail(self, exc: BaseException) -> None:
        """After a failure half-way through a change, memory and disk disagree: stop."""
        if self.failure is None:
            self.failure = exc if isinstance(exc, JetError) else JetError("JET_errDiskIO", str(exc))

    # -- tables ------------------------------------------------------------
    def table_root(self, table: str) -> int:
        root = self.tables.get(table)
        if root is None:
            raise JetError("JET_errObjectNotFound", f"no table {table!r} in {self.path}")
        return root

    def list_tables(self) -> list[str]:
        self.check_usable()
        return sorted(self.tables)

    def create_table(self, table: str) -> Ticket | None:
        self.check_usable()
        check_table_name(table)
        if table in self.tables:
            raise JetError("JET_errTableDuplicate", f"table {table!r} already exists")
        record = redo_format.table_record(redo_format.CREATE_TABLE, table, self._record_time())
        return self._log_and_apply(record, False)

    def drop_table(self, table: str) -> Ticket | None:
        self.check_usable()
        self.table_root(check_table_name(table))
        record = redo_format.table_record(redo_format.DROP_TABLE, table, self._record_time())
        return self._log_and_apply(record, False)

    # -- reads: the current trees, or a transaction's snapshot (version_store.py) ----------
    def get(self, table: str, key: bytes, snapshot: int | None = None) -> bytes | None:
        self.check_usable()
        root = self.table_root(check_table_name(table))
        current = lambda: btree.get(self.pager, root, check_key(key))  # noqa: E731
        return (
            current()
            if snapshot is None
            else self.transactions.versions.value_at(table, key, snapshot, current)
        )

    def scan(
        self,
        table: str,
        start: bytes | None = None,
        end: bytes | None = None,
        snapshot: int | None = None,
    ) -> Iterator[tuple[bytes, bytes]]:
        self.check_usable()
        self.table_root(check_table_name(table))
        start, end = check_range(start, end)

        def current_root() -> int:
            self.check_usable()
            return self.table_root(table)

        current = btree.scan(self.pager, current_root, start, end)
        return (
            current
            if snapshot is None
            else self.transactions.versions.scan_at(table, snapshot, current, start, end)
        )

    # -- transactions: one registry, for Transaction and the buffer manager's sessions --
    def begin(self) -> Transaction:
        """A transaction of this process (the tests' and the tools' way in)."""
        return Transaction(self, *self.begin_transaction())

    def begin_transaction(self, deadline: float | None = None) -> tuple[int, int]:
        """Register a transaction: (its id, the commit_seq it began at) - see
        Transactions.begin."""
        self.check_usable()
        return self.transactions.begin(deadline)

    def end_transaction(self, txn: int) -> None:
        self.transactions.end(txn)

    def expire_transactions(self, now: float) -> list[int]:
        """End every transaction whose deadline passed (a client that went away)."""
        return self.transactions.expire(now)

    @property
    def commit_seq(self) -> int:
        return self.transactions.commit_seq

    def commit(
        self,
        writes: dict[str, dict[bytes, bytes | None]],
        begin_seq: int | None,
        *,
        lazy: bool = False,
        snapshot_lsn: int | None = None,
        own_records: frozenset[int] = frozenset(),
    ) -> Ticket | None:
        """Apply one transaction's write set atomically; the ticket of its redo record
        (None without a log, or for an empty write set).

        The transaction's snapshot - ``snapshot_lsn``, or ``begin_seq`` (the
        ``commit_seq`` when it began) where there is no log - decides the write
        conflicts (transactions.py); neither means the write set was built and
        committed in one step.  PendingConflict (a shipped log only): the check needs a
        record's end LSN that the log writer has not reported yet; nothing was done.
        """
        self.check_usable()
        writes = {
            table: {check_key(k): None if v is None else check_value(v) for k, v in kv.items()}
            for table, kv in writes.items()
            if kv
        }
        if not writes:
            return None
        for table in writes:
            self.table_root(check_table_name(table))
        self.transactions.check_conflicts(writes, begin_seq, snapshot_lsn, own_records)
        before = None
        if self.transactions.active:  # registered transactions' snapshots may need them
            self.transactions.versions.check_room(writes)
            before = {(t, k): self.get(t, k) for t, kv in writes.items() for k in kv}
        record = redo_format.commit_record(writes, self._record_time())
        ticket = self._log_and_apply(record, lazy)
        self.transactions.committed(writes, ticket.number if ticket else None, before)
        if ticket is not None and not self.shipping:
            self.transactions.durable(ticket.number, self.log.end_lsn)
        return ticket

    def _record_time(self) -> int:
        """The time of a record about to be logged: never below the one before it in this
        run, whatever the wall clock does."""
        self.last_record_ns = max(self.last_record_ns, self.wall_clock())
        return self.last_record_ns

    def _log_and_apply(self, record: redo_format.Record, lazy: bool) -> Ticket | None:
        try:
            ticket = self.log.append(redo_format.encode(record)) if self.log else None
            self._apply(record, ticket.lsn if ticket else 0, "commit")
            if ticket and not lazy and not self.shipping:
                self.log.sync()
                self._publish_durable()
            if self.auto_checkpoint and self.checkpoint_due():
                self.checkpoint()
            self.pager.evict()
        except BaseException as exc:
            self.fail(exc)
            raise
        return ticket

    def _apply(self, record: redo_format.Record, lsn: int, where: str) -> None:
        """Apply one redo record to the trees (commit and replay share this)."""
        kind, body = record
        self.pager.current_lsn = lsn
        if kind == redo_format.COMMIT:
            for table, items in redo_format.commit_tables(body):
                root = self.tables.get(table)
                if root is None:
                    raise JetError(
                        "JET_errLogCorrupted", f"{where}: commit to unknown table {table!r}"
                    )
                for key, value in items:
                    if value is None:
                        root = btree.delete(self.pager, root, key)[0]
                    else:
                        root = btree.put(self.pager, root, key, value)
                self._set_root(table, root)
            return
        table = redo_format.record_table(body)
        if kind == redo_format.CREATE_TABLE:
            if table not in self.tables:
                self._set_root(table, btree.create(self.pager))
        elif table in self.tables:  # DROP_TABLE
            for pgno in list(btree.walk_pages(self.pager, self.tables.pop(table))):
                self.pager.free_page(pgno)
                self.pager.cache.pop(pgno, None)
                self.pager.dirty.pop(pgno, None)
            self.changed_tables.add(table)

    def _set_root(self, table: str, root: int) -> None:
        if self.tables.get(table) != root:
            self.tables[table] = root
            self.changed_tables.add(table)

    # -- checkpoints -----------------------------------------------------------
    @property
    def changed_since_checkpoint(self) -> bool:
        """Anything a checkpoint would write: dirty pages or a table's new root."""
        return bool(self.pager.dirty or self.changed_tables)

    def new_write_buffer(self) -> bytearray:
        """A buffer for ``write_checkpoint_pages`` (one per writing thread)."""
        return self.pager.new_write_buffer()

    def evict(self) -> None:
        """Bring the cache back under its budget (Pager.evict)."""
        self.pager.evict()

    def checkpoint_due(self) -> bool:
        if len(self.pager.dirty) > self.pager.cache_pages // 2:
            return True
        return bool(
            self.log
            and self.log.current_generation - lsn_gen(self.meta.checkpoint_lsn)
            >= CHECKPOINT_LOG_DISTANCE
        )

    def checkpoint(self, *, state: int | None = None) -> Meta:
        """Make the current trees the durable checkpoint; returns its meta.

        Storage must own its log for this: with a shipped log, only the owner knows when
        the log covers the sealed trees (it takes the steps - seal_checkpoint,
        write_checkpoint_pages, write_meta, finish_checkpoint - itself)."""
        if self.failure is not None:
            raise JetError("JET_errInstanceUnavailable", str(self.failure))
        if self.shipping:
            raise JetError("JET_errInternalError", "a shipped log's checkpoints are its owner's")
        try:
            if self.log:
                self.log.sync()  # write-ahead: the log covers everything in the pages
                self._publish_durable()
            images, meta = self.seal_checkpoint(state, self.log.end_lsn if self.log else 0)
            self.write_checkpoint_pages(images)
            self.write_meta(meta)
            self.finish_checkpoint(meta)
            if self.circular and self.log:
                self.log.truncate_below(self.log_floor())
        except BaseException as exc:
            self.fail(exc)
            raise
        return meta

    def seal_checkpoint(
        self, state: int | None, checkpoint_lsn: int
    ) -> tuple[list[tuple[int, Node | PageImage]], Meta]:
        """Snapshot what the next checkpoint holds; later changes copy-on-write around it.

        ``checkpoint_lsn`` is where redo starts: the end of the last record applied.
        A caller that learns it later (the buffer manager, whose log writer reports
        LSNs asynchronously) sets it in the meta before ``write_meta``.
        """
        catalog_root = self.meta.catalog_root
        for table in sorted(self.changed_tables):
            if table in self.tables:
                catalog_root = btree.put(
                    self.pager,
                    catalog_root,
                    table.encode(),
                    self.tables[table].to_bytes(4, "little"),
                )
            else:
                catalog_root = btree.delete(self.pager, catalog_root, table.encode())[0]
        self.changed_tables.clear()
        seq = self.meta.seq + 1
        images, freelist_root, free_count = self.pager.seal(seq)
        flags = self.meta.flags | (FLAG_LOGGING if self.logging else 0)
        if self.circular:
            flags |= FLAG_CIRCULAR_EVER
        if self.restored:
            flags |= FLAG_RESTORED
        last_full, last_incremental = self.backup_history
        meta = self.meta.evolve(
            seq=seq,
            catalog_root=catalog_root,
            freelist_root=freelist_root,
            freelist_count=free_count,
            page_count=self.pager.page_count,
            checkpoint_lsn=checkpoint_lsn,
            state=self.meta.state if state is None else state,
            flags=flags,
            last_full=last_full,
            last_incremental=last_incremental,
        )
        return images, meta

    def write_checkpoint_pages(
        self, images: list[tuple[int, Node | PageImage]], buffer: bytearray | None = None
    ) -> None:
        """The pages of a sealed checkpoint, then fsync.  Touches no in-memory state but
        the sealed nodes, so the buffer manager may run it beside new commits (with its
        own ``buffer``)."""
        self.pager.write_pages(images, buffer)
        self.file.sync()

    def write_meta(self, meta: Meta) -> None:
        """Publish a checkpoint whose pages are durable: the meta slot, then fsync."""
        self.file.pwrite(meta.to_page(), meta.slot * meta.page_size)
        self.file.sync()

    def finish_checkpoint(self, meta: Meta) -> None:
        self.meta = self.durable_meta = meta
        if self.published is not None:
            # Before the pages it freed are released: the pin protocol (read_view.py).
            self.published.publish_checkpoint(meta.seq, meta.checkpoint_lsn)
        self.pager.finish(meta.seq)

    def _publish_durable(self) -> None:
        if self.published is not None:
            self.published.publish_durable(self.log.durable_lsn, self.log.appended)

    def log_floor(self) -> int:
        """Oldest generation recovery or a pinned checkpoint still needs."""
        needed = [lsn_gen(self.durable_meta.checkpoint_lsn)]
        needed += [lsn_gen(pin.meta.checkpoint_lsn) for pin in self.pins]
        return min(needed)

    def pin_checkpoint(self) -> PinnedCheckpoint:
        """Keep the durable checkpoint's pages untouched until ``unpin_checkpoint``."""
        self.check_usable()
        pin = PinnedCheckpoint(self.pager.pin(), self.durable_meta)
        self.pins.append(pin)
        return pin

    def unpin_checkpoint(self, seq: int) -> None:
        """Release the pin ``pin_checkpoint`` returned, by its checkpoint's seq."""
        for pin in self.pins:
            if pin.seq == seq:
                self.pins.remove(pin)
                self.pager.unpin(seq)
                return
        raise JetError("JET_errInvalidParameter", f"checkpoint {seq} is not pinned")

    def record_backup(self, incremental: bool, record: BackupRecord) -> None:
        """A backup completed: remember it (ESE's bkinfoFullPrev / bkinfoIncPrev)."""
        if incremental:
            self.backup_history = (self.backup_history[0], record)
        else:
            self.backup_history = (record, BackupRecord())

    def backup_info(self) -> dict:
        """The backup history an incremental continues (as the buffer manager sends it)."""
        full, incremental = self.backup_history
        return {
            "last_full": asdict(full) if full.present else None,
            "last_incremental": asdict(incremental) if incremental.present else None,
            "db_signature": self.meta.db_signature,
            "log_signature": self.meta.log_signature,
            # Why the history is empty when this open broke the chain (recovery.py):
            # {"generation": where the new log stream starts, "reason": ...} or None.
            "log_restart": self.log_restart,
        }

    def clear_backup_history(self) -> None:
        """After a restore: the next incremental needs a new full backup first."""
        self.backup_history = (BackupRecord(), BackupRecord())
        self.restored = True

    # -- close -----------------------------------------------------------------
    def close(self) -> None:
        """Clean shutdown: final checkpoint in the clean state, log synced, files closed."""
        if self.closed:
            return
        try:
            if self.failure is None:
                self.checkpoint(state=DB_CLEAN)
        finally:
            self.closed = True
            self.close_files()

    def close_files(self) -> None:
        if getattr(self, "log", None) is not None:
            self.log.close()
        for shared in (getattr(self, "published", None), getattr(self, "readers", None)):
            if shared is not None:
                shared.close()
        if getattr(self, "file", None) is not None:
            self.file.close()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- introspection -------------------------------------------------------
    def stats(self) -> dict:
        meta = self.durable_meta
        return {
            "path": self.path,
            "page_size": self.page_size,
            "page_count": self.pager.page_count,
            "free_pages": len(self.pager.free_now) + len(self.pager.pending),
            "cache_pages": len(self.pager.cache),
            "dirty_pages": len(self.pager.dirty),
            "checkpoint_seq": meta.seq,
            "checkpoint_lsn": meta.checkpoint_lsn,
            "log_end_lsn": self.log.end_lsn if self.log else 0,
            "current_generation": self.log.current_generation if self.log else 0,
            "oldest_generation": self.log.oldest_generation if self.log else 0,
            "tables": len(self.tables),
            "commits": self.commit_seq,
            "replayed": self.replayed,
            **(self.readers.status() if self.readers else {}),
        }


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise JetError(
            "JET_errInvalidParameter", f"{name}={value!r} must be an int in [{low}, {high}]"
        )
    return value

"""The client side of the engine: sessions and transactions.

A ``Session`` may be used from one thread at a time; a second thread entering it
gets JET_errSessionSharingViolation at once.

Reads go to the process's read view (read_view.py) and send no message: a
transaction reads the snapshot taken when it began (``snapshot_lsn``), a read
outside one the newest snapshot when it starts.  Over that snapshot lie, newest
first, the transaction's own writes and the session's lazy commits that the log
does not hold yet - a session sees its own commits at once.  An instance with
no log (``logging=False``) has no read view: its reads go to the buffer manager.

Writes go to the buffer manager: a transaction collects them client-side
(``WriteSet``) and sends them in one commit message with its snapshot, against
which the buffer manager checks write conflicts.  Since a frame larger than
MAXMSGSIZE is dropped with the connection, unanswered, every request is measured
before it is sent (``codec.encode_request``), and a write set may grow only as
far as one commit message can carry it (MAX_WRITE_SET): the put past that fails
with -1069 at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jetstore.protocol import codec
from jetstore.protocol.channel import Channel
from jetstore.protocol.schema import Request, to_buffer_manager

from .errors import InvalidArgumentTypeError, JetError
from .read_view import ReadView, Snapshot
from .writeset import WriteSet, check_key, check_range, check_table_name, check_value

MAX_WRITE_SET = codec.MAX_FRAME - codec.FRAME_HEADROOM
# How long closing a session waits to end its transaction at the buffer manager (an
# instance without a log); past it the buffer manager expires the transaction itself.
END_ON_CLOSE_TIMEOUT_S = 5.0


class _OneThreadAtATime:
    """A session's guard: re-entrant for the thread inside, -1910 at once for any other."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            raise JetError(
                "JET_errSessionSharingViolation",
                "this session is in use by another thread; give each thread its own session",
            )

    def __exit__(self, *exc_info) -> None:
        self._lock.release()


class Session:
    """JetBeginSession: tables, reads, writes and transactions; one thread at a time.

    Made by ``Instance.session()`` or ``Client.session()``.  A ``put`` or ``delete``
    outside a transaction commits at once; ``begin``/``commit``/``rollback`` (or
    ``transaction()``) group writes, which then read at one snapshot.  Use it as a
    context manager, ``with inst.session() as s:``, to close it at the end: a
    transaction still open there is rolled back.
    """

    def __init__(self, owner) -> None:
        self._owner = owner
        self._closed = False
        self._channel: Channel | None = None
        self._entered = _OneThreadAtATime()
        self._writes: WriteSet | None = None
        self._snapshot: Snapshot | None = None  # the open transaction's (read views)
        self._txn: int | None = None  # without a read view: the buffer manager's
        self._begin_seq: int | None = None
        # Lazy commits of this session that the log may not hold yet: (record, writes).
        self._lazy: list[tuple[int, dict]] = []

    @property
    def snapshot_lsn(self) -> int:
        """The open transaction's snapshot: it reads every commit whose LSN (what its
        ``commit()`` returned) is at or below this, and none after (0 without a log)."""
        if self._writes is None:
            raise JetError("JET_errNotInTransaction", "no transaction is open")
        return self._snapshot.lsn if self._snapshot is not None else 0

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------
    def _check_open(self) -> None:
        """Refuse calls on an unusable instance, then on this session once closed."""
        self._owner._check_usable()
        if self._closed:
            raise JetError("JET_errInvalidSesid", "this session is closed (JetEndSession)")

    def _call(self, request: Request) -> Any:
        self._check_open()
        if self._channel is None:
            self._channel = self._owner._channel()
        return self._channel.call(request)

    def _view(self) -> ReadView | None:
        """The process's read view, the instance checked usable; None without a log."""
        view = self._owner._read_view()
        if view is not None:
            self._check_open()
        return view

    # -- tables ----------------------------------------------------------------
    def create_table(self, table: str) -> None:
        """Create the table named ``table`` (JetCreateTable); -1303 if it exists."""
        with self._entered:
            self._call(to_buffer_manager.create_table(table=check_table_name(table)))

    def drop_table(self, table: str) -> None:
        """Delete the table named ``table`` and every entry in it (JetDeleteTable)."""
        with self._entered:
            self._call(to_buffer_manager.drop_table(table=check_table_name(table)))

    def list_tables(self) -> list[str]:
        """The names of the tables, sorted, as the open transaction (if any) sees them."""
        with self._entered:
            view = self._view()
            if view is None:
                return self._call(to_buffer_manager.list_tables())
            return (self._snapshot or view.snapshot()).list_tables()

    # -- reads -----------------------------------------------------------------
    def get(self, table: str, key: bytes) -> bytes | None:
        """The value stored under ``key`` in ``table``, or None if there is none.

        Inside a transaction: at its snapshot, with its own writes; outside one: the
        newest commit, this session's own included.  ``key`` is bytes-like (a ``str``
        raises InvalidArgumentTypeError, -1003); -1305 if the table does not exist."""
        with self._entered:
            table, key = check_table_name(table), check_key(key)
            if self._writes is not None:
                written, value = self._writes.lookup(table, key)
                if written:
                    return value
            view = self._view()
            if view is None:
                txn = self._txn if self._writes is not None else None
                return self._call(to_buffer_manager.get(table=table, key=key, txn=txn))
            snapshot = self._snapshot or view.snapshot()
            if self._lazy:
                written, value = self._unlogged_writes(snapshot).lookup(table, key)
                if written:
                    return value
            try:
                return snapshot.get(table, key)
            except JetError as exc:
                if self._snapshot is not None or exc.err != -1069:
                    raise
                # Another thread of this process moved the view on mid-read: a read
                # outside a transaction simply takes the newer snapshot.
                return view.snapshot().get(table, key)

    def scan(
        self, table: str, start: bytes | None = None, end: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """The (key, value) entries of ``table`` with start <= key < end (None: no bound),
        in key order, at one snapshot however long the scan runs; inside a transaction,
        its snapshot with its own writes.  The bounds are bytes-like, as keys are."""
        table = check_table_name(table)
        start, end = check_range(start, end)
        if self._owner._read_view() is None:
            committed = self._scan_chunks(table, start, end)
        else:
            committed = self._scan_view(table, start, end)
        if self._writes is None:
            return committed
        return self._writes.overlay_scan(table, committed, start, end)

    def _scan_view(self, table: str, start: bytes | None, end: bytes | None):
        """A scan outside a transaction holds its own snapshot from its first item on."""
        with self._entered:
            snapshot = self._snapshot or self._view().snapshot(hold=True)
        try:
            rows = snapshot.scan(table, start, end)
            if self._lazy:
                rows = self._unlogged_writes(snapshot).overlay_scan(table, rows, start, end)
            yield from rows
        finally:
            if snapshot is not self._snapshot:
                snapshot.close()

    def _unlogged_writes(self, snapshot: Snapshot) -> WriteSet:
        """This session's lazy commits that ``snapshot`` does not hold, oldest first."""
        durable = self._owner._read_view().published.durable().records
        oldest_needed = min(durable, self._snapshot.records if self._snapshot else durable)
        self._lazy = [(record, writes) for record, writes in self._lazy if record >= oldest_needed]
        unlogged = WriteSet()
        for record, writes in self._lazy:
            if record < snapshot.records:
                continue
            for table, kv in writes.items():
                for key, value in kv.items():
                    if value is None:
                        unlogged.delete(table, key)
                    else:
                        unlogged.put(table, key, value)
        return unlogged

    def _scan_chunks(self, table: str, start: bytes | None, end: bytes | None):
        """Without a log: chunks from the buffer manager, all at one registered snapshot
        (the transaction's, or one of the scan's own)."""
        own = self._writes is None
        with self._entered:
            txn = self._call(to_buffer_manager.begin())["txn"] if own else self._txn
        try:
            request = to_buffer_manager.scan(table=table, start=start, end=end, txn=txn)
            while True:
                with self._entered:
                    chunk = self._call(request)
                yield from (tuple(item) for item in chunk["items"])
                if not chunk["more"] or not chunk["items"]:
                    return
                after = chunk["items"][-1][0]
                request = to_buffer_manager.scan(table=table, after=after, end=end, txn=txn)
        finally:
            if own:
                with self._entered:
                    self._call(to_buffer_manager.end(txn=txn))

    # -- writes ----------------------------------------------------------------
    def put(self, table: str, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key`` in ``table``, replacing any value there.

        Outside a transaction the write commits at once; inside one it is held until
        ``commit``.  ``key`` (at most 1000 bytes) and ``value`` (at most 16 MiB) are
        bytes-like: a ``str`` raises InvalidArgumentTypeError (-1003, also a
        ``TypeError``), an oversized one InvalidArgumentError (-346, -1026)."""
        with self._entered:
            table, key, value = check_table_name(table), check_key(key), check_value(value)
            if self._writes is not None:
                self._writes.put(table, key, value)
            else:
                self._call(to_buffer_manager.commit(writes={table: {key: value}}))

    def delete(self, table: str, key: bytes) -> None:
        """Remove ``key`` from ``table`` (nothing happens if it is absent); committed at
        once outside a transaction, held until ``commit`` inside one."""
        with self._entered:
            table, key = check_table_name(table), check_key(key)
            if self._writes is not None:
                self._writes.delete(table, key)
            else:
                self._call(to_buffer_manager.commit(writes={table: {key: None}}))

    # -- transactions ------------------------------------------------------------
    def begin(self) -> None:
        """JetBeginTransaction: reads from now on see one snapshot, writes are held until
        ``commit``; -1103 if a transaction is already open (they do not nest)."""
        with self._entered:
            if self._writes is not None:
                raise JetError("JET_errTransTooDeep", "a transaction is already open")
            view = self._view()
            if view is None:
                started = self._call(to_buffer_manager.begin())
                self._txn, self._begin_seq = started["txn"], started["begin_seq"]
            else:
                self._snapshot = view.snapshot(hold=True)
            self._writes = WriteSet(limit=MAX_WRITE_SET)

    def commit(self, lazy: bool = False) -> int:
        """JetCommitTransaction: commit the open transaction; returns the log position
        (LSN) after its record.  ``lazy``: return before the record is on disk (a crash
        may lose it; this session sees it at once).  A WriteConflictError (-1102) if a
        key it wrote was committed by another since its snapshot: the transaction is
        over, retry it; -1054 if none is open."""
        if type(lazy) is not bool:  # "yes" or 0 would commit, durably or not, by accident
            raise InvalidArgumentTypeError("JET_errInvalidGrbit", "lazy must be a bool")
        with self._entered:
            snapshot = self._snapshot
            writes = self._end_transaction()
            if snapshot is None:
                request = to_buffer_manager.commit(
                    writes=writes.tables, begin_seq=self._begin_seq, txn=self._txn, lazy=lazy
                )
                return self._call(request)["lsn"]
            own = [record for record, _writes in self._lazy if record >= snapshot.records]
            request = to_buffer_manager.commit(
                writes=writes.tables,
                snapshot_lsn=snapshot.lsn,
                own_records=own or None,
                lazy=lazy,
            )
            written = self._call(request)
            if lazy and written["record"] >= 0:
                self._lazy.append((written["record"], writes.tables))
            return written["lsn"]

    def rollback(self) -> None:
        """JetRollback: drop the open transaction's writes and let its snapshot go;
        -1054 if none is open."""
        with self._entered:
            had_snapshot = self._snapshot is not None
            self._end_transaction()
            if not had_snapshot:
                self._call(to_buffer_manager.end(txn=self._txn))

    def _end_transaction(self) -> WriteSet:
        if self._writes is None:
            raise JetError("JET_errNotInTransaction", "no transaction is open")
        writes, self._writes = self._writes, None
        if self._snapshot is not None:
            self._snapshot.close()
            self._snapshot = None
        return writes

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """``with s.transaction() as tx:`` begins a transaction, commits it at the end of
        the block and rolls it back if the block raises; ``tx`` is this session."""
        self.begin()
        try:
            yield self
        except BaseException:
            if self._writes is not None:
                self.rollback()
            raise
        if self._writes is not None:
            self.commit()

    def close(self) -> None:
        """JetEndSession: roll back the open transaction, if any (its snapshot let go),
        and close the session's connection; later calls on it fail with -1104.  Closing
        a closed session does nothing."""
        if self._closed:
            return
        self._closed = True
        registered = self._txn if self._writes is not None and self._snapshot is None else None
        if self._writes is not None:
            self._end_transaction()
        if self._channel is None:
            return
        try:
            if registered is not None:
                request = to_buffer_manager.end(txn=registered)
                self._channel.call(request, timeout=END_ON_CLOSE_TIMEOUT_S)
        except JetError:
            pass  # the buffer manager is going or gone, and its transactions with it
        finally:
            self._channel.close()
            self._channel = None

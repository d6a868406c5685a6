"""The client side of the engine: sessions and transactions over protocol Channels.

A ``Session`` owns its channel and may be used from one thread at a time; a
second thread entering it gets JET_errSessionSharingViolation at once.
Transactions collect their writes client-side (``WriteSet``) and send them in
one commit message; reads see the transaction's own writes overlaid.  Since a
frame larger than MAXMSGSIZE is dropped with the connection, unanswered,
every request is measured before it is sent (``codec.encode_request``), and a
write set may grow only as far as one commit message can carry it
(MAX_WRITE_SET): the put past that fails with -1069 at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jetstore.protocol import codec
from jetstore.protocol.channel import Channel
from jetstore.protocol.schema import Request, to_buffer_manager

from .errors import JetError
from .writeset import WriteSet, check_key, check_range, check_table_name, check_value

MAX_WRITE_SET = codec.MAX_FRAME - codec.FRAME_HEADROOM


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
    """JetBeginSession: tables, reads, writes and transactions; one thread at a time."""

    def __init__(self, owner) -> None:
        self._owner = owner
        self._channel: Channel | None = None
        self._entered = _OneThreadAtATime()
        self._writes: WriteSet | None = None
        self._txn: int | None = None
        self._begin_seq: int | None = None

    # -- plumbing --------------------------------------------------------------
    def _call(self, request: Request) -> Any:
        self._owner._check_usable()
        if self._channel is None:
            self._channel = self._owner._channel()
        return self._channel.call(request)

    # -- tables ----------------------------------------------------------------
    def create_table(self, table: str) -> None:
        with self._entered:
            self._call(to_buffer_manager.create_table(table=check_table_name(table)))

    def drop_table(self, table: str) -> None:
        with self._entered:
            self._call(to_buffer_manager.drop_table(table=check_table_name(table)))

    def list_tables(self) -> list[str]:
        with self._entered:
            return self._call(to_buffer_manager.list_tables())

    # -- reads -----------------------------------------------------------------
    def get(self, table: str, key: bytes) -> bytes | None:
        with self._entered:
            table, key = check_table_name(table), check_key(key)
            if self._writes is not None:
                written, value = self._writes.lookup(table, key)
                if written:
                    return value
            return self._call(to_buffer_manager.get(table=table, key=key))

    def scan(
        self, table: str, start: bytes | None = None, end: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Entries with start <= key < end, fetched from the buffer manager in chunks."""
        table = check_table_name(table)
        start, end = check_range(start, end)
        committed = self._scan_chunks(table, start, end)
        if self._writes is None:
            return committed
        return self._writes.overlay_scan(table, committed, start, end)

    def _scan_chunks(self, table: str, start: bytes | None, end: bytes | None):
        request = to_buffer_manager.scan(table=table, start=start, end=end)
        while True:
            with self._entered:
                chunk = self._call(request)
            yield from (tuple(item) for item in chunk["items"])
            if not chunk["more"] or not chunk["items"]:
                return
            request = to_buffer_manager.scan(table=table, after=chunk["items"][-1][0], end=end)

    # -- writes ----------------------------------------------------------------
    def put(self, table: str, key: bytes, value: bytes) -> None:
        with self._entered:
            table, key, value = check_table_name(table), check_key(key), check_value(value)
            if self._writes is not None:
                self._writes.put(table, key, value)
            else:
                self._call(to_buffer_manager.commit(writes={table: {key: value}}))

    def delete(self, table: str, key: bytes) -> None:
        with self._entered:
            table, key = check_table_name(table), check_key(key)
            if self._writes is not None:
                self._writes.delete(table, key)
            else:
                self._call(to_buffer_manager.commit(writes={table: {key: None}}))

    # -- transactions ------------------------------------------------------------
    def begin(self) -> None:
        with self._entered:
            if self._writes is not None:
                raise JetError("JET_errTransTooDeep", "a transaction is already open")
            started = self._call(to_buffer_manager.begin())
            self._txn, self._begin_seq = started["txn"], started["begin_seq"]
            self._writes = WriteSet(limit=MAX_WRITE_SET)

    def commit(self, lazy: bool = False) -> int:
        """Commit the open transaction; returns the log position after its record."""
        with self._entered:
            writes = self._end_transaction()
            request = to_buffer_manager.commit(
                writes=writes.tables, begin_seq=self._begin_seq, txn=self._txn, lazy=bool(lazy)
            )
            return self._call(request)["lsn"]

    def rollback(self) -> None:
        with self._entered:
            self._end_transaction()
            self._call(to_buffer_manager.end(txn=self._txn))

    def _end_transaction(self) -> WriteSet:
        if self._writes is None:
            raise JetError("JET_errNotInTransaction", "no transaction is open")
        writes, self._writes = self._writes, None
        return writes

    @contextmanager
    def transaction(self):
        """``with s.transaction() as tx``: commit on exit, rollback on an exception."""
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
        if self._channel is not None:
            self._channel.close()
            self._channel = None

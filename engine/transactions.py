"""Transactions: the registry of open ones and the conflicts between them.

A transaction records the ``commit_seq`` it began at; its commit fails with
JET_errWriteConflict if another transaction committed one of its keys since
(first committer wins).  The registry serves both the in-process ``Transaction``
and the buffer manager's sessions, which also carry a deadline on the caller's
clock: a client that went away is ended by ``expire``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import JetError
from .writeset import WriteSet, check_key, check_range, check_table_name, check_value

if TYPE_CHECKING:
    from .storage import Storage


class Transactions:
    def __init__(self) -> None:
        self.commit_seq = 0  # commits so far
        self.active: dict[int, int] = {}  # txn -> the commit_seq it began at
        self.deadlines: dict[int, float] = {}
        self.last_write: dict[tuple[str, bytes], int] = {}  # (table, key) -> its commit_seq
        self.next_id = 1

    def begin(self, deadline: float | None = None) -> tuple[int, int]:
        """(a new transaction's id, the commit_seq it begins at)."""
        txn = self.next_id
        self.next_id += 1
        self.active[txn] = self.commit_seq
        if deadline is not None:
            self.deadlines[txn] = deadline
        return txn, self.commit_seq

    def end(self, txn: int) -> None:
        self.active.pop(txn, None)
        self.deadlines.pop(txn, None)

    def expire(self, now: float) -> list[int]:
        expired = [txn for txn, deadline in self.deadlines.items() if deadline < now]
        for txn in expired:
            self.end(txn)
        return expired

    def check_conflicts(self, writes: dict[str, dict], begin_seq: int | None) -> None:
        """JET_errWriteConflict if a key was committed after ``begin_seq`` (None: the
        write set was built and committed in one step, nothing to conflict with)."""
        if begin_seq is None:
            return
        for table, kv in writes.items():
            for key in kv:
                if self.last_write.get((table, key), 0) > begin_seq:
                    raise JetError(
                        "JET_errWriteConflict",
                        f"table {table!r} key {key[:32]!r} was committed by another "
                        "transaction after this one began",
                    )

    def committed(self, writes: dict[str, dict]) -> None:
        self.commit_seq += 1
        if self.active:
            for table, kv in writes.items():
                for key in kv:
                    self.last_write[(table, key)] = self.commit_seq
        else:
            self.last_write.clear()  # no open transaction can conflict with the past


class Transaction:
    """An open transaction of the in-process engine: reads see its own writes."""

    def __init__(self, storage: Storage, txn_id: int, begin_seq: int) -> None:
        self.storage = storage
        self.txn_id = txn_id
        self.begin_seq = begin_seq
        self.writes = WriteSet()
        self.open = True

    def _live(self) -> None:
        if not self.open:
            raise JetError("JET_errNotInTransaction", "the transaction has ended")

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self._live()
        self.storage.table_root(check_table_name(table))
        self.writes.put(table, check_key(key), check_value(value))

    def delete(self, table: str, key: bytes) -> None:
        self._live()
        self.storage.table_root(check_table_name(table))
        self.writes.delete(table, check_key(key))

    def get(self, table: str, key: bytes) -> bytes | None:
        self._live()
        written, value = self.writes.lookup(check_table_name(table), check_key(key))
        return value if written else self.storage.get(table, key)

    def scan(self, table: str, start: bytes | None = None, end: bytes | None = None):
        self._live()
        start, end = check_range(start, end)
        committed = self.storage.scan(table, start, end)
        return self.writes.overlay_scan(table, committed, start, end)

    def commit(self, lazy: bool = False) -> int:
        """Commit; the LSN of its redo record (0 without a log or without writes)."""
        self._live()
        try:
            ticket = self.storage.commit(self.writes.tables, self.begin_seq, lazy=lazy)
            return ticket.lsn if ticket else 0
        finally:
            self._end()

    def rollback(self) -> None:
        self._live()
        self._end()

    def _end(self) -> None:
        self.open = False
        self.storage.end_transaction(self.txn_id)

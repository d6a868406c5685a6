"""Transactions: the conflicts between them (first committer wins, DESIGN.md 3).

A transaction's commit fails with JET_errWriteConflict if another transaction
committed one of its keys after the snapshot it read.  The snapshot is named in
one of two ways:

- ``snapshot_lsn`` (a logged instance, read views): the commits whose redo record
  ends at or before it.  A record's end LSN is known once it is durable
  (``durable``); a key last written by a record not yet known durable makes
  ``check_conflicts`` return that record, and the caller asks again once it is.
  What is remembered is bounded (``max_tracked_keys``): a snapshot older than what
  was forgotten can no longer be checked and fails with -1069.
- ``begin_seq`` (no log: the buffer manager serves reads): the ``commit_seq`` it
  began at, from a registry of open transactions, which also carry a deadline on
  the caller's clock - a client that went away is ended by ``expire``.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from .errors import JetError
from .version_store import VersionStore
from .writeset import WriteSet, check_key, check_range, check_table_name, check_value

if TYPE_CHECKING:
    from .storage import Storage


DEFAULT_MAX_TRACKED_KEYS = 200_000


class PendingConflict(Exception):
    """The conflict check needs the end LSN of ``record``, which is not durable yet."""

    def __init__(self, record: int) -> None:
        super().__init__(f"record {record} is not durable yet")
        self.record = record


class Transactions:
    def __init__(self, max_tracked_keys: int = DEFAULT_MAX_TRACKED_KEYS) -> None:
        self.commit_seq = 0  # commits so far
        self.active: dict[int, int] = {}  # txn -> the commit_seq it began at
        self.deadlines: dict[int, float] = {}
        self.last_write: dict[tuple[str, bytes], int] = {}  # (table, key) -> its commit_seq
        self.next_id = 1
        # Snapshots by LSN: (table, key) -> the record that last wrote it; record -> end LSN.
        self.written_by: dict[tuple[str, bytes], int] = {}
        self.ends: dict[int, int | None] = {}  # of the records in history; None: not durable
        # (record, its keys), oldest first; tuples of atomic values, which the garbage
        # collector stops tracking: a long history costs it nothing
        self.history: deque[tuple[int, tuple]] = deque()
        self.max_tracked_keys = max_tracked_keys
        self.forgotten_lsn = 0  # conflicts with records ending at or before it are forgotten
        self.versions = VersionStore()  # the registered transactions' snapshots

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
        self.versions.forget_before(min(self.active.values(), default=None))

    def expire(self, now: float) -> list[int]:
        expired = [txn for txn, deadline in self.deadlines.items() if deadline < now]
        for txn in expired:
            self.end(txn)
        return expired

    def check_conflicts(
        self,
        writes: dict[str, dict],
        begin_seq: int | None = None,
        snapshot_lsn: int | None = None,
        own_records: frozenset[int] = frozenset(),
    ) -> None:
        """JET_errWriteConflict if a key was committed after the snapshot (neither given:
        the write set was built and committed in one step, nothing to conflict with).

        PendingConflict names a record that last wrote one of the keys and is not yet
        known durable: ask again once it is.  ``own_records``: the caller's own commits
        that its reads already saw (its lazy ones, not yet durable) - no conflict with
        those.
        """
        if snapshot_lsn is not None:
            if snapshot_lsn < self.forgotten_lsn:
                raise JetError(
                    "JET_errVersionStoreOutOfMemory",
                    f"the snapshot at {snapshot_lsn:#x} is older than the write conflicts "
                    f"remembered (max_tracked_keys={self.max_tracked_keys}, back to "
                    f"{self.forgotten_lsn:#x})",
                )
            for table, kv in writes.items():
                for key in kv:
                    record = self.written_by.get((table, key))
                    if record is None or record in own_records:
                        continue
                    end = self.ends.get(record)
                    if end is None:
                        raise PendingConflict(record)
                    if end > snapshot_lsn:
                        raise _conflict(table, key)
        elif begin_seq is not None:
            for table, kv in writes.items():
                for key in kv:
                    if self.last_write.get((table, key), 0) > begin_seq:
                        raise _conflict(table, key)

    def committed(self, writes: dict[str, dict], record: int | None, before=None) -> None:
        """A write set is applied; ``record``: the number of its redo record, if logged;
        ``before``: the values its keys had, for the registered transactions' snapshots."""
        self.commit_seq += 1
        if before is not None:
            self.versions.record(self.commit_seq, before)
        if self.active:
            for table, kv in writes.items():
                for key in kv:
                    self.last_write[(table, key)] = self.commit_seq
        else:
            self.last_write.clear()  # no open transaction can conflict with the past
        if record is not None:
            keys = tuple((table, key) for table, kv in writes.items() for key in kv)
            for key in keys:
                self.written_by[key] = record
            self.history.append((record, keys))
            self.ends[record] = None
            self._forget_beyond_bound()

    def durable(self, record: int, end_lsn: int) -> None:
        """The record is durable and ends at ``end_lsn`` (what its commit returns)."""
        if record in self.ends:
            self.ends[record] = end_lsn

    def _forget_beyond_bound(self) -> None:
        while len(self.history) > 1 and max(len(self.written_by), len(self.history)) > (
            self.max_tracked_keys
        ):
            record, keys = self.history[0]
            end = self.ends.get(record)
            if end is None:
                return  # not durable yet: its end is unknown, so it cannot be forgotten
            self.history.popleft()
            for key in keys:
                if self.written_by.get(key) == record:
                    del self.written_by[key]
            del self.ends[record]
            self.forgotten_lsn = max(self.forgotten_lsn, end)


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
        return value if written else self.storage.get(table, key, self.begin_seq)

    def scan(self, table: str, start: bytes | None = None, end: bytes | None = None):
        self._live()
        start, end = check_range(start, end)
        committed = self.storage.scan(table, start, end, self.begin_seq)
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


def _conflict(table: str, key: bytes) -> JetError:
    return JetError(
        "JET_errWriteConflict",
        f"table {table!r} key {key[:32]!r} was committed by another transaction after "
        "this one's snapshot",
    )

"""A transaction's pending writes and the argument checks every API entry shares.

Used by the in-process engine and by the client library alike: a transaction
collects its puts and deletes here, reads see committed data overlaid with
them (read-your-writes), and commit ships the final write set in one piece.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator

from .errors import InvalidArgumentTypeError, JetError

MAX_KEY_SIZE = 1000
MAX_VALUE_SIZE = 16 << 20
MAX_TABLE_NAME = 255
# Upper bounds of the msgpack bytes around one entry and one table, in the commit
# request ({table: {key: value}}) and in its redo record ([[table, [[key, value]]]])
# alike: a key's and a value's headers (at most 5 bytes each) and the pair's array.
ENTRY_OVERHEAD = 11
TABLE_OVERHEAD = 16

_DELETED = None


def check_table_name(name: object) -> str:
    """``name`` if it is a valid table name; InvalidArgumentTypeError (-1003) if it is
    no ``str``, InvalidArgumentError (-1002) if it is empty, too long or holds a NUL."""
    if not isinstance(name, str):
        raise InvalidArgumentTypeError(
            "JET_errInvalidParameter", f"table name must be str, not {type(name).__name__}"
        )
    if not name:
        raise JetError("JET_errInvalidName", "table name is empty")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_TABLE_NAME or "\0" in name:
        raise JetError("JET_errInvalidName", f"table name {name[:40]!r}... is invalid")
    return name


def check_key(key: object) -> bytes:
    """``key`` as bytes; InvalidArgumentTypeError (-1003) if it is no bytes-like object
    (a ``str`` included), InvalidArgumentError (-346) if it exceeds MAX_KEY_SIZE."""
    if type(key) is bytes and len(key) <= MAX_KEY_SIZE:
        return key  # the common case, kept cheap for bulk commits
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise InvalidArgumentTypeError(
            "JET_errInvalidParameter", f"key must be bytes, not {type(key).__name__}"
        )
    key = bytes(key)
    if len(key) > MAX_KEY_SIZE:
        raise JetError(
            "JET_errKeyTruncated", f"key of {len(key)} bytes exceeds the {MAX_KEY_SIZE}-byte limit"
        )
    return key


def check_value(value: object) -> bytes:
    """``value`` as bytes; InvalidArgumentTypeError (-1003) if it is no bytes-like
    object, InvalidArgumentError (-1026) if it exceeds MAX_VALUE_SIZE."""
    if type(value) is bytes and len(value) <= MAX_VALUE_SIZE:
        return value
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise InvalidArgumentTypeError(
            "JET_errInvalidParameter", f"value must be bytes, not {type(value).__name__}"
        )
    value = bytes(value)
    if len(value) > MAX_VALUE_SIZE:
        raise JetError(
            "JET_errRecordTooBig",
            f"value of {len(value)} bytes exceeds the {MAX_VALUE_SIZE}-byte limit",
        )
    return value


def check_range(start: object, end: object) -> tuple[bytes | None, bytes | None]:
    """A scan's bounds, each None (open) or a key as ``check_key`` takes it."""
    return (None if start is None else check_key(start), None if end is None else check_key(end))


def entry_size(key: bytes, value: bytes | None) -> int:
    """An upper bound of one write's encoded size (see ENTRY_OVERHEAD)."""
    return len(key) + (0 if value is None else len(value)) + ENTRY_OVERHEAD


def write_set_size(tables: dict) -> int:
    """An upper bound of an untrusted write set's encoded size, at least ``WriteSet.size``;
    a value of the wrong type counts as empty, for ``Storage.commit`` to reject."""
    return sum(
        TABLE_OVERHEAD
        + MAX_TABLE_NAME
        + sum(entry_size(key, value if type(value) is bytes else None) for key, value in kv.items())
        for kv in tables.values()
    )


class WriteSet:
    """Pending puts (bytes) and deletes (None) per table, last write wins.

    With a ``limit``, ``size`` bounds the encoded write set from above, and a
    write that would take it past the limit fails with -1069 before it is
    added: the transaction keeps its earlier writes, can still be committed or
    rolled back, and no commit is ever bigger than the message that carries it.
    """

    def __init__(self, limit: int | None = None) -> None:
        self.tables: dict[str, dict[bytes, bytes | None]] = {}
        self.limit = limit
        self.size = 0

    def __bool__(self) -> bool:
        return any(self.tables.values())

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self._write(table, key, value)

    def delete(self, table: str, key: bytes) -> None:
        self._write(table, key, _DELETED)

    def _write(self, table: str, key: bytes, value: bytes | None) -> None:
        pending = self.tables.get(table)
        size = self.size + entry_size(key, value)
        if pending is None:
            size += TABLE_OVERHEAD + len(table.encode("utf-8", "surrogatepass"))
        elif key in pending:
            size -= entry_size(key, pending[key])
        if self.limit is not None and size > self.limit:
            raise JetError(
                "JET_errVersionStoreOutOfMemory",
                f"the transaction's write set would be {size} bytes, more than the"
                f" {self.limit} bytes one commit can carry; split it into smaller transactions",
            )
        self.size = size
        if pending is None:
            pending = self.tables[table] = {}
        pending[key] = value

    def lookup(self, table: str, key: bytes) -> tuple[bool, bytes | None]:
        """(whether this transaction wrote the key, the value it wrote or None)."""
        pending = self.tables.get(table)
        if pending is None or key not in pending:
            return False, None
        return True, pending[key]

    def overlay_scan(
        self,
        table: str,
        committed: Iterable[tuple[bytes, bytes]],
        start: bytes | None,
        end: bytes | None,
    ) -> Iterator[tuple[bytes, bytes]]:
        """Merge a committed scan with this transaction's writes in the same range."""
        pending = self.tables.get(table)
        if not pending:
            yield from committed
            return
        own = sorted(
            (k, v)
            for k, v in pending.items()
            if (start is None or k >= start) and (end is None or k < end)
        )
        # A committed entry this transaction wrote is superseded by its own entry.
        committed_rest = ((k, v) for k, v in committed if k not in pending)
        for key, value in heapq.merge(committed_rest, own, key=lambda entry: entry[0]):
            if value is not _DELETED:
                yield key, value


def overlay_changes(
    base: Iterable[tuple[bytes, bytes]],
    changed: list[bytes],
    change_of: Callable[[bytes], tuple[int, bytes | None] | None],
) -> Iterator[tuple[bytes, bytes]]:
    """A scan of ``base`` with later changes laid over it, in key order.

    ``changed``: the sorted keys that may have changed in the scan's range;
    ``change_of(key)``: (anything, its value or None for deleted) if it changed in
    the view being read, else None - the base's entry stands (a read view's overlay,
    the version store).
    """
    index = 0
    for key, value in base:
        while index < len(changed) and changed[index] < key:
            yield from _changed_entry(changed[index], change_of)
            index += 1
        if index < len(changed) and changed[index] == key:
            index += 1
            change = change_of(key)
            if change is not None:
                if change[1] is not None:
                    yield key, change[1]
                continue
        yield key, value
    for key in changed[index:]:
        yield from _changed_entry(key, change_of)


def _changed_entry(key: bytes, change_of) -> Iterator[tuple[bytes, bytes]]:
    change = change_of(key)
    if change is not None and change[1] is not None:
        yield key, change[1]

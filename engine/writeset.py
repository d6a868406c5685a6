"""A transaction's pending writes and the argument checks every API entry shares.

Used by the in-process engine and by the client library alike: a transaction
collects its puts and deletes here, reads see committed data overlaid with
them (read-your-writes), and commit ships the final write set in one piece.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

from .errors import JetError

MAX_KEY_SIZE = 1000
MAX_VALUE_SIZE = 16 << 20
MAX_TABLE_NAME = 255

_DELETED = None


def check_table_name(name: object) -> str:
    if not isinstance(name, str):
        raise JetError(
            "JET_errInvalidParameter", f"table name must be str, not {type(name).__name__}"
        )
    if not name:
        raise JetError("JET_errInvalidName", "table name is empty")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_TABLE_NAME or "\0" in name:
        raise JetError("JET_errInvalidName", f"table name {name[:40]!r}... is invalid")
    return name


def check_key(key: object) -> bytes:
    if type(key) is bytes and len(key) <= MAX_KEY_SIZE:
        return key  # the common case, kept cheap for bulk commits
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise JetError("JET_errInvalidParameter", f"key must be bytes, not {type(key).__name__}")
    key = bytes(key)
    if len(key) > MAX_KEY_SIZE:
        raise JetError(
            "JET_errKeyTruncated", f"key of {len(key)} bytes exceeds the {MAX_KEY_SIZE}-byte limit"
        )
    return key


def check_value(value: object) -> bytes:
    if type(value) is bytes and len(value) <= MAX_VALUE_SIZE:
        return value
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise JetError(
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
    return (None if start is None else check_key(start), None if end is None else check_key(end))


class WriteSet:
    """Pending puts (bytes) and deletes (None) per table, last write wins."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[bytes, bytes | None]] = {}

    def __bool__(self) -> bool:
        return any(self.tables.values())

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self.tables.setdefault(table, {})[key] = value

    def delete(self, table: str, key: bytes) -> None:
        self.tables.setdefault(table, {})[key] = _DELETED

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

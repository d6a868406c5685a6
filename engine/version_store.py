"""The version store: snapshots where there is no log to read them from.

An instance without a log (``logging=False``) has no read views (read_view.py):
the buffer manager serves every read, from its current trees.  To give a
transaction its snapshot anyway, it keeps what ESE's version store keeps: the
value each key had before a commit changed it, while an open transaction began
before that commit.  A read at snapshot ``seq`` (the ``commit_seq`` when the
transaction began) takes the before-image of the first change after ``seq``, or
the current value if nothing changed since.  Versions no open transaction can
read are dropped as transactions end; ``max_bytes`` bounds the rest, and a
commit that would pass it fails with -1069 naming the bound.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator

from .errors import JetError
from .writeset import overlay_changes

DEFAULT_MAX_BYTES = 256 << 20
VERSION_OVERHEAD = 64


class VersionStore:
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        # (table, key) -> ([commit_seq of each change, ascending], [value before it])
        self.versions: dict[tuple[str, bytes], tuple[list[int], list]] = {}
        self.keys: dict[str, list[bytes]] = {}  # table -> keys with versions, sorted
        self.max_bytes = max_bytes
        self.bytes = 0

    def check_room(self, writes: dict[str, dict]) -> None:
        """-1069 before a commit whose before-images would pass ``max_bytes``."""
        if self.bytes + sum(len(kv) for kv in writes.values()) * VERSION_OVERHEAD > self.max_bytes:
            raise JetError(
                "JET_errVersionStoreOutOfMemory",
                f"the versions kept for open transactions passed max_bytes={self.max_bytes}; "
                "end the oldest transaction",
            )

    def record(self, seq: int, before: dict[tuple[str, bytes], bytes | None]) -> None:
        """Commit ``seq`` changed these keys, which held these values before it."""
        for (table, key), value in before.items():
            entry = self.versions.get((table, key))
            if entry is None:
                entry = self.versions[(table, key)] = ([], [])
                bisect.insort(self.keys.setdefault(table, []), key)
            entry[0].append(seq)
            entry[1].append(value)
            self.bytes += VERSION_OVERHEAD + len(key) + (len(value) if value else 0)

    def value_at(self, table: str, key: bytes, seq: int, current: Callable[[], bytes | None]):
        """The key's value at snapshot ``seq``; ``current()`` reads the trees."""
        change = self._change(table, key, seq) if (table, key) in self.versions else None
        return current() if change is None else change[1]

    def scan_at(
        self,
        table: str,
        seq: int,
        current: Iterator[tuple[bytes, bytes]],
        start: bytes | None,
        end: bytes | None,
    ) -> Iterator[tuple[bytes, bytes]]:
        """The entries of [start, end) at snapshot ``seq``, from the trees' ``current``."""
        keys = self.keys.get(table, [])
        lo = 0 if start is None else bisect.bisect_left(keys, start)
        hi = len(keys) if end is None else bisect.bisect_left(keys, end)
        return overlay_changes(current, keys[lo:hi], lambda key: self._change(table, key, seq))

    def _change(self, table: str, key: bytes, seq: int) -> tuple[int, bytes | None] | None:
        """(the change's seq, the value at ``seq``) if the key changed after ``seq``."""
        seqs, values = self.versions[(table, key)]
        at = bisect.bisect_right(seqs, seq)
        return (seqs[at], values[at]) if at < len(seqs) else None

    def forget_before(self, oldest: int | None) -> None:
        """Drop what no snapshot at or after ``oldest`` reads (None: no snapshot is open)."""
        if oldest is None:
            self.versions.clear()
            self.keys.clear()
            self.bytes = 0
            return
        for (table, key), (seqs, values) in list(self.versions.items()):
            index = bisect.bisect_right(seqs, oldest)
            if index:
                self.bytes -= sum(
                    VERSION_OVERHEAD + len(key) + (len(v) if v else 0) for v in values[:index]
                )
                del seqs[:index], values[:index]
            if not seqs:
                del self.versions[(table, key)]
                self.keys[table].remove(key)

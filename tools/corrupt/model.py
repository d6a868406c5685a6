"""The expected data: every logged change of a pristine instance with the LSN its record ends
at, the tables as of any LSN, and a short account of how two states differ."""

from __future__ import annotations

State = dict[str, dict[bytes, bytes]]


class Model:
    """Every logged change of the pristine instance, with the LSN its record ends at."""

    def __init__(self) -> None:
        self.changes: list[tuple[int, str, dict[bytes, bytes | None] | None]] = []

    def add(self, end_lsn: int, table: str, writes: dict[bytes, bytes | None] | None) -> None:
        self.changes.append((end_lsn, table, writes))

    def state(self, upto: int | None = None) -> State:
        """The tables after every change whose record ends at or before ``upto`` (all: None)."""
        state: State = {}
        for end_lsn, table, writes in self.changes:
            if upto is not None and end_lsn > upto:
                continue
            if writes is None:
                state.setdefault(table, {})
                continue
            rows = state[table]
            for key, value in writes.items():
                if value is None:
                    rows.pop(key, None)
                else:
                    rows[key] = value
        return state

    def lost(self, upto: int) -> int:
        return sum(1 for end_lsn, _t, _w in self.changes if end_lsn > upto)


def diff_states(got: State, want: State) -> str:
    if set(got) != set(want):
        return f"tables {sorted(got)} instead of {sorted(want)}"
    for table in sorted(want):
        g, w = got[table], want[table]
        missing = sorted(set(w) - set(g))
        extra = sorted(set(g) - set(w))
        changed = sorted(k for k in set(g) & set(w) if g[k] != w[k])
        if missing or extra or changed:
            parts = []
            for label, keys in (("missing", missing), ("extra", extra), ("changed", changed)):
                if keys:
                    parts.append(f"{len(keys)} {label} (first {keys[0]!r})")
            return f"table {table!r}: " + ", ".join(parts)
    return "identical"

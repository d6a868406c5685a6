"""Payload of the logical redo records carried by the log (``log_format`` frames them).

Each payload is one msgpack array ``[kind, body]``, and every body opens with the
record's time:

    kind  name          body
       1  COMMIT        [time_ns, [[table, [[key, value], ...]], ...]]
                        value nil = delete
       2  CREATE_TABLE  [time_ns, table]
       3  DROP_TABLE    [time_ns, table]

time_ns: the wall clock (UTC ns) when the buffer manager logged the record, never
below the one before it in this run.  A table's creation or drop is a commit of its
own: a point-in-time restore stops by every record's time, so a table dropped after
the target stays (log format 4; format 3 stamped commits only).

A commit's puts and deletes are its final write set (one entry per key), so
replaying a record twice leaves the same state: replay may start anywhere at or
before the checkpoint LSN without harm.  Table names are str, keys and values
bytes.
"""

from __future__ import annotations

import msgpack

from .errors import JetError

COMMIT = 1
CREATE_TABLE = 2
DROP_TABLE = 3
KIND_NAMES = {COMMIT: "commit", CREATE_TABLE: "create-table", DROP_TABLE: "drop-table"}

WriteSet = dict[str, dict[bytes, "bytes | None"]]


Record = tuple[int, object]  # (kind, body), as encoded and as applied


def commit_record(writes: WriteSet, time_ns: int) -> Record:
    return COMMIT, [time_ns, [[table, list(kv.items())] for table, kv in writes.items()]]


def table_record(kind: int, table: str, time_ns: int) -> Record:
    """A CREATE_TABLE or DROP_TABLE record."""
    return kind, [time_ns, table]


def record_time_ns(body) -> int:
    return body[0]


def commit_tables(body) -> list:
    """A commit's writes: [[table, [[key, value], ...]], ...]."""
    return body[1]


def record_table(body) -> str:
    """The table a CREATE_TABLE or DROP_TABLE record names."""
    return body[1]


def encode(record: Record) -> bytes:
    return msgpack.packb(list(record), use_bin_type=True)


def decode(payload: bytes, where: str) -> Record:
    """(kind, body); a payload that passed its CRC but does not parse is corruption."""
    try:
        kind, body = msgpack.unpackb(payload, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise JetError("JET_errLogCorrupted", f"{where}: undecodable redo record: {exc}") from exc
    if kind not in KIND_NAMES:
        raise JetError("JET_errLogCorrupted", f"{where}: unknown redo record kind {kind!r}")
    rest = list if kind == COMMIT else str
    if not (
        type(body) is list and len(body) == 2 and type(body[0]) is int and type(body[1]) is rest
    ):
        raise JetError(
            "JET_errLogCorrupted", f"{where}: a {KIND_NAMES[kind]} record without its time"
        )
    return kind, body

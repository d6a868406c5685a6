"""Payload of the logical redo records carried by the log (``log_format`` frames them).

Each payload is one msgpack array ``[kind, body]``:

    kind  name          body
       1  COMMIT        [commit_time_ns, [[table, [[key, value], ...]], ...]]
                        value nil = delete; commit_time_ns: wall clock (UTC ns)
                        when the buffer manager logged it, never below the one
                        before it in this run (point-in-time restore stops by it)
       2  CREATE_TABLE  table
       3  DROP_TABLE    table

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


def commit_tables(body) -> list:
    """A commit's writes: [[table, [[key, value], ...]], ...]."""
    return body[1]


def commit_time_ns(body) -> int:
    return body[0]


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
    if kind == COMMIT and not (
        type(body) is list and len(body) == 2 and type(body[0]) is int and type(body[1]) is list
    ):
        raise JetError("JET_errLogCorrupted", f"{where}: a commit record without its time")
    return kind, body

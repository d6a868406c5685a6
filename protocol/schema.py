"""Every message kind on every socket, with the shape of its body: the wire spec.

Each socket has a table ``kind -> {field: types}``; a field whose types
include ``None`` may be omitted.  ``check`` rejects unknown kinds, missing or
extra fields and wrong types with JetError (JET_errInvalidParameter), before
any actor code sees the body.  Element-level checks (key sizes, table-name
rules) stay with the storage code that owns them.

Sockets (DESIGN.md section 2):
  BUFFER_MANAGER   clients, the supervisor and the backup worker -> buffer manager (ROUTER)
  LOG_APPEND       buffer manager -> log writer (PUSH/PULL): redo batches, checkpoints
  LOG_EVENTS       log writer -> buffer manager (PUSH/PULL): durable LSNs, failures
  LOG_CONTROL      backup worker, supervisor -> log writer (ROUTER): roll, truncate, pins
  BACKUP           clients, the supervisor -> backup worker (ROUTER)
  ARCHIVER         clients, the supervisor -> archiver (ROUTER): status, shutdown
  SUPERVISOR       actors -> supervisor (PUSH/PULL): ready, heartbeat
  CONTROL          operators -> the control server (ROUTER, ipc and optionally tcp+CURVE):
                   its commands are defined in actors/control_commands.py
"""

from __future__ import annotations

from typing import Any, NamedTuple

from jetstore.engine.errors import JetError

OPTIONAL = type(None)

_common = {"ping": {}, "status": {}, "shutdown": {}}

BUFFER_MANAGER: dict[str, dict[str, tuple]] = {
    **_common,
    "begin": {},
    "end": {"txn": (int,)},
    # txn: read at that registered transaction's snapshot (an instance without a log)
    "get": {"table": (str,), "key": (bytes,), "txn": (int, OPTIONAL)},
    "scan": {
        "table": (str,),
        "txn": (int, OPTIONAL),
        "start": (bytes, OPTIONAL),
        "after": (bytes, OPTIONAL),  # resume a chunked scan past the last key seen
        "end": (bytes, OPTIONAL),
        "limit": (int, OPTIONAL),
    },
    "commit": {
        "writes": (dict,),
        "snapshot_lsn": (int, OPTIONAL),  # read views: the snapshot the transaction read
        "own_records": (list, OPTIONAL),  # its session's lazy commits it saw, not yet durable
        "begin_seq": (int, OPTIONAL),  # no log: the snapshot, from "begin"
        "txn": (int, OPTIONAL),
        "lazy": (bool, OPTIONAL),
    },
    "create_table": {"table": (str,)},
    "drop_table": {"table": (str,)},
    "list_tables": {},
    "checkpoint": {},
    "stop_service": {},
    "pin_checkpoint": {},
    "unpin_checkpoint": {"seq": (int,)},
    "backup_info": {},
    "log_rolled": {"generation": (int,)},
    "record_backup": {
        "incremental": (bool,),
        "time_ns": (int,),
        "gen_low": (int,),
        "gen_high": (int,),
        "lsn_mark": (int,),
        "backup_id": (bytes,),
    },
}

LOG_APPEND: dict[str, dict[str, tuple]] = {
    "append": {"batch": (int,), "records": (list,)},
    "checkpointed": {"lsn": (int,)},
}

LOG_EVENTS: dict[str, dict[str, tuple]] = {
    "durable": {"batch": (int,), "ends": (list,), "generation": (int,)},
    "failed": {"batch": (int,), "err": (int,), "message": (str,)},
}

LOG_CONTROL: dict[str, dict[str, tuple]] = {
    **_common,
    "roll": {},
    # checkpoint_lsn: a durable checkpoint the caller knows of (the log writer may not yet)
    "truncate": {"below": (int,), "checkpoint_lsn": (int, OPTIONAL)},
    "pin": {"generation": (int,)},
    "unpin": {"generation": (int,)},
    # the archiver holds every generation up to this one: they may be deleted
    "archived": {"generation": (int,)},
}

ARCHIVER: dict[str, dict[str, tuple]] = {**_common}

BACKUP: dict[str, dict[str, tuple]] = {
    **_common,
    # dest None: truncate only.  sync_progress: the client acknowledges every
    # progress event after its status callback returned.
    "backup": {
        "dest": (str, OPTIONAL),
        "incremental": (bool,),
        "atomic": (bool,),
        "create_path": (bool, OPTIONAL),
        "sync_progress": (bool, OPTIONAL),
        "caller_pid": (int, OPTIONAL),  # the backup fails if this process dies or stops
    },
    "ack": {"error": (str, OPTIONAL)},  # error: the callback raised; the backup fails
    "abort_backup": {},
    "set_backup_rate": {"rate": (int,), "min_rate": (int, OPTIONAL)},
}

# What a long request (a backup) streams before its reply, on the socket it came in on:
# ESE's JET_SNPROG, in bytes (codec.REPLY_PROGRESS).
PROGRESS: dict[str, dict[str, tuple]] = {
    "progress": {
        "snt": (str,),  # "begin", "progress", "complete", "fail"
        "phase": (str,),  # "pages", "logs", "verify", "replay", "truncate"
        "done": (int,),
        "total": (int,),
        "file": (str, OPTIONAL),
    },
}

SUPERVISOR: dict[str, dict[str, tuple]] = {
    "ready": {"actor": (str,), "pid": (int,), "info": (dict,)},
    "heartbeat": {"actor": (str,), "pid": (int,), "busy_s": (float, int), "info": (dict,)},
    "failed": {"actor": (str,), "pid": (int,), "err": (int,), "message": (str,)},
}


# -- building requests ---------------------------------------------------------------------


class Request(NamedTuple):
    """One message to send: its kind and its body."""

    kind: str
    body: dict


class Requests:
    """The builders of one socket's messages, one per kind of its table.

    ``to_log_control.truncate(below=5)`` is ``Request("truncate", {"below": 5})``,
    checked against ``LOG_CONTROL`` where it is built: a misspelt kind or field fails
    in the sender, not as an error reply from the far side.  An omitted optional
    field is left out of the body.
    """

    def __init__(self, table: dict[str, dict[str, tuple]]) -> None:
        self._table = table

    def build(self, kind: str, fields: dict) -> Request:
        """The message ``kind`` with ``fields``, where the kind is data (``ctl``'s command)."""
        return Request(kind, check(self._table, kind, fields))

    def __getattr__(self, kind: str):
        if kind not in self._table:
            raise AttributeError(f"no message kind {kind!r} on this socket")
        return lambda **fields: self.build(kind, fields)

    def __dir__(self) -> list[str]:
        return sorted(self._table)


to_buffer_manager = Requests(BUFFER_MANAGER)
to_log = Requests(LOG_APPEND)
log_event = Requests(LOG_EVENTS)
to_log_control = Requests(LOG_CONTROL)
to_backup = Requests(BACKUP)
to_archiver = Requests(ARCHIVER)
to_supervisor = Requests(SUPERVISOR)


# -- replies -------------------------------------------------------------------------------
# What each request's "ok" reply carries: a map with these fields (every field listed;
# a None value only where OPTIONAL is allowed), or a value of these types.  Checked by
# serve_requests for immediate replies, and by tests/test_protocol.py for every kind.

ANY_MAP = (dict,)  # reports (status, backup_info) whose fields are documented where built
NOTHING = (OPTIONAL,)
LSN = {"lsn": (int,)}
CHECKPOINT = {"seq": (int,), "checkpoint_lsn": (int,)}
_common_replies = {"ping": (str,), "status": ANY_MAP}

BUFFER_MANAGER_REPLIES: dict[str, Any] = {
    **_common_replies,
    "shutdown": {"clean": (bool,)},
    "begin": {"txn": (int,), "begin_seq": (int,)},
    "end": NOTHING,
    "get": (bytes, OPTIONAL),
    "scan": {"items": (list,), "more": (bool,)},
    "commit": {"lsn": (int,), "record": (int,)},  # record: the redo record's number
    "create_table": LSN,
    "drop_table": LSN,
    "list_tables": (list,),
    "checkpoint": CHECKPOINT,
    "stop_service": NOTHING,
    "pin_checkpoint": {"seq": (int,), "meta_page": (bytes,)},
    "unpin_checkpoint": NOTHING,
    "backup_info": ANY_MAP,
    "log_rolled": NOTHING,
    "record_backup": CHECKPOINT,
}

LOG_CONTROL_REPLIES: dict[str, Any] = {
    **_common_replies,
    "shutdown": {"durable_lsn": (int,)},
    "roll": {"generation": (int,)},
    "truncate": {"deleted": (list,)},
    "pin": NOTHING,
    "unpin": NOTHING,
    "archived": NOTHING,
}

ARCHIVER_REPLIES: dict[str, Any] = {**_common_replies, "shutdown": {"stopped": (bool,)}}

BACKUP_REPLIES: dict[str, Any] = {
    **_common_replies,
    "shutdown": {"stopped": (bool,)},
    # A backup's result: {"backup_id", "bytes", "gen_low", "gen_high", "roll_lsn",
    # "truncated", "seconds"}; truncation alone: {"truncated", "generation", "seconds"}.
    "backup": ANY_MAP,
    "ack": NOTHING,  # never answered
    "abort_backup": {"aborted": (bool,)},
    "set_backup_rate": {"rate": (int,), "min_rate": (int,)},
}


def check_reply(table: dict[str, Any], kind: str, result: Any) -> Any:
    """JET_errInternalError if ``result`` is not the reply ``kind``'s schema describes."""
    shape = table[kind]
    if isinstance(shape, dict):
        problem = None
        if not isinstance(result, dict):
            problem = f"a map, not {type(result).__name__}"
        elif set(result) != set(shape):
            problem = f"fields {sorted(shape)}, not {sorted(result)}"
        else:
            for name, types in shape.items():
                if type(result[name]) not in types:
                    problem = f"{name} of type {'/'.join(t.__name__ for t in types)}"
                    break
    elif type(result) in shape:
        problem = None
    else:
        problem = f"{'/'.join(t.__name__ for t in shape)}, not {type(result).__name__}"
    if problem is not None:
        raise JetError("JET_errInternalError", f"the reply to {kind} should be {problem}")
    return result


def check(table: dict[str, dict[str, tuple]], kind: str, body: Any) -> dict:
    """Validate ``body`` for ``kind`` against a socket's table; returns it."""
    fields = table.get(kind)
    if fields is None:
        raise JetError("JET_errInvalidParameter", f"unknown message kind {kind[:40]!r}")
    if not isinstance(body, dict):
        raise JetError("JET_errInvalidParameter", f"{kind}: body must be a map")
    for name in body:
        if name not in fields:
            raise JetError(
                "JET_errInvalidParameter", f"{kind}: unexpected field {str(name)[:40]!r}"
            )
    for name, types in fields.items():
        value = body.get(name)
        if value is None:
            if OPTIONAL not in types:
                raise JetError("JET_errInvalidParameter", f"{kind}: missing field {name!r}")
        elif type(value) not in types:
            wanted = "/".join(t.__name__ for t in types if t is not OPTIONAL)
            raise JetError(
                "JET_errInvalidParameter",
                f"{kind}: field {name!r} must be {wanted}, not {type(value).__name__}",
            )
    return body

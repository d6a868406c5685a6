"""Crash recovery of the log: replay it into the trees, or start a new stream.

``recover_log`` runs once per open of a logged instance, after the pager and the
catalog are loaded from the newest valid meta.  It either replays every record
from the meta's checkpoint LSN to the end of the log (a torn tail in the last
generation ends it, and is reported as an event) and continues the stream, or -
when the trees hold commits the log does not (an unlogged run, a lost log
directory) - starts a new stream that no backup or roll-forward can take for a
continuation of the old one.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from . import redo_format
from .errors import JetError
from .events_format import EventLog
from .fileio import Env
from .log_format import format_lsn, lsn_gen
from .log_reader import LogReader
from .log_stream import LogStream
from .meta_format import DB_DIRTY, DB_JUST_CREATED, FLAG_UNLOGGED, Meta

# (record, its LSN, where it is - for error messages)
Apply = Callable[[redo_format.Record, int, str], None]


@dataclass
class LogPaths:
    """Where an instance keeps its files, and how its log is written."""

    env: Env
    path: str  # the instance directory (its event log)
    db_path: str
    logs_path: str
    log_file_size: int
    circular: bool


@dataclass
class RecoveredLog:
    log: LogStream
    meta: Meta  # a new stream's signature is in it, for the open's checkpoint to write
    replayed: int = 0
    # A new stream began: {"generation", "reason"}; the backup history must be cleared.
    restart: dict | None = None


def recover_log(paths: LogPaths, meta: Meta, apply: Apply) -> RecoveredLog:
    reader = LogReader(paths.env, paths.logs_path, signature=meta.log_signature)
    generations = reader.generations() if paths.env.exists(paths.logs_path) else []
    if meta.flags & FLAG_UNLOGGED:
        # The trees hold commits no log has: the stream cannot continue, and nothing
        # in it is newer than the trees (an unlogged open replays nothing either).
        return _restart_log(paths, meta, generations, "commits were made with logging=False")
    if not generations:
        if meta.state == DB_DIRTY:
            raise JetError(
                "JET_errRequiredLogFilesMissing",
                f"{paths.db_path} needs the log from {meta.checkpoint_lsn:#x} on, "
                f"and {paths.logs_path} holds no generation",
            )
        if meta.state == DB_JUST_CREATED:
            return RecoveredLog(_create_log(paths, meta.log_signature, 1), meta)
        return _restart_log(paths, meta, generations, f"{paths.logs_path} held no log generation")
    replayed = 0
    for logged in reader.records(meta.checkpoint_lsn, context="replay"):
        where = f"{paths.logs_path} record {format_lsn(logged.lsn)}"
        apply(redo_format.decode(logged.payload, where), logged.lsn, where)
        replayed += 1
    if reader.torn:
        # A crash cut the last batch (never acknowledged), or the final synced batch
        # was damaged: either way what follows end_lsn is about to be zero-filled.
        # Say so where operators look, rather than shorten the log silently.
        EventLog(paths.path).emit(
            "recovery-torn-tail",
            end_lsn=format_lsn(reader.end_lsn),
            generation=lsn_gen(reader.end_lsn),
            replayed=replayed,
        )
    log = LogStream.open(
        paths.env,
        paths.logs_path,
        log_file_size=paths.log_file_size,
        signature=meta.log_signature,
        circular=paths.circular,
        end_lsn=reader.end_lsn,
    )
    return RecoveredLog(log, meta, replayed)


def _create_log(paths: LogPaths, signature: bytes, first_generation: int) -> LogStream:
    return LogStream.create(
        paths.env,
        paths.logs_path,
        log_file_size=paths.log_file_size,
        signature=signature,
        circular=paths.circular,
        first_generation=first_generation,
    )


def _restart_log(paths: LogPaths, meta: Meta, generations: list[int], reason: str) -> RecoveredLog:
    """Start a new log stream because the old one misses commits the trees hold.

    It gets a new signature, so that no backup or roll-forward of the old stream can
    take it for a continuation, and generation numbers above every one the old stream
    is known to have used, so that no file of either is mistaken for the other's.  The
    backup history goes too: the next incremental needs a new full backup.
    """
    known = [*generations, lsn_gen(meta.checkpoint_lsn)]
    known += [meta.last_full.gen_high, meta.last_incremental.gen_high]
    first = max(known) + 1
    signature = secrets.token_bytes(16)
    log = _create_log(paths, signature, first_generation=first)
    EventLog(paths.path).emit(
        "log-stream-restarted",
        generation=first,
        signature=signature.hex(),
        previous_signature=meta.log_signature.hex(),
        reason=reason,
    )
    restarted = meta.evolve(log_signature=signature, flags=meta.flags & ~FLAG_UNLOGGED)
    return RecoveredLog(log, restarted, restart={"generation": first, "reason": reason})

"""Crash recovery of the log: replay it into the trees, or start a new stream.

``recover_log`` runs once per open of a logged instance, after the pager and the
catalog are loaded from the newest valid meta.  It either replays every record
from the meta's checkpoint LSN to the end of the log (a torn tail in the last
generation ends it, and is reported as an event) and continues the stream, or -
when the trees hold commits the log does not (an unlogged run, a lost log
directory) - starts a new stream that no backup or roll-forward can take for a
continuation of the old one.

A restore's replay (``Restoring``, from backup_restore.restore) is the same replay
with a stop point: it applies the records up to its target, reads the rest of the
log without applying it to learn the range a restore could reach, and always ends
by starting a new stream, so that the log after the cut is never replayed into the
restored database and its log never mixes with the stream it came from.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from . import redo_format
from .errors import JetError
from .events_format import EventLog
from .fileio import Env
from .log_format import format_lsn, lsn_gen, lsn_offset
from .log_reader import LogReader
from .log_stream import LogStream
from .meta_format import DB_DIRTY, DB_JUST_CREATED, FLAG_UNLOGGED, Meta
from .wall_time import iso_time

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


@dataclass(frozen=True)
class Restoring:
    """A restore's replay: the backup's roll it must pass, and where it stops.

    ``until_lsn``: apply every record that ends at or before it (a commit's LSN, what
    ``commit()`` returned, is the end of its record).  ``until_ns``: apply records up
    to, not including, the first stamped later than it (PostgreSQL's
    recovery_target_time; a table's creation or drop is stamped as a commit of its
    own), so the result is a prefix of the log even where times went back across a
    restart.  Neither: the whole log.  ``progress(done,
    total)``: log bytes read so far, once per generation.
    """

    roll_lsn: int
    # Where the log shows no commit between the backup's checkpoint and its roll, the
    # earliest time a restore can stop at: the backup's own time, after every commit
    # it holds (the latest of those is the bound where the log shows them).
    roll_time_ns: int
    reason: str  # why the new stream begins, for its event
    until_lsn: int | None = None
    until_ns: int | None = None
    progress: Callable[[int, int], None] | None = None


@dataclass
class Replay:
    """What a restore's replay did, and the range of stop points the log offered."""

    start_lsn: int  # the checkpoint replay began at
    commits: int = 0  # commit records applied
    bytes: int = 0  # redo payload bytes applied
    stopped_at_lsn: int = 0  # the end of the last record applied (else start_lsn)
    # The time of the last record applied: a commit, or a table's creation or drop.
    last_commit_ns: int | None = None
    earliest_lsn: int = 0  # the end of the last record at or before the roll
    # The latest record time at or before the roll (Restoring.roll_time_ns if none).
    earliest_ns: int | None = None
    latest_lsn: int = 0  # the end of the last record in the log
    latest_ns: int | None = None  # the latest record time in the log
    stopped: bool = False  # a record was left out: the target came before the end

    def __post_init__(self) -> None:
        self.stopped_at_lsn = self.earliest_lsn = self.latest_lsn = self.start_lsn

    def take(self, target: Restoring, record: redo_format.Record, end_lsn: int) -> bool:
        """Whether ``record``, ending at ``end_lsn``, is applied; every record of the
        log passes here, applied or not, to measure the reachable range."""
        kind, body = record
        time_ns = redo_format.record_time_ns(body)
        self.latest_lsn = end_lsn
        self.latest_ns = time_ns if self.latest_ns is None else max(self.latest_ns, time_ns)
        if end_lsn <= target.roll_lsn:
            self.earliest_lsn, self.earliest_ns = end_lsn, self.latest_ns
        if not self.stopped:
            late = target.until_lsn is not None and end_lsn > target.until_lsn
            self.stopped = late or (target.until_ns is not None and time_ns > target.until_ns)
        if self.stopped:
            return False
        self.stopped_at_lsn = end_lsn
        self.commits += kind == redo_format.COMMIT
        self.last_commit_ns = time_ns
        return True


@dataclass
class RecoveredLog:
    log: LogStream
    meta: Meta  # a new stream's signature is in it, for the open's checkpoint to write
    replayed: int = 0
    # A new stream began: {"generation", "reason"}; the backup history must be cleared.
    restart: dict | None = None
    replay: Replay | None = None  # a restore's


def recover_log(
    paths: LogPaths, meta: Meta, apply: Apply, restoring: Restoring | None = None
) -> RecoveredLog:
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
    replay = Replay(meta.checkpoint_lsn) if restoring is not None else None
    generation = lsn_gen(meta.checkpoint_lsn)
    for logged in reader.records(meta.checkpoint_lsn, context="replay"):
        where = f"{paths.logs_path} record {format_lsn(logged.lsn)}"
        record = redo_format.decode(logged.payload, where)
        if replay is not None:
            if restoring.progress is not None and lsn_gen(logged.end_lsn) != generation:
                generation = lsn_gen(logged.end_lsn)
                restoring.progress(*_read_so_far(paths, meta, generations, logged.end_lsn))
            if not replay.take(restoring, record, logged.end_lsn):
                continue
            replay.bytes += len(logged.payload)
        apply(record, logged.lsn, where)
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
    if restoring is not None:
        if replay.earliest_ns is None:
            replay.earliest_ns = restoring.roll_time_ns
        _check_target(paths, restoring, replay)
        recovered = _restart_log(paths, meta, generations, restoring.reason)
        recovered.replayed, recovered.replay = replayed, replay
        return recovered
    log = LogStream.open(
        paths.env,
        paths.logs_path,
        log_file_size=paths.log_file_size,
        signature=meta.log_signature,
        circular=paths.circular,
        end_lsn=reader.end_lsn,
    )
    return RecoveredLog(log, meta, replayed)


def _read_so_far(paths: LogPaths, meta: Meta, generations: list[int], lsn: int) -> tuple[int, int]:
    """(log bytes read up to ``lsn``, bytes to read): a progress measure counting every
    generation as a full file from the checkpoint's on."""
    first = lsn_gen(meta.checkpoint_lsn)
    start = lsn_offset(meta.checkpoint_lsn)
    done = (lsn_gen(lsn) - first) * paths.log_file_size + lsn_offset(lsn) - start
    return done, (generations[-1] - first + 1) * paths.log_file_size - start


def _check_target(paths: LogPaths, restoring: Restoring, replay: Replay) -> None:
    """A target before the roll (the backup holds commits after it) or beyond the end of
    the log (nothing shows it was reached) fails, naming the range that is reachable."""
    lsn, time_ns = restoring.until_lsn, restoring.until_ns
    if lsn is not None:
        target = f"LSN {format_lsn(lsn)}"
        early, late = lsn < replay.earliest_lsn, lsn > replay.latest_lsn
    elif time_ns is not None:
        # Times are given and printed to the microsecond (wall_time.iso_time): a bound
        # as printed is a target that is accepted.  With no commit after the roll, the
        # roll's own time is the latest too.
        target = f"time {iso_time(time_ns)}"
        latest_ns = max(replay.latest_ns or replay.earliest_ns, replay.earliest_ns)
        early = time_ns < replay.earliest_ns
        late = time_ns // 1000 > latest_ns // 1000
    else:
        return
    times = (
        f"from commit time {iso_time(replay.earliest_ns)} to "
        f"{iso_time(max(replay.latest_ns or replay.earliest_ns, replay.earliest_ns))}"
    )
    reachable = (
        f"the backup and the log at hand reach from LSN {format_lsn(replay.earliest_lsn)} "
        f"to {format_lsn(replay.latest_lsn)}, and {times}"
    )
    if early:
        raise JetError(
            "JET_errEndingRestoreLogTooLow",
            f"{paths.logs_path}: restore target {target} is before the backup's roll at "
            f"{format_lsn(restoring.roll_lsn)}: {reachable}",
        )
    if late:
        raise JetError(
            "JET_errRequiredLogFilesMissing",
            f"{paths.logs_path}: restore target {target} is beyond the end of the log at "
            f"hand ({format_lsn(replay.latest_lsn)}; give --log-dir / log_dir the log that "
            f"reaches it): {reachable}",
        )


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

"""Verifying a backup and restoring it (DESIGN.md section 6, "Restore" and "Point-in-time
restore"): every file, page and record checked; pages copied, the backup's log
replayed, then the contiguous generations of a live log directory or of a log archive
(archive_format.py) rolled forward, up to a target LSN or commit time if one is given;
finished clean, on a new log stream.

A restore marks its destination (restore_marker_format.py) before it copies anything and
unmarks it last, so a restore killed at any point leaves a directory that refuses
to open, and running the same restore again completes it.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import shutil
import time

import crc32c

from . import archive_format, restore_marker_format
from .backup import (
    COPY_CHUNK,
    Progress,
    Report,
    checkpoint_page_runs,
    copy_file,
    locate_backup,
    no_report,
    remove_if_present,
    verify_generations,
)
from .database_file import read_meta
from .errors import InvalidArgumentTypeError, JetError
from .fileio import DEFAULT_ENV, Env, fspath, io_error, open_regular
from .log_format import generation_file_name, parse_generation_file_name
from .log_reader import LogReader, list_generations
from .recovery import Restoring
from .results import BackupVerification, RestoreResult
from .run_dir_format import RUN_DIR
from .storage import DB_FILE, LOG_DIR, Storage

# -- verification ---------------------------------------------------------------

_RESTORE_LOG_ERRORS = {
    "JET_errLogFileCorrupt": "JET_errLogCorruptDuringHardRestore",
    "JET_errBadLogSignature": "JET_errGivenLogFileHasBadSignature",
    "JET_errInvalidLogSequence": "JET_errGivenLogFileIsNotContiguous",
    "JET_errLogSequenceChecksumMismatch": "JET_errGivenLogFileIsNotContiguous",
    "JET_errMissingLogFile": "JET_errMissingRestoreLogFiles",
    "JET_errMissingPreviousLogFile": "JET_errMissingRestoreLogFiles",
    "JET_errLogGenerationMismatch": "JET_errGivenLogFileIsNotContiguous",
}


def _callback(status: Report | None) -> Report:
    """``status`` as the operation calls it: an exception it raises aborts the operation
    with -2101, as a backup's callback does (DESIGN section 4)."""
    if status is None:
        return no_report

    def report(progress: Progress) -> None:
        try:
            status(progress)
        except Exception as exc:  # noqa: BLE001 - whatever the caller's code raised
            raise JetError(
                "JET_errCallbackFailed", f"the status callback raised {type(exc).__name__}: {exc}"
            ) from exc

    return report


def verify_backup(
    backup_dir: str | bytes | os.PathLike,
    *,
    status: Report | None = None,
) -> BackupVerification:
    """Check a backup completely without restoring it: the manifest, every file's size and
    checksum, every page the checkpoint uses, every log record and the generation chain.

    ``status`` receives each ``Progress`` event (phase "verify").  A damaged backup
    raises a JetError naming the file and what is wrong with it."""
    env, report = DEFAULT_ENV, _callback(status)
    directory, manifest = locate_backup(fspath(backup_dir))
    total = sum(entry["size"] for entry in manifest["files"].values())
    done = 0
    report(Progress("begin", "verify", 0, total))
    for name, entry in sorted(manifest["files"].items()):
        path = os.path.join(directory, name)
        try:
            size, crc = _file_checksum(path)
        except FileNotFoundError:
            raise JetError(
                "JET_errMissingRestoreLogFiles"
                if name.startswith(LOG_DIR)
                else "JET_errInvalidBackup",
                f"{path}: listed in the manifest, missing",
            ) from None
        except OSError as exc:  # a symlink loop, a directory's permissions...
            raise io_error(exc, f"read {path}") from exc
        if (size, crc) != (entry["size"], entry["crc32c"]):
            raise JetError(
                "JET_errInvalidBackup",
                f"{path}: {size} bytes crc {crc:#x}, the manifest says "
                f"{entry['size']} bytes crc {entry['crc32c']:#x}",
            )
        done += size
        report(Progress("progress", "verify", done, total, name))
    db = env.open_read(os.path.join(directory, DB_FILE))
    try:
        meta = read_meta(db)
        if meta.db_signature.hex() != manifest["db_signature"]:
            raise JetError(
                "JET_errBadDbSignature", f"{db.path}: not the database the manifest names"
            )
        pages = sum(len(data) for _first, data in checkpoint_page_runs(db, meta))
    finally:
        db.close()
    logs = os.path.join(directory, LOG_DIR)
    try:
        verify_generations(
            env,
            logs,
            manifest["gen_low"],
            manifest["gen_high"],
            bytes.fromhex(manifest["log_signature"]),
            "replay",
        )
    except JetError as exc:
        raise _restore_error(exc) from exc
    report(Progress("complete", "verify", total, total))
    return {
        "directory": directory,
        "backup_id": manifest["backup_id"],
        "files": len(manifest["files"]),
        "bytes": total,
        "page_bytes": pages,
        "gen_low": manifest["gen_low"],
        "gen_high": manifest["gen_high"],
        "chain": manifest["chain"],
    }


def _restore_error(exc: JetError) -> JetError:
    name = _RESTORE_LOG_ERRORS.get(exc.name)
    if name is None:
        return exc
    return JetError(name, exc.message)


def _file_checksum(path: str) -> tuple[int, int]:
    crc, size = 0, 0
    with os.fdopen(open_regular(path), "rb") as f:
        while chunk := f.read(COPY_CHUNK):
            crc = crc32c.crc32c(chunk, value=crc)
            size += len(chunk)
    return size, crc


# -- restore -----------------------------------------------------------------------

_ROLL_FORWARD_ERRORS = {
    "JET_errBadLogSignature": "JET_errExistingLogFileHasBadSignature",
    "JET_errInvalidLogSequence": "JET_errExistingLogFileIsNotContiguous",
    "JET_errLogSequenceChecksumMismatch": "JET_errExistingLogFileIsNotContiguous",
}


def restore(
    backup_dir: str | bytes | os.PathLike,
    dest_dir: str | bytes | os.PathLike,
    *,
    log_dir: str | bytes | os.PathLike | None = None,
    status: Report | None = None,
    until: int | datetime.datetime | None = None,
) -> RestoreResult:
    """JetRestore: verify the backup, copy it into ``dest_dir``, roll forward through the
    contiguous generations of ``log_dir`` after the backup's last, replay, finish clean.

    ``log_dir``: a live log directory (an instance's ``logs/``, or a copy), or a log
    archive (archive_format.py), whose stream of the backup's log signature is used.

    ``until``: None replays all the log there is.  An int LSN replays exactly the
    commits whose LSN - what ``commit()`` returned, the end of its record - is at or
    before it.  An aware datetime replays up to, not including, the first commit whose
    time is later than it (PostgreSQL's recovery_target_time): the restored database
    is always a prefix of the log, even where commit times went back across a restart
    whose wall clock had been stepped.  Times compare to the microsecond, a datetime's
    precision, so a commit time printed to the microsecond is a target that includes
    that commit.  A target before the backup's roll (an LSN before the end of the last
    record the backup holds, a time before the latest commit it holds - or, where its
    log shows none after its checkpoint, before the full backup's time) fails with -553,
    one beyond the end of the log at hand with -543; both name the reachable range,
    which the result reports too (``earliest_*``, ``latest_*``), with where the replay
    stopped (``stopped_at_lsn``: every commit whose LSN is at or before it is in the
    database, none after) and the replay rates.

    Every restore ends by starting a new log stream (a new signature, generation
    numbers above every one it has seen) and leaves none of the old stream's
    generations in ``dest_dir``: the log after a cut can never be replayed into the
    restored database, and its log never mixes with the stream it came from.  A
    restored database needs a new full backup before an incremental.

    ``status`` receives each ``Progress`` event (phases "verify", "restore", "logs",
    "replay").  The destination is marked (restore_marker_format.py) before anything is
    copied into it and unmarked last, so a restore killed at any point leaves a
    directory that refuses to open; running the same restore again starts it over and
    completes it.
    """
    started = time.monotonic()
    env, report = DEFAULT_ENV, _callback(status)
    until_lsn, until_ns = _target(until)
    dest_dir = fspath(dest_dir)
    directory, manifest = locate_backup(fspath(backup_dir))
    logs_source, archived = _log_source(manifest, log_dir)
    inside = os.path.realpath(dest_dir)
    # A restore inside what it reads from would write into it: the backup, or the log
    # it rolls forward through (an archive, or a live instance's logs/).
    for what, source in (("backup", backup_dir), ("log directory", log_dir)):
        if source is not None and inside.startswith(os.path.realpath(fspath(source)) + os.sep):
            raise JetError("JET_errInvalidPath", f"{dest_dir} is inside the {what} {source}")
    created = not os.path.exists(dest_dir)
    env.makedirs(dest_dir)
    lock = _lock_destination(dest_dir)
    try:
        resuming = _check_destination(dest_dir, manifest)
        checked = verify_backup(backup_dir, status=report)
    except BaseException:
        os.close(lock)
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(dest_dir)
        raise
    dest_db, dest_logs = os.path.join(dest_dir, DB_FILE), os.path.join(dest_dir, LOG_DIR)
    ours = resuming or not os.path.isdir(dest_logs)  # an empty logs/ there stays
    if resuming:  # the interrupted restore's files: this run starts it over
        remove_if_present(dest_db)
        shutil.rmtree(dest_logs, ignore_errors=True)
    try:
        if not resuming:
            restore_marker_format.write(env, dest_dir, manifest["backup_id"], directory)
        total = checked["bytes"]
        report(Progress("begin", "restore", 0, total))
        copy_file(env, os.path.join(directory, DB_FILE), dest_db, None)
        env.makedirs(dest_logs)
        copied = 0
        for name in sorted(n for n in manifest["files"] if n.startswith(LOG_DIR + "/")):
            size, _crc = copy_file(
                env, os.path.join(directory, name), os.path.join(dest_dir, name), None
            )
            copied += size
            report(Progress("progress", "logs", copied, total, name))
        rolled, break_ahead = (
            _roll_forward(
                env,
                manifest,
                logs_source,
                dest_logs,
                all_closed=archived,
                stop_at_break=until is not None,
            )
            if logs_source is not None
            else ([], None)
        )
        env.sync_dir(dest_logs)
        env.sync_dir(dest_dir)
        report(Progress("progress", "replay", 0, 0))
        restoring = Restoring(
            roll_lsn=manifest["chain"][0]["roll_lsn"],
            roll_time_ns=manifest["chain"][0]["time_ns"],
            reason=f"restored from backup {manifest['backup_id']} in {directory}",
            until_lsn=until_lsn,
            until_ns=until_ns,
            progress=lambda done, to_read: report(Progress("progress", "replay", done, to_read)),
        )
        replay_started = time.monotonic()
        try:
            storage = Storage.open(dest_dir, create=False, env=env, restoring=restoring)
        except JetError as exc:
            if break_ahead is not None and exc.name == "JET_errRequiredLogFilesMissing":
                raise break_ahead from exc  # the target lies past where the log breaks
            raise
        try:
            replay_seconds = time.monotonic() - replay_started
            storage.clear_backup_history()
            replayed, replay = storage.replayed, storage.replay
            stream = storage.log_restart["generation"]
            signature = storage.meta.log_signature
            # The open's checkpoint is durable in the new stream: nothing needs the old
            # one's generations here any more.  Those past the cut must go: they hold
            # commits this database does not, which a roll-forward or an archiver reading
            # this logs/ could take for its own.  Those before it go too, being copies -
            # the backup and the log they came from keep the originals - so that this
            # logs/ holds one stream, as every reader of a log directory expects.
            for name in env.listdir(dest_logs):
                if (parse_generation_file_name(name) or stream) < stream:
                    env.remove(os.path.join(dest_logs, name))
            env.sync_dir(dest_logs)
        finally:
            storage.close()
        restore_marker_format.remove(env, dest_dir)
    except BaseException:
        # What this restore (or the one it resumed) put there; the marker last, so a
        # cleanup cut short still leaves the destination refusing to open.
        remove_if_present(dest_db)
        if ours:
            shutil.rmtree(dest_logs, ignore_errors=True)
        remove_if_present(os.path.join(dest_dir, restore_marker_format.RESTORE_MARKER))
        if created:
            with contextlib.suppress(OSError):  # only if nothing else arrived there
                os.rmdir(dest_dir)
        raise
    finally:
        os.close(lock)
    report(Progress("complete", "restore", total, total))
    rate_seconds = max(replay_seconds, 1e-9)
    return {
        "directory": directory,
        "dest": dest_dir,
        "stopped_at_lsn": replay.stopped_at_lsn,
        "last_commit_time_ns": replay.last_commit_ns,
        "replayed": replayed,
        "replay_seconds": replay_seconds,
        "rolled_forward": rolled,
        "seconds": time.monotonic() - started,
        "commits": replay.commits,
        "replay_bytes": replay.bytes,
        "replay_mb_per_s": replay.bytes / 1e6 / rate_seconds,
        "replay_commits_per_s": replay.commits / rate_seconds,
        "earliest_lsn": replay.earliest_lsn,
        "earliest_time_ns": replay.earliest_ns,
        "latest_lsn": replay.latest_lsn,
        "latest_time_ns": replay.latest_ns,
        "log_signature": signature.hex(),
        "generation": stream,
    }


def _target(until: object) -> tuple[int | None, int | None]:
    """``until`` as (LSN, time in ns) - at most one of them - or a JetError saying why
    it is no target."""
    if until is None:
        return None, None
    if isinstance(until, datetime.datetime):
        if until.tzinfo is None or until.utcoffset() is None:
            raise JetError(
                "JET_errInvalidParameter",
                f"until={until.isoformat()} has no time zone: give an aware datetime "
                "(datetime.timezone.utc, or an ISO-8601 time ending in Z or +hh:mm), as "
                "commit times are UTC",
            )
        microseconds = (until - _EPOCH) // datetime.timedelta(microseconds=1)
        # Commits within the target's microsecond are at it: a time printed to the
        # microsecond from a commit's includes that commit.
        return None, microseconds * 1000 + 999
    if isinstance(until, int) and not isinstance(until, bool):
        if until < 0:
            raise JetError("JET_errInvalidParameter", f"until={until}: an LSN is not negative")
        return until, None
    raise InvalidArgumentTypeError(
        "JET_errInvalidParameter",
        f"until must be None, an int LSN or an aware datetime, not {type(until).__name__}",
    )


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def _log_source(
    manifest: dict, log_dir: str | bytes | os.PathLike | None
) -> tuple[str | None, bool]:
    """The directory to roll forward through, and whether it is an archive's stream
    (every generation in it closed); checked before the restore touches anything."""
    if log_dir is None:
        return None, False
    path = fspath(log_dir)
    if not os.path.isdir(path):
        # Restoring without the log asked for would "succeed" short of every commit in it.
        raise JetError(
            "JET_errInvalidPath",
            f"log directory {path} to roll forward through: no such directory",
        )
    archived = archive_format.is_archive(path)
    if archived:
        identity = archive_format.read_identity(path)
        if identity["db_signature"] != manifest["db_signature"]:
            raise JetError(
                "JET_errGivenLogFileHasBadSignature",
                f"archive {path} holds the log of database {identity['db_signature']}, "
                f"not of the backup's {manifest['db_signature']}",
            )
        signature = bytes.fromhex(manifest["log_signature"])
        stream = archive_format.stream_dir(path, signature)
        if not os.path.isdir(stream):
            held = ", ".join(archive_format.streams(path)) or "none"
            raise JetError(
                "JET_errInvalidLogDirectory",
                f"archive {path} holds no stream {signature.hex()}, the backup's log "
                f"(it holds: {held}): the archive was started after this backup's stream "
                "ended, or is another copy's",
            )
        path = stream
    if not list_generations(DEFAULT_ENV, path):
        raise JetError(
            "JET_errInvalidLogDirectory",
            f"log directory {path} holds no log generation to roll forward"
            " through (leave it out to restore the backup alone)",
        )
    return path, archived


def _lock_destination(dest_dir: str) -> int:
    """The destination for this restore alone (flock on the directory, released when
    the returned fd is closed): a second restore into it fails at once with -506,
    touching nothing - two at once would each remove what the other wrote."""
    fd = os.open(dest_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JetError(
            "JET_errRestoreInProgress", f"{dest_dir}: another restore is writing into it"
        ) from None
    return fd


def _check_destination(dest_dir: str, manifest: dict) -> bool:
    """Whether this restore resumes an interrupted one in ``dest_dir``; -1023 if the
    directory holds anything else (an empty ``logs/`` aside): a restore writes a
    database there, and its cleanup must not take what it did not bring."""
    marker = restore_marker_format.read(dest_dir)
    logs = os.path.join(dest_dir, LOG_DIR)
    # What is no data: an empty logs/, the runtime directory an open leaves, and the
    # temporary marker of a restore killed while writing it.
    held = [
        name
        for name in os.listdir(dest_dir)
        if not (name == LOG_DIR and os.path.isdir(logs) and not os.listdir(logs))
        and name not in (RUN_DIR, restore_marker_format.RESTORE_MARKER + ".tmp")
    ]
    if marker is None:
        if held:
            raise JetError(
                "JET_errInvalidPath",
                f"{dest_dir} is not empty (it holds {', '.join(sorted(held)[:3])}) and has no "
                f"{restore_marker_format.RESTORE_MARKER} marker, so it is no interrupted restore "
                "to complete: restore into an empty or new directory",
            )
        return False
    if marker and marker["backup_id"] != manifest["backup_id"]:
        raise JetError(
            "JET_errInvalidPath",
            f"{restore_marker_format.describe(dest_dir, marker)}; only a restore of that backup "
            f"can complete it, not one of backup {manifest['backup_id']}",
        )
    return True


def _roll_forward(
    env: Env,
    manifest: dict,
    log_dir: str,
    dest_logs: str,
    *,
    all_closed: bool,
    stop_at_break: bool,
) -> tuple[list[int], JetError | None]:
    """Copy generations gen_high+1, gen_high+2, ... of ``log_dir`` while they chain on;
    the generations copied, and the error of a break in the log after them.
    ``all_closed``: an archive's are; a live log's current generation is still open.

    Stopping short of a generation there above the backup's would restore without the
    commits between: a generation of this stream after a hole, or another stream's (the
    database's log restarted after logging=False or a lost log directory), fails the
    restore naming where the log breaks.  With ``stop_at_break`` (a restore to a target)
    the roll-forward stops there instead, and the break's error is returned: a target
    before it is reachable; one past it fails with that error, not "beyond the log".
    Generations up to gen_high are the backup's own.
    """
    present = list_generations(env, log_dir)
    signature = bytes.fromhex(manifest["log_signature"])
    following = [g for g in present if g > manifest["gen_high"]]
    if present and not following:
        # Nothing to roll forward through: still, a directory of another stream's log
        # means the wrong directory was given, not that no commit came after the backup.
        found = _signature_of(env, log_dir, present[-1])
        if found != signature:
            raise JetError(
                "JET_errGivenLogFileHasBadSignature",
                f"{os.path.join(log_dir, generation_file_name(present[-1]))}: the log in"
                f" {log_dir} is stream {found.hex()}, not the backup's {signature.hex()}:"
                " is it this database's log directory?",
            )
    rolled, break_ahead = [], None
    for generation in following:
        if generation != manifest["gen_high"] + 1 + len(rolled):
            break_ahead = _log_gap(log_dir, manifest["gen_high"] + 1 + len(rolled), generation)
        elif (found := _signature_of(env, log_dir, generation)) != signature:
            break_ahead = _other_stream(log_dir, generation, found, signature)
        if break_ahead is not None:
            if not stop_at_break:
                raise break_ahead
            break
        rolled.append(generation)
    for generation in rolled:
        name = generation_file_name(generation)
        copy_file(env, os.path.join(log_dir, name), os.path.join(dest_logs, name), None)
    if rolled:
        try:
            verify_generations(
                env,
                dest_logs,
                manifest["gen_low"],
                rolled[-1],
                signature,
                "replay",
                all_closed=all_closed,
            )
        except JetError as exc:
            mapped = _ROLL_FORWARD_ERRORS.get(exc.name)
            raise JetError(mapped, exc.message) if mapped else exc from exc
    return rolled, break_ahead


def _signature_of(env: Env, log_dir: str, generation: int) -> bytes:
    return LogReader(env, log_dir).read_header(generation).signature


def _log_gap(log_dir: str, missing: int, found: int) -> JetError:
    span = f"{missing}" if found == missing + 1 else f"{missing}..{found - 1}"
    return JetError(
        "JET_errMissingLogFile",
        f"{log_dir}: generation(s) {span} missing before generation {found}: rolling forward "
        f"past {missing - 1} would leave out the commits they held",
    )


def _other_stream(log_dir: str, generation: int, found: bytes, signature: bytes) -> JetError:
    return JetError(
        "JET_errExistingLogFileHasBadSignature",
        f"{os.path.join(log_dir, generation_file_name(generation))}: generation {generation} "
        f"starts log stream {found.hex()}, not the backup's {signature.hex()}.  If it is "
        "this database's log, the log restarted there (after a run with logging=False, or "
        f"the loss of its log directory) and commits after generation {generation - 1} "
        "are in no log this backup can roll forward through: take a new full backup",
    )

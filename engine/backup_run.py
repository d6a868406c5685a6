"""One backup, step by step (DESIGN.md section 6): full (plain or atomic), incremental,
truncation alone, and the undo of one that failed or whose worker was killed.

All of it runs in one process.  The rest of the instance is reached through
``Peers`` - the buffer manager's checkpoints, pins and meta, the log writer's roll,
pins and truncation - which the backup worker implements over ZeroMQ
(actors/backup_worker.py) and the tests implement in process over a Storage
(tests/inprocess.py).  What a run reports, and whether it must stop, go through
``Hooks``: the worker sends progress to its client, waits for its callback and
watches the caller's process.

The sequence of a full backup: claim the destination (``claim_destination``), pin a
fresh durable checkpoint and its generation, roll, stream the checkpoint's verified
pages, copy the verified generations, write the MANIFEST last, (atomic: swap it in),
record the backup in the meta, unpin, truncate.  Before each step that leaves
something behind, ``mark`` records it: the pins in the run marker
(run_marker_format.py), for the worker started after this one died, and the files
written in the destination's claim (claim_format.py), for whoever claims the
destination next.  On any failure ``undo_written`` removes exactly those files -
deletes first, so it works on a full disk - and the error that caused it is the one
reported.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from . import backup as steps
from . import manifest_format
from .backup import Progress, Throttle
from .claim_format import CLAIM_FILE, DestinationClaim, new_token
from .errors import JetError
from .events_format import EventLog
from .fileio import Env
from .log_format import RECORDS_START, lsn_gen, make_lsn, parse_generation_file_name
from .meta_format import BackupRecord, Meta
from .run_marker_format import RunMarker
from .storage import DB_FILE, LOG_DIR

# The named steps of a backup, in order: where JETSTORE_FAULTS can make the worker die.
BACKUP_STEPS = (
    "pinned",
    "rolled",
    "pages-copied",
    "logs-copied",
    "manifest-written",
    "swap-old-kept",
    "swap-new-placed",
)  # what a worker that dies mid-backup leaves to undo


class Peers(Protocol):
    """What a backup asks of the buffer manager and the log writer."""

    def checkpoint(self) -> dict:
        """Take a checkpoint; once durable: {"seq", "checkpoint_lsn"}."""

    def pin_checkpoint(self) -> dict:
        """Pin the last durable checkpoint: {"seq", "meta_page"}."""

    def unpin_checkpoint(self, seq: int) -> None: ...

    def backup_info(self) -> dict:
        """The meta's backup history: {"last_full", "last_incremental", "log_restart"}."""

    def pin_log(self, generation: int) -> None:
        """Delete no generation >= ``generation`` until unpinned."""

    def unpin_log(self, generation: int) -> None: ...

    def roll(self) -> int:
        """Close the current generation; the new one's number (the buffer manager told)."""

    def record_backup(self, incremental: bool, record: BackupRecord) -> dict:
        """Record a backup in the meta; the durable checkpoint that holds it."""

    def truncate(self, below: int, checkpoint_lsn: int) -> list[int]:
        """Delete generations < ``below``, oldest first; the ones deleted."""


class Hooks(Protocol):
    """The caller's side of a run."""

    def report(self, progress: Progress) -> None:
        """One progress event; raises to stop the run (an abort, a failed callback)."""

    def check(self) -> None:
        """Raise if the run must stop (called between chunks)."""

    def complete(self, progress: Progress) -> None:
        """The last event, once the backup is published: it cannot fail any more."""


@dataclass
class RunState:
    """What a backup holds and has written: what its undo needs."""

    kind: str  # "full", "incremental", "truncate"
    claim: DestinationClaim | None = None
    pins: dict = field(default_factory=dict)  # seq (buffer manager), generation (log writer)
    written: dict = field(default_factory=dict)  # tree, created, swapped, recorded, ...


class BackupRun:
    def __init__(
        self,
        state: RunState,
        instance_path: str,
        peers: Peers,
        hooks: Hooks,
        *,
        env: Env,
        events: EventLog,
        marker: RunMarker,
        throttle: Throttle,
        circular: bool = False,
        clock: Callable[[], float] = time.monotonic,
        fault_point: Callable[[str], None] = lambda step: None,
    ) -> None:
        self.state, self.path, self.peers, self.hooks = state, instance_path, peers, hooks
        self.env, self.events, self.marker, self.throttle = env, events, marker, throttle
        self.circular, self.clock = circular, clock
        # Called at each of BACKUP_STEPS: where a fault plan may end the process there.
        self.fault_point = fault_point
        self.started = clock()  # what "seconds" and steps_ms count from
        self.steps_ms: dict[str, float] = {}

    def execute(self, dest: str | None, atomic: bool) -> dict:
        """Run the backup; its result, or the JetError that failed it (already undone)."""
        kind = self.state.kind
        self.events.emit("backup-begin", kind=kind, dest=dest, atomic=atomic)
        try:
            if kind == "truncate":
                result = self.truncate_only()
            elif kind == "full":
                result = self.full(dest, atomic)
            else:
                result = self.incremental(dest)
        except BaseException as exc:
            error = JetError.of(exc)
            self.events.failure("backup-fail", error, kind=kind, dest=dest, seconds=self.seconds())
            raise error from None
        finally:
            self.release_claim()
            self.marker.remove()
        result["seconds"] = self.seconds()
        self.events.emit("backup-complete", kind=kind, steps_ms=self.steps_ms, **result)
        return result

    def seconds(self) -> float:
        return round(self.clock() - self.started, 3)

    def at(self, name: str, fault_point: bool = True) -> None:
        """The backup reached step ``name``: timed for the event log, and a fault point."""
        self.steps_ms[name] = round((self.clock() - self.started) * 1000, 1)
        if fault_point:
            self.fault_point(name)

    # -- the sequences -------------------------------------------------------------
    def pin(self) -> tuple[dict, Meta]:
        """A fresh durable checkpoint, pinned in the buffer manager."""
        self.peers.checkpoint()
        pinned = self.peers.pin_checkpoint()
        meta = Meta.from_page(
            pinned["meta_page"],
            steps.meta_page_slot(pinned["meta_page"]),
            os.path.join(self.path, DB_FILE),
        )
        return pinned, meta

    def full(self, dest: str, atomic: bool) -> dict:
        state = self.state
        self.hooks.report(Progress("begin", "pages", 0, 0))
        work = os.path.join(dest, steps.ATOMIC_TEMP) if atomic else dest
        pinned, meta = self.pin()
        gen_low = lsn_gen(meta.checkpoint_lsn)
        state.pins = {"seq": pinned["seq"]}
        state.written = {
            "tree": work if atomic else None,
            "created": [
                os.path.join(work, n) for n in (DB_FILE, LOG_DIR, "MANIFEST", "MANIFEST.tmp")
            ],
        }
        with self.holding(dest):
            self.mark()
            self.peers.pin_log(gen_low)
            state.pins["generation"] = gen_low
            self.mark()
            self.at("pinned")
            copy_mac = self.peers.roll()  # the backup's end
            self.at("rolled")
            gen_high = copy_mac - 1
            roll_lsn = make_lsn(copy_mac, RECORDS_START)
            self.events.emit("roll", generation=copy_mac, gen_low=gen_low, gen_high=gen_high)
            if atomic:
                shutil.rmtree(work, ignore_errors=True)  # a failed atomic backup's leftovers
            self.env.makedirs(work)
            files = {
                DB_FILE: steps.copy_database(
                    self.env,
                    os.path.join(self.path, DB_FILE),
                    pinned["meta_page"],
                    os.path.join(work, DB_FILE),
                    report=self.hooks.report,
                    throttle=self.throttle,
                    should_stop=self.hooks.check,
                )
            }
            self.events.emit("backup-file", file=DB_FILE, bytes=files[DB_FILE]["size"])
            self.at("pages-copied")
            logs = self.copy_logs(gen_low, gen_high, meta.log_signature, work)
            files.update(logs)
            self.at("logs-copied")
            entry = manifest_format.chain_entry("full", gen_low, gen_high, roll_lsn)
            manifest = manifest_format.full(
                entry,
                instance_path=self.path,
                db_signature=meta.db_signature,
                log_signature=meta.log_signature,
                page_size=meta.page_size,
                checkpoint_lsn=meta.checkpoint_lsn,
                files=files,
            )
            self.hooks.check()
            steps.write_manifest(self.env, work, manifest)
            self.at("manifest-written")
            if atomic:
                had_previous = os.path.isdir(os.path.join(dest, steps.ATOMIC_NEW))
                state.written = {"swapped": True, "had_previous": had_previous}
                self.mark()
                steps.swap_atomic(self.env, dest, step=self.fault_point)
            checkpoint = self.record(False, entry, manifest)
            self.at("recorded", fault_point=False)
            # Recorded: from here on nothing is removed (an atomic swap only finishes).
            state.written = {"swapped": atomic, "recorded": True}
            self.mark()
            if atomic:
                steps.finish_atomic(self.env, dest)
        return self.finish(copy_mac, checkpoint, files, entry, manifest["backup_id"])

    def incremental(self, dest: str) -> dict:
        state = self.state
        self.hooks.report(Progress("begin", "logs", 0, 0))
        info = self.peers.backup_info()
        restart = info.get("log_restart")
        if not info["last_full"] and restart:
            raise JetError(
                "JET_errMissingFullBackup",
                f"{restart['reason']}: the log stream restarted at generation "
                f"{restart['generation']}, so no incremental can continue the backup chain; "
                "take a full backup",
            )
        if not info["last_full"]:
            raise JetError(
                "JET_errMissingFullBackup",
                "no full backup since the database was created or restored: take one first",
            )
        directory, manifest = chain_directory(dest, info)
        first = manifest["gen_high"] + 1
        with self.holding(dest):
            self.mark()
            self.peers.pin_log(first)
            state.pins = {"generation": first}
            self.mark()
            copy_mac = self.peers.roll()  # the backup's end
            self.at("rolled")
            gen_high = copy_mac - 1
            roll_lsn = make_lsn(copy_mac, RECORDS_START)
            self.events.emit("roll", generation=copy_mac, gen_low=first, gen_high=gen_high)
            names = [f"{LOG_DIR}/{steps.generation_file_name(g)}" for g in range(first, copy_mac)]
            state.written = {"created": [os.path.join(directory, name) for name in names]}
            self.mark()
            signature = bytes.fromhex(manifest["log_signature"])
            logs = self.copy_logs(first, gen_high, signature, directory)
            entry = manifest_format.chain_entry("incremental", first, gen_high, roll_lsn)
            updated = manifest_format.with_incremental(manifest, entry, logs)
            self.hooks.check()
            self.at("logs-copied")
            state.written.update(directory=directory, previous_manifest=manifest)
            self.mark()
            steps.write_manifest(self.env, directory, updated)
            self.at("manifest-written")
            checkpoint = self.record(True, entry, updated)
            self.at("recorded", fault_point=False)
            state.written = {"recorded": True}  # from here on nothing is removed
            self.mark()
        return self.finish(copy_mac, checkpoint, logs, entry, manifest["backup_id"])

    def truncate_only(self) -> dict:
        self.hooks.report(Progress("begin", "truncate", 0, 0))
        copy_mac = self.peers.roll()  # the backup's end
        self.events.emit("roll", generation=copy_mac)
        checkpoint = self.peers.checkpoint()
        deleted = self.truncate(copy_mac, checkpoint["checkpoint_lsn"])
        self.hooks.complete(Progress("complete", "truncate", 0, 0))
        return {"truncated": deleted, "generation": copy_mac}

    @contextmanager
    def holding(self, dest: str) -> Iterator[None]:
        """The part of a backup that holds pins and writes into ``dest``: on a failure
        what it wrote is undone; whatever happens, its pins, claim and marker are let go
        (before truncation, which needs none of them)."""
        try:
            yield
        except BaseException:
            undo_written(self.env, self.events, dest, self.state.written)
            raise
        finally:
            unpin(self.peers, self.events, self.state.pins)
            self.release_claim()
            self.marker.remove()

    def copy_logs(self, gen_low: int, gen_high: int, signature: bytes, into: str) -> dict:
        logs = steps.copy_generations(
            self.env,
            os.path.join(self.path, LOG_DIR),
            os.path.join(into, LOG_DIR),
            gen_low,
            gen_high,
            signature,
            report=self.hooks.report,
            throttle=self.throttle,
            should_stop=self.hooks.check,
        )
        for name, entry in logs.items():
            self.events.emit("backup-file", file=name, bytes=entry["size"])
        return logs

    def finish(
        self, copy_mac: int, checkpoint: dict, files: dict, entry: dict, backup_id: str
    ) -> dict:
        """Published and recorded: truncate, send the last event, the result."""
        deleted = self.truncate(copy_mac, checkpoint["checkpoint_lsn"])
        self.at("truncated", fault_point=False)
        total = sum(f["size"] for f in files.values())
        self.hooks.complete(Progress("complete", "logs", total, total))
        return {
            "backup_id": backup_id,
            "bytes": total,
            "gen_low": entry["gen_low"],
            "gen_high": entry["gen_high"],
            "roll_lsn": entry["roll_lsn"],
            "truncated": deleted,
        }

    # -- the peers' steps ------------------------------------------------------------
    def record(self, incremental: bool, entry: dict, manifest: dict) -> dict:
        """Record the backup in the meta; returns the durable checkpoint that holds it."""
        record = BackupRecord(
            time_ns=entry["time_ns"],
            gen_low=entry["gen_low"],
            gen_high=entry["gen_high"],
            lsn_mark=manifest["checkpoint_lsn"],
            backup_id=bytes.fromhex(manifest["backup_id"]),
        )
        return self.peers.record_backup(incremental, record)

    def truncate(self, copy_mac: int, checkpoint_lsn: int) -> list[int]:
        """Delete generations below min(checkpoint generation, copyMac), oldest first.

        The log writer also learns of checkpoints from the buffer manager, on
        another socket; passing the durable checkpoint along makes the rule
        independent of which message it reads first.
        """
        if self.circular:
            self.events.emit("truncate", deleted=[], reason="circular logging truncates itself")
            return []
        below = min(copy_mac, lsn_gen(checkpoint_lsn))
        try:
            deleted = self.peers.truncate(below, checkpoint_lsn)
        except JetError as exc:  # the backup is complete and recorded: truncation is extra
            self.events.failure("truncate-fail", exc, below=below)
            return []
        self.events.emit("truncate", deleted=deleted, below=below)
        return deleted

    # -- what a successor needs --------------------------------------------------------
    def mark(self) -> None:
        """Record what the running backup holds and has written, so that whoever comes
        next can undo it: the pins in the run marker (for the worker started after this
        one died), the files in the destination's claim (for any backup that claims the
        destination next).  Each write is atomic and durable."""
        state = self.state
        if state.claim is not None:
            state.claim.record(state.written)
        marked = {"kind": state.kind, "pins": state.pins}
        if state.claim is not None:
            marked.update(dest=state.claim.dest, token=state.claim.token)
        self.marker.write(marked)

    def release_claim(self) -> None:
        """The destination is free again; before the marker goes (it names the claim)."""
        if self.state.claim is not None:
            self.state.claim.release()
            self.state.claim = None


def unpin(peers: Peers, events: EventLog, pins: dict) -> None:
    """Release both pins, whatever happened; a failure here is only logged."""
    for release, name in ((peers.unpin_checkpoint, "seq"), (peers.unpin_log, "generation")):
        if pins.get(name) is None:
            continue
        try:
            release(pins[name])
        except JetError as exc:
            events.failure("unpin-fail", exc, kind=release.__name__)


# -- a destination's ownership ---------------------------------------------------------


def claim_destination(
    dest: str,
    kind: str,
    atomic: bool,
    create_path: bool,
    *,
    marker: RunMarker,
    env: Env,
    events: EventLog,
) -> DestinationClaim:
    """Claim ``dest``, undo what a killed backup left there, then check it (DESIGN 6.1)."""
    make_destination(dest, create_path)
    # The marker names the claim before the claim file exists: a worker killed from
    # here on leaves its successor what it needs to remove that file.
    token = new_token()
    marker.write({"kind": kind, "pins": {}, "dest": dest, "token": token})
    try:
        claim = DestinationClaim.take(dest, token)
    except BaseException:
        marker.remove()
        raise
    try:
        if claim.left is not None:
            events.emit("backup-claim-stale", dest=dest, pid=claim.left.get("pid"))
            undo_written(env, events, dest, claim.left.get("state") or {})
        if atomic:
            check_atomic_destination(dest)
        if kind == "full" and not atomic and set(os.listdir(dest)) - {CLAIM_FILE}:
            raise JetError(
                "JET_errBackupDirectoryNotEmpty",
                f"{dest} is not empty: back up into an empty directory, add an incremental"
                " to the chain there (incremental / --incremental), or replace it atomically"
                " (atomic / --atomic)",
            )
    except BaseException:
        claim.release()
        marker.remove()
        raise
    return claim


def undo_dead_run(marker: RunMarker, peers: Peers, env: Env, events: EventLog) -> None:
    """At a worker's start: finish the failure of a backup whose worker died."""
    state = marker.read()
    if state is None:
        return
    unpin(peers, events, state.get("pins") or {})
    if state.get("dest"):
        _undo_claimed(state["dest"], state.get("token"), env, events)
    events.emit(
        "backup-fail",
        kind=state.get("kind"),
        dest=state.get("dest"),
        error=JetError(
            "JET_errBackupAbortByServer", "the backup worker died; its files were removed"
        ).as_dict(),
    )
    marker.remove()


def _undo_claimed(dest: str, token: str | None, env: Env, events: EventLog) -> None:
    """Undo a dead predecessor's files - only if its claim is still the one in DEST:
    a backup that has claimed DEST since undid them itself and owns what is there."""
    try:
        claim = DestinationClaim.take(dest)
    except JetError as exc:
        events.failure("backup-undo-skipped", exc, dest=dest)
        return
    try:
        written = claim.holds(token)
        if written is not None:
            undo_written(env, events, dest, written)
    finally:
        claim.release()


def undo_written(env: Env, events: EventLog, dest: str, written: dict) -> None:
    """Undo what a failed backup wrote into ``dest``; never raises (the error that
    failed the backup is the one reported, a failed cleanup is an event).

    Deletes come first, so the undo works on a full disk; the one write - the chain's
    previous MANIFEST, for an incremental that replaced it - comes last.
    """
    try:
        if written.get("recorded"):
            if written.get("swapped"):
                steps.finish_atomic(env, dest)
            return
        if written.get("swapped"):  # temp, the failed backup, goes in the undo
            steps.undo_atomic(env, dest, written.get("had_previous", True))
        else:
            _remove(written.get("tree"), written.get("created", []))
        previous = written.get("previous_manifest")
        if previous and steps.read_manifest(written["directory"]) != previous:
            steps.write_manifest(env, written["directory"], previous)
    except Exception as exc:  # noqa: BLE001 - reported as an event, see above
        error = exc if isinstance(exc, JetError) else JetError("JET_errDiskIO", repr(exc))
        events.failure("backup-cleanup-fail", error, dest=dest)


def _remove(tree: str | None, paths: list[str]) -> None:
    """Remove every file this backup wrote (leftovers of a failure never look like a backup)."""
    if tree is not None:
        shutil.rmtree(tree, ignore_errors=True)
    for path in paths:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.unlink(path)


def make_destination(dest: str, create_path: bool) -> None:
    """DESIGN 6.1: the destination is a directory (JET_errInvalidPath), created on request."""
    if not os.path.isdir(dest):
        if os.path.exists(dest):
            raise JetError("JET_errInvalidPath", f"backup destination {dest} is not a directory")
        if not create_path:
            raise JetError(
                "JET_errInvalidPath",
                f"backup destination {dest} does not exist: create it first (mkdir), or open"
                " the instance with create_path_if_not_exist=True",
            )
        try:
            os.makedirs(dest)
        except OSError as exc:
            raise JetError("JET_errInvalidPath", f"cannot create {dest}: {exc.strerror}") from None


def check_atomic_destination(dest: str) -> None:
    """An atomic backup writes temp/ and new/ in DEST and replaces old/: refuse a DEST
    where those names hold something else, so that the swap deletes nothing it did not
    write, and a DEST holding a plain backup, which a restore would find before new/.
    Other files there are left alone."""
    problems = []
    if os.path.exists(os.path.join(dest, manifest_format.MANIFEST)):
        problems.append("a plain backup (its MANIFEST), which a restore would find first")
    for name in (steps.ATOMIC_TEMP, steps.ATOMIC_NEW, steps.ATOMIC_OLD):
        path = os.path.join(dest, name)
        if name == steps.ATOMIC_TEMP and os.path.lexists(path):
            if not _holds_only_backup_files(path):
                problems.append(f"{name}/, holding files no backup writes")
        elif name != steps.ATOMIC_TEMP and os.path.lexists(path):
            if not os.path.isfile(os.path.join(path, manifest_format.MANIFEST)):
                problems.append(f"{name}/, which is not a complete jetstore backup")
    if problems:
        raise JetError(
            "JET_errBackupDirectoryNotEmpty",
            f"{dest} holds {'; '.join(problems)}: give an atomic backup an empty directory"
            " or one an atomic backup wrote",
        )


def _holds_only_backup_files(path: str) -> bool:
    """A failed atomic backup's temp/ (which the next one replaces), not someone's folder."""
    if not os.path.isdir(path) or os.path.islink(path):
        return False
    if not set(os.listdir(path)) <= {DB_FILE, LOG_DIR, manifest_format.MANIFEST}:
        return False
    logs = os.path.join(path, LOG_DIR)
    return not os.path.exists(logs) or all(
        parse_generation_file_name(name) is not None for name in os.listdir(logs)
    )


def chain_directory(dest: str, info: dict) -> tuple[str, dict]:
    """The backup an incremental continues: in DEST (or DEST/new), of the last full backup."""
    try:
        directory, manifest = steps.locate_backup(dest)
    except JetError as exc:
        raise JetError("JET_errInvalidBackupSequence", f"{dest}: {exc.message}") from None
    if directory.endswith(os.sep + steps.ATOMIC_OLD):
        raise JetError("JET_errInvalidBackupSequence", f"{dest}: only an old backup is complete")
    last = info["last_incremental"] or info["last_full"]
    if manifest["backup_id"] != info["last_full"]["backup_id"].hex():
        raise JetError(
            "JET_errInvalidBackupSequence",
            f"{directory} holds backup {manifest['backup_id']}, not the last full "
            f"backup {info['last_full']['backup_id'].hex()}",
        )
    if manifest["gen_high"] != last["gen_high"]:
        raise JetError(
            "JET_errInvalidBackupSequence",
            f"{directory} ends at generation {manifest['gen_high']}, the last backup "
            f"at {last['gen_high']}",
        )
    return directory, manifest

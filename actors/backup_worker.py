"""Backup worker actor: runs backups and log truncation (DESIGN.md section 6).

The loop serves requests (backup, status, abort, rate changes, acks of
progress events) while one backup at a time runs in a worker thread.  The
thread follows DESIGN.md 6.1-6.9: pin a fresh durable checkpoint (buffer
manager) and its generation floor (log writer), ask the log writer to roll,
stream the checkpoint's verified pages, copy the verified generations,
publish the MANIFEST last, record the backup in the meta, unpin, truncate.
Progress events go to the client, which acknowledges each one after its
callback returned (ESE's synchronous pfnStatus).  On any failure every file
the backup wrote is removed, both pins are released and nothing is truncated.

A backup claims its destination before writing anything (claim_format.py), so
no other backup, of any instance, writes or cleans up there meanwhile; what it
has written is recorded in the claim, so the next owner can undo a killed
backup's leftovers.  The process that asked for the backup is watched: if it
dies or the kernel holds it stopped, the backup fails and cleans up at once.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field

import psutil
import zmq

from jetstore.engine import backup as steps
from jetstore.engine.backup import CATCH_UP, STEADY, YIELD, LogActivity, Progress, Throttle
from jetstore.engine.claim_format import CLAIM_FILE, DestinationClaim, new_token
from jetstore.engine.client import Channel
from jetstore.engine.errors import JetError
from jetstore.engine.events import EventLog
from jetstore.engine.faults import env_for, step
from jetstore.engine.fileio import DEFAULT_ENV
from jetstore.engine.log_format import RECORDS_START, lsn_gen, make_lsn
from jetstore.engine.meta_format import Meta
from jetstore.engine.storage import DB_FILE, LOG_DIR
from jetstore.protocol import schema

from .runtime import (
    DEFERRED,
    RUN_DIR,
    ActorConfig,
    ActorHost,
    Outbox,
    Request,
    actor_setup,
    serve_requests,
)

NAME = "backup_worker"
MARKER_FILE = "backup-in-progress.json"
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
PEER_TIMEOUT = 120.0  # a peer that does not answer a backup step in this long is stuck
ACK_TIMEOUT = 120.0  # a callback of a live, running caller that has not returned by then
CALLER_CHECK_INTERVAL = 0.25  # how often the caller's process is looked at
CALLER_STOP_GRACE = 3.0  # a caller held stopped (SIGSTOP) this long answers nothing


class Caller:
    """The process that asked for a backup; the backup ends if it dies or stops answering.

    A status callback is synchronous (ESE's pfnStatus), so a slow callback in a live
    process is waited for; a dead process, or one the kernel holds stopped, will never
    acknowledge, and waiting for it would hold the destination, the pins and the
    retained log for minutes.
    """

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        try:
            self.process = psutil.Process(pid) if pid is not None else None
        except psutil.Error:
            self.process = None
        self.stopped_since: float | None = None
        self.checked = 0.0

    def check(self, now: float, *, force: bool = False) -> None:
        """Raise -801 if the caller died or has been stopped for CALLER_STOP_GRACE."""
        if self.pid is None or (not force and now - self.checked < CALLER_CHECK_INTERVAL):
            return
        self.checked = now
        try:
            alive = self.process is not None and self.process.is_running()
            status = self.process.status() if alive else psutil.STATUS_DEAD
        except psutil.Error:
            status = psutil.STATUS_DEAD
        if status in (psutil.STATUS_DEAD, psutil.STATUS_ZOMBIE):
            raise JetError(
                "JET_errBackupAbortByServer",
                f"the process that asked for this backup (pid {self.pid}) died",
            )
        if status in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP):
            self.stopped_since = self.stopped_since or now
            if now - self.stopped_since > CALLER_STOP_GRACE:
                raise JetError(
                    "JET_errBackupAbortByServer",
                    f"the process that asked for this backup (pid {self.pid}) has been "
                    f"stopped for {now - self.stopped_since:.1f} s",
                )
        else:
            self.stopped_since = None


@dataclass
class Run:
    """One backup in progress.

    ``pins`` and ``written`` are what a worker started after this one died needs to
    undo it: the pins (in the run directory's marker) and what this backup has
    written into its destination (in the destination's claim).
    """

    request: Request
    kind: str  # "full", "incremental", "truncate"
    sync_progress: bool
    caller: Caller
    claim: DestinationClaim | None = None
    progress: Progress | None = None
    abort: JetError | None = None
    acked: threading.Event = field(default_factory=threading.Event)
    published: bool = False  # past this point the backup succeeds whatever happens
    pins: dict = field(default_factory=dict)  # seq (buffer manager), generation (log writer)
    started: float = field(default_factory=time.monotonic)  # what seconds and steps_ms count from
    steps_ms: dict = field(default_factory=dict)  # when each named step was reached
    written: dict = field(default_factory=dict)  # tree, created, swapped, recorded, ...


class BackupWorker:
    def __init__(self, cfg: ActorConfig, context: zmq.Context, router: zmq.Socket) -> None:
        self.cfg = cfg
        self.router = router
        self.logging = cfg.options.get("logging", True)
        self.circular = cfg.options.get("circular_logging", False)
        self.env = env_for(DEFAULT_ENV)
        self.marker = os.path.join(cfg.path, RUN_DIR, MARKER_FILE)
        self.events = EventLog(cfg.path)
        # Set by an abort or a shutdown: a throttled backup stops sleeping at once.
        self.wakeup = threading.Event()
        self.throttle = Throttle(
            sleep=self.wakeup.wait,
            on_pace=copy_yields,
            foreground=LogActivity(os.path.join(cfg.path, LOG_DIR)),
        )
        self.run: Run | None = None
        self.outbox = Outbox()  # thread -> loop: what to send to clients
        self.bm = Channel(context, cfg.endpoints["buffer_manager"], lambda: None)
        self.lw = (
            Channel(context, cfg.endpoints["log_control"], lambda: None) if self.logging else None
        )
        self.stopping = False
        self.handlers = {
            "ping": lambda body, request: "pong",
            "status": lambda body, request: self.status(),
            "shutdown": self.shutdown,
            "backup": self.start_backup,
            "ack": self.ack,
            "abort_backup": self.abort_backup,
            "set_backup_rate": self.set_rate,
        }
        self.lock = threading.Lock()  # run; the loop and the backup thread share it

    # -- requests ------------------------------------------------------------------
    def status(self) -> dict:
        with self.lock:
            run = self.run
            rates = {"rate": self.throttle.rate, "min_rate": self.throttle.min_rate}
            if run is None:
                return {"backup_in_progress": False, **rates}
            progress = run.progress
            return {
                "backup_in_progress": True,
                "kind": run.kind,
                **rates,
                "progress": None if progress is None else vars(progress),
            }

    def shutdown(self, body: dict, request: Request) -> dict:
        with self.lock:
            if self.run is not None:
                self.run.abort = JetError("JET_errBackupAbortByServer", "the instance is stopping")
                self.run.acked.set()  # do not wait for a status callback any more
                self.wakeup.set()
        self.stopping = True
        return {"stopped": True}

    def abort_backup(self, body: dict, request: Request) -> dict:
        with self.lock:
            if self.run is None or self.run.published:
                return {"aborted": False}
            self.run.abort = JetError("JET_errBackupAbortByServer", "aborted on request")
            self.run.acked.set()
            self.wakeup.set()
        return {"aborted": True}

    def set_rate(self, body: dict, request: Request) -> dict:
        self.throttle.set_rate(body["rate"], body.get("min_rate"))
        return {"rate": self.throttle.rate, "min_rate": self.throttle.min_rate}

    def ack(self, body: dict, request: Request):
        """The client's callback returned (or raised: ``error`` set) for the last event."""
        with self.lock:
            run = self.run
            if run is not None and run.request.identity == request.identity:
                if body.get("error"):
                    run.abort = JetError("JET_errCallbackFailed", body["error"][:200])
                run.acked.set()
        return DEFERRED  # acks are not answered

    def start_backup(self, body: dict, request: Request):
        dest, incremental, atomic = body.get("dest"), body["incremental"], body["atomic"]
        create_path = bool(body.get("create_path"))
        if incremental and atomic:
            raise JetError("JET_errInvalidGrbit", "an incremental backup cannot be atomic")
        if dest is None and (incremental or atomic):
            raise JetError("JET_errInvalidGrbit", "truncation alone takes no backup options")
        if self.stopping:
            raise JetError("JET_errTermInProgress", "the instance is shutting down")
        if not self.logging:
            raise JetError("JET_errLoggingDisabled", "backup needs logging (logging=False)")
        failure = self._call(self.lw, "status")["failure"]
        if failure is not None:
            raise JetError("JET_errLogWriteFail", f"the log writer failed: {failure}")
        with self.lock:
            if self.run is not None:
                raise JetError("JET_errBackupInProgress", "a backup is already running")
            kind = "truncate" if dest is None else ("incremental" if incremental else "full")
            if kind == "incremental" and self.circular:
                raise JetError(
                    "JET_errInvalidBackup", "no incremental backup under circular logging"
                )
            claim = (
                None if dest is None else self.claim_destination(dest, kind, atomic, create_path)
            )
            caller = Caller(body.get("caller_pid"))
            self.run = Run(request, kind, bool(body.get("sync_progress")), caller, claim)
            self.wakeup.clear()
        thread = threading.Thread(
            target=self._run, args=(self.run, dest, atomic), name="backup", daemon=True
        )
        thread.start()
        return DEFERRED

    def claim_destination(
        self, dest: str, kind: str, atomic: bool, create_path: bool
    ) -> DestinationClaim:
        """Claim ``dest``, undo what a killed backup left there, then check it (DESIGN 6.1)."""
        make_destination(dest, create_path)
        # The marker names the claim before the claim file exists: a worker killed from
        # here on leaves its successor what it needs to remove that file.
        token = new_token()
        self.write_marker({"kind": kind, "pins": {}, "dest": dest, "token": token})
        try:
            claim = DestinationClaim.take(dest, token)
        except BaseException:
            self.unmark()
            raise
        try:
            if claim.left is not None:
                self.events.emit("backup-claim-stale", dest=dest, pid=claim.left.get("pid"))
                self.undo_written(dest, claim.left.get("state") or {})
            if kind == "full" and not atomic and set(os.listdir(dest)) - {CLAIM_FILE}:
                raise JetError("JET_errBackupDirectoryNotEmpty", f"{dest} is not empty")
        except BaseException:
            claim.release()
            self.unmark()
            raise
        return claim

    # -- the loop's side of progress -----------------------------------------------
    # -- the backup thread -----------------------------------------------------------
    def report(self, run: Run, progress: Progress) -> None:
        """Send one event; with a client callback, wait until it returned (ESE pfnStatus)."""
        with self.lock:
            run.progress = progress
        if run.abort is not None:
            raise run.abort
        self._send_event(run, progress)
        if run.abort is not None:
            raise run.abort

    def report_complete(self, run: Run, total: int, phase: str) -> None:
        """The last event, sent once the backup is published, recorded and truncated: it
        can no longer fail, so neither an abort nor a raising callback undoes anything
        (ESE ignores pfnStatus's return value too)."""
        with self.lock:
            run.published = True
        self._send_event(run, Progress("complete", phase, total, total))

    def _send_event(self, run: Run, progress: Progress) -> None:
        run.acked.clear()
        self.outbox.put(self.router, run.request, "progress", vars(progress))
        if not run.sync_progress:
            return
        deadline = time.monotonic() + ACK_TIMEOUT
        while not run.acked.wait(CALLER_CHECK_INTERVAL):
            run.caller.check(time.monotonic(), force=True)
            if time.monotonic() > deadline:
                raise JetError(
                    "JET_errCallbackFailed", f"status callback silent for {ACK_TIMEOUT} s"
                )

    def check_abort(self, run: Run) -> None:
        if run.abort is not None:
            raise run.abort
        run.caller.check(time.monotonic())

    def _run(self, run: Run, dest: str | None, atomic: bool) -> None:
        copy_yields(STEADY)
        self.events.emit("backup-begin", kind=run.kind, dest=dest, atomic=atomic)
        try:
            if run.kind == "truncate":
                result = self.truncate_only(run)
            elif run.kind == "full":
                result = self.full(run, dest, atomic)
            else:
                result = self.incremental(run, dest)
            result["seconds"] = round(time.monotonic() - run.started, 3)
            self.events.emit("backup-complete", kind=run.kind, steps_ms=run.steps_ms, **result)
            self.outbox.put(self.router, run.request, "ok", result)
        except BaseException as exc:  # noqa: BLE001 - every failure is reported, none kills us
            error = (
                exc if isinstance(exc, JetError) else JetError("JET_errInternalError", repr(exc))
            )
            self.events.failure(
                "backup-fail",
                error,
                kind=run.kind,
                dest=dest,
                seconds=round(time.monotonic() - run.started, 3),
            )
            self.outbox.put(self.router, run.request, "error", error)
        finally:
            self.release_claim(run)
            self.unmark()
            with self.lock:
                self.run = None

    def at(self, run: Run, name: str, fault_point: bool = True) -> None:
        """The backup reached step ``name``: timed for the event log, and a fault point."""
        run.steps_ms[name] = round((time.monotonic() - run.started) * 1000, 1)
        if fault_point:
            step(name)

    def _call(self, channel: Channel, kind: str, body: dict | None = None):
        return channel.call(kind, body, timeout=PEER_TIMEOUT)

    def pin(self, run: Run) -> tuple[dict, Meta]:
        """A fresh durable checkpoint, pinned in the buffer manager."""
        self._call(self.bm, "checkpoint")
        pinned = self._call(self.bm, "pin_checkpoint")
        meta = Meta.from_page(
            pinned["meta_page"],
            steps.meta_page_slot(pinned["meta_page"]),
            os.path.join(self.cfg.path, DB_FILE),
        )
        return pinned, meta

    def full(self, run: Run, dest: str, atomic: bool) -> dict:
        self.report(run, Progress("begin", "pages", 0, 0))
        work = os.path.join(dest, steps.ATOMIC_TEMP) if atomic else dest
        pinned, meta = self.pin(run)
        gen_low = lsn_gen(meta.checkpoint_lsn)
        run.pins = {"seq": pinned["seq"]}
        run.written = {
            "tree": work if atomic else None,
            "created": [
                os.path.join(work, n) for n in (DB_FILE, LOG_DIR, "MANIFEST", "MANIFEST.tmp")
            ],
        }
        try:
            self.mark(run)
            self._call(self.lw, "pin", {"generation": gen_low})
            run.pins["generation"] = gen_low
            self.mark(run)
            self.at(run, "pinned")
            copy_mac = self.roll()
            self.at(run, "rolled")
            gen_high = copy_mac - 1
            roll_lsn = make_lsn(copy_mac, RECORDS_START)
            self.events.emit("roll", generation=copy_mac, gen_low=gen_low, gen_high=gen_high)
            if atomic:
                shutil.rmtree(work, ignore_errors=True)  # a failed atomic backup's leftovers
            self.env.makedirs(work)
            progress = lambda p: self.report(run, p)  # noqa: E731
            stop = lambda: self.check_abort(run)  # noqa: E731
            files = {
                DB_FILE: steps.copy_database(
                    self.env,
                    os.path.join(self.cfg.path, DB_FILE),
                    pinned["meta_page"],
                    os.path.join(work, DB_FILE),
                    report=progress,
                    throttle=self.throttle,
                    should_stop=stop,
                )
            }
            self.events.emit("backup-file", file=DB_FILE, bytes=files[DB_FILE]["size"])
            self.at(run, "pages-copied")
            logs = steps.copy_generations(
                self.env,
                os.path.join(self.cfg.path, LOG_DIR),
                os.path.join(work, LOG_DIR),
                gen_low,
                gen_high,
                meta.log_signature,
                report=progress,
                throttle=self.throttle,
                should_stop=stop,
            )
            for name, entry in logs.items():
                self.events.emit("backup-file", file=name, bytes=entry["size"])
            files.update(logs)
            self.at(run, "logs-copied")
            backup_id = steps.new_backup_id()
            entry = {
                "type": "full",
                "id": backup_id,
                "time_ns": time.time_ns(),
                "gen_low": gen_low,
                "gen_high": gen_high,
                "roll_lsn": roll_lsn,
            }
            manifest = {
                "format": 1,
                "backup_id": backup_id,
                "instance_path": self.cfg.path,
                "db_signature": meta.db_signature.hex(),
                "log_signature": meta.log_signature.hex(),
                "page_size": meta.page_size,
                "checkpoint_lsn": meta.checkpoint_lsn,
                "gen_low": gen_low,
                "gen_high": gen_high,
                "chain": [entry],
                "files": files,
            }
            self.check_abort(run)
            steps.write_manifest(self.env, work, manifest)
            self.at(run, "manifest-written")
            if atomic:
                had_previous = os.path.isdir(os.path.join(dest, steps.ATOMIC_NEW))
                run.written = {"swapped": True, "had_previous": had_previous}
                self.mark(run)
                steps.swap_atomic(self.env, dest, step=step)
            checkpoint = self.record(False, entry, manifest)
            self.at(run, "recorded", fault_point=False)
            # Recorded: from here on nothing is removed (an atomic swap only finishes).
            run.written = {"swapped": atomic, "recorded": True}
            self.mark(run)
            if atomic:
                steps.finish_atomic(self.env, dest)
        except BaseException:
            self.undo_written(dest, run.written)
            raise
        finally:
            self._unpin(run.pins)
            self.release_claim(run)
            self.unmark()
        deleted = self.truncate(copy_mac, checkpoint["checkpoint_lsn"])
        self.at(run, "truncated", fault_point=False)
        total = sum(f["size"] for f in files.values())
        self.report_complete(run, total, "logs")
        return {
            "backup_id": backup_id,
            "bytes": total,
            "gen_low": gen_low,
            "gen_high": gen_high,
            "roll_lsn": roll_lsn,
            "truncated": deleted,
        }

    def incremental(self, run: Run, dest: str) -> dict:
        self.report(run, Progress("begin", "logs", 0, 0))
        info = self._call(self.bm, "backup_info")
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
        directory, manifest = _chain_directory(dest, info)
        first = manifest["gen_high"] + 1
        try:
            self.mark(run)
            self._call(self.lw, "pin", {"generation": first})
            run.pins = {"generation": first}
            self.mark(run)
            copy_mac = self.roll()
            gen_high = copy_mac - 1
            roll_lsn = make_lsn(copy_mac, RECORDS_START)
            self.events.emit("roll", generation=copy_mac, gen_low=first, gen_high=gen_high)
            names = [f"{LOG_DIR}/{steps.generation_file_name(g)}" for g in range(first, copy_mac)]
            run.written = {"created": [os.path.join(directory, name) for name in names]}
            self.mark(run)
            logs = steps.copy_generations(
                self.env,
                os.path.join(self.cfg.path, LOG_DIR),
                os.path.join(directory, LOG_DIR),
                first,
                gen_high,
                bytes.fromhex(manifest["log_signature"]),
                report=lambda p: self.report(run, p),
                throttle=self.throttle,
                should_stop=lambda: self.check_abort(run),
            )
            for name, entry in logs.items():
                self.events.emit("backup-file", file=name, bytes=entry["size"])
            entry = {
                "type": "incremental",
                "id": steps.new_backup_id(),
                "time_ns": time.time_ns(),
                "gen_low": first,
                "gen_high": gen_high,
                "roll_lsn": roll_lsn,
            }
            updated = {
                **manifest,
                "gen_high": gen_high,
                "chain": manifest["chain"] + [entry],
                "files": {**manifest["files"], **logs},
            }
            self.check_abort(run)
            self.at(run, "logs-copied")
            run.written.update(directory=directory, previous_manifest=manifest)
            self.mark(run)
            steps.write_manifest(self.env, directory, updated)
            self.at(run, "manifest-written")
            checkpoint = self.record(True, entry, updated)
            self.at(run, "recorded", fault_point=False)
            run.written = {"recorded": True}  # from here on nothing is removed
            self.mark(run)
        except BaseException:
            self.undo_written(dest, run.written)
            raise
        finally:
            self._unpin(run.pins)
            self.release_claim(run)
            self.unmark()
        deleted = self.truncate(copy_mac, checkpoint["checkpoint_lsn"])
        self.at(run, "truncated", fault_point=False)
        total = sum(e["size"] for e in logs.values())
        self.report_complete(run, total, "logs")
        return {
            "backup_id": manifest["backup_id"],
            "bytes": total,
            "gen_low": first,
            "gen_high": gen_high,
            "roll_lsn": roll_lsn,
            "truncated": deleted,
        }

    def truncate_only(self, run: Run) -> dict:
        self.report(run, Progress("begin", "truncate", 0, 0))
        copy_mac = self.roll()
        self.events.emit("roll", generation=copy_mac)
        checkpoint = self._call(self.bm, "checkpoint")
        deleted = self.truncate(copy_mac, checkpoint["checkpoint_lsn"])
        self.report_complete(run, 0, "truncate")
        return {"truncated": deleted, "generation": copy_mac}

    def roll(self) -> int:
        """Close the current generation (the backup's end) and tell the buffer manager."""
        generation = self._call(self.lw, "roll")["generation"]
        self._call(self.bm, "log_rolled", {"generation": generation})
        return generation

    def record(self, incremental: bool, entry: dict, manifest: dict) -> dict:
        """Record the backup in the meta; returns the durable checkpoint that holds it."""
        return self._call(
            self.bm,
            "record_backup",
            {
                "incremental": incremental,
                "time_ns": entry["time_ns"],
                "gen_low": entry["gen_low"],
                "gen_high": entry["gen_high"],
                "lsn_mark": manifest["checkpoint_lsn"],
                "backup_id": bytes.fromhex(manifest["backup_id"]),
            },
        )

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
        body = {"below": below, "checkpoint_lsn": checkpoint_lsn}
        try:
            deleted = self._call(self.lw, "truncate", body)["deleted"]
        except JetError as exc:  # the backup is complete and recorded: truncation is extra
            self.events.failure("truncate-fail", exc, below=below)
            return []
        self.events.emit("truncate", deleted=deleted, below=below)
        return deleted

    def _unpin(self, pins: dict) -> None:
        """Release both pins, whatever happened; a failure here is only logged."""
        for channel, kind, name in (
            (self.bm, "unpin_checkpoint", "seq"),
            (self.lw, "unpin", "generation"),
        ):
            if pins.get(name) is None:
                continue
            try:
                self._call(channel, kind, {name: pins[name]})
            except JetError as exc:
                self.events.failure("unpin-fail", exc, kind=kind)

    def mark(self, run: Run) -> None:
        """Record what the running backup holds and has written, so that whoever comes
        next can undo it: the pins in the run directory's marker (for the worker started
        after this one died), the files in the destination's claim (for any backup that
        claims the destination next).  Each write is atomic and durable."""
        if run.claim is not None:
            run.claim.record(run.written)
        state = {"kind": run.kind, "pins": run.pins}
        if run.claim is not None:
            state.update(dest=run.claim.dest, token=run.claim.token)
        self.write_marker(state)

    def write_marker(self, state: dict) -> None:
        tmp = self.marker + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.marker)

    def release_claim(self, run: Run) -> None:
        """The destination is free again; before the marker goes (it names the claim)."""
        if run.claim is not None:
            run.claim.release()
            run.claim = None

    def unmark(self) -> None:
        try:
            os.unlink(self.marker)
        except FileNotFoundError:
            pass

    def undo_dead_worker(self) -> None:
        """At start: finish the failure of a backup whose worker died."""
        try:
            with open(self.marker) as f:
                state = json.load(f)
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            state = {}
        self._unpin(state.get("pins") or {})
        if state.get("dest"):
            self.undo_claimed(state["dest"], state.get("token"))
        self.events.emit(
            "backup-fail",
            kind=state.get("kind"),
            dest=state.get("dest"),
            error={
                "err": -801,
                "name": "JET_errBackupAbortByServer",
                "message": "the backup worker died; its files were removed",
            },
        )
        self.unmark()

    def undo_claimed(self, dest: str, token: str | None) -> None:
        """Undo a dead predecessor's files - only if its claim is still the one in DEST:
        a backup that has claimed DEST since undid them itself and owns what is there."""
        try:
            claim = DestinationClaim.take(dest)
        except JetError as exc:
            self.events.failure("backup-undo-skipped", exc, dest=dest)
            return
        try:
            written = claim.holds(token)
            if written is not None:
                self.undo_written(dest, written)
        finally:
            claim.release()

    def undo_written(self, dest: str, written: dict) -> None:
        """Undo what a failed backup wrote into ``dest``; never raises (the error that
        failed the backup is the one reported, a failed cleanup is an event).

        Deletes come first, so the undo works on a full disk; the one write - the chain's
        previous MANIFEST, for an incremental that replaced it - comes last.
        """
        try:
            if written.get("recorded"):
                if written.get("swapped"):
                    steps.finish_atomic(self.env, dest)
                return
            if written.get("swapped"):  # temp, the failed backup, goes in the undo
                steps.undo_atomic(self.env, dest, written.get("had_previous", True))
            else:
                self._remove(written.get("tree"), written.get("created", []))
            previous = written.get("previous_manifest")
            if previous and steps.read_manifest(written["directory"]) != previous:
                steps.write_manifest(self.env, written["directory"], previous)
        except Exception as exc:  # noqa: BLE001 - reported as an event, see above
            error = exc if isinstance(exc, JetError) else JetError("JET_errDiskIO", repr(exc))
            self.events.failure("backup-cleanup-fail", error, dest=dest)

    def _remove(self, tree: str | None, paths: list[str]) -> None:
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
        if os.path.exists(dest) or not create_path:
            raise JetError(
                "JET_errInvalidPath",
                f"backup destination {dest} is not a directory "
                "(create_path_if_not_exist=True creates it)",
            )
        try:
            os.makedirs(dest)
        except OSError as exc:
            raise JetError("JET_errInvalidPath", f"cannot create {dest}: {exc.strerror}") from None


def _chain_directory(dest: str, info: dict) -> tuple[str, dict]:
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


BACKUP_NICENESS = 10  # the worker's loop and heartbeat yield the CPU to commits


def copy_yields(pace: str) -> None:
    """How the calling thread - the one copying a backup - shares the CPU (Throttle's
    YIELD, CATCH_UP or STEADY).

    Yielding is SCHED_IDLE (Linux): niceness alone let a commit waking on the core that
    runs the copy wait out the copy's time slice (a steady 25-30% loss of commit
    throughput on two cores), while a SCHED_IDLE thread is preempted at once and still
    takes every idle cycle.  But on a machine whose cores are all busy it gets almost no
    CPU - and holding the GIL meanwhile, it stalls the worker's loop too - so behind the
    floor it runs as an ordinary thread at niceness 0 until it catches up (at the
    worker's niceness, 10, it got a tenth of a core beside two CPU-bound neighbours:
    below the floor).  Outside a copy (pinning, rolling, publishing: short steps that
    mostly wait for other actors) it is an ordinary thread at the worker's niceness, so
    that three committing clients on two cores do not starve a small backup's fixed
    steps.
    """
    if hasattr(os, "SCHED_IDLE"):
        policy = os.SCHED_IDLE if pace == YIELD else os.SCHED_OTHER
        try:
            os.sched_setscheduler(0, policy, os.sched_param(0))
        except OSError:
            pass  # a sandbox may forbid it; the copy then runs at the worker's niceness
    try:  # per thread on Linux; raising a thread's priority needs CAP_SYS_NICE
        niceness = 0 if pace == CATCH_UP else BACKUP_NICENESS
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except OSError:
        pass  # without the capability the copy keeps the worker's niceness


def main(config: dict) -> None:
    cfg = actor_setup(config)
    os.nice(BACKUP_NICENESS)
    host = ActorHost(cfg)
    router = host.socket(zmq.ROUTER, bind=cfg.endpoints["backup"], watch=True)
    worker = BackupWorker(cfg, host.context, router)
    worker.undo_dead_worker()
    host.start(worker.status, {})
    try:
        while not (worker.stopping and worker.run is None):
            ready = host.wait(10 if worker.run is not None else 200)
            if ready is None:
                break
            if router in ready:
                serve_requests(router, schema.BACKUP, worker.handlers, NAME)
            worker.outbox.flush()
        worker.outbox.flush()
    finally:
        worker.bm.close()
        if worker.lw is not None:
            worker.lw.close()
        host.close()

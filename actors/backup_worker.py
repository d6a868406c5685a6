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
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field

import zmq

from jetstore.engine import backup as steps
from jetstore.engine.backup import Progress, Throttle
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
    Request,
    actor_setup,
    deliver,
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
ACK_TIMEOUT = 600.0  # a status callback that does not return in this long fails the backup


@dataclass
class Run:
    """One backup in progress."""

    request: Request
    kind: str  # "full", "incremental", "truncate"
    sync_progress: bool
    progress: Progress | None = None
    abort: JetError | None = None
    acked: threading.Event = field(default_factory=threading.Event)
    published: bool = False  # past this point the backup succeeds whatever happens


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
        self.throttle = Throttle(sleep=self.wakeup.wait)
        self.run: Run | None = None
        self.outbox: queue.Queue = queue.Queue()  # thread -> loop: what to send to clients
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
            if run is None:
                return {"backup_in_progress": False, "rate": self.throttle.rate}
            progress = run.progress
            return {
                "backup_in_progress": True,
                "kind": run.kind,
                "rate": self.throttle.rate,
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
        self.throttle.set_rate(body["rate"])
        return {"rate": self.throttle.rate}

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
            if dest is not None:
                check_destination(dest, kind, atomic, create_path)
            self.run = Run(request, kind, bool(body.get("sync_progress")))
            self.wakeup.clear()
            self.throttle.restart()
        thread = threading.Thread(
            target=self._run, args=(self.run, dest, atomic), name="backup", daemon=True
        )
        thread.start()
        return DEFERRED

    # -- the loop's side of progress -----------------------------------------------
    def flush_outbox(self) -> None:
        while True:
            try:
                request, kind, body = self.outbox.get_nowait()
            except queue.Empty:
                return
            deliver(self.router, request, kind, body)

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
        self.outbox.put((run.request, "progress", vars(progress)))
        if run.sync_progress and not run.acked.wait(ACK_TIMEOUT):
            raise JetError("JET_errCallbackFailed", f"status callback silent for {ACK_TIMEOUT} s")

    def check_abort(self, run: Run) -> None:
        if run.abort is not None:
            raise run.abort

    def _run(self, run: Run, dest: str | None, atomic: bool) -> None:
        run_when_idle()
        started = time.monotonic()
        self.events.emit("backup-begin", kind=run.kind, dest=dest, atomic=atomic)
        try:
            if run.kind == "truncate":
                result = self.truncate_only(run)
            elif run.kind == "full":
                result = self.full(run, dest, atomic)
            else:
                result = self.incremental(run, dest)
            result["seconds"] = round(time.monotonic() - started, 3)
            self.events.emit("backup-complete", kind=run.kind, **result)
            self.outbox.put((run.request, "ok", result))
        except BaseException as exc:  # noqa: BLE001 - every failure is reported, none kills us
            error = (
                exc if isinstance(exc, JetError) else JetError("JET_errInternalError", repr(exc))
            )
            self.events.failure(
                "backup-fail",
                error,
                kind=run.kind,
                dest=dest,
                seconds=round(time.monotonic() - started, 3),
            )
            self.outbox.put((run.request, "error", error))
        finally:
            with self.lock:
                self.run = None

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
        created = [os.path.join(work, n) for n in (DB_FILE, LOG_DIR, "MANIFEST", "MANIFEST.tmp")]
        tree = work if atomic else None
        floor = None
        swapped = False
        try:
            self.mark(kind="full", dest=dest, tree=tree, created=created, seq=pinned["seq"])
            self._call(self.lw, "pin", {"generation": gen_low})
            floor = gen_low
            self.mark(
                kind="full",
                dest=dest,
                tree=tree,
                created=created,
                seq=pinned["seq"],
                generation=gen_low,
            )
            step("pinned")
            copy_mac = self.roll()
            step("rolled")
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
            step("pages-copied")
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
            step("logs-copied")
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
            step("manifest-written")
            if atomic:
                swapped = True
                self.mark(
                    kind="full",
                    dest=dest,
                    tree=tree,
                    created=[],
                    seq=pinned["seq"],
                    generation=gen_low,
                    swapped=True,
                )
                steps.swap_atomic(self.env, dest, step=step)
            checkpoint = self.record(False, entry, manifest)
            self.mark(
                kind="full",
                dest=dest,
                created=[],
                seq=pinned["seq"],
                generation=gen_low,
                recorded=True,
            )
            created, tree = [], None  # recorded: from here on nothing is removed
            if atomic:
                steps.finish_atomic(self.env, dest)
        except BaseException:
            if swapped and tree is not None:
                steps.undo_atomic(self.env, dest)
            self._remove(tree, created)
            raise
        finally:
            self._unpin(pinned["seq"], floor)
            self.unmark()
        deleted = self.truncate(copy_mac, checkpoint["checkpoint_lsn"])
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
        if not info["last_full"]:
            raise JetError(
                "JET_errMissingFullBackup",
                "no full backup since the database was created or restored: take one first",
            )
        directory, manifest = _chain_directory(dest, info)
        first = manifest["gen_high"] + 1
        created: list[str] = []
        floor = None
        try:
            self._call(self.lw, "pin", {"generation": first})
            floor = first
            self.mark(kind="incremental", dest=dest, created=[], generation=first)
            copy_mac = self.roll()
            gen_high = copy_mac - 1
            roll_lsn = make_lsn(copy_mac, RECORDS_START)
            self.events.emit("roll", generation=copy_mac, gen_low=first, gen_high=gen_high)
            names = [f"{LOG_DIR}/{steps.generation_file_name(g)}" for g in range(first, copy_mac)]
            created = [os.path.join(directory, name) for name in names]
            self.mark(kind="incremental", dest=dest, created=created, generation=first)
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
            step("logs-copied")
            self.mark(
                kind="incremental",
                dest=dest,
                created=created,
                generation=first,
                directory=directory,
                previous_manifest=manifest,
            )
            steps.write_manifest(self.env, directory, updated)
            step("manifest-written")
            checkpoint = self.record(True, entry, updated)
            created = []  # recorded: from here on nothing is removed
            self.mark(kind="incremental", dest=dest, created=[], generation=first, recorded=True)
        except BaseException:
            if created:
                steps.write_manifest(self.env, directory, manifest)  # the chain as it was
            self._remove(None, created)
            raise
        finally:
            self._unpin(None, floor)
            self.unmark()
        deleted = self.truncate(copy_mac, checkpoint["checkpoint_lsn"])
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

    def _unpin(self, seq: int | None, generation: int | None) -> None:
        """Release both pins, whatever happened; a failure here is only logged."""
        for channel, kind, body in (
            (self.bm, "unpin_checkpoint", {"seq": seq}),
            (self.lw, "unpin", {"generation": generation}),
        ):
            if None in body.values():
                continue
            try:
                self._call(channel, kind, body)
            except JetError as exc:
                self.events.failure("unpin-fail", exc, kind=kind)

    def mark(self, **state) -> None:
        """Record what the running backup holds and has written (atomically), so that a
        worker started after this one died can undo it: files removed, pins released."""
        tmp = self.marker + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.marker)

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
        if state.get("swapped") and not state.get("recorded"):
            steps.undo_atomic(self.env, state["dest"])
        elif state.get("swapped"):
            steps.finish_atomic(self.env, state["dest"])
        if state.get("previous_manifest") and not state.get("recorded"):
            steps.write_manifest(self.env, state["directory"], state["previous_manifest"])
        self._remove(state.get("tree"), state.get("created", []))
        self._unpin(state.get("seq"), state.get("generation"))
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

    def _remove(self, tree: str | None, paths: list[str]) -> None:
        """Remove every file this backup wrote (leftovers of a failure never look like a backup)."""
        if tree is not None:
            shutil.rmtree(tree, ignore_errors=True)
        for path in paths:
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.exists(path):
                os.unlink(path)


def check_destination(dest: str, kind: str, atomic: bool, create_path: bool) -> None:
    """DESIGN 6.1 destination rules: JET_errInvalidPath, JET_errBackupDirectoryNotEmpty."""
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
    if kind == "full" and not atomic and os.listdir(dest):
        raise JetError("JET_errBackupDirectoryNotEmpty", f"{dest} is not empty")


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


def run_when_idle() -> None:
    """Put the calling thread - the one copying a backup - in SCHED_IDLE (Linux).

    Niceness alone is not enough: a commit waking on a core that runs the copy may wait
    out the copy's time slice, which showed as a steady 25-30% loss of commit throughput
    during a backup on two cores.  A SCHED_IDLE thread is preempted at once by any other
    and still takes every idle cycle, so an unloaded machine backs up at full speed.
    """
    if hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError:
            pass  # a sandbox may forbid it; the copy then runs at the worker's niceness


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
            worker.flush_outbox()
        worker.flush_outbox()
    finally:
        worker.bm.close()
        if worker.lw is not None:
            worker.lw.close()
        host.close()

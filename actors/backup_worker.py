"""Backup worker actor: runs backups and log truncation (DESIGN.md section 6).

The loop serves requests (backup, status, abort, rate changes, acks of progress
events) while one backup at a time runs in a thread.  The steps of that backup are
engine code (engine/backup_run.py); this actor gives them their peers over ZeroMQ
(``ZmqPeers``: the buffer manager and the log writer) and their hooks: progress
events go to the client, which acknowledges each one after its callback returned
(ESE's synchronous pfnStatus), and the process that asked for the backup is
watched - if it dies or the kernel holds it stopped, the backup fails and is undone
at once.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil
import zmq

from jetstore.engine.backup import CATCH_UP, STEADY, YIELD, LogActivity, Progress, Throttle
from jetstore.engine.backup_run import (
    BackupRun,
    RunState,
    claim_destination,
    undo_dead_run,
)
from jetstore.engine.errors import JetError
from jetstore.engine.events_format import EventLog
from jetstore.engine.fileio import DEFAULT_ENV
from jetstore.engine.meta_format import BackupRecord
from jetstore.engine.run_dir_format import RUN_DIR
from jetstore.engine.run_marker_format import MARKER_FILE, RunMarker
from jetstore.engine.storage import LOG_DIR
from jetstore.protocol import codec, schema
from jetstore.protocol.channel import Channel
from jetstore.protocol.schema import to_buffer_manager, to_log_control

from . import fault_plan
from .fault_plan import env_for
from .runtime import (
    DEFERRED,
    ActorConfig,
    ActorHost,
    Outbox,
    Request,
    actor_setup,
    serve_requests,
)

NAME = "backup_worker"
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
    """One backup in progress, as the loop sees it: who asked, and how it goes."""

    request: Request
    sync_progress: bool
    caller: Caller
    state: RunState
    progress: Progress | None = None
    abort: JetError | None = None
    acked: threading.Event = field(default_factory=threading.Event)
    published: bool = False  # past this point the backup succeeds whatever happens


class ZmqPeers:
    """``backup_run.Peers`` over the buffer manager's and the log writer's sockets."""

    def __init__(self, bm: Channel, lw: Channel | None) -> None:
        self.bm, self.lw = bm, lw

    def _bm(self, request: schema.Request):
        return self.bm.call(request, timeout=PEER_TIMEOUT)

    def _lw(self, request: schema.Request):
        return self.lw.call(request, timeout=PEER_TIMEOUT)

    def checkpoint(self) -> dict:
        return self._bm(to_buffer_manager.checkpoint())

    def pin_checkpoint(self) -> dict:
        return self._bm(to_buffer_manager.pin_checkpoint())

    def unpin_checkpoint(self, seq: int) -> None:
        self._bm(to_buffer_manager.unpin_checkpoint(seq=seq))

    def backup_info(self) -> dict:
        return self._bm(to_buffer_manager.backup_info())

    def log_failure(self) -> str | None:
        return self._lw(to_log_control.status())["failure"]

    def pin_log(self, generation: int) -> None:
        self._lw(to_log_control.pin(generation=generation))

    def unpin_log(self, generation: int) -> None:
        self._lw(to_log_control.unpin(generation=generation))

    def roll(self) -> int:
        generation = self._lw(to_log_control.roll())["generation"]
        self._bm(to_buffer_manager.log_rolled(generation=generation))
        return generation

    def record_backup(self, incremental: bool, record: BackupRecord) -> dict:
        fields = dataclasses.asdict(record)
        return self._bm(to_buffer_manager.record_backup(incremental=incremental, **fields))

    def truncate(self, below: int, checkpoint_lsn: int) -> list[int]:
        request = to_log_control.truncate(below=below, checkpoint_lsn=checkpoint_lsn)
        return self._lw(request)["deleted"]

    def close(self) -> None:
        self.bm.close()
        if self.lw is not None:
            self.lw.close()


class RunHooks:
    """``backup_run.Hooks`` of one run: progress to the client, the caller watched."""

    def __init__(self, worker: BackupWorker, run: Run) -> None:
        self.worker, self.run = worker, run

    def report(self, progress: Progress) -> None:
        """Send one event; with a client callback, wait until it returned (ESE pfnStatus)."""
        run = self.run
        with self.worker.lock:
            run.progress = progress
        if run.abort is not None:
            raise run.abort
        self._send(progress)
        if run.abort is not None:
            raise run.abort

    def check(self) -> None:
        if self.run.abort is not None:
            raise self.run.abort
        self.run.caller.check(self.worker.clock())

    def complete(self, progress: Progress) -> None:
        """The last event, sent once the backup is published, recorded and truncated: it
        can no longer fail, so neither an abort nor a raising callback undoes anything
        (ESE ignores pfnStatus's return value too)."""
        with self.worker.lock:
            self.run.published = True
        self._send(progress)

    def _send(self, progress: Progress) -> None:
        run, outbox = self.run, self.worker.outbox
        run.acked.clear()
        outbox.put(self.worker.router, run.request, codec.REPLY_PROGRESS, vars(progress))
        if not run.sync_progress:
            return
        clock = self.worker.clock
        deadline = clock() + ACK_TIMEOUT
        while not run.acked.wait(CALLER_CHECK_INTERVAL):
            run.caller.check(clock(), force=True)
            if clock() > deadline:
                raise JetError(
                    "JET_errCallbackFailed", f"status callback silent for {ACK_TIMEOUT} s"
                )


class BackupWorker:
    def __init__(
        self,
        cfg: ActorConfig,
        context: zmq.Context,
        router: zmq.Socket,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.clock = clock  # the callback and caller timeouts; the throttle's pace
        self.router = router
        self.logging = cfg.options.get("logging", True)
        self.circular = cfg.options.get("circular_logging", False)
        self.env = env_for(DEFAULT_ENV)
        self.marker = RunMarker(os.path.join(cfg.path, RUN_DIR, MARKER_FILE))
        self.events = EventLog(cfg.path)
        # Set by an abort or a shutdown: a throttled backup stops sleeping at once.
        self.wakeup = threading.Event()
        self.throttle = Throttle(
            clock=clock,
            sleep=self.wakeup.wait,
            on_pace=copy_yields,
            foreground=LogActivity(os.path.join(cfg.path, LOG_DIR)),
        )
        self.run: Run | None = None
        self.outbox = Outbox()  # thread -> loop: what to send to clients
        self.peers = ZmqPeers(
            Channel(context, cfg.endpoints["buffer_manager"], lambda: None),
            Channel(context, cfg.endpoints["log_control"], lambda: None) if self.logging else None,
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
                "kind": run.state.kind,
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
        # Only this thread starts a backup, so once none runs none can start meanwhile:
        # the peers' sockets, which a running backup's thread uses, are free for the
        # status call below (a socket serves one thread at a time).
        with self.lock:
            if self.run is not None:
                raise JetError("JET_errBackupInProgress", "a backup is already running")
        failure = self.peers.log_failure()
        if failure is not None:
            raise JetError("JET_errLogWriteFail", f"the log writer failed: {failure}")
        with self.lock:
            kind = "truncate" if dest is None else ("incremental" if incremental else "full")
            if kind == "incremental" and self.circular:
                raise JetError(
                    "JET_errInvalidBackup", "no incremental backup under circular logging"
                )
            claim = None
            if dest is not None:
                claim = claim_destination(
                    dest,
                    kind,
                    atomic,
                    create_path,
                    marker=self.marker,
                    env=self.env,
                    events=self.events,
                )
            caller = Caller(body.get("caller_pid"))
            state = RunState(kind, claim)
            self.run = Run(request, bool(body.get("sync_progress")), caller, state)
            self.wakeup.clear()
        thread = threading.Thread(
            target=self._run, args=(self.run, dest, atomic), name="backup", daemon=True
        )
        thread.start()
        return DEFERRED

    # -- the backup thread -----------------------------------------------------------
    def _run(self, run: Run, dest: str | None, atomic: bool) -> None:
        copy_yields(STEADY)
        backup = BackupRun(
            run.state,
            self.cfg.path,
            self.peers,
            RunHooks(self, run),
            env=self.env,
            events=self.events,
            marker=self.marker,
            throttle=self.throttle,
            circular=self.circular,
            clock=self.clock,
            fault_point=fault_plan.step,
        )
        try:
            reply = ("ok", backup.execute(dest, atomic))
        except JetError as error:  # every failure is reported, none kills us
            reply = ("error", error)
        finally:
            # Ended before it is answered: a caller that retries the moment it has the
            # reply must not find this backup still running (-505).
            with self.lock:
                self.run = None
        self.outbox.put(self.router, run.request, *reply)


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
    undo_dead_run(worker.marker, worker.peers, worker.env, worker.events)
    host.start(worker.status, {})
    try:
        while not (worker.stopping and worker.run is None):
            ready = host.wait(10 if worker.run is not None else 200)
            if ready is None:
                break
            if router in ready:
                serve_requests(
                    router,
                    schema.BACKUP,
                    worker.handlers,
                    NAME,
                    replies=schema.BACKUP_REPLIES,
                )
            worker.outbox.flush()
        worker.outbox.flush()
    finally:
        worker.peers.close()
        host.close()

"""Supervisor: starts the actors, watches them, stops them.

Lives in the process that opened the instance (or in ``jetstore serve``).
Start: take the directory lock, start the buffer manager (which runs
recovery and reports where the log ends), then the log writer at that end,
then the backup worker, and the archiver when archiving is on; the instance is usable
once all of them said ready.

Watch (a thread): each actor's sentinel wakes the watcher the moment the
process exits; heartbeats arrive every 100 ms.  Silence for ``hang_timeout`` from a
process the kernel holds stopped (SIGSTOP, a debugger), silence for
``starved_timeout`` from one that is runnable, or one piece of work running
longer than ``busy_timeout`` (a stuck loop) counts as death: the actor is
killed.  A runnable process that is silent is starved, not dead: on a machine
whose cores are all busy a heartbeat may wait seconds for the CPU (or for the
GIL held by a low-priority thread), and killing it would fail healthy work.  The death of the log
writer or the buffer manager makes the instance unavailable - every pending
and later call fails with JET_errInstanceUnavailable - and the other actors
are stopped.  A dead backup worker or archiver is restarted, with backoff, at most
``MAX_RESTARTS`` times in a row.

Stop: ask the buffer manager for its clean shutdown (final checkpoint), then
the log writer, then the backup worker; escalate to SIGTERM and SIGKILL past
the deadlines; remove socket files; release the lock.

Actors are started with an explicit ``forkserver`` context: no process is ever
forked from one that holds ZeroMQ sockets.  The clock is injectable so the
watch rules can be tested without waiting.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import multiprocess
import psutil
import zmq

from jetstore.engine.archive_format import claim as claim_archive
from jetstore.engine.errors import JetError
from jetstore.engine.events_format import EventLog
from jetstore.engine.fileio import DEFAULT_ENV
from jetstore.engine.published_format import CLOSED, PUBLISHED_FILE, Published, create_published
from jetstore.engine.reader_table_format import READERS_FILE, create_reader_table
from jetstore.engine.run_dir_format import ENDPOINTS_FILE, LOCK_FILE, RUN_DIR, write_endpoints
from jetstore.engine.storage import LOG_DIR
from jetstore.protocol import codec, schema
from jetstore.protocol.channel import Channel

from . import archiver, backup_worker, buffer_manager, log_writer
from .child_start import interrupts_held, start_child
from .fault_plan import FAULTS_VARIABLE
from .runtime import (
    ENDPOINT_NAMES,
    ActorConfig,
    make_endpoints,
    make_socket,
    socket_dir,
)

log = logging.getLogger("jetstore.supervisor")

START_TIMEOUT = 600.0  # recovery of a long log may take minutes; death is noticed at once
HANG_TIMEOUT = 1.0  # no heartbeat for this long from a stopped process: it is frozen
STARVED_TIMEOUT = 60.0  # no heartbeat for this long even from a runnable process: stuck
FAILURE_REPORT_GRACE = 1.0  # how long an actor's startup failure may trail its exit
BUSY_TIMEOUT = 120.0  # one request or batch taking this long: the loop is stuck
STOP_TIMEOUT = 30.0
ARCHIVER_STOP_TIMEOUT = 2.0
MAX_RESTARTS = 5
RESTART_BACKOFF = (0.1, 0.5, 1.0, 2.0, 4.0)
STABLE_AFTER = 10.0  # a restarted worker up this long resets the restart count

ACTOR_MAINS = {
    "buffer_manager": buffer_manager.main,
    "log_writer": log_writer.main,
    "backup_worker": backup_worker.main,
    "archiver": archiver.main,
}
ESSENTIAL = ("buffer_manager", "log_writer")
SHUTDOWN = {  # each actor's requests, for its shutdown
    "buffer_manager": schema.to_buffer_manager,
    "log_writer": schema.to_log_control,
    "backup_worker": schema.to_backup,
    "archiver": schema.to_archiver,
}
# The others are restarted when they die: nothing of the instance depends on them.


STOPPED_STATES = (
    psutil.STATUS_STOPPED,
    psutil.STATUS_TRACING_STOP,
    psutil.STATUS_ZOMBIE,
    psutil.STATUS_DEAD,
)


def process_is_stopped(pid: int) -> bool:
    """Whether the kernel holds ``pid`` stopped (or it is gone): silence then is no starving."""
    try:
        return psutil.Process(pid).status() in STOPPED_STATES
    except psutil.Error:
        return True


def process_context():
    context = multiprocess.get_context("forkserver")
    context.set_forkserver_preload(["jetstore.actors.supervisor"])
    return context


@dataclass
class ActorState:
    name: str
    process: object
    started: float
    last_heartbeat: float
    busy_s: float = 0.0
    info: dict = field(default_factory=dict)
    restarts: int = 0
    ready: dict | None = None
    options: dict = field(default_factory=dict)
    lost: bool = False
    startup_error: JetError | None = None
    released: bool = False
    pid: int = 0
    given_up: bool = False  # dead after MAX_RESTARTS restarts: not restarted again

    @property
    def alive(self) -> bool:
        return not self.released and self.process.is_alive()

    def release(self) -> None:
        """Close the reaped process object: its sentinel pipe would leak otherwise."""
        if not self.released:
            self.released = True
            try:
                self.process.close()
            except ValueError:  # still running: stuck in the kernel (a frozen disk), unkillable
                log.error("%s (pid %d) could not be reaped: it is stuck", self.name, self.pid)


class Supervisor:
    def __init__(
        self,
        path: str,
        storage_options: dict,
        *,
        archiving: dict | None = None,
        clock: Callable[[], float] = time.monotonic,
        hang_timeout: float = HANG_TIMEOUT,
        busy_timeout: float = BUSY_TIMEOUT,
        starved_timeout: float = STARVED_TIMEOUT,
        is_stopped: Callable[[int], bool] | None = None,
    ) -> None:
        self.path = os.path.abspath(path)
        self.storage_options = storage_options
        self.archiving = archiving  # {"archive_dir", "timeout", "max_lag_bytes"} or None
        self.logging = storage_options.get("logging", True)
        self.clock = clock
        self.hang_timeout = hang_timeout
        self.busy_timeout = busy_timeout
        self.starved_timeout = starved_timeout
        self.is_stopped = is_stopped or process_is_stopped
        self.actors: dict[str, ActorState] = {}
        self.failure: JetError | None = None
        self.stopping = False
        self.stopped = False
        self.lock_fd: int | None = None
        self.context: zmq.Context | None = None
        self.mutex = threading.RLock()  # actors, failure; the watcher and API threads share them
        self.watcher: threading.Thread | None = None
        self.watching = threading.Event()
        self.pending_restarts: dict[str, float] = {}  # actor name -> when to restart it
        self.sockets_dir = ""

    # -- start -----------------------------------------------------------------
    def start(self) -> None:
        self._lock()
        try:
            # Fresh for this run, before any actor: what read views look at (read_view.py).
            run = os.path.join(self.path, RUN_DIR)
            create_published(run)
            create_reader_table(run)
            self.sockets_dir = socket_dir(self.path)
            self.endpoints = make_endpoints(self.sockets_dir)
            if self.archiving is None or not self.logging:
                del self.endpoints["archiver"]  # no archiver, no socket
            self.context = zmq.Context()
            self.inbox = make_socket(self.context, zmq.PULL, bind=self.endpoints["supervisor"])
            self.processes = process_context()
            recovered = self._start_and_wait("buffer_manager", {"storage": self.storage_options})
            if self.logging:
                self._start_and_wait(
                    "log_writer",
                    {
                        "logs_path": os.path.join(self.path, LOG_DIR),
                        "log_file_size": recovered["log_file_size"],  # the stream's own
                        "signature": recovered["signature"],
                        "circular": self.storage_options.get("circular_logging", False),
                        "end_lsn": recovered["end_lsn"],
                        "checkpoint_lsn": recovered["checkpoint_lsn"],
                        "archiving": None
                        if self.archiving is None
                        else {
                            "timeout": self.archiving["timeout"],
                            "max_lag_bytes": self.archiving["max_lag_bytes"],
                        },
                    },
                )
            self._start_and_wait(
                "backup_worker",
                {
                    "logging": self.logging,
                    "circular_logging": self.storage_options.get("circular_logging", False),
                },
            )
            if self.archiving is not None and self.logging:
                # Here, so that the open fails on an archive of another database (-555).
                claim_archive(
                    DEFAULT_ENV,
                    self.archiving["archive_dir"],
                    recovered["db_signature"],
                    instance=self.path,
                )
                self._start_and_wait(
                    "archiver",
                    {
                        "archive_dir": self.archiving["archive_dir"],
                        "db_signature": recovered["db_signature"].hex(),
                        "log_signature": recovered["signature"].hex(),
                    },
                )
            self.control = Channel(
                self.context,
                self.endpoints["buffer_manager"],
                self.health,
                identity=buffer_manager.SUPERVISOR_IDENTITY,
            )
            write_endpoints(self.path, self.describe())
        except BaseException:
            self._kill_all()
            self._release()
            raise
        self.watcher = threading.Thread(target=self._watch, name="jetstore-supervisor", daemon=True)
        self.watching.set()
        self.watcher.start()

    def _lock(self) -> None:
        run = os.path.join(self.path, RUN_DIR)
        os.makedirs(run, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(run, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise JetError(
                "JET_errFileAccessDenied",
                f"{self.path} is in use by an open instance (pid {holder})",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.lock_fd = fd

    def _spawn(self, name: str, options: dict) -> ActorState:
        faults = os.environ.get(FAULTS_VARIABLE)
        config = ActorConfig(name, self.path, self.endpoints, options, faults).to_dict()
        process = self.processes.Process(
            target=ACTOR_MAINS[name], args=(config,), name=f"jetstore-{name}", daemon=True
        )
        with interrupts_held():  # a Ctrl-C comes once _kill_all knows the new actor
            start_child(process)
            now = self.clock()
            previous = self.actors.get(name)
            restarts = previous.restarts if previous else 0
            state = ActorState(
                name, process, now, now, restarts=restarts, options=options, pid=process.pid
            )
            self.actors[name] = state
        return state

    def _start_and_wait(self, name: str, options: dict) -> dict:
        """Start an actor and wait for its ready message, failing fast if it dies first."""
        state = self._spawn(name, options)
        deadline = self.clock() + START_TIMEOUT
        poller = zmq.Poller()
        poller.register(self.inbox, zmq.POLLIN)
        poller.register(state.process.sentinel, zmq.POLLIN)
        while self.clock() < deadline:
            ready = dict(poller.poll(100))
            if self.inbox in ready:
                self._receive()
                if state.startup_error is not None:
                    raise state.startup_error  # e.g. recovery found a corrupt log: -501
                if state.ready is not None:
                    return state.ready
            if state.process.sentinel in ready:
                # The actor's failure message left before it exited (its context waits
                # out the linger), but may still be in our I/O thread: give it a moment.
                late = self.clock() + FAILURE_REPORT_GRACE
                while state.startup_error is None and self.clock() < late:
                    if self.inbox.poll(50):
                        self._receive()
                if state.startup_error is not None:
                    raise state.startup_error
                state.process.join(1)
                raise JetError(
                    "JET_errInstanceUnavailable",
                    f"{name} exited during startup (exit code {state.process.exitcode})",
                )
        raise JetError("JET_errInstanceUnavailable", f"{name} did not start in {START_TIMEOUT} s")

    # -- watching --------------------------------------------------------------
    def _receive(self) -> None:
        while True:
            try:
                frame = self.inbox.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                message = codec.decode(frame)
                body = schema.check(schema.SUPERVISOR, message.kind, message.body)
            except JetError:
                continue
            with self.mutex:
                state = self.actors.get(body["actor"])
                if state is None or state.pid != body["pid"]:
                    continue  # from a process already replaced
                state.last_heartbeat = self.clock()
                if message.kind == "ready":
                    state.ready = body["info"]
                elif message.kind == "failed":
                    state.startup_error = JetError(body["err"], body["message"])
                else:
                    state.busy_s = body["busy_s"]
                    state.info = body["info"]

    def _watch(self) -> None:
        last_turn = self.clock()
        while self.watching.is_set():
            with self.mutex:
                if self.inbox is None:  # released: after a failure or a stop
                    return
                poller = zmq.Poller()
                poller.register(self.inbox, zmq.POLLIN)
                sentinels = {s.process.sentinel: s for s in self.actors.values() if s.alive}
            for fd in sentinels:
                poller.register(fd, zmq.POLLIN)
            try:
                ready = dict(poller.poll(50))
            except zmq.ZMQError:
                return  # the context is being torn down
            turn = self.clock()
            with self.mutex:
                if self.inbox is not None and self.inbox in ready:
                    self._receive()
            self.watch_turn(
                turn - last_turn, dead=[sentinels[fd] for fd in sentinels if fd in ready]
            )
            last_turn = turn

    def watch_turn(self, since_last_turn: float, dead: list[ActorState] = ()) -> None:
        """One turn of the watcher, ``since_last_turn`` seconds after the one before."""
        if since_last_turn > self.hang_timeout / 2:
            # This thread itself was frozen or starved (SIGSTOP, a VM pause): the actors'
            # heartbeats of that time are still in flight.  Silence measured across our own
            # stall proves nothing about them.
            now = self.clock()
            with self.mutex:
                for state in self.actors.values():
                    state.last_heartbeat = max(state.last_heartbeat, now)
        self.check(dead)

    def check(self, dead: list[ActorState] = ()) -> None:
        """Apply the watch rules once: deaths, silence, stuck loops, due restarts."""
        now = self.clock()
        with self.mutex:
            if self.stopped or self.stopping or self.failure is not None:
                return
            for state in list(self.actors.values()):
                if state.lost:
                    continue
                if state in dead or not state.alive:
                    self._lost(state, f"exited with code {state.process.exitcode}")
                elif now - state.last_heartbeat > self.hang_timeout and (
                    now - state.last_heartbeat > self.starved_timeout or self.is_stopped(state.pid)
                ):
                    self._lost(state, f"sent no heartbeat for {now - state.last_heartbeat:.1f} s")
                elif state.busy_s > self.busy_timeout:
                    self._lost(state, f"has been busy with one request for {state.busy_s:.0f} s")
            for name, when in list(self.pending_restarts.items()):
                if now >= when:
                    del self.pending_restarts[name]
                    self._restart(name)
            for state in self.actors.values():
                if state.restarts and state.alive and now - state.started > STABLE_AFTER:
                    state.restarts = 0

    def _lost(self, state: ActorState, why: str) -> None:
        if state.lost:
            return
        state.lost = True
        message = f"{state.name} (pid {state.pid}) {why}"
        log.error("%s", message)
        if state.name in ESSENTIAL and self.failure is None:
            # Fail every caller first; then make sure nothing of the instance runs on.
            self.failure = JetError("JET_errInstanceUnavailable", message)
            self._kill_all(signal_first=False)
            self._release()
            return
        _kill(state.process, signal_first=False)
        state.release()  # reaped; its replacement gets a process object of its own
        if self.failure is None:
            if state.restarts >= MAX_RESTARTS:
                log.error("%s restarted %d times; giving up", state.name, state.restarts)
                state.given_up = True
                EventLog(self.path).emit(
                    "actor-given-up",
                    actor=state.name,
                    restarts=state.restarts,
                    why=message,
                    until="the instance is reopened",
                )
                return
            delay = RESTART_BACKOFF[min(state.restarts, len(RESTART_BACKOFF) - 1)]
            self.pending_restarts[state.name] = self.clock() + delay

    def _restart(self, name: str) -> None:
        old = self.actors[name]
        new = self._spawn(name, old.options)
        new.restarts = old.restarts + 1

    def health(self) -> JetError | None:
        if self.failure is not None:
            return self.failure
        if self.stopped:
            return JetError("JET_errNotInitialized", f"{self.path} is closed")
        return None

    # -- status ----------------------------------------------------------------
    def describe(self) -> dict:
        """Where the actors are: what endpoints.json holds for `connect`."""
        return {
            "path": self.path,
            "supervisor_pid": os.getpid(),
            "endpoints": self.endpoints,
            "pids": {name: state.pid for name, state in self.actors.items()},
        }

    def actor_status(self) -> dict:
        now = self.clock()
        with self.mutex:
            return {
                name: {
                    "pid": state.pid,
                    "alive": state.alive and not state.lost,
                    "uptime_s": round(now - state.started, 3),
                    "restarts": state.restarts,
                    "given_up": state.given_up,
                    "busy_s": round(state.busy_s, 3),
                    "info": state.info,
                }
                for name, state in self.actors.items()
            }

    # -- stop ------------------------------------------------------------------
    def stop(self) -> None:
        """Clean shutdown; after a failure, just make sure nothing is left running."""
        with self.mutex:
            if self.stopped or self.stopping:
                return
            self.stopping = True  # from here on, actors exiting is the plan, not a failure
            failed = self.failure is not None
        try:
            if not failed:
                # The backup worker first: a running backup is aborted and undone (its
                # files removed, its pins released) while the others can still answer.
                self._shutdown("backup_worker", self.endpoints["backup"])
                if "archiver" in self.endpoints:
                    # It holds nothing a kill loses (the log keeps what it has not
                    # archived): an archiver stuck on a stalled disk is not waited for.
                    self._shutdown("archiver", self.endpoints["archiver"], ARCHIVER_STOP_TIMEOUT)
                self._shutdown("buffer_manager", self.endpoints["buffer_manager"])
                if self.logging:
                    self._shutdown("log_writer", self.endpoints["log_control"])
        finally:
            with self.mutex:
                self.stopped = True
            self.watching.clear()
            if self.watcher is not None:
                self.watcher.join(2)
            self._kill_all()
            for state in self.actors.values():
                state.release()
            self._release()
            if self.context is not None:
                self.context.destroy(linger=0)
                self.context = None

    def _shutdown(self, name: str, endpoint: str, timeout: float = STOP_TIMEOUT) -> None:
        state = self.actors.get(name)
        if state is None or not state.alive:
            return

        def exited() -> JetError | None:
            """An actor dying now is no failure of the instance, but nothing will answer."""
            if state.process.is_alive():
                return None
            return JetError(
                "JET_errInstanceUnavailable", f"{name} (pid {state.pid}) exited during shutdown"
            )

        # The buffer manager knows the supervisor by its channel's identity (stop_service
        # does not apply to it); a second socket with that identity would be refused.
        channel = self.control if name == "buffer_manager" else None
        if channel is None:
            channel = Channel(self.context, endpoint, exited)
        else:
            channel.health = exited  # stopping: this is the last call made on it
        try:
            channel.call(SHUTDOWN[name].shutdown(), timeout=timeout)
        except JetError as exc:
            log.error("%s did not shut down cleanly: %s", name, exc)
        finally:
            if channel is not self.control:
                channel.close()
        state.process.join(timeout)

    def _kill_all(self, signal_first: bool = True) -> None:
        for state in self.actors.values():
            if not state.released:
                _kill(state.process, signal_first)

    def _release(self) -> None:
        """Close sockets, remove socket files and endpoints, drop the lock."""
        if getattr(self, "control", None) is not None:
            self.control.close()
            self.control = None
        if self.context is not None and getattr(self, "inbox", None) is not None:
            self.inbox.close(0)
            self.inbox = None
        run = os.path.join(self.path, RUN_DIR)
        for name in ENDPOINT_NAMES:
            try:
                os.unlink(os.path.join(self.sockets_dir or run, name))
            except OSError:
                pass
        try:  # processes still attached: their read views must not go on reading
            closed = Published(run)
            closed.publish_state(CLOSED)
            closed.close()
        except JetError:
            pass  # never created (a failed start), or already gone
        for name in (ENDPOINTS_FILE, PUBLISHED_FILE, READERS_FILE):
            try:
                os.unlink(os.path.join(run, name))
            except OSError:
                pass
        if self.sockets_dir and not self.sockets_dir.startswith(run):
            shutil.rmtree(self.sockets_dir, ignore_errors=True)
        if self.lock_fd is not None:
            fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
            os.close(self.lock_fd)
            self.lock_fd = None


def _kill(process, signal_first: bool = True) -> None:
    """SIGTERM (unless the process is known dead or frozen), then SIGKILL; always reaped."""
    if signal_first and process.is_alive():
        process.terminate()
        process.join(1.0)
    if process.is_alive():
        process.kill()
    process.join(5.0)

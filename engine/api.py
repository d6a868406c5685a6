"""The public API of DESIGN.md section 4: ``Instance``, ``connect``.

``Instance.open`` starts the actors (through the supervisor in ``actors/``)
and returns once recovery is done and every actor is ready; its sessions talk
to the buffer manager over ZeroMQ.  ``connect`` attaches another process to a
running instance through the endpoints the supervisor published; it shares
the session API and only detaches on ``close``.
"""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from collections.abc import Callable

import psutil
import zmq

from jetstore.actors.control import ControlServer, check_tcp_endpoint
from jetstore.actors.supervisor import Supervisor
from jetstore.protocol.channel import Channel
from jetstore.protocol.schema import Request, to_archiver, to_backup, to_buffer_manager

from . import archive_format, restore_marker_format
from .backup import Progress, backup_manifest_in
from .client import Session
from .errors import InvalidArgumentTypeError, JetError
from .fileio import fspath, io_error
from .read_view import DEFAULT_MAX_OVERLAY_BYTES, DEFAULT_MAX_SNAPSHOT_CHECKPOINTS, ReadView
from .results import BackupResult, InstanceStatus
from .run_dir_format import RUN_DIR, instance_running, read_endpoints, write_endpoints
from .storage import DB_FILE, LOG_DIR

HEALTH_CHECK_INTERVAL = 0.2  # how often a connected process looks at the actors' processes

_active_instance: weakref.ref | None = None  # JetBackup() and friends act on this one


ARCHIVER_TIMEOUT = 1.0  # an archiver answers status at once unless it is stuck
# Every roll preallocates a whole generation: rolling more often fills the archive with
# empty space (PostgreSQL warns the same of a short archive_timeout).
MIN_ARCHIVE_TIMEOUT = 0.1


def active_instance() -> Instance | None:
    """The instance this process opened last, while it is open (the compat layer's)."""
    return _active_instance() if _active_instance is not None else None


class _Attached:
    """What an opening and a connecting process share: sessions, status, stop_service."""

    def __init__(self, path: str, endpoints: dict[str, str]) -> None:
        self.path = path
        self.endpoints = endpoints
        self.closed = False
        self.closing = False
        self.service_stopped = False
        self._local = threading.local()
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()
        self._context = zmq.Context.instance()
        self._view: ReadView | None = None
        self._view_lock = threading.Lock()
        self._view_bounds: dict = {}

    @property
    def _logged(self) -> bool:
        """Whether the instance has a log (and so read views)."""
        raise NotImplementedError

    def _read_view(self) -> ReadView | None:
        """This process's read view of the instance, made at the first read; None for an
        instance without a log, whose reads the buffer manager serves."""
        if self._view is None and self._logged:
            with self._view_lock:
                if self._view is None:
                    self._check_usable()
                    run_dir = os.path.join(self.path, RUN_DIR)
                    self._view = ReadView(self.path, run_dir, **self._view_bounds)
        return self._view

    def _health(self) -> JetError | None:
        raise NotImplementedError

    def _check_usable(self, *, stopped_ok: bool = False) -> None:
        """Refuse calls on a closed or closing instance, and - unless ``stopped_ok``, for
        status, which an operator needs most then - after JetStopService."""
        if self.closed:
            raise JetError("JET_errNotInitialized", f"{self.path} is closed")
        if self.closing:
            raise JetError("JET_errTermInProgress", f"{self.path} is shutting down")
        if self.service_stopped and not stopped_ok:
            raise JetError(
                "JET_errClientRequestToStopJetService", "the service was stopped (JetStopService)"
            )
        problem = self._health()
        if problem is not None:
            raise problem

    def _channel(self, endpoint: str = "buffer_manager") -> Channel:
        return Channel(self._context, self.endpoints[endpoint], self._health)

    def _control_call(self, request: Request, *, stopped_ok: bool = False):
        """A call on this thread's own instance-level channel."""
        self._check_usable(stopped_ok=stopped_ok)
        channel = getattr(self._local, "channel", None)
        if channel is None:
            channel = self._local.channel = self._channel()
        return channel.call(request)

    def session(self) -> Session:
        """JetBeginSession: a new session, for one thread at a time; ``with
        inst.session() as s:`` closes it at the end of the block."""
        self._check_usable()
        session = Session(self)
        self._sessions.add(session)
        return session

    def backup(
        self,
        path: str | bytes | os.PathLike | None,
        *,
        incremental: bool = False,
        atomic: bool = False,
        status: Callable[[Progress], None] | None = None,
    ) -> BackupResult:
        """JetBackup: a full, atomic or incremental online backup into ``path``, or - with
        ``path`` None - log truncation alone.  ``status`` receives each ``Progress`` event
        and the backup waits for it; an exception it raises fails the backup (-2101).

        ``path`` is a directory (-1023 if it is missing and the instance was not opened
        with ``create_path_if_not_exist``): empty for a full backup (-504), the chain's
        for an ``incremental`` one; an ``atomic`` backup replaces the one there only once
        it is complete.  Returns what the backup holds (``BackupResult``); a backup that
        fails is undone and raises its JetError."""
        self._check_usable()
        if type(incremental) is not bool or type(atomic) is not bool:
            raise InvalidArgumentTypeError(
                "JET_errInvalidGrbit", "incremental and atomic must be bools"
            )
        if status is not None and not callable(status):
            raise InvalidArgumentTypeError(
                "JET_errInvalidParameter", "status must be callable or None"
            )
        worker_health = self._backup_worker_health()
        request = to_backup.backup(
            dest=None if path is None else os.path.abspath(fspath(path)),
            incremental=incremental,
            atomic=atomic,
            create_path=bool(getattr(self, "options", {}).get("create_path_if_not_exist")),
            sync_progress=status is not None,
            caller_pid=os.getpid(),
        )
        raised: list[BaseException] = []

        def on_progress(event: dict) -> None:
            try:
                status(Progress(**event))
            except BaseException as exc:
                raised.append(exc)
                raise

        channel = Channel(self._context, self.endpoints["backup"], worker_health)
        try:
            return channel.call(request, on_progress=on_progress if status else None)
        except JetError as exc:
            if raised:
                raise exc from raised[0]
            raise
        finally:
            channel.close()

    def _backup_worker_health(self) -> Callable[[], JetError | None]:
        """Health of the backup about to start: the instance's, and its worker's own."""
        raise NotImplementedError

    def _archive_status(self, actors: dict) -> dict | None:
        """The archiver's report (archiving.Archiver.status); None without archiving."""
        archiver = actors.get("archiver")
        if archiver is None:
            return None
        if not archiver["alive"]:  # being restarted by the supervisor, or given up
            return {"alive": False, "pid": archiver["pid"], "given_up": archiver.get("given_up")}
        channel = self._channel("archiver")
        try:
            return {"alive": True, **channel.call(to_archiver.status(), timeout=ARCHIVER_TIMEOUT)}
        except JetError as exc:
            return {"alive": True, "error": exc.as_dict()}
        finally:
            channel.close()

    def _backup_control(self, request: Request, *, stopped_ok: bool = False):
        """A short request to the backup worker (status, abort, rate)."""
        self._check_usable(stopped_ok=stopped_ok)
        channel = self._channel("backup")
        try:
            return channel.call(request)
        finally:
            channel.close()

    def stop_service(self) -> None:
        """JetStopService: every later call on this instance fails with -1329."""
        self._control_call(to_buffer_manager.stop_service())
        self.service_stopped = True

    def _close_sessions(self) -> None:
        for session in list(self._sessions):
            session.close()
        channel = getattr(self._local, "channel", None)
        if channel is not None:
            channel.close()
            self._local.channel = None
        with self._view_lock:
            if self._view is not None:
                self._view.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class Instance(_Attached):
    """An open instance (``Instance.open``): its actors run for as long as it is open.

    ``with Instance.open(path) as inst:`` closes it cleanly at the end of the block;
    ``inst.session()`` makes sessions, ``inst.backup()`` backs it up online."""

    def __init__(self, supervisor) -> None:
        super().__init__(supervisor.path, supervisor.endpoints)
        self._supervisor = supervisor
        self._close_lock = threading.Lock()

    @property
    def _logged(self) -> bool:
        return self._supervisor.logging

    @classmethod
    def open(
        cls,
        path: str | bytes | os.PathLike,
        *,
        create: bool = True,
        circular_logging: bool = False,
        logging: bool = True,
        create_path_if_not_exist: bool = False,
        page_size: int = 8192,
        log_file_size: int = 1 << 20,
        cache_size: int = 64 << 20,
        control: str | None = None,
        backup_roots: list[str] | None = None,
        max_snapshot_checkpoints: int = DEFAULT_MAX_SNAPSHOT_CHECKPOINTS,
        max_overlay_bytes: int = DEFAULT_MAX_OVERLAY_BYTES,
        archive_dir: str | bytes | os.PathLike | None = None,
        archive_timeout: float | None = None,
        archive_max_lag: int | None = None,
    ) -> Instance:
        """JetInit: start the actors, recover, and return once everything is ready.

        ``max_snapshot_checkpoints``, ``max_overlay_bytes``: the bounds of this
        process's read view (read_view.py); a snapshot past them fails with -1069.
        ``archive_dir``: copy every closed log generation there (continuous archiving,
        archiving.py; created if missing, its parent must exist; an archive of another
        database is refused with -555).  ``archive_timeout``: roll the log at least
        every that many seconds while commits arrive.  ``archive_max_lag``: bytes of
        unarchived local log past which the archive stops holding the log back
        (logkeeper.py; None: hold it back for as long as the archive fails)."""
        view_bounds = _view_bounds(max_snapshot_checkpoints, max_overlay_bytes)
        path = fspath(path)
        archiving = _archiving(path, logging, archive_dir, archive_timeout, archive_max_lag)
        for name, value, kind in (
            ("create", create, bool),
            ("circular_logging", circular_logging, bool),
            ("logging", logging, bool),
            ("create_path_if_not_exist", create_path_if_not_exist, bool),
            ("page_size", page_size, int),
            ("log_file_size", log_file_size, int),
            ("cache_size", cache_size, int),
        ):
            if type(value) is not kind:
                article = "an" if kind is int else "a"
                raise InvalidArgumentTypeError(
                    "JET_errInvalidParameter",
                    f"{name} must be {article} {kind.__name__}, not {value!r}",
                )
        if control is not None:
            check_tcp_endpoint(control)  # before anything is created
        if os.path.exists(path) and not os.path.isdir(path):
            raise JetError("JET_errInvalidPath", f"{path} exists and is not a directory")
        restore_marker_format.refuse_open(path)  # -506 before the open leaves run/ there
        manifest = backup_manifest_in(path)
        if manifest is not None:  # recovery would rewrite the backup's files
            raise JetError(
                "JET_errSoftRecoveryOnBackupDatabase",
                f"{path} holds a backup ({manifest}): opening it would change it; restore it"
                " into a new directory instead (restore(), jetstore restore)",
            )
        if not os.path.isdir(path):
            if not create:
                raise JetError("JET_errDatabaseNotFound", f"no instance at {path}")
            try:
                os.makedirs(path, exist_ok=True)
            except OSError as exc:
                raise io_error(exc, f"create instance directory {path}") from exc
        options = {
            "create": create,
            "logging": logging,
            "circular_logging": circular_logging,
            "page_size": page_size,
            "log_file_size": log_file_size,
            "cache_size": cache_size,
        }
        supervisor = Supervisor(path, options, archiving=archiving)
        supervisor.start()
        instance = cls(supervisor)
        instance._view_bounds = view_bounds
        try:
            instance._start_control(control, backup_roots)
        except BaseException:
            supervisor.stop()
            raise
        instance.options = {
            **options,
            "create_path_if_not_exist": create_path_if_not_exist,
            "control": control,
            "archiving": archiving,
        }
        global _active_instance
        _active_instance = weakref.ref(instance)
        return instance

    def _health(self) -> JetError | None:
        return self._supervisor.health()

    def _start_control(self, tcp_endpoint: str | None, backup_roots: list[str] | None) -> None:
        """The control socket: ipc always, tcp+CURVE when asked; published for `jetstore ctl`."""
        self._control = ControlServer(self, self.endpoints["control"], tcp_endpoint, backup_roots)
        self._control.start_and_wait()
        if tcp_endpoint is not None:
            self.endpoints = {**self.endpoints}
            self.endpoints["control_tcp"] = tcp_endpoint
        write_endpoints(self.path, {**self._supervisor.describe(), "endpoints": self.endpoints})

    def _backup_worker_health(self) -> Callable[[], JetError | None]:
        worker = self._supervisor.actor_status().get("backup_worker")
        if worker is None or not worker["alive"]:
            raise JetError(
                "JET_errBackupNotAllowedYet",
                "the backup worker is (re)starting; try again in a moment",
            )
        pid = worker["pid"]

        def health() -> JetError | None:
            now = self._supervisor.actor_status().get("backup_worker")
            if now is None or now["pid"] != pid or not now["alive"]:
                return JetError(
                    "JET_errBackupAbortByServer",
                    f"the backup worker (pid {pid}) died; the backup failed and is undone",
                )
            return self._health()

        return health

    def status(self) -> InstanceStatus:
        """The actors (pid, alive, uptime, restarts) and the engine's figures
        (``InstanceStatus``); answered after JetStopService too, and after a failure
        with the ``failure`` in place of the figures."""
        actors = self._supervisor.actor_status()
        report: InstanceStatus = {"path": self.path, "actors": actors}
        if self._supervisor.failure is not None:
            report["failure"] = str(self._supervisor.failure)
            return report
        report["buffer_manager"] = self._control_call(to_buffer_manager.status(), stopped_ok=True)
        report["log_writer"] = actors.get("log_writer", {}).get("info", {})
        report["archive"] = self._archive_status(actors)
        return report

    def close(self) -> None:
        """JetTerm: a clean shutdown - final checkpoint, clean state, processes reaped."""
        with self._close_lock:
            if self.closed or self.closing:
                return
            self.closing = True
            try:
                self._close_sessions()
                if getattr(self, "_control", None) is not None:
                    self._control.stop()
                self._supervisor.stop()
            finally:
                self.closed = True


class Client(_Attached):
    """A process attached to an instance another process opened (``connect``): the
    same sessions, backup and status as an ``Instance``; ``close`` (or the end of a
    ``with`` block) detaches it and leaves the instance running."""

    def __init__(self, path: str, published: dict) -> None:
        super().__init__(path, published["endpoints"])
        self._pids = published["pids"]
        self._processes = {}
        for name in ("buffer_manager", "log_writer"):
            if name in self._pids:
                try:
                    self._processes[name] = psutil.Process(self._pids[name])
                except psutil.NoSuchProcess:
                    raise JetError(
                        "JET_errInstanceUnavailable", f"{name} of {path} is not running"
                    ) from None
        self._checked_at = 0.0
        self._failure: JetError | None = None

    def _health(self) -> JetError | None:
        now = time.monotonic()
        if self._failure is None and now - self._checked_at >= HEALTH_CHECK_INTERVAL:
            self._checked_at = now
            for name, process in self._processes.items():
                if not _running(process):
                    self._failure = JetError(
                        "JET_errInstanceUnavailable",
                        f"{name} (pid {process.pid}) of {self.path} is gone",
                    )
        return self._failure

    def _backup_worker_health(self) -> Callable[[], JetError | None]:
        try:
            worker = psutil.Process(self._pids["backup_worker"])
        except psutil.NoSuchProcess:
            raise JetError(
                "JET_errBackupNotAllowedYet", "the backup worker is restarting"
            ) from None

        def health() -> JetError | None:
            if not _running(worker):
                return JetError("JET_errBackupAbortByServer", "the backup worker died")
            return self._health()

        return health

    def status(self) -> InstanceStatus:
        """The actors (pid, alive) as this process sees them and the engine's figures
        (``InstanceStatus``); answered after JetStopService too."""

        def alive(name: str) -> bool:
            return name not in self._processes or _running(self._processes[name])

        actors = {name: {"pid": pid, "alive": alive(name)} for name, pid in self._pids.items()}
        engine = self._control_call(to_buffer_manager.status(), stopped_ok=True)
        return {
            "path": self.path,
            "actors": actors,
            "buffer_manager": engine,
            "archive": self._archive_status(actors),
        }

    @property
    def _logged(self) -> bool:
        return "log_writer" in self._pids

    def close(self) -> None:
        """Detach: the instance keeps running for the process that opened it."""
        if not self.closed:
            self.closed = True
            self._close_sessions()


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def connect(
    path: str | bytes | os.PathLike,
    *,
    max_snapshot_checkpoints: int = DEFAULT_MAX_SNAPSHOT_CHECKPOINTS,
    max_overlay_bytes: int = DEFAULT_MAX_OVERLAY_BYTES,
) -> Client:
    """Attach to the instance running at ``path`` (opened by another process); the
    bounds are those of this process's read view, as in ``Instance.open``."""
    view_bounds = _view_bounds(max_snapshot_checkpoints, max_overlay_bytes)
    path = os.path.abspath(fspath(path))
    published = read_endpoints(path) if instance_running(path) else None
    if published is None:
        raise JetError("JET_errNotInitialized", f"no instance is running at {path}")
    client = Client(path, published)
    client._view_bounds = view_bounds
    return client


def _archiving(
    path: str,
    logging: bool,
    archive_dir: object,
    archive_timeout: object,
    archive_max_lag: object,
) -> dict | None:
    """The archiving options checked, before anything is created; None: no archiving."""
    if archive_dir is None:
        if archive_timeout is not None or archive_max_lag is not None:
            raise JetError(
                "JET_errInvalidParameter", "archive_timeout and archive_max_lag need an archive_dir"
            )
        return None
    if not isinstance(archive_dir, (str, bytes, os.PathLike)):
        raise InvalidArgumentTypeError(
            "JET_errInvalidParameter", f"archive_dir must be a path, not {archive_dir!r}"
        )
    if not logging:
        raise JetError("JET_errLoggingDisabled", "archiving needs the log (logging=False)")
    directory = os.path.abspath(fspath(archive_dir))
    for name, value, least in (
        ("archive_timeout", archive_timeout, MIN_ARCHIVE_TIMEOUT),
        ("archive_max_lag", archive_max_lag, 1),
    ):
        if value is None:
            continue
        if type(value) not in (int, float):
            raise InvalidArgumentTypeError(
                "JET_errInvalidParameter", f"{name} must be a number, not {value!r}"
            )
        if not math.isfinite(value) or value < least:
            raise JetError(
                "JET_errInvalidParameter", f"{name} must be at least {least}, not {value!r}"
            )
    # Checked before anything is created: the checks the open's claim makes again.
    real, instance = os.path.realpath(directory), os.path.realpath(path)
    if real == instance or real.startswith(instance + os.sep) or instance.startswith(real + os.sep):
        raise JetError(
            "JET_errInvalidPath",
            f"archive {directory} and the instance {path} are one inside the other: an "
            "archive must survive the loss of the instance's disk, so give it a directory "
            "of its own elsewhere",
        )
    if os.path.exists(os.path.join(real, DB_FILE)) or os.path.isdir(os.path.join(real, LOG_DIR)):
        raise JetError(
            "JET_errInvalidPath", f"archive {directory} is an instance directory, not an archive"
        )
    if not os.path.isdir(os.path.dirname(real)) or (
        os.path.exists(real) and not os.path.isdir(real)
    ):
        raise JetError(
            "JET_errInvalidPath",
            f"archive {directory}: not a directory, and its parent is none to create it in",
        )
    if not os.path.isdir(path) and archive_format.read_identity(real) is not None:
        raise JetError(  # a new database has a new signature: any archive is another's
            "JET_errGivenLogFileHasBadSignature",
            f"archive {directory} holds another database's log: a new instance needs an "
            "archive of its own",
        )
    return {
        "archive_dir": directory,
        "timeout": None if archive_timeout is None else float(archive_timeout),
        "max_lag_bytes": None if archive_max_lag is None else int(archive_max_lag),
    }


def _view_bounds(max_snapshot_checkpoints: object, max_overlay_bytes: object) -> dict:
    for name, value, low in (
        ("max_snapshot_checkpoints", max_snapshot_checkpoints, 1),
        ("max_overlay_bytes", max_overlay_bytes, 1 << 20),
    ):
        if type(value) is not int or value < low:
            error = InvalidArgumentTypeError if type(value) is not int else JetError
            raise error("JET_errInvalidParameter", f"{name}={value!r} must be an int >= {low}")
    return {
        "max_snapshot_checkpoints": max_snapshot_checkpoints,
        "max_overlay_bytes": max_overlay_bytes,
    }

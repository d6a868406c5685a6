"""Control server: operators drive a running instance over ZeroMQ (DESIGN.md section 7).

A ROUTER in the process that opened the instance, served by its own thread:
always on ``ipc://<run dir>/control`` (the socket file 0600 inside a 0700
directory), and optionally on ``tcp://127.0.0.1:PORT``, which refuses to start
without CURVE: the server's key pair is generated into ``DIR/run/curve`` (0600)
and only client public keys placed in ``DIR/run/curve/clients`` may connect -
read at every handshake, so adding or removing a key file takes effect for the
next connection without a restart.

Every message is versioned (``protocol.codec``) and checked against
``control_commands.SCHEMA``; bad input of any kind gets an error reply and the server
carries on.  A backup runs in a thread of its own: its progress messages and
final reply are handed back to the serving thread (sockets stay in one
thread), so slow or vanished clients never block the engine.  Over tcp a
backup destination must resolve, symlinks included, inside a ``--backup-root``.
"""

from __future__ import annotations

import functools
import glob
import os
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from jetstore.engine.errors import JetError
from jetstore.engine.fileio import io_error
from jetstore.engine.run_dir_format import RUN_DIR
from jetstore.protocol.schema import to_backup, to_buffer_manager

from .control_commands import COMMANDS, SCHEMA, Command
from .runtime import DEFERRED, Outbox, Request, log, make_socket, serve_requests

# Operators send small messages: a bigger one gets an error reply; past the transport
# limit (codec.MAX_FRAME, MAXMSGSIZE) ZeroMQ drops the connection without reading it.
CONTROL_MAX_FRAME = 1 << 20
CURVE_DIR = "curve"
CLIENT_KEYS_DIR = "clients"
SERVER_KEY_NAME = "server"


@dataclass(frozen=True)
class Via:
    """The socket a command came in on, and whether it is the tcp one (CURVE, roots)."""

    sock: zmq.Socket
    over_tcp: bool


class AllowList:
    """The CURVE client keys allowed now: the public keys in a directory, read at each
    handshake (the authenticator's thread calls ``callback``)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def callback(self, domain: str, client_key: bytes) -> bool:
        # An exception here would kill the authenticator thread: every failure is logged.
        if not os.path.isdir(self.directory):
            log.error("CURVE allow-list %s is not a directory: refusing", self.directory)
            return False
        allowed = set()
        for name in glob.glob(os.path.join(self.directory, "*.key")):
            try:
                allowed.add(load_curve_key(name, "allowed client key")[0])
            except JetError as exc:  # as sshd skips a bad authorized_keys line
                log.error("CURVE allow-list: skipping %s", exc)
        return client_key in allowed


def _is_z85_key(text: bytes | None) -> bool:
    try:
        return text is not None and len(text) == 40 and len(z85.decode(text)) == 32
    except (KeyError, ValueError, struct.error):  # a byte outside z85, or a group past 2**32
        return False


def load_curve_key(path: str, what: str, *, secret: bool = False) -> tuple[bytes, bytes | None]:
    """(public, secret) z85 keys from a zmq certificate file, or a JetError naming the
    file: zmq.auth reports a missing or damaged file with bare OSError, ValueError or
    IndexError, and a key that is not 40 z85 characters only fails later, in libzmq."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise JetError("JET_errFileNotFound", f"{what} {path}: no such file")
    if os.path.isdir(path):
        raise JetError("JET_errInvalidPath", f"{what} {path} is a directory, not a key file")
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except OSError as exc:
        raise io_error(exc, f"{what} {path}") from exc
    except (ValueError, IndexError) as exc:  # IndexError: a "public-key" line with no "="
        raise JetError("JET_errInvalidParameter", f"{what} {path} is not a CURVE key file") from exc
    if not _is_z85_key(public):
        raise JetError("JET_errInvalidParameter", f"{what} {path}: damaged public key")
    if secret:
        if not secret_key:
            raise JetError("JET_errInvalidParameter", f"{what} {path} holds no secret key")
        # Any 32 bytes make a secret key: only its public half shows damage.
        if not _is_z85_key(secret_key) or zmq.curve_public(secret_key) != public:
            raise JetError(
                "JET_errInvalidParameter",
                f"{what} {path}: the secret key does not match the public key",
            )
    return public, secret_key


def curve_paths(path: str) -> tuple[str, str]:
    """(directory of the server's key pair, directory of allowed client public keys)."""
    keys = os.path.join(path, RUN_DIR, CURVE_DIR)
    return keys, os.path.join(keys, CLIENT_KEYS_DIR)


def ensure_server_keys(path: str) -> tuple[bytes, bytes]:
    """The server key pair, generated once with mode 0600 (zmq.auth does not chmod)."""
    keys, clients = curve_paths(path)
    for directory in (keys, clients):
        if os.path.lexists(directory) and not os.path.isdir(directory):
            raise JetError(
                "JET_errInvalidPath", f"CURVE key directory {directory} is not a directory"
            )
    secret_file = os.path.join(keys, SERVER_KEY_NAME + ".key_secret")
    try:
        os.makedirs(clients, mode=0o700, exist_ok=True)
        if not os.path.exists(secret_file):
            old_umask = os.umask(0o077)
            try:
                zmq.auth.create_certificates(keys, SERVER_KEY_NAME)
            finally:
                os.umask(old_umask)
        os.chmod(secret_file, 0o600)
    except OSError as exc:
        raise io_error(exc, f"CURVE server keys in {keys}") from exc
    try:
        return load_curve_key(secret_file, "CURVE server key", secret=True)
    except JetError as exc:
        # Never regenerated in place: clients hold the old public key.
        raise JetError(
            exc.err, f"{exc.message} (delete it to generate a new server key pair)"
        ) from exc


def check_tcp_endpoint(endpoint: str) -> None:
    """The only tcp endpoint the control socket serves: tcp://127.0.0.1:PORT (1-65535)."""
    prefix = "tcp://127.0.0.1:"
    port = endpoint[len(prefix) :] if endpoint.startswith(prefix) else ""
    if not (port.isdigit() and 1 <= int(port) <= 65535):
        raise JetError(
            "JET_errInvalidParameter",
            f"control endpoint {endpoint}: only tcp://127.0.0.1:PORT, PORT from 1 to 65535",
        )


class ControlServer(threading.Thread):
    def __init__(
        self,
        instance,
        ipc_endpoint: str,
        tcp_endpoint: str | None = None,
        backup_roots: list[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name="jetstore-control", daemon=True)
        self.instance = instance
        self.clock = clock  # the commits/s samples
        self.ipc_endpoint = ipc_endpoint
        self.tcp_endpoint = tcp_endpoint
        self.backup_roots = [os.path.realpath(root) for root in backup_roots or []]
        self.outbox = Outbox()
        self.stopping = threading.Event()
        self.started_ok = threading.Event()
        self.start_error: BaseException | None = None
        self.commit_samples: list[tuple[float, int]] = []
        self.tasks: list[threading.Thread] = []  # background commands (backups) running
        if tcp_endpoint is not None:
            check_tcp_endpoint(tcp_endpoint)
            if not zmq.has("curve"):
                raise JetError(
                    "JET_errFeatureNotAvailable",
                    "this libzmq has no CURVE: refusing a tcp control socket",
                )
            self.server_public, self.server_secret = ensure_server_keys(instance.path)

    # -- the serving thread ------------------------------------------------------
    def run(self) -> None:
        context = self.instance._supervisor.context
        sockets: dict[zmq.Socket, bool] = {}  # socket -> reached over tcp
        authenticator = None
        try:
            ipc = make_socket(context, zmq.ROUTER, bind=self.ipc_endpoint)
            sockets[ipc] = False
            if self.tcp_endpoint is not None:
                authenticator = ThreadAuthenticator(context)
                authenticator.start()
                authenticator.configure_curve_callback(
                    domain="*", credentials_provider=AllowList(curve_paths(self.instance.path)[1])
                )
                tcp = make_socket(context, zmq.ROUTER)  # bound once the CURVE keys are set
                tcp.curve_server = True
                tcp.curve_publickey, tcp.curve_secretkey = self.server_public, self.server_secret
                tcp.bind(self.tcp_endpoint)
                sockets[tcp] = True
        except BaseException as exc:  # reported to Instance.open by start_and_wait()
            self.start_error = exc
            self.started_ok.set()
            for sock in sockets:
                sock.close(0)
            return
        self.started_ok.set()
        handlers = {sock: self._handlers(sock, over_tcp) for sock, over_tcp in sockets.items()}
        poller = zmq.Poller()
        for sock in sockets:
            poller.register(sock, zmq.POLLIN)
        try:
            while not self.stopping.is_set():
                self.tasks = [task for task in self.tasks if task.is_alive()]
                # While a background command runs, its progress and reply come through the
                # outbox, which nothing else wakes the poll for: look often.
                for sock in dict(poller.poll(2 if self.tasks else 50)):
                    serve_requests(
                        sock, SCHEMA, handlers[sock], "control", max_frame=CONTROL_MAX_FRAME
                    )
                self.outbox.flush()
                self._sample_commits()
        finally:
            self.outbox.flush()
            for sock in sockets:
                sock.close(0)
            if authenticator is not None:
                authenticator.stop()

    def start_and_wait(self) -> None:
        self.start()
        self.started_ok.wait()
        if self.start_error is not None:
            error = self.start_error
            raise (
                error
                if isinstance(error, JetError)
                else JetError("JET_errInvalidParameter", f"control socket: {error}")
            ) from error

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(5)

    def _sample_commits(self) -> None:
        """Commit counter samples for commits/s (from the buffer manager's heartbeats)."""
        info = self.instance._supervisor.actor_status().get("buffer_manager", {}).get("info", {})
        if "commits" in info:
            now = self.clock()
            if not self.commit_samples or now - self.commit_samples[-1][0] >= 0.5:
                self.commit_samples = [*self.commit_samples[-20:], (now, info["commits"])]

    def commits_per_second(self) -> float:
        now = self.clock()
        window = [s for s in self.commit_samples if now - s[0] <= 10]
        if len(window) < 2 or window[-1][0] == window[0][0]:
            return 0.0
        return (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0])

    # -- commands (control_commands.py) ----------------------------------------------
    def _handlers(self, sock: zmq.Socket, over_tcp: bool) -> dict:
        via = Via(sock, over_tcp)
        return {
            name: functools.partial(self._execute, command, via)
            for name, command in COMMANDS.items()
        }

    def _execute(self, command: Command, via: Via, body: dict, request: Request):
        return command.execute(self, via, body, request)

    def background(self, via: Via, request: Request, work) -> object:
        """Run ``work`` in a thread; its result or error is the reply, through the outbox."""

        def run() -> None:
            try:
                self.outbox.put(via.sock, request, "ok", work())
            except JetError as exc:
                self.outbox.put(via.sock, request, "error", exc)
            except Exception as exc:  # noqa: BLE001 - reported, never fatal to the server
                # Its type only: an operator over tcp gets no text from inside the process.
                error = JetError("JET_errInternalError", type(exc).__name__)
                self.outbox.put(via.sock, request, "error", error)

        task = threading.Thread(target=run, name="jetstore-control-task", daemon=True)
        task.start()
        self.tasks.append(task)
        return DEFERRED

    def destination(self, dest: str, over_tcp: bool) -> str:
        """Over tcp, a destination must resolve (symlinks included) inside a backup root."""
        if not os.path.isabs(dest) or "\0" in dest:
            raise JetError(
                "JET_errInvalidPath",
                f"backup destination {dest[:200]!r} must be absolute (and hold no NUL byte)",
            )
        if not over_tcp:
            return dest
        resolved = os.path.realpath(dest)
        for root in self.backup_roots:
            if os.path.commonpath([resolved, root]) == root:
                return resolved
        if not self.backup_roots:
            raise JetError(
                "JET_errInvalidPath", "no --backup-root configured: backups over tcp are refused"
            )
        raise JetError(
            "JET_errInvalidPath",
            f"{dest} resolves to {resolved}, outside the "
            f"backup roots {', '.join(self.backup_roots)}",
        )

    def status(self) -> dict:
        report = self.instance.status()
        for actor in report["actors"].values():
            try:
                process = psutil.Process(actor["pid"])
                with process.oneshot():
                    times = process.cpu_times()
                    actor.update(
                        rss_bytes=process.memory_info().rss,
                        cpu_seconds=round(times.user + times.system, 3),
                    )
            except psutil.Error:
                actor.update(rss_bytes=None, cpu_seconds=None)
        if "failure" not in report:
            report["commits_per_s"] = round(self.commits_per_second(), 1)
            report["backup_worker"] = self.instance._backup_control(
                to_backup.status(), stopped_ok=True
            )
            report["backups"] = self.instance._control_call(
                to_buffer_manager.backup_info(), stopped_ok=True
            )
        return report

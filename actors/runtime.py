"""What every actor process shares: endpoints, sockets, heartbeats, the parent watch.

An instance's sockets live in ``DIR/run`` (mode 0700), or - when that path
is too long for an ipc endpoint (107 bytes on Linux) - in a private
directory under the system temp dir.  ``DIR/run/endpoints.json`` tells
clients where they are; ``DIR/run/lock`` is held (flock) by the process that
opened the instance, so a second open fails instead of stealing the ipc
paths (a second bind silently takes them over).
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import zmq

from jetstore.engine.errors import JetError
from jetstore.engine.run_dir_format import RUN_DIR
from jetstore.protocol import codec, schema

from . import fault_plan
from .fault_plan import FAULTS_VARIABLE

log = logging.getLogger("jetstore.actors")

IPC_PATH_MAX = 107
ENDPOINT_NAMES = (
    "buffer_manager",
    "log_append",
    "log_events",
    "log_control",
    "backup",
    "archiver",
    "supervisor",
    "control",
)
HEARTBEAT_INTERVAL = 0.1  # seconds between heartbeats
# Plain ints: on the hot path the flag enums' operators cost more than the calls themselves.
_POLLIN = int(zmq.POLLIN)
_NOBLOCK = int(zmq.NOBLOCK)
_NOBLOCK_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
LINGER_MS = 1000  # bounded: close never waits longer for unsent messages


@dataclass
class ActorConfig:
    """Everything an actor process needs, passed as plain data (no sockets, no handles)."""

    name: str
    path: str
    endpoints: dict[str, str]
    options: dict = field(default_factory=dict)
    # The opener's JETSTORE_FAULTS at open time: actors are forked from a forkserver
    # whose environment is the one of the process's first open, not of this one.
    faults: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def socket_dir(path: str) -> str:
    """The directory for this instance's ipc sockets: DIR/run, or a short private one."""
    run = os.path.join(path, RUN_DIR)
    os.makedirs(run, mode=0o700, exist_ok=True)
    os.chmod(run, 0o700)
    longest = "ipc://" + os.path.join(os.path.abspath(run), "buffer_manager")
    if len(longest) <= IPC_PATH_MAX:
        return os.path.abspath(run)
    return tempfile.mkdtemp(prefix="jet-")  # mkdtemp makes it 0700


def make_endpoints(sockets: str) -> dict[str, str]:
    return {name: "ipc://" + os.path.join(sockets, name) for name in ENDPOINT_NAMES}


def make_socket(
    context: zmq.Context,
    kind: int,
    *,
    bind: str | None = None,
    connect: str | None = None,
    max_frame: int = codec.MAX_FRAME,
) -> zmq.Socket:
    sock = context.socket(kind)
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.MAXMSGSIZE, max_frame)  # before bind/connect: applies per connection
    if kind == zmq.ROUTER:
        # A reply to a vanished client must fail loudly, not vanish silently.
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    if bind:
        if bind.startswith("ipc://"):
            try:
                os.unlink(bind[len("ipc://") :])  # a stale socket file of a dead instance
            except FileNotFoundError:
                pass
        sock.bind(bind)
        if bind.startswith("ipc://"):
            os.chmod(bind[len("ipc://") :], 0o600)
    if connect:
        sock.connect(connect)
    return sock


def has_message(sock: zmq.Socket) -> bool:
    """Whether a message waits on ``sock``: cheaper than provoking zmq.Again on every turn."""
    return bool(sock.getsockopt(zmq.EVENTS) & _POLLIN)


def drain(sock: zmq.Socket, limit: int) -> Iterator[bytes]:
    """The frames waiting on a PULL socket, at most ``limit``; each counts for a fault plan."""
    for _ in range(limit):
        if not has_message(sock):
            return
        frame = sock.recv(_NOBLOCK)
        fault_plan.message()
        yield frame


class Heartbeat(threading.Thread):
    """Tells the supervisor every HEARTBEAT_INTERVAL that this process lives, and how
    long its loop has been busy with one piece of work (a stuck loop shows up as
    ever-growing ``busy_s``; a frozen or dead process as silence)."""

    def __init__(
        self, context: zmq.Context, endpoint: str, actor: str, info: Callable[[], dict]
    ) -> None:
        super().__init__(name=f"{actor}-heartbeat", daemon=True)
        self.context, self.endpoint, self.actor, self.info = context, endpoint, actor, info
        self.busy_since: float | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        sock = make_socket(self.context, zmq.PUSH, connect=self.endpoint)
        sock.setsockopt(zmq.SNDHWM, 10)
        try:
            while not self.stopping.wait(HEARTBEAT_INTERVAL):
                busy = self.busy_since
                try:
                    info = self.info()
                except Exception as exc:  # noqa: BLE001 - a heartbeat must not die of a report
                    info = {"error": type(exc).__name__}
                heartbeat = schema.to_supervisor.heartbeat(
                    actor=self.actor,
                    pid=os.getpid(),
                    busy_s=0.0 if busy is None else time.monotonic() - busy,
                    info=info,
                )
                try:
                    sock.send(codec.encode(0, *heartbeat), zmq.NOBLOCK)
                except zmq.Again:
                    pass  # the supervisor is not reading: it will notice the silence
        finally:
            sock.close(0)

    def stop(self) -> None:
        """Stop and wait (bounded): its socket must be closed before the context terminates."""
        self.stopping.set()
        self.join(2 * HEARTBEAT_INTERVAL + 1.0)

    def busy(self) -> None:
        self.busy_since = time.monotonic()

    def idle(self) -> None:
        self.busy_since = None


class ActorHost:
    """What every actor's main does around its own work: one ZeroMQ context and the
    sockets made from it, the poller that also watches the parent process, the
    heartbeat, the ready message, and an orderly end (heartbeat stopped before its
    context terminates, every socket closed with a bounded linger)."""

    def __init__(self, cfg: ActorConfig) -> None:
        self.cfg = cfg
        self.context = zmq.Context()
        self.sockets: list[zmq.Socket] = []
        self.poller = zmq.Poller()
        self.sentinel = parent_sentinel()
        if self.sentinel is not None:
            self.poller.register(self.sentinel, zmq.POLLIN)
        self.heartbeat: Heartbeat | None = None

    def socket(
        self, kind: int, *, bind: str | None = None, connect: str | None = None, watch: bool
    ) -> zmq.Socket:
        """A socket closed with the host; ``watch``: ``wait`` reports it when readable."""
        sock = make_socket(self.context, kind, bind=bind, connect=connect)
        self.sockets.append(sock)
        if watch:
            self.poller.register(sock, zmq.POLLIN)
        return sock

    def start(self, info: Callable[[], dict], ready: dict) -> None:
        """Start the heartbeat (``info`` fills it) and tell the supervisor we are ready."""
        endpoint = self.cfg.endpoints["supervisor"]
        self.heartbeat = Heartbeat(self.context, endpoint, self.cfg.name, info)
        self.heartbeat.start()
        send_ready(self.context, endpoint, self.cfg.name, ready)

    def wait(self, timeout_ms: int) -> dict | None:
        """The watched sockets readable within ``timeout_ms``; None once the process that
        started us is gone (stop as a crash would: the next open recovers)."""
        ready = dict(self.poller.poll(timeout_ms))
        return None if self.sentinel in ready else ready

    def close(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        for sock in self.sockets:
            sock.close()
        self.context.term()


def send_ready(context: zmq.Context, endpoint: str, actor: str, info: dict) -> None:
    sock = make_socket(context, zmq.PUSH, connect=endpoint)
    try:
        ready = schema.to_supervisor.ready(actor=actor, pid=os.getpid(), info=info)
        sock.send(codec.encode(0, *ready))
    finally:
        sock.close(LINGER_MS)


def report_startup_failure(endpoint: str, actor: str, exc: JetError) -> None:
    """Tell the supervisor why this actor cannot start, so the caller sees the real error."""
    context = zmq.Context()
    try:
        sock = make_socket(context, zmq.PUSH, connect=endpoint)
        failed = schema.to_supervisor.failed(
            actor=actor, pid=os.getpid(), err=exc.err, message=exc.message
        )
        sock.send(codec.encode(0, *failed))
        sock.close(LINGER_MS)
    finally:
        context.term()


def actor_setup(config: dict) -> ActorConfig:
    """What every actor does first: its configuration, its fault plan, and Ctrl-C ignored
    (it reaches the whole process group; only the supervisor may act on it, stopping the
    actors in order - an actor dying of its own KeyboardInterrupt would be a crash)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cfg = ActorConfig(**config)
    if cfg.faults is None:
        os.environ.pop(FAULTS_VARIABLE, None)
    else:
        os.environ[FAULTS_VARIABLE] = cfg.faults
    fault_plan.load_plan(cfg.name)
    return cfg


def parent_sentinel() -> int | None:
    """A file descriptor that becomes readable when the process that started us dies."""
    import multiprocess

    parent = multiprocess.parent_process()
    return parent.sentinel if parent is not None else None


class Request(NamedTuple):
    """Who asked what: enough to answer later (a commit waits for its fsync)."""

    identity: bytes
    request_id: int
    kind: str


DEFERRED = object()  # a handler's answer when it will reply later itself


def reply(
    sock: zmq.Socket, request: Request, result: Any = None, error: JetError | None = None
) -> bool:
    """Answer ``request``; False if the client's queue is full (see ``Outbox``)."""
    frame = (
        codec.encode_error(request.request_id, error)
        if error is not None
        else codec.encode(request.request_id, codec.REPLY_OK, result)
    )
    return _send(sock, request.identity, frame)


def deliver(sock: zmq.Socket, request: Request, kind: str, body: Any) -> bool:
    """Send what a background task handed back for ``request``: a "progress" message, or
    its final reply - "ok" with a result, "error" with a JetError.  False if the client's
    queue is full and nothing was sent."""
    if kind == codec.REPLY_PROGRESS:
        return _send(sock, request.identity, codec.encode(request.request_id, kind, body))
    if kind == "error":
        return reply(sock, request, error=body)
    return reply(sock, request, body)


def _send(sock: zmq.Socket, identity: bytes, frame: bytes) -> bool:
    """Send without ever blocking the actor: False if the client's queue is full (its
    SNDHWM reached: it reads slower than we send); True once sent, or if the client is
    gone (ROUTER_MANDATORY's EHOSTUNREACH), where there is nobody to answer."""
    try:
        sock.send(identity, _NOBLOCK_MORE)
        sock.send(frame, _NOBLOCK)
    except zmq.Again:
        return False
    except zmq.ZMQError:
        pass
    return True


class Outbox:
    """What background threads hand an actor's loop to send: progress and final replies.

    A client that reads slower than a backup reports - starved of CPU beside busy
    neighbours, say - fills its queue on the ROUTER, and a frame sent then is dropped:
    a dropped final reply would leave its caller waiting forever.  So what cannot be
    sent waits here, in order, for the next ``flush``; a progress message still waiting
    when a newer one of the same request arrives is replaced by it (progress is a
    state, not a history), which keeps the wait short and the memory bounded.
    """

    def __init__(self) -> None:
        self.incoming: queue.Queue = queue.Queue()  # from any thread
        self.waiting: collections.deque = collections.deque()  # the loop's only

    def put(self, sock: zmq.Socket, request: Request, kind: str, body: Any) -> None:
        self.incoming.put((sock, request, kind, body))

    def flush(self) -> None:
        """Send what can be sent now (the loop's thread only)."""
        while True:
            try:
                item = self.incoming.get_nowait()
            except queue.Empty:
                break
            last = self.waiting[-1] if self.waiting else None
            superseded = last is not None and item[1] == last[1]  # the same request
            if superseded and item[2] == last[2] == codec.REPLY_PROGRESS:
                self.waiting[-1] = item
            else:
                self.waiting.append(item)
        while self.waiting and deliver(*self.waiting[0]):
            self.waiting.popleft()


def serve_requests(
    sock: zmq.Socket,
    table: dict[str, dict[str, tuple]],
    handlers: dict[str, Callable[[dict, Request], Any]],
    actor: str,
    limit: int = 1000,
    max_frame: int = codec.MAX_FRAME,
    replies: dict[str, Any] | None = None,
) -> None:
    """Answer the requests waiting on a ROUTER (at most ``limit``), then return.

    Bad input of any kind is answered with an error reply; an unexpected
    exception is logged here with its traceback and answered with
    JET_errInternalError, never sent to the client and never fatal to the loop.
    A result that does not match its reply schema (``replies``) is such a bug too.
    """
    for _ in range(limit):
        if not has_message(sock):
            return
        parts = sock.recv_multipart(_NOBLOCK)
        fault_plan.message()
        if len(parts) != 2:
            if len(parts) > 1:
                reply(
                    sock,
                    Request(parts[0], 0, "?"),
                    error=JetError(
                        "JET_errInvalidParameter",
                        f"expected one frame per request, got {len(parts) - 1}",
                    ),
                )
            continue
        identity, frame = parts
        request = None
        try:
            message = codec.decode(frame, max_frame)
            request = Request(identity, message.request_id, message.kind)
            body = schema.check(table, message.kind, message.body)
            result = handlers[message.kind](body, request)
            if replies is not None and result is not DEFERRED:
                schema.check_reply(replies, message.kind, result)
        except JetError as exc:
            if exc.name == "JET_errInternalError":
                log.error("%s: %s", actor, exc)
            reply(sock, request or Request(identity, codec.peek_request_id(frame), "?"), error=exc)
            continue
        except Exception as exc:  # noqa: BLE001 - an actor must outlive its own bugs
            log.exception("%s: %s request failed", actor, request.kind if request else "?")
            error = JetError("JET_errInternalError", f"{actor}: {type(exc).__name__}")
            reply(sock, request or Request(identity, 0, "?"), error=error)
            continue
        if result is not DEFERRED:
            reply(sock, request, result)

"""One DEALER socket to an actor, with request ids: the one client channel of the
protocol, used by the engine API, the actors that call each other and ``ctl``.

A call sends one request and waits for the reply with the same id, polling in
short slices so that it can give up the moment the instance is known to be
unavailable (the ``health`` callback: the supervisor's verdict in the opening
process, the actors' process states in a process that ``connect``-ed).  A call
never hangs on a dead actor.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import zmq

from jetstore.engine.errors import JetError

from . import codec
from .schema import Request, to_backup

POLL_SLICE_MS = 50
_request_ids = itertools.count(1)

Health = Callable[[], "JetError | None"]


class ReplyTimeout(JetError):
    """No reply in the caller's timeout: the peer may be alive but busy or stopped."""

    def __init__(self, message: str) -> None:
        super().__init__("JET_errInstanceUnavailable", message)

    def __reduce__(self):
        return (ReplyTimeout, (self.message,))


class Channel:
    """One DEALER socket to an actor or a control socket, for one thread at a time.

    ``curve``: (server public key, client public key, client secret key), z85, for a
    tcp control socket; ``monitor``: socket events to watch from before the connection
    (``self.monitor``, e.g. a failed CURVE handshake).
    """

    def __init__(
        self,
        context: zmq.Context,
        endpoint: str,
        health: Health,
        identity: bytes | None = None,
        curve: tuple[bytes, bytes, bytes] | None = None,
        monitor: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sock = context.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, codec.MAX_FRAME)
        # A blocking recv with a timeout is the cheapest wait; each expiry checks health.
        self.sock.setsockopt(zmq.RCVTIMEO, POLL_SLICE_MS)
        if identity is not None:
            self.sock.setsockopt(zmq.ROUTING_ID, identity)
        if curve is not None:
            self.sock.curve_serverkey, self.sock.curve_publickey, self.sock.curve_secretkey = curve
        self.monitor = self.sock.get_monitor_socket(monitor) if monitor else None
        self.sock.connect(endpoint)
        self.health = health
        self.clock = clock

    def call(
        self,
        request: Request,
        *,
        timeout: float | None = None,
        on_progress: Callable[[dict], None] | None = None,
        acks: bool = True,
    ) -> Any:
        """Send a request and return its result; the reply's JetError is raised here.

        ``timeout``: seconds of silence before ReplyTimeout (each progress message
        starts it over: a backup that reports is alive).  A long request (a backup)
        may send "progress" messages before its reply: each goes to ``on_progress``,
        and with ``acks`` is acknowledged once that returned - with the exception's
        text if it raised, which makes the actor give up.  The control socket takes no
        acks.
        """
        problem = self.health()
        if problem is not None:
            raise problem
        request_id = next(_request_ids)
        kind = request.kind
        self.sock.send(codec.encode_request(request_id, kind, request.body))
        silent_since = self.clock()
        while True:
            message = self._receive(request_id)
            if message is None:
                problem = self.health()
                if problem is not None:
                    raise problem
                if timeout is not None and self.clock() - silent_since >= timeout:
                    raise ReplyTimeout(f"{kind}: no reply in {timeout:g} s")
                continue
            if message.kind != codec.REPLY_PROGRESS:
                return codec.result_of(message)
            silent_since = self.clock()
            ack = self._progress(on_progress, message)
            if acks:
                self.sock.send(codec.encode_request(request_id, *to_backup.ack(**ack)))

    def _receive(self, request_id: int) -> codec.Message | None:
        """The next message for ``request_id``, or None after POLL_SLICE_MS (RCVTIMEO)
        without one or for a frame that is not: the late reply to a call that gave up
        earlier, or garbage."""
        try:
            message = codec.decode(self.sock.recv())
        except (zmq.Again, JetError):
            return None
        return message if message.request_id == request_id else None

    @staticmethod
    def _progress(on_progress, message: codec.Message) -> dict:
        if on_progress is None:
            return {}
        try:
            on_progress(message.body)
        except Exception as exc:  # noqa: BLE001 - the caller's callback: its failure is data
            return {"error": f"{type(exc).__name__}: {exc}"[:200]}
        return {}

    def close(self) -> None:
        if self.monitor is not None:
            self.sock.disable_monitor()
            self.monitor.close(0)
        self.sock.close(0)

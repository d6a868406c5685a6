"""Encoding of every message on every jetstore socket: one msgpack frame.

    request  [PROTOCOL_VERSION, request_id, kind, body]
    reply    [PROTOCOL_VERSION, request_id, "ok", result]
             [PROTOCOL_VERSION, request_id, "error", {"err": int, "name": str, "message": str}]
    progress [PROTOCOL_VERSION, request_id, "progress", body]     before a long request's
             reply (a backup), any number of them; body per schema.PROGRESS

``request_id`` is chosen by the sender (an int) and echoed in the reply, so a
DEALER client can drop a late reply to a request it gave up on.  ``body`` is a
map whose shape ``schema`` defines per kind.  Decoding never raises anything
but ``JetError`` (JET_errInvalidParameter naming what is wrong), so a receive
loop turns bad input into an error reply and carries on.  Error replies carry
the ESE number, name and message - never a traceback.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgpack

from jetstore.engine.errors import ERRORS, JetError

PROTOCOL_VERSION = 1
MAX_FRAME = 64 << 20  # MAXMSGSIZE on every socket: a 16 MiB value plus room to spare
# What a message's envelope and msgpack headers may add to its payload, generously: a
# payload kept within MAX_FRAME - FRAME_HEADROOM always fits in one frame.
FRAME_HEADROOM = 64 << 10
REPLY_OK = "ok"
REPLY_ERROR = "error"
REPLY_PROGRESS = "progress"


class Message(NamedTuple):
    request_id: int
    kind: str
    body: Any


def _bad(what: str) -> JetError:
    return JetError("JET_errInvalidParameter", f"malformed message: {what}")


def encode(request_id: int, kind: str, body: Any) -> bytes:
    frame = msgpack.packb([PROTOCOL_VERSION, request_id, kind, body], use_bin_type=True)
    if kind == REPLY_OK and len(frame) > MAX_FRAME:
        # The receiver's MAXMSGSIZE would drop this reply with the connection, and the
        # caller would wait for it forever: it gets an error it can act on instead.
        return encode_error(
            request_id,
            JetError(
                "JET_errOutOfMemory",
                f"the reply is {len(frame)} bytes, more than the {MAX_FRAME}-byte message limit",
            ),
        )
    return frame


def encode_request(request_id: int, kind: str, body: Any, max_frame: int = MAX_FRAME) -> bytes:
    """A request frame, or JetError if it is larger than the receiver accepts.

    The check has to happen here, before sending: a frame past the receiver's
    MAXMSGSIZE makes ZeroMQ close the connection without reading it, so the
    receiver never sees the request and cannot answer it.
    """
    frame = encode(request_id, kind, body)
    if len(frame) > max_frame:
        raise JetError(
            "JET_errInvalidParameter",
            f"{kind}: the request is {len(frame)} bytes, more than the {max_frame}-byte"
            " message limit",
        )
    return frame


def encode_error(request_id: int, exc: JetError) -> bytes:
    return encode(request_id, REPLY_ERROR, exc.as_dict())


def decode(frame: bytes, max_frame: int = MAX_FRAME) -> Message:
    """Split one frame into (request_id, kind, body); JetError for anything malformed."""
    if len(frame) > max_frame:
        raise _bad(f"{len(frame)} bytes, more than {max_frame}")
    try:
        # unpackb bounds every length by the frame's own size; strict_map_key
        # keeps map keys to str/bytes.
        decoded = msgpack.unpackb(frame, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise _bad(f"not msgpack ({type(exc).__name__})") from None
    if not isinstance(decoded, list) or len(decoded) != 4:
        raise _bad("expected [version, request_id, kind, body]")
    version, request_id, kind, body = decoded
    if type(version) is not int or version != PROTOCOL_VERSION:
        shown = version if type(version) is int else type(version).__name__
        raise JetError(
            "JET_errInvalidParameter",
            f"protocol version {shown}; this engine speaks {PROTOCOL_VERSION}",
        )
    if type(request_id) is not int or not isinstance(kind, str):
        raise _bad("request_id must be an int and kind a str")
    return Message(request_id, kind, body)


def peek_request_id(frame: bytes) -> int:
    """Best-effort request id of a frame that failed to decode (0 when there is none)."""
    try:
        decoded = msgpack.unpackb(frame, strict_map_key=True)
        if isinstance(decoded, list) and len(decoded) > 1 and type(decoded[1]) is int:
            return decoded[1]
    except Exception:  # noqa: BLE001 - the frame is already known to be bad
        pass
    return 0


def result_of(message: Message) -> Any:
    """The result of a reply, or the JetError it carries raised here."""
    if message.kind == REPLY_OK:
        return message.body
    if message.kind == REPLY_ERROR and isinstance(message.body, dict):
        err = message.body.get("err")
        text = message.body.get("message", "")
        if type(err) is int and err in ERRORS.values():
            raise JetError(err, text if isinstance(text, str) else "")
    raise _bad(f"unexpected reply kind {message.kind!r}")

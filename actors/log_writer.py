"""Log writer actor: owns the log generations; group commit.

Loop: wait for redo batches from the buffer manager (PULL) or a control
request (ROUTER: roll, truncate, pin, unpin, archived, status); take *every* batch that
has arrived meanwhile, append them all, fdatasync once, and report each
batch's end LSNs back (PUSH).  One fsync thus covers as many transactions as
arrived while the previous one ran - the whole point of group commit.  With
archiving on, the wait ends in time for archive_timeout's roll (logkeeper.py).
"""

from __future__ import annotations

import os

import zmq

from jetstore.engine.errors import JetError
from jetstore.engine.events_format import EventLog
from jetstore.engine.fileio import DEFAULT_ENV
from jetstore.engine.log_stream import LogStream
from jetstore.engine.logkeeper import ArchivePolicy, LogKeeper
from jetstore.engine.published_format import Published
from jetstore.engine.run_dir_format import RUN_DIR
from jetstore.protocol import codec, schema

from .fault_plan import env_for
from .runtime import (
    DEFERRED,
    ActorHost,
    Request,
    actor_setup,
    drain,
    reply,
    report_startup_failure,
    serve_requests,
)

NAME = "log_writer"
MAX_BATCHES_PER_SYNC = 512


def main(config: dict) -> None:
    cfg = actor_setup(config)
    options = cfg.options
    try:
        stream = LogStream.open(
            env_for(DEFAULT_ENV),
            options["logs_path"],
            log_file_size=options["log_file_size"],
            signature=options["signature"],
            circular=options["circular"],
            end_lsn=options["end_lsn"],
        )
    except JetError as exc:
        report_startup_failure(cfg.endpoints["supervisor"], NAME, exc)
        return
    host = ActorHost(cfg)
    run_dir = os.path.join(cfg.path, RUN_DIR)
    archiving = options.get("archiving")
    keeper = LogKeeper(
        stream,
        options["checkpoint_lsn"],
        Published(run_dir),
        archiving=None if archiving is None else ArchivePolicy(**archiving),
        events=EventLog(cfg.path),
    )
    appends = host.socket(zmq.PULL, bind=cfg.endpoints["log_append"], watch=True)
    events = host.socket(zmq.PUSH, connect=cfg.endpoints["log_events"], watch=False)
    control = host.socket(zmq.ROUTER, bind=cfg.endpoints["log_control"], watch=True)
    host.start(keeper.status, keeper.status())
    stopping: list = []
    handlers = control_handlers(keeper, stopping)
    try:
        while not stopping and (ready := host.wait(wait_ms(keeper))) is not None:
            host.heartbeat.busy()
            try:
                keeper.roll_if_due()  # the archiver finds the closed generation next turn
            except JetError:
                pass  # the keeper keeps the failure: every later append reports it
            if appends in ready:
                write_batches(appends, events, keeper)
            if control in ready:
                serve_requests(
                    control, schema.LOG_CONTROL, handlers, NAME, replies=schema.LOG_CONTROL_REPLIES
                )
            host.heartbeat.idle()
        if stopping:
            stream.sync()
            stream.close()
            reply(control, stopping[0], {"durable_lsn": stream.durable_lsn})
    finally:
        stream.close()
        host.close()


def wait_ms(keeper: LogKeeper) -> int:
    """How long the loop may sleep: a second, or until archive_timeout's roll is due."""
    due = keeper.seconds_to_roll()
    return 1000 if due is None else max(1, min(1000, int(due * 1000) + 1))


def write_batches(appends: zmq.Socket, events: zmq.Socket, keeper: LogKeeper) -> None:
    """Drain every waiting message, append all batches, sync once, report each batch."""
    batches: list[tuple[int, list[bytes]]] = []
    for frame in drain(appends, MAX_BATCHES_PER_SYNC):
        try:
            message = codec.decode(frame)
            body = schema.check(schema.LOG_APPEND, message.kind, message.body)
        except JetError:
            continue  # only the buffer manager writes here; nothing to answer
        if message.kind == "checkpointed":
            keeper.checkpointed(body["lsn"])
        elif all(type(r) is bytes for r in body["records"]):
            batches.append((body["batch"], body["records"]))
    if not batches:
        return
    try:
        ends = keeper.append_batches([records for _batch, records in batches])
    except JetError as exc:
        for batch, _records in batches:
            failed = schema.log_event.failed(batch=batch, err=exc.err, message=exc.message)
            events.send(codec.encode(0, *failed))
        return
    generation = keeper.stream.current_generation
    for (batch, _records), batch_ends in zip(batches, ends, strict=True):
        durable = schema.log_event.durable(batch=batch, ends=batch_ends, generation=generation)
        events.send(codec.encode(0, *durable))


def control_handlers(keeper: LogKeeper, stop: list) -> dict:
    def shutdown(body: dict, request: Request):
        stop.append(request)
        return DEFERRED  # answered once the stream is closed

    return {
        "ping": lambda body, request: "pong",
        "status": lambda body, request: keeper.status(),
        "roll": lambda body, request: {"generation": keeper.roll()},
        "truncate": lambda body, request: {
            "deleted": keeper.truncate(body["below"], body.get("checkpoint_lsn", 0))
        },
        "pin": lambda body, request: keeper.pin(body["generation"]),
        "unpin": lambda body, request: keeper.unpin(body["generation"]),
        "archived": lambda body, request: keeper.archived(body["generation"]),
        "shutdown": shutdown,
    }

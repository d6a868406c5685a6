"""Archiver actor: keeps the log archive caught up with the closed generations
(DESIGN.md section 6, "Continuous archiving"; the steps are engine/archiving.py).

Loop: every turn - ``TURN_MS``, at once after a request, back to back while a
backlog lasts - archive the oldest generation closed and not archived yet, then
tell the log writer how far the archive reaches (``archived``): only then may it
delete those generations.  One generation a turn, so a request waits for one copy
at most.  Serve status,
ping and shutdown.  It is off the commit path: it reads closed files, at the backup
worker's niceness, and talks to the log writer once per archived generation.  A
``kill -9`` at any step loses nothing: the log writer keeps every generation not
reported archived, and the archiver started next resumes after the newest
generation the archive holds (a copy already there is compared, not redone).
"""

from __future__ import annotations

import os

import zmq

from jetstore.engine.archiving import Archiver
from jetstore.engine.errors import JetError
from jetstore.engine.events_format import EventLog
from jetstore.engine.fileio import DEFAULT_ENV
from jetstore.engine.storage import LOG_DIR
from jetstore.protocol import schema
from jetstore.protocol.channel import Channel
from jetstore.protocol.schema import to_log_control

from . import fault_plan
from .backup_worker import BACKUP_NICENESS
from .fault_plan import env_for
from .runtime import ActorHost, Request, actor_setup, serve_requests

NAME = "archiver"
TURN_MS = 200
LOG_WRITER_TIMEOUT = 10.0  # the log writer answers at once unless it is gone


def main(config: dict) -> None:
    cfg = actor_setup(config)
    os.nice(BACKUP_NICENESS)
    options = cfg.options
    host = ActorHost(cfg)
    router = host.socket(zmq.ROUTER, bind=cfg.endpoints["archiver"], watch=True)
    archiver = Archiver(
        env_for(DEFAULT_ENV),
        os.path.join(cfg.path, LOG_DIR),
        options["archive_dir"],
        db_signature=bytes.fromhex(options["db_signature"]),
        log_signature=bytes.fromhex(options["log_signature"]),
        events=EventLog(cfg.path),
        fault_point=fault_plan.step,
    )
    log_writer = Channel(host.context, cfg.endpoints["log_control"], lambda: None)
    stopping: list[bool] = []
    handlers = request_handlers(archiver, stopping)
    archiver.step(limit=0)  # where to resume, before the first status (a failure retries)
    host.start(lambda: {"archived_through": archiver.archived_through}, {})
    reported = 0
    try:
        while not stopping:
            ready = host.wait(0 if archiver.behind else TURN_MS)
            if ready is None:
                break
            if router in ready:
                serve_requests(
                    router, schema.ARCHIVER, handlers, NAME, replies=schema.ARCHIVER_REPLIES
                )
            host.heartbeat.busy()
            archiver.step(limit=1)
            if archiver.archived_through > reported:
                request = to_log_control.archived(generation=archiver.archived_through)
                try:
                    log_writer.call(request, timeout=LOG_WRITER_TIMEOUT)
                    reported = archiver.archived_through
                except JetError:
                    pass  # told again next turn; until then the log keeps the generations
            host.heartbeat.idle()
    finally:
        log_writer.close()
        host.close()


def request_handlers(archiver: Archiver, stop: list) -> dict:
    def shutdown(body: dict, request: Request) -> dict:
        stop.append(True)
        return {"stopped": True}

    return {
        "ping": lambda body, request: "pong",
        "status": lambda body, request: archiver.status(),
        "shutdown": shutdown,
    }

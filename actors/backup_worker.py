"""Backup worker actor: runs backups and log truncation (DESIGN.md section 6).

Started and supervised like the other actors; when it dies the supervisor
starts a new one and only the backup it was running fails.  The backup
sequence itself lands with the backup issue; until then the worker answers
ping, status and shutdown, which is what supervision needs.
"""

from __future__ import annotations

import zmq

from jetstore.protocol import schema

from .runtime import (
    ActorConfig,
    Heartbeat,
    ignore_interrupts,
    make_socket,
    parent_sentinel,
    send_ready,
    serve_requests,
)

NAME = "backup_worker"


def main(config: dict) -> None:
    ignore_interrupts()
    cfg = ActorConfig(**config)
    context = zmq.Context()
    router = make_socket(context, zmq.ROUTER, bind=cfg.endpoints["backup"])
    state = {"running": True, "backups": 0}
    heartbeat = Heartbeat(context, cfg.endpoints["supervisor"], NAME,
                          lambda: {"backup_in_progress": False})  # fmt: skip
    heartbeat.start()

    def shutdown(body, request):
        state["running"] = False
        return {"stopped": True}

    handlers = {
        "ping": lambda body, request: "pong",
        "status": lambda body, request: {"backup_in_progress": False},
        "shutdown": shutdown,
    }
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    sentinel = parent_sentinel()
    if sentinel is not None:
        poller.register(sentinel, zmq.POLLIN)
    send_ready(context, cfg.endpoints["supervisor"], NAME, {})
    try:
        while state["running"]:
            ready = dict(poller.poll(1000))
            if sentinel in ready:
                break
            if router in ready:
                serve_requests(router, schema.BACKUP, handlers, NAME)
    finally:
        heartbeat.stopping.set()
        router.close()
        context.term()

"""The event log: one JSON object per line in ``DIR/events.jsonl``, and the
``jetstore.events`` logger, for every step of a backup, truncation and restore.

Operators read it with ``jq``; each line carries the time, the event name and
its figures (files, bytes, generations, durations, errors with ESE numbers).
"""

from __future__ import annotations

import json
import logging
import os
import time

from .errors import JetError

EVENTS_FILE = "events.jsonl"
logger = logging.getLogger("jetstore.events")


class EventLog:
    def __init__(self, instance_path: str) -> None:
        self.path = os.path.join(instance_path, EVENTS_FILE)

    def emit(self, event: str, **fields) -> dict:
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
            "time_ns": time.time_ns(),
            "event": event,
            **fields,
        }
        line = json.dumps(record, default=str)
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError as exc:  # an event log that cannot be written must not fail a backup
            logger.warning("cannot append to %s: %s", self.path, exc)
        logger.info("%s", line)
        return record

    def failure(self, event: str, exc: BaseException, **fields) -> dict:
        return self.emit(event, error=JetError.of(exc).as_dict(), **fields)

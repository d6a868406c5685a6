"""The event log: ``DIR/events.jsonl``, and the ``jetstore.events`` logger.

One JSON object per line (UTF-8, newline-terminated, appended; never rewritten):

    {"time": "YYYY-MM-DDTHH:MM:SS" (UTC), "time_ns": int (Unix ns), "event": str,
     ...the event's own fields: files, bytes, generations, durations...,
     "error": {"err": int, "name": str, "message": str}   (failures only)}

Every step of a backup, truncation, restore and recovery that an operator may
need to explain later is one line; they read it with ``jq``.  A line that
cannot be appended is a warning on the logger, never the failure of the step.
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

"""The run marker: what a running backup holds, for the worker started after a killed one.

Layout: ``DIR/run/backup-in-progress.json``, one JSON object, replaced atomically
(written to ``backup-in-progress.json.tmp``, fsynced, renamed over the marker)::

    {"kind":  "full" | "incremental" | "truncate",
     "pins":  {"seq": int, "generation": int},   either may be absent: not (yet) pinned
     "dest":  str,                                absent for a truncation
     "token": str}                                the destination claim's token

The marker is written before each pin is taken and before the claim file is
created, so a worker killed at any point leaves its successor what it needs to
release the pins and to undo the claimed destination (claim_format.py names the
files written there).  No marker: no backup was running.  An unreadable marker
holds nothing to unpin; the destination's claim still says what to undo.
"""

from __future__ import annotations

import json
import os

MARKER_FILE = "backup-in-progress.json"


class RunMarker:
    def __init__(self, path: str) -> None:
        self.path = path

    def write(self, state: dict) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def read(self) -> dict | None:
        """The marker's state; None without a marker, {} for an unreadable one."""
        try:
            with open(self.path) as f:
                state = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

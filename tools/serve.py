"""``jetstore serve DIR``: run an instance in the foreground until SIGINT or SIGTERM.

Prints where clients attach (``connect(DIR)`` reads the same endpoints), then
waits.  A signal makes it shut down cleanly (final checkpoint, clean state,
actors reaped) and exit 0; if the instance fails (an actor died), it reports
the error and exits 1.
"""

from __future__ import annotations

import json
import signal
import sys
import threading

from jetstore.engine import Instance
from jetstore.tools import exit_codes

FAILURE_POLL_S = 0.2


def serve(
    directory: str,
    *,
    as_json: bool = False,
    control: str | None = None,
    backup_roots: list[str] | None = None,
    archive_dir: str | None = None,
    archive_timeout: float | None = None,
    archive_max_lag: int | None = None,
) -> int:
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        inst = Instance.open(
            directory,
            control=control,
            backup_roots=backup_roots,
            archive_dir=archive_dir,
            archive_timeout=archive_timeout,
            archive_max_lag=archive_max_lag,
        )
        try:
            status = inst.status()
            info = {
                "path": inst.path,
                "endpoints": inst.endpoints,
                "pids": {name: a["pid"] for name, a in status["actors"].items()},
            }
            if as_json:
                print(json.dumps(info), flush=True)
            else:
                print(f"jetstore: serving {inst.path}", flush=True)
                for name, endpoint in info["endpoints"].items():
                    print(f"  {name:15s} {endpoint}", flush=True)
                if archive_dir is not None:
                    print(f"  {'archive':15s} {archive_dir}", flush=True)
                print("  stop with Ctrl-C or SIGTERM", flush=True)
            while not stop.wait(FAILURE_POLL_S):
                if inst.closing or inst.closed:
                    break  # shut down over the control socket
                failure = inst._health()
                if failure is not None:
                    print(f"jetstore serve: instance failed: {failure}", file=sys.stderr)
                    return exit_codes.FAILED
        finally:
            inst.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    # With --json, stdout holds the one document of the endpoints and nothing else.
    print("jetstore serve: stopped cleanly", file=sys.stderr if as_json else sys.stdout)
    return exit_codes.OK

"""``DIR/run``: what a running instance publishes beside its database.

    DIR/run/                   mode 0700, created by the opening process
        lock                   the opener's pid as decimal text; held with flock(LOCK_EX)
                               while the instance is open - a lock nobody holds is a
                               crashed instance's leftover, never proof of a live one
        endpoints.json         {"path": str, "supervisor_pid": int,
                                "endpoints": {socket name: "ipc://..." | "tcp://..."},
                                "pids": {actor name: int}}
                               written to endpoints.json.tmp, then renamed over;
                               removed at close
        <socket name>          the ipc sockets (or in a short private directory when
                               DIR is too long for an ipc path)
        backup-in-progress.json the backup worker's crash-undo marker (run_marker_format.py)
        curve/                 the control socket's CURVE keys (actors/control.py)

Clients (``connect``, ``jetstore ctl``) trust endpoints.json only while the lock
is held: ``instance_running`` takes a shared lock and fails if it can.
"""

from __future__ import annotations

import fcntl
import json
import os

from .fileio import io_error

RUN_DIR = "run"
ENDPOINTS_FILE = "endpoints.json"
LOCK_FILE = "lock"


def run_dir(path: str) -> str:
    return os.path.join(path, RUN_DIR)


def replace_file(path: str, data: bytes) -> None:
    """Write ``data`` beside ``path``, then rename it in: a reader sees the old file or
    the whole new one (never fsynced: these files describe a running instance only)."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise io_error(exc, path) from exc


def write_endpoints(path: str, published: dict) -> None:
    replace_file(os.path.join(run_dir(path), ENDPOINTS_FILE), json.dumps(published).encode())


def read_endpoints(path: str) -> dict | None:
    """What endpoints.json holds, or None when it is missing or unreadable."""
    try:
        with open(os.path.join(run_dir(path), ENDPOINTS_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def instance_running(path: str) -> bool:
    """Whether a live process holds the directory's lock (endpoints of a crashed one linger)."""
    try:
        fd = os.open(os.path.join(run_dir(path), LOCK_FILE), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True  # held: the opening process is alive
    finally:
        os.close(fd)  # closing drops a lock we may have taken
    return False

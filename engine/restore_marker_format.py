"""The marker of a restore that has not finished (DESIGN.md section 6, "The edges").

    DEST/restore-in-progress     written, fsynced and its directory fsynced before a
                                 restore puts anything else into DEST; removed last,
                                 once the restored database is complete and clean

Layout: one JSON object, written to ``restore-in-progress.tmp`` and renamed:

    {"format": 1, "backup_id": "<hex>", "backup_dir": "<path>", "started_ns": int,
     "crc32c": int}

``crc32c`` covers the JSON of the other fields.  While the file exists the
destination is no database: ``Storage.open`` refuses it with -506 naming the file
and the backup, however complete ``jet.edb`` looks (a kill may land anywhere in the
page copy, the log copy or the replay).  Running the same restore again - the
backup with that id - starts it over and completes it; a restore of any other
backup into that destination is refused.  A marker that cannot be read (torn,
foreign) is still a marker: the destination is refused, and only a restore of some
backup may take it over (its id is unknown, so any backup may).
"""

from __future__ import annotations

import json
import os
import time

import crc32c

from .errors import JetError
from .fileio import Env, read_regular_file

RESTORE_MARKER = "restore-in-progress"
FORMAT = 1


def _checksum(fields: dict) -> int:
    return crc32c.crc32c(json.dumps(fields, sort_keys=True).encode())


def write(env: Env, dest: str, backup_id: str, backup_dir: str) -> None:
    """Mark ``dest`` (an existing directory) as the target of an unfinished restore."""
    fields = {
        "format": FORMAT,
        "backup_id": backup_id,
        "backup_dir": backup_dir,
        "started_ns": time.time_ns(),
    }
    data = json.dumps({**fields, "crc32c": _checksum(fields)}, sort_keys=True).encode()
    path = os.path.join(dest, RESTORE_MARKER)
    file = env.open(path + ".tmp", create=True)
    try:
        file.truncate(0)
        file.pwrite(data, 0)
        file.sync()
    finally:
        file.close()
    env.rename(path + ".tmp", path)
    env.sync_dir(dest)


def read(dest: str) -> dict | None:
    """The marker's fields; ``{}`` for a marker that cannot be read; None without one."""
    path = os.path.join(dest, RESTORE_MARKER)
    try:
        raw = read_regular_file(path)
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        fields = json.loads(raw)
        crc = fields.pop("crc32c")
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}
    if fields.get("format") != FORMAT or crc != _checksum(fields):
        return {}
    return fields


def describe(dest: str, fields: dict) -> str:
    """Which restore left the marker, for messages."""
    path = os.path.join(dest, RESTORE_MARKER)
    if not fields:
        return f"{path} (unreadable: a restore was interrupted)"
    return (
        f"{path}: the restore of backup {fields['backup_id']} from {fields['backup_dir']} "
        "did not finish"
    )


def refuse_open(dest: str) -> None:
    """-506 if ``dest`` holds the marker: its database is not complete (Storage.open)."""
    fields = read(dest)
    if fields is not None:
        raise JetError(
            "JET_errRestoreInProgress",
            f"{describe(dest, fields)}; run that restore again to complete it",
        )


def remove(env: Env, dest: str) -> None:
    """The restore is complete: the destination is a database from now on."""
    env.remove(os.path.join(dest, RESTORE_MARKER))
    env.sync_dir(dest)

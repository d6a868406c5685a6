"""On-disk layout of a log archive (DESIGN.md section 6, "Continuous archiving").

An archive holds the closed log generations of one database, stream by stream::

    ARCHIVE/JETARCHIVE                  identity: which database's log this is (below)
    ARCHIVE/<log signature, 32 hex>/    one directory per log stream of that database
        jetXXXXXXXX.log                 a closed generation, byte for byte as the log
                                        writer closed it (log_format.py), verified
                                        record by record and against the one before it
        incoming/jetXXXXXXXX.log        a copy in progress: never read, replaced by the
                                        next attempt

A generation appears under its final name only once its copy is complete, verified
and fsynced (rename, then the directory fsynced): whatever is in a stream directory
under a generation's name is a whole, closed generation.  A database's log starts a
new stream - a new signature - after a restore and after any run that broke the old
one (recovery.py ``_restart_log``); each stream keeps its own directory, so the
generations of a restored copy never mix with those of the stream it forked from,
even where their numbers overlap.

``JETARCHIVE`` is one JSON object, written to a temporary file of its own and
linked into place (never replacing one that is there)::

    {"format": 1, "db_signature": "<32 hex>", "created_ns": int, "crc32c": int}

``crc32c`` covers the canonical JSON (sorted keys, no spaces) of the other fields.
An archive of another database (another ``db_signature``) is refused with -555.

The instance remembers the archive it archives into, in ``DIR/archived-to``: one JSON
object, written to a temporary file, fsynced and renamed into place::

    {"format": 1, "archive": "<real path>", "created_ns": int, "crc32c": int}

``created_ns`` is that archive's identity's.  At open, an archive directory without
an identity becomes a new archive - unless this instance archived into one at that
very path: then the directory is most likely the mount point of a disk that is not
mounted, and the open is refused (-1811) rather than starting a second archive there
that the first, mounted again, would hide.  A damaged record is no record.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time

import crc32c

from .errors import JetError
from .fileio import Env, io_error, read_regular_file

IDENTITY_FILE = "JETARCHIVE"
ARCHIVED_TO = "archived-to"  # in the instance directory
INCOMING_DIR = "incoming"
FORMAT = 1
_STREAM_NAME = re.compile(r"^[0-9a-f]{32}$")


def _checksum(fields: dict) -> int:
    return crc32c.crc32c(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode())


def _sealed(fields: dict) -> bytes:
    return json.dumps({**fields, "crc32c": _checksum(fields)}).encode()


def _unsealed(raw: bytes) -> dict | None:
    """The fields of a sealed record; None if it is damaged or of another format."""
    try:
        fields = json.loads(raw)
        crc = fields.pop("crc32c")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return fields if fields.get("format") == FORMAT and crc == _checksum(fields) else None


def read_identity(archive: str) -> dict | None:
    """The identity's fields; None if ``archive`` has no ``JETARCHIVE``; -1022 or -555
    (naming the file) if it cannot be read or is not one."""
    path = os.path.join(archive, IDENTITY_FILE)
    try:
        raw = read_regular_file(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise JetError(
            "JET_errDiskIO", f"{path}: cannot read the archive's identity: {exc}"
        ) from exc
    fields = _unsealed(raw)
    if fields is None:
        raise JetError(
            "JET_errGivenLogFileHasBadSignature",
            f"{path}: not a jetstore archive identity (damaged, or of another format)",
        )
    return fields


def read_archived_to(instance: str) -> dict | None:
    """What ``DIR/archived-to`` records; None without one, or with a damaged one."""
    try:
        return _unsealed(read_regular_file(os.path.join(instance, ARCHIVED_TO)))
    except (OSError, JetError):
        return None


def _remember(env: Env, instance: str, archive: str, identity: dict) -> None:
    """Record ``archive`` in ``DIR/archived-to``, unless that is what it records."""
    fields = {"format": FORMAT, "archive": archive, "created_ns": identity["created_ns"]}
    if read_archived_to(instance) == fields:
        return
    path = os.path.join(instance, ARCHIVED_TO)
    file = env.open(path + ".tmp", create=True)
    try:
        file.truncate(0)
        file.pwrite(_sealed(fields), 0)
        file.sync()
    finally:
        file.close()
    env.rename(path + ".tmp", path)
    env.sync_dir(instance)


def is_archive(path: str) -> bool:
    return os.path.isfile(os.path.join(path, IDENTITY_FILE))


def claim(
    env: Env, archive: str, db_signature: bytes, *, create: bool = True, instance: str | None = None
) -> dict:
    """Make ``archive`` the archive of the database ``db_signature``, or check that it
    already is: -555 if it belongs to another database, -1023 if the path cannot hold
    one.  ``create``: make it if it has no identity yet (its parent must exist); else a
    missing identity is -1811 - an archiver never recreates an archive that vanished,
    which may be a disk that came unmounted.  ``instance``: the directory of the
    database opening it, which remembers its archive (``DIR/archived-to``): an archive
    it archived into at this path is not created anew either (-1811).

    Two databases claiming one new archive at once: the identity is published with
    link(2), which fails if the name exists, so exactly one of them claims it and the
    other then reads it (and is refused, -555)."""
    parent = os.path.dirname(os.path.abspath(archive))
    if not os.path.isdir(parent):
        raise JetError(
            "JET_errInvalidPath", f"archive {archive}: its parent directory {parent} does not exist"
        )
    if os.path.exists(archive) and not os.path.isdir(archive):
        raise JetError("JET_errInvalidPath", f"archive {archive}: not a directory")
    fields = read_identity(archive) if os.path.isdir(archive) else None
    if fields is None and not create:
        raise JetError(
            "JET_errFileNotFound",
            f"archive {archive}: no {IDENTITY_FILE} there - it vanished (an unmounted disk?) "
            "and is not recreated behind the operator's back: the local log keeps every "
            "generation until it is back, or the instance is reopened with another archive",
        )
    real = os.path.realpath(archive)
    remembered = None if instance is None else read_archived_to(instance)
    if fields is None and remembered is not None and remembered["archive"] == real:
        raise JetError(
            "JET_errFileNotFound",
            f"archive {archive}: no {IDENTITY_FILE} there, but this database archived into "
            "an archive at this path - is its disk mounted? A new archive is not started "
            "where the old one may reappear; to start one there all the same, delete "
            f"{os.path.join(instance, ARCHIVED_TO)}",
        )
    if fields is None:
        env.makedirs(archive)
        _publish_identity(env, archive, db_signature)
        fields = read_identity(archive)
    if fields["db_signature"] != db_signature.hex():
        raise JetError(
            "JET_errGivenLogFileHasBadSignature",
            f"{os.path.join(archive, IDENTITY_FILE)}: this archive holds the log of database "
            f"{fields['db_signature']}, not of this one ({db_signature.hex()}): give each "
            "database an archive of its own",
        )
    if instance is not None:
        _remember(env, instance, real, fields)
    return fields


def _publish_identity(env: Env, archive: str, db_signature: bytes) -> None:
    """Write the identity under a name of this claim's own, then link it into place
    (a no-op if another claim's got there first)."""
    fields = {"format": FORMAT, "db_signature": db_signature.hex(), "created_ns": time.time_ns()}
    path = os.path.join(archive, IDENTITY_FILE)
    temporary = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    file = env.open(temporary, create=True, exclusive=True)
    try:
        file.pwrite(_sealed(fields), 0)
        file.sync()
    finally:
        file.close()
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass  # another claim published first: read_identity tells whose archive it is
    except OSError as exc:
        raise io_error(exc, f"publish the archive identity {path}") from exc
    finally:
        env.remove(temporary)
    env.sync_dir(archive)


def stream_dir(archive: str, log_signature: bytes) -> str:
    return os.path.join(archive, log_signature.hex())


def incoming_dir(archive: str, log_signature: bytes) -> str:
    return os.path.join(stream_dir(archive, log_signature), INCOMING_DIR)


def streams(archive: str) -> list[str]:
    """The log signatures (hex) of the streams the archive holds, by name."""
    try:
        names = os.listdir(archive)
    except OSError:
        return []
    return sorted(
        n for n in names if _STREAM_NAME.match(n) and os.path.isdir(os.path.join(archive, n))
    )

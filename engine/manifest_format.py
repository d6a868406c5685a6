"""On-disk format of a backup's ``MANIFEST`` (written last: no manifest, no backup).

A backup directory holds::

    jet.edb                    the pages of the pinned checkpoint, at their own offsets;
                               pages the checkpoint does not use are left as zeros
    logs/jetXXXXXXXX.log       generations gen_low .. gen_high (full), then those each
                               incremental appended
    MANIFEST                   this file

The MANIFEST is UTF-8 JSON, one object, so an operator can read it with any
tool; its integrity is a CRC32C of the canonical encoding (sorted keys, no
spaces) of every field but ``crc32c``, stored as ``crc32c``::

    {
      "format": 1,
      "backup_id": "<32 hex>",          the full backup's id, shared by its incrementals
      "instance_path": "<path>",        the instance backed up (informational)
      "db_signature": "<32 hex>",
      "log_signature": "<32 hex>",
      "page_size": 8192,
      "checkpoint_lsn": <int>,          L0: replay starts here
      "gen_low": <int>, "gen_high": <int>,     generations the backup holds, contiguous
      "chain": [                         the full backup, then each incremental, in order
        {"type": "full"|"incremental", "id": "<32 hex>", "time_ns": <int>,
         "gen_low": <int>, "gen_high": <int>, "roll_lsn": <int>}
      ],
      "files": {"jet.edb": {"size": <int>, "crc32c": <int>},
                "logs/jet00000001.log": {...}, ...},
      "crc32c": <int>
    }

An incremental rewrites the MANIFEST (temporary file, fsync, rename) with its
generations added to ``files``, ``gen_high`` raised and one ``chain`` entry
appended; the files of earlier entries never change.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import crc32c

from .errors import JetError
from .log_format import parse_generation_file_name
from .page_format import PAGE_SIZES
from .storage import DB_FILE, LOG_DIR

MANIFEST = "MANIFEST"
FORMAT_VERSION = 1
REQUIRED = (
    "format",
    "backup_id",
    "db_signature",
    "log_signature",
    "page_size",
    "checkpoint_lsn",
    "gen_low",
    "gen_high",
    "chain",
    "files",
)


def _canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def encode(manifest: dict[str, Any]) -> bytes:
    fields = {k: v for k, v in manifest.items() if k != "crc32c"}
    return (
        json.dumps(
            {**fields, "crc32c": crc32c.crc32c(_canonical(fields))}, indent=1, sort_keys=True
        ).encode()
        + b"\n"
    )


def decode(raw: bytes, path: str) -> dict[str, Any]:
    """Parse and verify a MANIFEST; JET_errInvalidBackup names what is wrong."""
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise JetError("JET_errInvalidBackup", f"{path}: not a readable manifest ({exc})") from None
    if not isinstance(manifest, dict) or "crc32c" not in manifest:
        raise JetError("JET_errInvalidBackup", f"{path}: not a jetstore backup manifest")
    fields = {k: v for k, v in manifest.items() if k != "crc32c"}
    if manifest["crc32c"] != crc32c.crc32c(_canonical(fields)):
        raise JetError("JET_errInvalidBackup", f"{path}: manifest checksum mismatch")
    missing = [name for name in REQUIRED if name not in manifest]
    if missing:
        raise JetError("JET_errInvalidBackup", f"{path}: manifest lacks {', '.join(missing)}")
    if manifest["format"] != FORMAT_VERSION:
        raise JetError("JET_errInvalidBackup", f"{path}: manifest format {manifest['format']}")
    problem = _field_problem(manifest)
    if problem:  # a checksum only shows the file is as written, not that it was well made
        raise JetError("JET_errInvalidBackup", f"{path}: manifest {problem}")
    return manifest


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _is_id(value: Any) -> bool:
    try:
        return type(value) is str and len(bytes.fromhex(value)) == 16
    except ValueError:
        return False


def _field_problem(manifest: dict[str, Any]) -> str | None:
    """What is wrong with the fields of a manifest whose checksum held, else None: every
    reader may then take each field for what this module's layout says it is, and a
    file name for one inside the backup (never "../" or an absolute path)."""
    for name in ("backup_id", "db_signature", "log_signature"):
        if not _is_id(manifest[name]):
            return f"{name} {manifest[name]!r} is not 32 hex digits"
    if manifest["page_size"] not in PAGE_SIZES or type(manifest["page_size"]) is not int:
        return f"page_size {manifest['page_size']!r} is not one of {PAGE_SIZES}"
    for name in ("checkpoint_lsn", "gen_low", "gen_high"):
        if not _is_count(manifest[name]):
            return f"{name} {manifest[name]!r} is not a whole number"
    if manifest["gen_low"] > manifest["gen_high"]:
        return f"gen_low {manifest['gen_low']} is above gen_high {manifest['gen_high']}"
    chain = manifest["chain"]
    if type(chain) is not list or not chain:
        return "chain is not a list of backups, the full one first"
    for n, entry in enumerate(chain):
        kind = "full" if n == 0 else "incremental"
        if type(entry) is not dict or entry.get("type") != kind or not _is_id(entry.get("id")):
            return f"chain entry {n} is not {'a' if n else 'the'} {kind} backup with its id"
        if not all(_is_count(entry.get(k)) for k in ("time_ns", "gen_low", "gen_high", "roll_lsn")):
            return f"chain entry {n} lacks a whole time_ns, gen_low, gen_high or roll_lsn"
    files = manifest["files"]
    if type(files) is not dict or DB_FILE not in files:
        return f"files does not list {DB_FILE}"
    for name, entry in files.items():
        logs_dir, _, generation = name.partition("/")
        if name != DB_FILE and not (
            logs_dir == LOG_DIR and parse_generation_file_name(generation) is not None
        ):
            return f"lists {name!r}, which is neither {DB_FILE} nor a {LOG_DIR}/ generation"
        if type(entry) is not dict or not _is_count(entry.get("size")):
            return f"entry of {name} has no whole size"
        if not _is_count(entry.get("crc32c")):
            return f"entry of {name} has no whole crc32c"
    return None


def chain_entry(kind: str, gen_low: int, gen_high: int, roll_lsn: int) -> dict[str, Any]:
    """One backup of a chain: ``kind`` "full" or "incremental", stamped now."""
    return {
        "type": kind,
        "id": uuid.uuid4().hex,
        "time_ns": time.time_ns(),
        "gen_low": gen_low,
        "gen_high": gen_high,
        "roll_lsn": roll_lsn,
    }


def full(
    entry: dict[str, Any],
    *,
    instance_path: str,
    db_signature: bytes,
    log_signature: bytes,
    page_size: int,
    checkpoint_lsn: int,
    files: dict[str, dict],
) -> dict[str, Any]:
    """The MANIFEST of a full backup whose chain entry is ``entry``."""
    return {
        "format": FORMAT_VERSION,
        "backup_id": entry["id"],
        "instance_path": instance_path,
        "db_signature": db_signature.hex(),
        "log_signature": log_signature.hex(),
        "page_size": page_size,
        "checkpoint_lsn": checkpoint_lsn,
        "gen_low": entry["gen_low"],
        "gen_high": entry["gen_high"],
        "chain": [entry],
        "files": files,
    }


def with_incremental(
    manifest: dict[str, Any], entry: dict[str, Any], logs: dict[str, dict]
) -> dict[str, Any]:
    """``manifest`` with one incremental appended: its generations and its chain entry."""
    return {
        **manifest,
        "gen_high": entry["gen_high"],
        "chain": manifest["chain"] + [entry],
        "files": {**manifest["files"], **logs},
    }

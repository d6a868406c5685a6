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
    return manifest


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

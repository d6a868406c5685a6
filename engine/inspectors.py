"""Inspectors: what ``esentutl /mh`` and ``/k`` print, as data (``dump_log`` is ``/ml``).
LSNs and times are numbers here; the command line prints them as text
(tools/output.py).

They read files directly and never change them, so they work on a live
instance's directory, on a backup and on a damaged file alike; damage is
reported, not raised, except where nothing at all can be read.
"""

from __future__ import annotations

import os

from .database_file import read_meta
from .errors import JetError
from .fileio import DEFAULT_ENV, Env
from .meta_format import FIRST_DATA_PAGE, META_SLOTS, STATE_NAMES, BackupRecord, Meta
from .page_format import (
    PAGE_BAD_CHECKSUM,
    PAGE_OK,
    PAGE_UNINITIALIZED,
    PAGE_WRONG_PGNO,
    classify_page,
)
from .storage import DB_FILE

VERIFY_CHUNK_PAGES = 256  # pages per read while verifying: large sequential reads


def database_path(path: str) -> str:
    """Accept an instance directory or the database file itself."""
    return os.path.join(path, DB_FILE) if os.path.isdir(path) else path


def _backup(record: BackupRecord) -> dict | None:
    if not record.present:
        return None
    return {
        "time_ns": record.time_ns,
        "gen_low": record.gen_low,
        "gen_high": record.gen_high,
        "lsn_mark": record.lsn_mark,
        "backup_id": record.backup_id.hex(),
    }


def describe_meta(meta: Meta) -> dict:
    return {
        "seq": meta.seq,
        "page_size": meta.page_size,
        "state": STATE_NAMES.get(meta.state, str(meta.state)),
        "db_signature": meta.db_signature.hex(),
        "log_signature": meta.log_signature.hex(),
        "checkpoint_lsn": meta.checkpoint_lsn,
        "page_count": meta.page_count,
        "free_pages": meta.freelist_count,
        "catalog_root": meta.catalog_root,
        "freelist_root": meta.freelist_root,
        "flags": meta.flags,
        "log_file_size": meta.log_file_size,
        "created_time_ns": meta.created_ns,
        "last_full_backup": _backup(meta.last_full),
        "last_incremental_backup": _backup(meta.last_incremental),
    }


def dump_header(path: str, env: Env | None = None) -> dict:
    """The current meta and the state of both slots (esentutl /mh)."""
    env = env or DEFAULT_ENV
    db_path = database_path(path)
    file = env.open_read(db_path)
    try:
        meta = read_meta(file)
        slots = []
        for slot in META_SLOTS:
            page = file.pread(meta.page_size, slot * meta.page_size)
            try:
                slots.append({"slot": slot, "seq": Meta.from_page(page, slot, db_path).seq})
            except JetError as exc:
                slots.append({"slot": slot, "error": f"{exc.name}: {exc.message}"})
        size = file.size()
    finally:
        file.close()
    return {"path": db_path, "file_size": size, "current": describe_meta(meta), "slots": slots}


def verify_database(path: str, env: Env | None = None) -> dict:
    """Checksum every page of the file (esentutl /k): counts, and the first bad pages."""
    env = env or DEFAULT_ENV
    db_path = database_path(path)
    file = env.open_read(db_path)
    counts = {PAGE_OK: 0, PAGE_BAD_CHECKSUM: 0, PAGE_WRONG_PGNO: 0, PAGE_UNINITIALIZED: 0}
    bad: list[dict] = []
    try:
        page_size = read_meta(file).page_size
        total = file.size() // page_size
        for first in range(0, total, VERIFY_CHUNK_PAGES):
            chunk = file.pread(page_size * VERIFY_CHUNK_PAGES, first * page_size)
            for index in range(len(chunk) // page_size):
                pgno = first + index
                page = chunk[index * page_size : (index + 1) * page_size]
                outcome = classify_page(page, pgno)
                counts[outcome] += 1
                if outcome in (PAGE_BAD_CHECKSUM, PAGE_WRONG_PGNO) and len(bad) < 100:
                    bad.append({"page": pgno, "offset": pgno * page_size, "problem": outcome})
    finally:
        file.close()
    return {
        "path": db_path,
        "pages_seen": total,
        "bad_checksums": counts[PAGE_BAD_CHECKSUM],
        "wrong_page_numbers": counts[PAGE_WRONG_PGNO],
        "uninitialized": counts[PAGE_UNINITIALIZED],
        "meta_and_data_pages_ok": counts[PAGE_OK],
        "first_data_page": FIRST_DATA_PAGE,
        "bad_pages": bad,
        "integrity": "ok"
        if not counts[PAGE_BAD_CHECKSUM] and not counts[PAGE_WRONG_PGNO]
        else "error",
    }

"""The database file as a whole: created complete or not at all, and its newest valid
meta slot found whatever the page size (the page and meta layouts are in
page_format.py and meta_format.py)."""

from __future__ import annotations

import os
import secrets
import time

from . import btree
from .errors import JetError
from .fileio import Env
from .meta_format import (
    DB_JUST_CREATED,
    FIRST_DATA_PAGE,
    FLAG_LOGGING,
    META_SLOTS,
    Meta,
    page_size_of,
)
from .page_format import MAX_PAGE_SIZE, PAGE_SIZES
from .pager import Pager


def create_database_file(
    env: Env, db_path: str, page_size: int, log_file_size: int, *, logging: bool
) -> None:
    """A new database: one empty catalog leaf and meta slot 1 (seq 1), state just-created.

    Written under a temporary name and renamed, so a crash leaves either no
    database or a complete one; the log stream is created on first open.
    """
    tmp_path = db_path + ".tmp"
    file = env.open(tmp_path, create=True)
    try:
        file.truncate(0)
        cache = 1 << 20  # room for the one page a new database has
        pager = Pager(file, page_size, cache, page_count=FIRST_DATA_PAGE, sealed_seq=0)
        catalog_root = btree.create(pager)
        images, freelist_root, free_count = pager.seal(1)
        meta = Meta(
            page_size=page_size,
            seq=1,
            catalog_root=catalog_root,
            freelist_root=freelist_root,
            freelist_count=free_count,
            page_count=pager.page_count,
            checkpoint_lsn=0,
            db_signature=secrets.token_bytes(16),
            log_signature=secrets.token_bytes(16),
            state=DB_JUST_CREATED,
            flags=FLAG_LOGGING if logging else 0,
            log_file_size=log_file_size,
            created_ns=time.time_ns(),
        )
        pager.write_pages(images)
        file.pwrite(meta.to_page(), meta.slot * page_size)
        file.sync()
    finally:
        file.close()
    env.rename(tmp_path, db_path)
    env.sync_dir(os.path.dirname(db_path))


def read_meta(file) -> Meta:
    """The newest valid meta slot; both invalid is JET_errDatabaseCorrupted naming both,
    no jetstore magic in either is JET_errInvalidDatabase (not a database file)."""
    candidates, problems = [], []
    for size in PAGE_SIZES:
        for slot in META_SLOTS:
            page = file.pread(size, slot * size)
            if len(page) < size or page_size_of(page) != size:
                continue  # not a slot of this page size: nothing to report
            try:
                candidates.append(Meta.from_page(page, slot, file.path))
            except JetError as exc:
                problems.append(f"slot {slot}: {exc}")
    if candidates:
        return max(candidates, key=lambda m: m.seq)
    if not any(file.pread(2 * MAX_PAGE_SIZE, 0)):  # both slots, whatever the page size
        raise JetError("JET_errInvalidDatabase", f"{file.path} is empty: not a jetstore database")
    if not problems:  # no slot even starts like one: some other kind of file
        raise JetError(
            "JET_errInvalidDatabase",
            f"{file.path} is not a jetstore database (neither meta slot has the jetstore"
            " magic; if it was one, both meta pages are destroyed)",
        )
    detail = "; ".join(problems)
    raise JetError("JET_errDatabaseCorrupted", f"{file.path}: no valid meta slot ({detail})")

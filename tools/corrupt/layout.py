"""The pristine layout: where the records of each log generation are (as the engine's log
reader scans them) and which pages of a database file its newest checkpoint uses or frees."""

from __future__ import annotations

import os
from dataclasses import dataclass

from jetstore.engine.database_file import read_meta
from jetstore.engine.errors import JetError
from jetstore.engine.fileio import DEFAULT_ENV
from jetstore.engine.log_format import generation_file_name
from jetstore.engine.log_reader import LogReader, list_generations
from jetstore.engine.meta_format import FIRST_DATA_PAGE, META_SLOTS, Meta
from jetstore.engine.page_format import PAGE_TYPE_NAMES, PageHeader
from jetstore.engine.pager import Pager
from jetstore.engine.storage import LOG_DIR


@dataclass
class Generation:
    """Where the records of one pristine generation file are."""

    generation: int
    name: str  # relative to the instance or backup directory: logs/jetXXXXXXXX.log
    size: int
    fragments: list[tuple[int, int, int]]  # (start, end, type), END_OF_GENERATION included
    end: int  # after the last valid fragment
    closed: bool

    def fragment_at(self, offset: int) -> tuple[int, int, int]:
        for fragment in self.fragments:
            if fragment[0] <= offset < fragment[1]:
                return fragment
        raise ValueError(f"{self.name}: no record at offset {offset}")


def scan_generation(path: str, name: str) -> Generation:
    """Record boundaries of an undamaged generation file (the log reader's own scan)."""
    generation = int(os.path.basename(name)[3:11], 16)
    reader = LogReader(DEFAULT_ENV, os.path.dirname(path))
    fragments, end, closed = reader.fragments(generation)
    return Generation(generation, name, os.path.getsize(path), fragments, end, closed)


def scan_logs(directory: str) -> list[Generation]:
    logs = os.path.join(directory, LOG_DIR)
    return [
        scan_generation(
            os.path.join(logs, generation_file_name(g)), f"{LOG_DIR}/{generation_file_name(g)}"
        )
        for g in list_generations(DEFAULT_ENV, logs)
    ]


@dataclass
class DatabaseLayout:
    """The pages of a database file as its newest checkpoint sees them."""

    meta: Meta
    older: Meta | None
    used: list[int]  # pages the checkpoint references, free-list pages included
    free: list[int]  # pages on its free list
    beyond: list[int]  # pages in the file past its high-water mark
    page_types: dict[int, str]
    file_pages: int


def database_layout(db_path: str) -> DatabaseLayout:
    env = DEFAULT_ENV
    file = env.open_read(db_path)
    try:
        meta = read_meta(file)
        older = None
        for slot in META_SLOTS:
            if slot != meta.slot:
                try:
                    older = Meta.from_page(
                        file.pread(meta.page_size, slot * meta.page_size), slot, db_path
                    )
                except JetError:
                    older = None
        reader = Pager(file, meta.page_size, 1 << 20, page_count=meta.page_count, sealed_seq=0)
        _holders, free = reader.read_freelist(meta.freelist_root)
        free_set = set(free)
        used = [p for p in range(FIRST_DATA_PAGE, meta.page_count) if p not in free_set]
        page_types = {}
        for pgno in used:
            page = file.pread(meta.page_size, pgno * meta.page_size)
            page_types[pgno] = PAGE_TYPE_NAMES.get(PageHeader(page).page_type, "?")
        file_pages = file.size() // meta.page_size
    finally:
        file.close()
    beyond = list(range(meta.page_count, file_pages))
    return DatabaseLayout(meta, older, used, sorted(free), beyond, page_types, file_pages)

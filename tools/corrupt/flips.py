"""The damage: flipping one bit of a file, choosing a random flip in a target class, and
describing what the flipped byte is in the pristine layout."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

from jetstore.engine import manifest_format
from jetstore.engine.log_format import (
    HEADER_SIZE,
    RECORD_HEADER_SIZE,
    RECORD_TYPE_NAMES,
    RECORDS_START,
)
from jetstore.engine.meta_format import META_SLOTS
from jetstore.engine.storage import DB_FILE
from jetstore.tools.corrupt.catalogue import BACKUP_TARGETS, HEADER_FIELDS_END, LOG_TARGETS
from jetstore.tools.corrupt.fixture import Fixture
from jetstore.tools.corrupt.layout import Generation


@dataclass
class Flip:
    target: str
    tree: str  # "main" or "quiet" (instances) or "backup"
    file: str  # relative to the instance or backup directory
    offset: int
    bit: int
    area: str  # what the byte is, in the pristine layout

    def apply(self, directory: str) -> None:
        flip_bit(os.path.join(directory, self.file), self.offset, self.bit)


def flip_bit(path: str | os.PathLike, offset: int, bit: int = 0) -> None:
    """Invert one bit of the byte at ``offset`` in ``path``, in place."""
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ (1 << bit)]))


def _log_area(gen: Generation, offset: int, *, last: bool) -> str:
    if offset < HEADER_FIELDS_END:
        return f"header field byte {offset}"
    if offset < HEADER_SIZE:
        return f"header block padding byte {offset}"
    if offset < gen.end:
        start, end, record_type = gen.fragment_at(offset)
        within = offset - start
        part = (
            "crc"
            if within < 4
            else "length"
            if within < 8
            else "lsn"
            if within < 16
            else "type"
            if within == 16
            else f"payload byte {within - RECORD_HEADER_SIZE}"
        )
        return (
            f"{RECORD_TYPE_NAMES[record_type]} record at offset {start} ({end - start} bytes), "
            f"its {part}"
        )
    where = "after the last valid record" if last else "after END_OF_GENERATION"
    return f"zeros {where} (records end at {gen.end})"


def _pick_log_offset(rng: random.Random, gen: Generation, records_share: float) -> int:
    """A byte of a record header (15%: lengths, checksums, LSNs and types are the subtle
    places), of the records (``records_share`` of the rest) or of the zeros after them."""
    if gen.fragments and rng.random() < 0.15:
        start, _end, _type = rng.choice(gen.fragments)
        return start + rng.randrange(RECORD_HEADER_SIZE)
    if gen.end >= gen.size or (rng.random() < records_share and gen.end > RECORDS_START):
        return rng.randrange(RECORDS_START, gen.end)
    return rng.randrange(gen.end, gen.size)


def _backup_page_area(fx: Fixture, pgno: int) -> str:
    layout = fx.backup_db
    if pgno == layout.meta.slot:
        return f"meta slot {pgno} (the backup's checkpoint, seq {layout.meta.seq})"
    if pgno in META_SLOTS:
        return f"meta slot {pgno} (left empty by the backup)"
    if pgno in layout.page_types:
        return f"page {pgno} ({layout.page_types[pgno]}) used by the backup's checkpoint"
    return f"page {pgno}, not used by the backup's checkpoint (zeros)"


def tree_of(target: str) -> str:
    return "backup" if target in BACKUP_TARGETS else "main"


def describe(fx: Fixture, target: str, tree: str, file: str, offset: int) -> str:
    """What the byte at ``offset`` of ``file`` is in the pristine layout."""
    if target in BACKUP_TARGETS:
        if target == "manifest":
            return f"MANIFEST byte {offset}"
        if target == "backup_db":
            return _backup_page_area(fx, offset // fx.backup_db.meta.page_size)
        gen = next(g for g in fx.backup_logs if g.name == file)
        last = gen is fx.backup_logs[-1]
        return _log_area(gen, offset, last=False) + (
            " (in the backup's last generation)" if last else ""
        )
    inst = fx.instances[tree]
    if target in LOG_TARGETS:
        gen = next(g for g in inst.logs if g.name == file)
        return _log_area(gen, offset, last=gen is inst.logs[-1])
    db, pgno = inst.db, offset // inst.db.meta.page_size
    if pgno in META_SLOTS:
        newest = pgno == db.meta.slot
        seq = db.meta.seq if newest else db.older.seq
        which = "newest" if newest else "older"
        return f"meta slot {pgno} of the {tree} instance ({which} checkpoint, seq {seq})"
    if pgno in db.page_types:
        return f"page {pgno} ({db.page_types[pgno]}) of checkpoint seq {db.meta.seq}"
    if pgno in db.free:
        return f"free page {pgno} per the free list of checkpoint seq {db.meta.seq}"
    return (
        f"page {pgno}, past the high-water mark {db.meta.page_count} of checkpoint "
        f"seq {db.meta.seq}"
    )


def make_flip(
    fx: Fixture, target: str, file: str, offset: int, bit: int = 0, tree: str | None = None
) -> Flip:
    """A flip of ``bit`` at ``offset`` of ``file`` (relative to its tree), described."""
    tree = tree or tree_of(target)
    return Flip(target, tree, file, offset, bit, describe(fx, target, tree, file, offset))


def pick_flip(fx: Fixture, target: str, rng: random.Random) -> Flip:
    """A random flip in ``target`` (the package docstring lists the classes)."""
    bit = rng.randrange(8)
    tree = tree_of(target)
    if target in ("meta_slot", "log_last"):
        tree = rng.choice(sorted(fx.instances))
    inst = fx.instances.get(tree)
    size = fx.main.db.meta.page_size
    file = DB_FILE
    if target in ("db_used_page", "db_free_page"):
        if target == "db_used_page":
            pool = inst.db.used
        else:
            pool = inst.db.free if not inst.db.beyond or rng.random() < 0.6 else inst.db.beyond
        offset = rng.choice(pool) * size + rng.randrange(size)
    elif target == "meta_slot":
        offset = rng.choice(META_SLOTS) * size + rng.randrange(size)
    elif target in LOG_TARGETS:
        if target == "log_header":
            gen = rng.choice(inst.logs)
            fields = rng.random() < 0.75
            offset = (
                rng.randrange(HEADER_FIELDS_END)
                if fields
                else rng.randrange(HEADER_FIELDS_END, HEADER_SIZE)
            )
        elif target == "log_closed":
            gen = rng.choice(inst.logs[:-1])
            offset = _pick_log_offset(rng, gen, 0.85)
        else:
            gen = inst.logs[-1]
            offset = _pick_log_offset(rng, gen, 0.75)
        file = gen.name
    elif target == "backup_db":
        if rng.random() < 0.8:
            pgno = rng.choice([fx.backup_db.meta.slot, *fx.backup_db.used])
            offset = pgno * size + rng.randrange(size)
        else:
            offset = rng.randrange(fx.backup_db.file_pages * size)
    elif target == "backup_log":
        gen = rng.choice(fx.backup_logs)
        if rng.random() < 0.1:
            offset = rng.randrange(HEADER_FIELDS_END)
        else:
            offset = _pick_log_offset(rng, gen, 0.85)
        file = gen.name
    elif target == "manifest":
        file = manifest_format.MANIFEST
        offset = rng.randrange(os.path.getsize(os.path.join(fx.backup, file)))
    else:
        raise ValueError(f"unknown target class {target!r}")
    return make_flip(fx, target, file, offset, bit, tree)

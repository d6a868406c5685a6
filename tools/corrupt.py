"""Corruption campaign: flip one bit somewhere in an instance or a backup, then check that the
engine and its inspectors report it - with the right ESE error naming the file and the page or
offset - or that the bit landed where nothing reads it; never that it was silently accepted.

    python -m jetstore.tools.corrupt --trials N --seed S [--json FILE] [--target CLASS]...
                                     [--trial K] [--actors] [--keep DIR] [-v]
    jetstore corrupt ...                      (the same, once the CLI calls ``add_parser``)

A campaign builds three pristine trees once (about a second), then copies the one a trial
needs per trial (30 ms a trial; ``--actors`` makes it about 250 ms):

- ``main``: an instance built with the in-process ``Storage``: two tables, small rows and
  overflow values, updates and deletes (so the checkpoint has a free list), two checkpoints,
  then commits that recovery must replay - an overflow value, updates across the whole tree
  (more than the cache holds, so dirty pages are evicted into pages the older checkpoint
  used), a value spanning three generations, small commits in the last generation - and a
  "crash" (files closed, no checkpoint);
- ``quiet``: a small instance that crashes before any page is written after its last
  checkpoint, so that its older meta slot still describes intact pages (the torn-meta-write
  case the two slots exist for), and whose last generation holds its checkpoint;
- ``backup``: a full then an incremental backup of a third instance, taken by the real actors
  (``Instance`` and ``inst.backup``): several generations and a two-entry chain.
The workload is fixed, so the layout is the same in every build.

Target classes (one is drawn per trial, then a byte in it and a bit):

    db_used_page   a page the newest checkpoint uses (tree, overflow or free-list page)
    db_free_page   a page on that checkpoint's free list, or past its high-water mark
    meta_slot      meta slot 0 or 1 of ``main`` or ``quiet`` (newest or older checkpoint)
    log_header     the 4096-byte header block of a generation (fields, crc, zero padding)
    log_closed     the records of a closed generation (a record header 15% of the time,
                   END_OF_GENERATION included), or the zeros after them
    log_last       the records of the last generation of ``main`` or ``quiet``, or the zeros
                   after them
    backup_db      the backup's jet.edb
    backup_log     a log generation of the backup (header, records, zeros)
    manifest       the backup's MANIFEST

Detectors:

    database    ``verify_database`` (esentutl /k), ``dump_header`` (/mh), then recovery:
                ``Storage.open`` + a scan of every table + ``integrity.check_checkpoint``, then
                one more commit, a crash and a second recovery (what the first one left must
                be usable)
    log         ``dump_log`` over every generation (/ml, replay context), the reader in backup
                context (what an online backup runs), then recovery as above
    backup      ``verify_backup`` and ``restore`` as an operator runs them; then, for jet.edb
                and the logs, both again after the MANIFEST is re-signed to match the damaged
                file (the "deep" pass): the file checksum is the first line of defence and the
                deep pass checks the one behind it - page and record verification - which is
                what catches damage that happened before the checksum was taken (between
                ``copy_generations``' verifying read and its copying read, in memory...)
    --actors    a second copy of a damaged instance is opened by ``Instance.open`` (recovery
                in the buffer manager process): it must fail with the same ESE number as in
                process or serve the same data - an actor never crashes on a damaged file

Outcomes:

    DETECTED   every detector that reads the damaged byte fails with an ESE number expected
               for the place (-1018 for a page, -501/-514 replaying a log, -612 reading it
               for a backup, -526 then -1018/-1206/-573 for a backup...) and a message naming
               the file and the place: ``page N``, the meta ``slot``, or ``offset N`` where N
               is the start of the damaged record or the header field checked; a detector that
               does not need the byte (recovery does not read generations older than its
               checkpoint's) must succeed with the pristine data
    HARMLESS   the byte is in space nothing reads: a free page of the checkpoint or a page
               past its high-water mark, the zero padding of a log header block (bytes 80..4095
               are outside the header checksum), the zeros after a closed generation's
               END_OF_GENERATION or after the last generation's records, a page of a backup's
               jet.edb that its checkpoint does not use.  The tool knows this from the pristine
               layout (``Pager.read_freelist`` on the newest meta, the record boundaries),
               says why ("free page 17 per the free list of checkpoint seq 4"), and requires
               every detector that runs to accept the files and return the pristine data.
               ``verify_database`` checks every page of the file, free ones included, so it
               lists a damaged free page: that is recorded in the reason, not held against
               the engine
    VIOLATION  anything else: no error where one was due, another ESE number, a message that
               does not name the place, data that differs from the pristine copy's (even when
               only the integrity check notices afterwards), an error on a harmless flip (a
               false alarm), or an exception that is not a JetError (a crash)

Subtle cases:

- Meta slot.  A damaged newest slot makes opening fall back to the older checkpoint and replay
  the log from its LSN.  That is DETECTED when ``dump_header`` names the slot, ``verify_database``
  lists the page, and recovery returns the pristine data: freed pages wait for two newer
  checkpoints, so the older slot's checkpoint is intact and the log replays from it;
  recovered data that differs is a VIOLATION.
- The last generation.  A torn write can only hurt records that were never synced; the
  writer puts a SYNCED record (the offset its last fdatasync covered) before the first append
  after each sync, so damage to a record that a later SYNCED record says was durable is
  corruption: -501 naming the damaged fragment's offset, counted DETECTED when recovery agrees.
  Damage to the final batch - no later SYNCED record - is indistinguishable from a torn write:
  recovery ends replay there.  Such a trial counts as DETECTED only if the reader shows it
  before recovery runs (``dump_log`` reports ``torn`` with ``end_lsn`` exactly at the damaged
  fragment) and recovery then returns exactly the committed state before that fragment; the
  acknowledged commits lost that way are counted per trial and in the summary, because
  recovery itself says nothing and zero-fills the rest of the generation.  Anything else is a
  VIOLATION.
- A backup's generations are all closed (the backup's roll closed the last one), so a damaged
  record in any of them - the last included - must be -573 in the deep pass.

Each trial draws from its own ``random.Random(f"{seed}/{trial}")``, so ``--trial K`` replays
trial K of a campaign alone.  Exit code: 0 no violation, 1 a violation, 2 the pristine fixture
failed its own checks.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import crc32c

from jetstore.engine import manifest_format
from jetstore.engine.backup import read_manifest
from jetstore.engine.backup_restore import restore, verify_backup
from jetstore.engine.database_file import read_meta
from jetstore.engine.errors import ERRORS, JetError
from jetstore.engine.fileio import DEFAULT_ENV
from jetstore.engine.inspectors import dump_header, verify_database
from jetstore.engine.integrity import check_checkpoint
from jetstore.engine.log_format import (
    HEADER_CRC_OFFSET,
    HEADER_SIZE,
    RECORD_HEADER_SIZE,
    RECORD_TYPE_NAMES,
    RECORDS_START,
    VERSION_OFFSET,
    format_lsn,
    generation_file_name,
    lsn_gen,
    make_lsn,
)
from jetstore.engine.log_reader import LogReader, dump_log, list_generations
from jetstore.engine.meta_format import FIRST_DATA_PAGE, META_SLOTS, Meta
from jetstore.engine.page_format import PAGE_TYPE_NAMES, PageHeader
from jetstore.engine.pager import Pager
from jetstore.engine.storage import DB_FILE, LOG_DIR, Storage

DETECTED, HARMLESS, VIOLATION = "DETECTED", "HARMLESS", "VIOLATION"
OUTCOMES = (DETECTED, HARMLESS, VIOLATION)
DB_TARGETS = ("db_used_page", "db_free_page", "meta_slot")
LOG_TARGETS = ("log_header", "log_closed", "log_last")
BACKUP_TARGETS = ("backup_db", "backup_log", "manifest")
TARGETS = DB_TARGETS + LOG_TARGETS + BACKUP_TARGETS

PAGE_SIZE = 4096
LOG_FILE_SIZE = 64 << 10
OPTIONS = {"page_size": PAGE_SIZE, "log_file_size": LOG_FILE_SIZE, "cache_size": 1 << 20}
HEADER_FIELDS_END = HEADER_CRC_OFFSET + 4  # magic .. header crc; zeros up to HEADER_SIZE

# ESE numbers expected per place (DESIGN.md sections 3 and 6, ese-backup-spec section 7).
READ_VERIFY = ERRORS["JET_errReadVerifyFailure"]
# A fallback checkpoint that cannot be read:
META_ERRORS = {
    ERRORS[name]
    for name in (
        "JET_errReadVerifyFailure",
        "JET_errPageNotInitialized",
        "JET_errReadPgnoVerifyFailure",
        "JET_errDatabaseCorrupted",
    )
}
LOG_CORRUPT = ERRORS["JET_errLogFileCorrupt"]  # replay (recovery, dump_log)
BAD_LOG_VERSION = ERRORS["JET_errBadLogVersion"]
LOG_READ_VERIFY = ERRORS["JET_errLogReadVerifyFailure"]  # a backup reading the live log
INVALID_BACKUP = ERRORS["JET_errInvalidBackup"]  # a file checksum or the manifest
RESTORE_LOG_CORRUPT = ERRORS["JET_errLogCorruptDuringHardRestore"]
DB_CORRUPTED = ERRORS["JET_errDatabaseCorrupted"]  # no valid meta slot


# -- the pristine layout ---------------------------------------------------------------------


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


# -- the pristine instance and its model -------------------------------------------------------

State = dict[str, dict[bytes, bytes]]


class Model:
    """Every logged change of the pristine instance, with the LSN its record ends at."""

    def __init__(self) -> None:
        self.changes: list[tuple[int, str, dict[bytes, bytes | None] | None]] = []

    def add(self, end_lsn: int, table: str, writes: dict[bytes, bytes | None] | None) -> None:
        self.changes.append((end_lsn, table, writes))

    def state(self, upto: int | None = None) -> State:
        """The tables after every change whose record ends at or before ``upto`` (all: None)."""
        state: State = {}
        for end_lsn, table, writes in self.changes:
            if upto is not None and end_lsn > upto:
                continue
            if writes is None:
                state.setdefault(table, {})
                continue
            rows = state[table]
            for key, value in writes.items():
                if value is None:
                    rows.pop(key, None)
                else:
                    rows[key] = value
        return state

    def lost(self, upto: int) -> int:
        return sum(1 for end_lsn, _t, _w in self.changes if end_lsn > upto)


def _value(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _crashing_storage(path: str, model: Model):
    """A fresh ``Storage`` and a ``commit`` that records each change in ``model``."""
    storage = Storage.open(path, auto_checkpoint=False, **OPTIONS)

    def commit(table: str, writes: dict[bytes, bytes | None] | None) -> None:
        if writes is None:
            storage.create_table(table)
        else:
            storage.commit({table: writes}, None)
        model.add(storage.log.end_lsn, table, writes)

    return storage, commit


def build_instance(path: str) -> Model:
    """The main pristine instance: three phases, two checkpoints, then a crash.

    Phase 3 writes pages after the last checkpoint (an overflow value goes to disk at once,
    and a working set larger than the cache makes dirty pages evicted), into pages the older
    checkpoint used: the older meta slot then describes a checkpoint that no longer exists.
    """
    model = Model()
    storage, commit = _crashing_storage(path, model)
    try:
        commit("t", None)
        commit("u", None)
        # Phase 1: small rows and overflow values, then checkpoint 1.
        for batch in range(60):
            commit(
                "t", {b"k%05d" % (batch * 80 + i): _value(batch * 80 + i, 180) for i in range(80)}
            )
        for i in range(4):
            commit("u", {b"big%d" % i: _value(1000 + i, 20000 + 700 * i)})
        storage.checkpoint()
        # Phase 2: updates and deletes free pages, then checkpoint 2 (its free list is not empty).
        for batch in range(10):
            commit("t", {b"k%05d" % (batch * 37 + 5): _value(2000 + batch, 150)})
        commit("t", {b"k%05d" % i: None for i in range(100, 160)})
        commit("u", {b"big0": None, b"big1": _value(3000, 26000)})
        storage.checkpoint()
        # Phase 3, replayed by recovery: an overflow value, updates across the whole tree, a
        # value spanning generations, small commits in the last generation.
        commit("u", {b"big4": _value(4000, 20000)})
        for batch in range(12):
            commit("t", {b"k%05d" % i: _value(5000 + i, 190) for i in range(batch, 4800, 12)})
        commit("u", {b"huge": _value(6000, 150_000)})
        for i in range(40):
            commit("t", {b"tail%03d" % i: _value(7000 + i, 120)})
    finally:
        storage.close_files()  # the process dies: no checkpoint, no clean state
    return model


def build_quiet_instance(path: str) -> Model:
    """A second instance whose crash comes before any page is written after its last
    checkpoint: the older meta slot still describes intact pages, so losing the newest slot
    must be recovered from the older checkpoint and the log (the torn-meta-write case)."""
    model = Model()
    storage, commit = _crashing_storage(path, model)
    try:
        commit("t", None)
        for batch in range(20):
            commit("t", {b"q%05d" % (batch * 30 + i): _value(8000 + i, 150) for i in range(30)})
        storage.checkpoint()
        for batch in range(10):
            commit("t", {b"q%05d" % (batch * 7): _value(8500 + batch, 140), b"r%d" % batch: b""})
        storage.checkpoint()
        for batch in range(15):
            commit("t", {b"s%03d" % batch: _value(8700 + batch, 130)})
    finally:
        storage.close_files()
    return model


def build_backup(source: str, backup: str) -> None:
    """A full and an incremental backup of a small instance, by the real actors."""
    from jetstore.engine import Instance

    with Instance.open(
        source, page_size=PAGE_SIZE, log_file_size=LOG_FILE_SIZE, create_path_if_not_exist=True
    ) as inst:
        session = inst.session()
        session.create_table("t")
        session.create_table("u")
        for batch in range(8):
            with session.transaction() as tx:
                for i in range(40):
                    tx.put("t", b"k%05d" % (batch * 40 + i), _value(batch * 40 + i, 160))
        session.put("u", b"big", _value(9000, 30000))
        inst.backup(backup)
        for batch in range(8):
            with session.transaction() as tx:
                for i in range(40):
                    tx.put("t", b"n%05d" % (batch * 40 + i), _value(9100 + i, 170))
        session.put("u", b"big2", _value(9200, 70000))
        inst.backup(backup, incremental=True)


MARKER = (b"\xffcorrupt-campaign", b"written after recovery")


def read_everything(path: str) -> tuple[State, dict, str | None]:
    """Open (recover) the instance, scan every table, check the checkpoint's structure; then
    commit one row, "crash" and recover again: recovery must leave a usable instance.

    Returns (data, integrity counts, what went wrong after recovery or None).  A JetError
    from the integrity check carries the data the scan returned before it (``scanned``):
    wrong data that only the offline check notices was still served.
    """
    storage = Storage.open(path, create=False, **OPTIONS)
    try:
        state = {table: dict(storage.scan(table)) for table in storage.list_tables()}
        try:
            checked = check_checkpoint(storage.pager, storage.durable_meta)
        except JetError as exc:
            exc.scanned = state
            raise
        table = min(state, default=None)
        if table is not None:
            storage.commit({table: dict([MARKER])}, None)
    finally:
        storage.close_files()  # the process dies: what recovery made must be recoverable
    storage = Storage.open(path, create=False, **OPTIONS)
    try:
        again = {table: dict(storage.scan(table)) for table in storage.list_tables()}
        check_checkpoint(storage.pager, storage.durable_meta)
    except BaseException:
        storage.close_files()
        raise
    storage.close()
    want = {name: dict(rows) for name, rows in state.items()}
    if table is not None:
        want[table][MARKER[0]] = MARKER[1]
    problem = None if again == want else f"after recovery, commit and crash: {_diff(again, want)}"
    return state, checked, problem


def open_through_actors(path: str) -> State:
    """Open the instance with its actors (``Instance.open``: recovery in the buffer manager
    process) and scan every table through a session."""
    from jetstore.engine import Instance

    with Instance.open(path, create=False, **OPTIONS) as inst:
        session = inst.session()
        return {table: dict(session.scan(table)) for table in session.list_tables()}


def agree_with_actors(in_process: Seen, actors: Seen) -> str | None:
    """Why the actors' verdict differs from the in-process one (None: it does not)."""
    if actors.result == "crash":
        return f"crash in {_describe(actors)}"
    if in_process.result == "error":
        if actors.result != "error" or actors.err != in_process.err:
            return f"{_describe(actors)}, but in process {in_process.name} ({in_process.err})"
        return None
    if in_process.result == "ok" and actors.result == "ok" and actors.value != in_process.value[0]:
        return f"{actors.detector} returned other data: {_diff(actors.value, in_process.value[0])}"
    if in_process.result == "ok" and actors.result != "ok":
        return f"{_describe(actors)}, but in process the instance opened"
    return None


def read_log(logs: str, context: str) -> int:
    reader = LogReader(DEFAULT_ENV, logs)
    return sum(1 for _record in reader.records(0, context=context))


@dataclass
class InstanceFixture:
    """One pristine instance directory, what it holds and where everything is in it."""

    name: str
    path: str
    model: Model
    state: State  # what recovery of the pristine instance returns
    db: DatabaseLayout
    logs: list[Generation]

    @property
    def log_end(self) -> int:
        """End LSN of the valid records of the last generation."""
        return make_lsn(self.logs[-1].generation, self.logs[-1].end)

    @property
    def checkpoint_gen(self) -> int:
        return lsn_gen(self.db.meta.checkpoint_lsn)

    @property
    def last_gen(self) -> int:
        return self.logs[-1].generation


@dataclass
class Fixture:
    root: str
    instances: dict[str, InstanceFixture]
    backup: str
    backup_state: State  # what a restore of the pristine backup holds
    backup_db: DatabaseLayout
    backup_logs: list[Generation]
    backup_manifest: dict
    seconds: float = 0.0

    @property
    def main(self) -> InstanceFixture:
        return self.instances["main"]


def check_instance(root: str, name: str, path: str, model: Model) -> InstanceFixture:
    """The layout of a pristine instance, after checking that every detector accepts it."""
    scratch = os.path.join(root, f"pristine-check-{name}")
    shutil.copytree(path, scratch)
    try:
        problems = []
        checked_db = verify_database(scratch)
        if checked_db["integrity"] != "ok":
            problems.append(f"verify_database: {checked_db['bad_pages']}")
        checked_log = dump_log(os.path.join(scratch, LOG_DIR))
        if checked_log["integrity"] != "ok" or checked_log["torn"]:
            problems.append(f"dump_log: {checked_log['error']} torn={checked_log['torn']}")
        state, _checked, problem = read_everything(scratch)
        if problem:
            problems.append(problem)
        if state != model.state():
            problems.append(f"recovery differs from the model: {_diff(state, model.state())}")
    finally:
        shutil.rmtree(scratch)
    db = database_layout(os.path.join(path, DB_FILE))
    logs = scan_logs(path)
    if db.older is None:
        problems.append("want two valid meta slots")
    if problems:
        raise RuntimeError(f"the pristine {name} instance fails its own checks: {problems}")
    return InstanceFixture(name, path, model, state, db, logs)


def build_fixture(root: str) -> Fixture:
    """Build and check the pristine instances and the backup under ``root``."""
    started = time.monotonic()
    instances = {}
    for name, build in (("main", build_instance), ("quiet", build_quiet_instance)):
        path = os.path.join(root, "pristine", name)
        instances[name] = check_instance(root, name, path, build(path))
    backup = os.path.join(root, "pristine", "backup")
    build_backup(os.path.join(root, "backup-source"), backup)
    shutil.rmtree(os.path.join(root, "backup-source"), ignore_errors=True)
    verify_backup(backup)
    restored = os.path.join(root, "pristine-restore")
    restore(backup, restored)
    backup_state = read_everything(restored)[0]
    shutil.rmtree(restored)
    main = instances["main"]
    backup_logs = scan_logs(backup)
    if len(main.logs) < 4 or not any(
        g.closed and g.generation >= main.checkpoint_gen for g in main.logs
    ):
        raise RuntimeError(
            "the pristine main instance wants closed generations after its "
            f"checkpoint: {len(main.logs)} generations"
        )
    if not main.db.free or not main.db.beyond or len(backup_logs) < 2:
        raise RuntimeError(
            "the pristine fixture wants free pages, pages past the high-water "
            "mark and several backup generations"
        )
    return Fixture(
        root=root,
        instances=instances,
        backup=backup,
        backup_state=backup_state,
        backup_db=database_layout(os.path.join(backup, DB_FILE)),
        backup_logs=backup_logs,
        backup_manifest=read_manifest(backup),
        seconds=time.monotonic() - started,
    )


# -- choosing and making a flip ----------------------------------------------------------------


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
    """A random flip in ``target`` (the module docstring lists the classes)."""
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


# -- running detectors ---------------------------------------------------------------------------


@dataclass
class Seen:
    """What one detector did: ok (with a value), a JetError, or a crash (any other exception)."""

    detector: str
    result: str  # "ok", "error", "crash"
    err: int | None = None
    name: str | None = None
    message: str = ""
    value: object = None

    def public(self) -> dict:
        seen = {"detector": self.detector, "result": self.result}
        if self.result != "ok":
            seen.update(err=self.err, name=self.name, message=self.message)
        elif self.message:
            seen.update(message=self.message)
        return seen


def run(detector: str, call: Callable[[], object]) -> Seen:
    try:
        return Seen(detector, "ok", value=call())
    except JetError as exc:
        return Seen(
            detector, "error", exc.err, exc.name, exc.message, getattr(exc, "scanned", None)
        )
    except Exception as exc:  # a crash: exactly what the campaign looks for
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        return Seen(detector, "crash", None, type(exc).__name__, f"{exc} (at {where})")


def names(seen: Seen, file: str, place: str | None) -> bool:
    """Does the error message name the file (its base name) and the place (a regex)?"""
    text = seen.message
    return os.path.basename(file) in text and (place is None or re.search(place, text) is not None)


def _describe(seen: Seen) -> str:
    if seen.result == "ok":
        return f"{seen.detector}: no error"
    if seen.result == "crash":
        return f"{seen.detector}: CRASH {seen.name}: {seen.message}"
    return f"{seen.detector}: {seen.name} ({seen.err}): {seen.message}"


def _diff(got: State, want: State) -> str:
    if set(got) != set(want):
        return f"tables {sorted(got)} instead of {sorted(want)}"
    for table in sorted(want):
        g, w = got[table], want[table]
        missing = sorted(set(w) - set(g))
        extra = sorted(set(g) - set(w))
        changed = sorted(k for k in set(g) & set(w) if g[k] != w[k])
        if missing or extra or changed:
            parts = []
            for label, keys in (("missing", missing), ("extra", extra), ("changed", changed)):
                if keys:
                    parts.append(f"{len(keys)} {label} (first {keys[0]!r})")
            return f"table {table!r}: " + ", ".join(parts)
    return "identical"


Judged = tuple[str, str, list[Seen], int]  # outcome, reason, what the detectors did, commits lost


class Verdict:
    """Collects the checks of one trial: any failed expectation makes it a VIOLATION."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def expect_error(
        self,
        seen: Seen,
        errs: set[int],
        file: str,
        place: str | None,
        what: str,
        want: State | None = None,
    ) -> None:
        """``seen`` must fail with one of ``errs`` naming ``file`` and ``place``; with ``want``,
        data it served (an open+scan whose integrity check failed) must be ``want``."""
        if seen.result == "crash":
            self.failures.append(f"crash in {_describe(seen)}")
        elif seen.result == "ok":
            data = ""
            if want is not None and isinstance(seen.value, tuple):
                data = f"; data: {_diff(seen.value[0], want)}"
            self.failures.append(f"{seen.detector} accepted the damage silently ({what}){data}")
        elif seen.err not in errs:
            self.failures.append(
                f"wrong error: {_describe(seen)}; expected {sorted(errs)} ({what})"
            )
        elif not names(seen, file, place):
            self.failures.append(
                f"the error does not name {os.path.basename(file)} and {place}: {_describe(seen)}"
            )
        elif want is not None and seen.value is not None and seen.value != want:
            self.failures.append(
                f"{seen.detector} served wrong data before the integrity check failed: "
                f"{_diff(seen.value, want)}"
            )

    def expect_data(self, seen: Seen, want: State, what: str) -> None:
        """``seen`` (an open+scan, a restore) must succeed and return exactly ``want``."""
        if seen.result == "crash":
            self.failures.append(f"crash in {_describe(seen)}")
        elif seen.result == "error":
            served = ""
            if seen.value is not None and seen.value != want:
                served = f"; it served wrong data first: {_diff(seen.value, want)}"
            self.failures.append(f"false alarm: {_describe(seen)} ({what}){served}")
        elif seen.value[0] != want:
            self.failures.append(
                f"{seen.detector} returned wrong data: {_diff(seen.value[0], want)}"
            )
        elif seen.value[2]:
            self.failures.append(f"{seen.detector}: {seen.value[2]}")

    def crashed(self, *seen: Seen) -> None:
        for one in seen:
            if one.result == "crash":
                self.failures.append(f"crash in {_describe(one)}")


# -- trials ----------------------------------------------------------------------------------


@dataclass
class TrialResult:
    trial: int
    target: str
    tree: str
    file: str
    offset: int
    bit: int
    area: str
    outcome: str
    reason: str
    seen: list[dict] = field(default_factory=list)
    lost_commits: int = 0


def _page_place(pgno: int) -> str:
    return rf"\bpage {pgno}\b"


def _offset_place(offset: int) -> str:
    return rf"\boffset {offset}\b"


def judge_database(fx: Fixture, flip: Flip, work: str) -> Judged:
    inst = fx.instances[flip.tree]
    size = inst.db.meta.page_size
    pgno = flip.offset // size
    verified = run("verify_database", lambda: verify_database(work))
    header = run("dump_header", lambda: dump_header(work))
    opened = run("open+scan+integrity", lambda: read_everything(work))
    seen = [verified, header, opened]
    verdict = Verdict()
    verdict.crashed(verified, header)
    listed = verified.result == "ok" and any(
        bad["page"] == pgno for bad in verified.value["bad_pages"]
    )
    if flip.target == "db_used_page":
        if not listed:
            verdict.failures.append(f"verify_database does not list page {pgno}")
        verdict.expect_error(
            opened, {READ_VERIFY}, DB_FILE, _page_place(pgno), flip.area, inst.state
        )
        return _conclude(verdict, DETECTED, f"-1018 naming page {pgno}; /k lists it", seen)
    if flip.target == "db_free_page":
        verdict.expect_data(opened, inst.state, flip.area)
        listed_note = (
            "verify_database (which checks every page) lists it"
            if listed
            else "verify_database does not list it"
        )
        return _conclude(
            verdict,
            HARMLESS,
            f"{flip.area}: never read, rewritten before reuse; recovery and the integrity "
            f"check pass with the pristine data; {listed_note}",
            seen,
        )
    # meta_slot
    slot = pgno
    newest = slot == inst.db.meta.slot
    slot_error = None
    if header.result == "ok":
        slot_error = next(
            (s.get("error") for s in header.value["slots"] if s["slot"] == slot), None
        )
    if not slot_error or not re.search(_page_place(slot), slot_error):
        verdict.failures.append(f"dump_header does not report meta slot {slot} as damaged")
    if not listed:
        verdict.failures.append(f"verify_database does not list page {slot}")
    if opened.result == "error":
        verdict.expect_error(
            opened, META_ERRORS, DB_FILE, r"\b(page|slot) \d+", flip.area, inst.state
        )
        how = f"opening fails: {opened.name} ({opened.err})"
    else:
        verdict.expect_data(opened, inst.state, flip.area)
        how = (
            f"opening fell back to the older checkpoint seq {inst.db.older.seq} and replayed the "
            "log to the pristine data"
            if newest
            else f"opening used the newest checkpoint seq {inst.db.meta.seq}"
        )
    return _conclude(verdict, DETECTED, f"dump_header names slot {slot}; {how}", seen)


def _header_expectation(offset: int) -> tuple[int, int, int]:
    """(replay error, backup error, offset named) for a flip in a header's fields."""
    if offset < VERSION_OFFSET:
        return LOG_CORRUPT, LOG_READ_VERIFY, 0
    if offset < VERSION_OFFSET + 4:
        return BAD_LOG_VERSION, BAD_LOG_VERSION, VERSION_OFFSET
    return LOG_CORRUPT, LOG_READ_VERIFY, HEADER_CRC_OFFSET


def judge_log(fx: Fixture, flip: Flip, work: str) -> Judged:
    inst = fx.instances[flip.tree]
    logs = os.path.join(work, LOG_DIR)
    gen = next(g for g in inst.logs if g.name == flip.file)
    is_last = gen.generation == inst.last_gen
    dumped = run("dump_log", lambda: dump_log(logs))
    backup_read = run("log read (backup context)", lambda: read_log(logs, "backup"))
    opened = run("open+scan+integrity", lambda: read_everything(work))
    verdict = Verdict()
    verdict.crashed(dumped)
    report = dumped.value if dumped.result == "ok" else None
    # dump_log reports rather than raises: make its verdict look like a detector's.
    dump_seen = dumped
    if report is not None:
        error = report["error"]
        dump_seen = (
            Seen("dump_log", "error", error["err"], error["name"], error["message"])
            if error
            else Seen(
                "dump_log",
                "ok",
                message=f"torn={report['torn']} end_lsn={format_lsn(report['end_lsn'] or 0)}",
            )
        )
    seen = [dump_seen, backup_read, opened]
    offset = flip.offset
    needed = gen.generation >= inst.checkpoint_gen
    lost = 0
    if offset < HEADER_FIELDS_END or (offset >= RECORDS_START and offset < gen.end and not is_last):
        if offset < HEADER_FIELDS_END:
            replay_err, backup_err, named = _header_expectation(offset)
        else:
            replay_err, backup_err, named = LOG_CORRUPT, LOG_READ_VERIFY, gen.fragment_at(offset)[0]
        place = _offset_place(named)
        verdict.expect_error(dump_seen, {replay_err}, gen.name, place, flip.area)
        verdict.expect_error(backup_read, {backup_err}, gen.name, place, flip.area)
        if needed:
            verdict.expect_error(opened, {replay_err}, gen.name, place, flip.area, inst.state)
            how = "recovery fails the same way"
        else:
            verdict.expect_data(opened, inst.state, "generation older than the checkpoint's")
            how = (
                f"recovery does not need generation {gen.generation} (its checkpoint is in "
                f"{inst.checkpoint_gen}) and returns the pristine data"
            )
        reason = f"{replay_err} naming offset {named} (backup: {backup_err}); {how}"
        return _conclude(verdict, DETECTED, reason, seen)
    if offset < RECORDS_START or offset >= gen.end:
        # Header padding, or zeros after the records: nothing reads them.
        if report is not None:
            if report["integrity"] != "ok":
                verdict.failures.append(f"false alarm: {_describe(dump_seen)}")
            elif report["end_lsn"] != inst.log_end:
                verdict.failures.append(
                    f"dump_log ends at {format_lsn(report['end_lsn'])}, pristine "
                    f"{format_lsn(inst.log_end)}"
                )
        if backup_read.result == "error":
            verdict.failures.append(f"false alarm: {_describe(backup_read)}")
        verdict.expect_data(opened, inst.state, flip.area)
        if offset < RECORDS_START:
            why = "header block padding: outside the header checksum (bytes 0..79), read by nothing"
        elif is_last:
            why = (
                f"beyond the valid end {gen.end} of the last generation: a torn tail by "
                "definition, which recovery zero-fills"
            )
        else:
            why = (
                f"after END_OF_GENERATION (records end at {gen.end}): the reader stops at "
                "the closed generation's end"
            )
        return _conclude(verdict, HARMLESS, why, seen)
    # A durable record of the last generation: torn-tail semantics (module docstring).
    start = gen.fragment_at(offset)[0]
    torn_at = make_lsn(gen.generation, start)
    upto = max(torn_at, inst.db.meta.checkpoint_lsn)
    lost = inst.model.lost(upto)
    if report is not None and report["integrity"] != "ok":
        # An engine that tells damage followed by valid records from a torn write reports
        # it as corruption: that is detection too, if recovery agrees.
        place = _offset_place(start)
        verdict.expect_error(dump_seen, {LOG_CORRUPT}, gen.name, place, flip.area)
        verdict.expect_error(opened, {LOG_CORRUPT}, gen.name, place, flip.area, inst.state)
        return _conclude(verdict, DETECTED, f"-501 naming offset {start}", seen)
    if report is not None:
        if not report["torn"] or report["end_lsn"] != torn_at:
            verdict.failures.append(
                f"dump_log reports torn={report['torn']} end_lsn="
                f"{format_lsn(report['end_lsn'] or 0)}; expected torn at {format_lsn(torn_at)}"
            )
    if backup_read.result != "ok":
        verdict.crashed(backup_read)
    verdict.expect_data(opened, inst.model.state(upto), "the commits before the torn record")
    reason = (
        f"torn tail: dump_log reports torn, end_lsn {format_lsn(torn_at)}; recovery kept "
        f"exactly the commits before it and dropped {lost} acknowledged commit(s) silently"
    )
    return _conclude(verdict, DETECTED, reason, seen, lost)


def _resign_manifest(directory: str, manifest: dict, name: str) -> None:
    """Make the MANIFEST agree with the (damaged) file ``name``: the deep pass."""
    crc, size = 0, 0
    with open(os.path.join(directory, name), "rb") as f:
        while chunk := f.read(1 << 20):
            crc = crc32c.crc32c(chunk, value=crc)
            size += len(chunk)
    files = {**manifest["files"], name: {"size": size, "crc32c": crc}}
    with open(os.path.join(directory, manifest_format.MANIFEST), "wb") as f:
        f.write(manifest_format.encode({**manifest, "files": files}))


def restore_and_read(backup: str, dest: str) -> tuple[State, dict, str | None]:
    restore(backup, dest)
    return read_everything(dest)


def judge_backup(fx: Fixture, flip: Flip, work: str) -> Judged:
    backup = os.path.join(work, "backup")
    verified = run("verify_backup", lambda: verify_backup(backup))
    restored = run("restore", lambda: restore_and_read(backup, os.path.join(work, "r1")))
    seen = [verified, restored]
    verdict = Verdict()
    what = os.path.basename(flip.file)
    verdict.expect_error(verified, {INVALID_BACKUP}, flip.file, None, flip.area)
    verdict.expect_error(restored, {INVALID_BACKUP}, flip.file, None, flip.area)
    if restored.result == "error" and os.path.exists(os.path.join(work, "r1", DB_FILE)):
        verdict.failures.append("the failed restore left its database file behind")
    if flip.target == "manifest":
        return _conclude(verdict, DETECTED, "-526 naming the MANIFEST", seen)
    outer = f"-526: {what} does not match its manifest checksum"
    _resign_manifest(backup, fx.backup_manifest, flip.file)
    deep_verified = run("verify_backup (deep)", lambda: verify_backup(backup))
    deep_restored = run(
        "restore (deep)", lambda: restore_and_read(backup, os.path.join(work, "r2"))
    )
    seen += [deep_verified, deep_restored]
    size = fx.backup_db.meta.page_size
    expected: tuple[set[int], str, str] | None = None  # None: the deep pass must accept it
    if flip.target == "backup_db":
        pgno = flip.offset // size
        if pgno == fx.backup_db.meta.slot:
            expected = ({DB_CORRUPTED}, r"\bslot\b", "the slot")
        elif pgno in fx.backup_db.page_types:
            expected = ({READ_VERIFY}, _page_place(pgno), f"page {pgno}")
    else:
        gen = next(g for g in fx.backup_logs if g.name == flip.file)
        if flip.offset < HEADER_FIELDS_END:
            replay_err, _b, named = _header_expectation(flip.offset)
            err = RESTORE_LOG_CORRUPT if replay_err == LOG_CORRUPT else replay_err
            expected = ({err}, _offset_place(named), f"offset {named}")
        elif RECORDS_START <= flip.offset < gen.end:
            start = gen.fragment_at(flip.offset)[0]
            expected = ({RESTORE_LOG_CORRUPT}, _offset_place(start), f"offset {start}")
    if expected is None:
        verdict.crashed(deep_verified)
        if deep_verified.result == "error":
            verdict.failures.append(f"deep: false alarm: {_describe(deep_verified)}")
        verdict.expect_data(deep_restored, fx.backup_state, flip.area)
        deep = f"deep: {flip.area} is read by nothing; restore returns the pristine data"
    else:
        errs, place, label = expected
        what = "deep: " + flip.area
        verdict.expect_error(deep_verified, errs, flip.file, place, what)
        verdict.expect_error(deep_restored, errs, flip.file, place, what, fx.backup_state)
        deep = f"deep: {sorted(errs)} naming {label}"
    return _conclude(verdict, DETECTED, f"{outer}; {deep}", seen)


def _conclude(
    verdict: Verdict, outcome: str, reason: str, seen: list[Seen], lost: int = 0
) -> Judged:
    if verdict.failures:
        return VIOLATION, "; ".join(verdict.failures), seen, lost
    return outcome, reason, seen, lost


def check_flip(
    fx: Fixture, flip: Flip, *, trial: int = -1, keep: str | None = None, actors: bool = False
) -> TrialResult:
    """Apply ``flip`` to a fresh copy of its tree, run the detectors, judge the outcome.

    With ``actors``, a damaged instance is also opened by ``Instance.open`` (recovery in the
    buffer manager process): it must fail with the same ESE number as in process, or serve
    the same data - an actor never crashes on a damaged file.
    """
    work = tempfile.mkdtemp(prefix=f"trial-{trial}-", dir=fx.root)
    try:
        if flip.target in BACKUP_TARGETS:
            shutil.copytree(fx.backup, os.path.join(work, "backup"))
            flip.apply(os.path.join(work, "backup"))
            outcome, reason, seen, lost = judge_backup(fx, flip, work)
        else:
            instance = os.path.join(work, "instance")
            shutil.copytree(fx.instances[flip.tree].path, instance)
            flip.apply(instance)
            if actors:
                shutil.copytree(instance, os.path.join(work, "actors"))
            judge = judge_database if flip.target in DB_TARGETS else judge_log
            outcome, reason, seen, lost = judge(fx, flip, instance)
            if actors:
                through = run(
                    "Instance.open (actors)",
                    lambda: open_through_actors(os.path.join(work, "actors")),
                )
                in_process = next(s for s in seen if s.detector == "open+scan+integrity")
                seen.append(through)
                disagreement = agree_with_actors(in_process, through)
                if disagreement is not None:
                    problem = f"actors disagree: {disagreement}"
                    reason = problem if outcome != VIOLATION else f"{reason}; {problem}"
                    outcome = VIOLATION
    finally:
        if keep is not None:
            os.makedirs(keep, exist_ok=True)
            shutil.move(work, os.path.join(keep, f"trial-{trial}"))
        else:
            shutil.rmtree(work, ignore_errors=True)
    return TrialResult(
        trial,
        flip.target,
        flip.tree,
        flip.file,
        flip.offset,
        flip.bit,
        flip.area,
        outcome,
        reason,
        [s.public() for s in seen],
        lost,
    )


def run_trial(
    fx: Fixture,
    seed: int,
    trial: int,
    targets: tuple[str, ...] = TARGETS,
    keep: str | None = None,
    actors: bool = False,
) -> TrialResult:
    """Trial ``trial`` of campaign ``seed``: its own random stream picks the class and the bit."""
    rng = random.Random(f"{seed}/{trial}")
    flip = pick_flip(fx, rng.choice(targets), rng)
    return check_flip(fx, flip, trial=trial, keep=keep, actors=actors)


# -- the campaign ---------------------------------------------------------------------------


def run_campaign(
    fx: Fixture,
    trials: int,
    seed: int,
    *,
    targets: tuple[str, ...] = TARGETS,
    only_trial: int | None = None,
    keep: str | None = None,
    actors: bool = False,
    progress: Callable[[TrialResult], None] | None = None,
) -> dict:
    """Run ``trials`` trials (or only trial ``only_trial``) on a built fixture; a JSON-friendly
    report: counts per target class and outcome, every result, the violations."""
    started = time.monotonic()
    numbers = [only_trial] if only_trial is not None else range(trials)
    results = []
    for trial in numbers:
        result = run_trial(fx, seed, trial, targets, keep=keep, actors=actors)
        results.append(result)
        if progress is not None:
            progress(result)
    counts = {t: dict.fromkeys(OUTCOMES, 0) for t in targets}
    for result in results:
        counts[result.target][result.outcome] += 1
    return {
        "seed": seed,
        "targets": list(targets),
        "actors": actors,
        "trials": len(results),
        "fixture_seconds": round(fx.seconds, 3),
        "seconds": round(time.monotonic() - started, 3),
        "counts": counts,
        "lost_commits": sum(r.lost_commits for r in results),
        "violations": [asdict(r) for r in results if r.outcome == VIOLATION],
        "results": [asdict(r) for r in results],
    }


def campaign(trials: int, seed: int, *, workdir: str | None = None, **options) -> dict:
    """Build the fixture in a scratch directory, run the campaign, remove the directory."""
    root = tempfile.mkdtemp(prefix="jetstore-corrupt-", dir=workdir)
    try:
        return run_campaign(build_fixture(root), trials, seed, **options)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def print_summary(report: dict, out=None) -> None:
    out = out or sys.stdout
    print(
        f"corruption campaign: seed {report['seed']}, {report['trials']} trials in "
        f"{report['seconds']:.1f} s (fixture {report['fixture_seconds']:.1f} s)",
        file=out,
    )
    print(f"{'target':14s} {'trials':>6s} " + " ".join(f"{o:>9s}" for o in OUTCOMES), file=out)
    for target, counts in report["counts"].items():
        total = sum(counts.values())
        print(f"{target:14s} {total:6d} " + " ".join(f"{counts[o]:9d}" for o in OUTCOMES), file=out)
    torn = [r for r in report["results"] if r["lost_commits"]]
    if torn:
        print(
            f"torn tails: {len(torn)} trial(s) in the last generation; recovery dropped "
            f"{report['lost_commits']} acknowledged commits in all, without an error",
            file=out,
        )
    only = ""
    if set(report["targets"]) != set(TARGETS):
        only = "".join(f" --target {target}" for target in report["targets"])
    if report.get("actors"):
        only += " --actors"
    for violation in report["violations"]:
        print(
            f"VIOLATION trial {violation['trial']} ({violation['target']}): {violation['file']} "
            f"offset {violation['offset']} bit {violation['bit']} - {violation['area']}\n"
            f"  {violation['reason']}\n"
            f"  replay: python -m jetstore.tools.corrupt --seed {report['seed']} "
            f"--trial {violation['trial']}{only} -v",
            file=out,
        )


def _print_trial(result: TrialResult) -> None:
    print(
        f"#{result.trial:<4d} {result.target:13s} {result.outcome:9s} {result.file} "
        f"+{result.offset} bit {result.bit}: {result.area}\n      {result.reason}",
        flush=True,
    )


DESCRIPTION = (
    "Build a small instance and a backup, then per trial flip one random bit "
    "in a database page, a meta slot, a log header or record, a backup file or the "
    "MANIFEST, and run the matching detectors (verify_database, dump_header, dump_log, "
    "recovery with a full scan and integrity check, verify_backup, restore).  Each trial "
    "is DETECTED (right ESE error naming the file and page/offset), HARMLESS (free "
    "space or padding nothing reads, with the reason) or a VIOLATION (silently "
    "accepted, wrong error, wrong data, or a crash).  Exit code 1 on any violation, "
    "2 if the pristine fixture fails its own checks."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=200, help="number of trials (default 200)")
    parser.add_argument(
        "--seed", type=int, default=None, help="campaign seed (default: random, printed)"
    )
    parser.add_argument(
        "--target",
        action="append",
        choices=TARGETS,
        help="only this target class (repeatable; default: all)",
    )
    parser.add_argument("--trial", type=int, help="run only trial K of the campaign (replay)")
    parser.add_argument("--json", metavar="FILE", help="write the full report as JSON to FILE")
    parser.add_argument("--workdir", help="directory for the scratch trees (default: $TMPDIR)")
    parser.add_argument("--keep", metavar="DIR", help="keep each trial's damaged tree in DIR")
    parser.add_argument(
        "--actors",
        action="store_true",
        help="also open each damaged instance with Instance.open (actor processes; slower)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per trial")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``corrupt`` on the ``jetstore`` command's subparsers."""
    parser = subparsers.add_parser(
        "corrupt",
        help="bit-flip campaign: every flip detected or provably harmless",
        description=DESCRIPTION,
    )
    add_arguments(parser)
    parser.set_defaults(func=run_command)
    return parser


def run_command(args: argparse.Namespace) -> int:
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    targets = tuple(args.target) if args.target else TARGETS
    try:
        report = campaign(
            args.trials,
            seed,
            targets=targets,
            only_trial=args.trial,
            workdir=args.workdir,
            keep=args.keep,
            actors=args.actors,
            progress=_print_trial if args.verbose else None,
        )
    except RuntimeError as exc:
        print(f"jetstore corrupt: {exc}", file=sys.stderr)
        return 2
    print_summary(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
    return 1 if report["violations"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jetstore.tools.corrupt", description=DESCRIPTION
    )
    add_arguments(parser)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

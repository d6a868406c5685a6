"""On-disk format of the two meta slots (pages 0 and 1 of ``jet.edb``).

A checkpoint ends by writing its meta into slot ``seq % 2`` after every page
it references is durable, so the other slot always holds the previous,
complete checkpoint: a torn meta write loses at most the checkpoint being
written.  Opening reads both slots and takes the valid one with the higher
sequence number; if neither verifies, the file is not usable
(JET_errDatabaseCorrupted naming both failures).

Each slot is an ordinary page (``page_format``: checksum, pgno, lsn, type
PAGE_META) whose body is this little-endian record:

    offset  size  field
         0     8  magic            b"JETSTDB\\0"
         8     4  version          FORMAT_VERSION
        12     4  page_size
        16     8  seq              checkpoint sequence number, +1 per checkpoint
        24     4  catalog_root     B+tree: table name -> table root page
        28     4  freelist_root    first PAGE_FREELIST page (0: no free pages)
        32     4  freelist_count   number of free page numbers in the chain
        36     4  page_count       high-water mark: pages [0, page_count) exist
        40     8  checkpoint_lsn   redo starts here: every logged commit before this
                                   LSN is in the trees, none at or after it
        48    16  db_signature     random, fixed at creation
        64    16  log_signature    signature of the log stream this file belongs to
        80     1  state            DB_JUST_CREATED / DB_DIRTY / DB_CLEAN (ESE dbstate values)
        81     1  flags            FLAG_LOGGING, FLAG_CIRCULAR_EVER, FLAG_RESTORED,
                                   FLAG_UNLOGGED
        82     2  reserved
        84     4  log_file_size_kb log generation size the stream was created with
        88     8  created_ns       creation time of the database
        96    40  last_full        backup record, below
       136    40  last_incremental backup record, below

    backup record (all zero: none):
         0     8  time_ns          when the backup completed
         8     4  gen_low          first log generation in the backup
        12     4  gen_high         last log generation in the backup
        16     8  lsn_mark         checkpoint LSN the backup's pages were taken at
        24    16  backup_id        random id, also in the backup's MANIFEST
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace

from .errors import JetError
from .page_format import PAGE_HEADER_SIZE, PAGE_META, build_page, page_body, verify_page

MAGIC = b"JETSTDB\0"
FORMAT_VERSION = 1

META_BODY = struct.Struct("<8sIIQIIIIQ16s16sBBHIQ40s40s")
META_BODY_SIZE = 176
assert META_BODY.size == META_BODY_SIZE

BACKUP_RECORD = struct.Struct("<QIIQ16s")
assert BACKUP_RECORD.size == 40

MAGIC_OFFSET, PAGE_SIZE_OFFSET = 0, 12  # in the body: what opening reads before verifying
assert struct.calcsize("<8sI") == PAGE_SIZE_OFFSET  # magic, version, then page_size
META_SLOTS = (0, 1)
FIRST_DATA_PAGE = 2

# ESE JET_dbstate* values
DB_JUST_CREATED = 1
DB_DIRTY = 2
DB_CLEAN = 3
STATE_NAMES = {
    DB_JUST_CREATED: "just created",
    DB_DIRTY: "dirty shutdown",
    DB_CLEAN: "clean shutdown",
}

FLAG_LOGGING = 0x1
FLAG_CIRCULAR_EVER = 0x2
FLAG_RESTORED = 0x4
# Opened with logging=False since the log stream began: set in every meta such an open
# writes, so no unlogged change is ever durable without it.  The stream no longer holds
# every commit, so the next open with logging starts a new one (storage.py).
FLAG_UNLOGGED = 0x8


@dataclass(frozen=True)
class BackupRecord:
    time_ns: int = 0
    gen_low: int = 0
    gen_high: int = 0
    lsn_mark: int = 0
    backup_id: bytes = bytes(16)

    def pack(self) -> bytes:
        return BACKUP_RECORD.pack(
            self.time_ns, self.gen_low, self.gen_high, self.lsn_mark, self.backup_id
        )

    @classmethod
    def unpack(cls, raw: bytes) -> BackupRecord:
        return cls(*BACKUP_RECORD.unpack(raw))

    @property
    def present(self) -> bool:
        return self.time_ns != 0


@dataclass(frozen=True)
class Meta:
    page_size: int
    seq: int
    catalog_root: int
    freelist_root: int
    freelist_count: int
    page_count: int
    checkpoint_lsn: int
    db_signature: bytes
    log_signature: bytes
    state: int
    flags: int
    log_file_size: int
    created_ns: int
    last_full: BackupRecord = field(default_factory=BackupRecord)
    last_incremental: BackupRecord = field(default_factory=BackupRecord)

    @property
    def slot(self) -> int:
        return self.seq % 2

    def evolve(self, **changes) -> Meta:
        return replace(self, **changes)

    def to_page(self) -> bytes:
        body = META_BODY.pack(
            MAGIC,
            FORMAT_VERSION,
            self.page_size,
            self.seq,
            self.catalog_root,
            self.freelist_root,
            self.freelist_count,
            self.page_count,
            self.checkpoint_lsn,
            self.db_signature,
            self.log_signature,
            self.state,
            self.flags,
            0,
            self.log_file_size // 1024,
            self.created_ns,
            self.last_full.pack(),
            self.last_incremental.pack(),
        )
        return build_page(self.page_size, self.slot, self.checkpoint_lsn, PAGE_META, body)

    @classmethod
    def from_page(cls, page: bytes, slot: int, path: str) -> Meta:
        """Decode and verify one meta slot; JetError says what is wrong with it."""
        if verify_page(page, slot, path, allow_uninitialized=False).page_type != PAGE_META:
            raise JetError("JET_errDatabaseCorrupted", f"{path} page {slot} is not a meta page")
        body = page_body(page)
        if len(body) != META_BODY_SIZE:
            raise JetError("JET_errDatabaseCorrupted", f"{path} meta slot {slot}: bad length")
        (
            magic,
            version,
            page_size,
            seq,
            catalog_root,
            freelist_root,
            freelist_count,
            page_count,
            checkpoint_lsn,
            db_sig,
            log_sig,
            state,
            flags,
            _reserved,
            log_kb,
            created_ns,
            full,
            incremental,
        ) = META_BODY.unpack(body)
        if magic != MAGIC:
            raise JetError("JET_errInvalidDatabase", f"{path} meta slot {slot}: bad magic")
        if version != FORMAT_VERSION:
            raise JetError(
                "JET_errInvalidDatabase", f"{path} meta slot {slot}: format version {version}"
            )
        if page_size != len(page):
            raise JetError(
                "JET_errPageSizeMismatch",
                f"{path} meta slot {slot}: page size {page_size}, read with {len(page)}",
            )
        return cls(
            page_size,
            seq,
            catalog_root,
            freelist_root,
            freelist_count,
            page_count,
            checkpoint_lsn,
            db_sig,
            log_sig,
            state,
            flags,
            log_kb * 1024,
            created_ns,
            BackupRecord.unpack(full),
            BackupRecord.unpack(incremental),
        )


def page_size_of(page: bytes) -> int | None:
    """The page size a meta slot records, read without verifying it (None: no magic).

    Opening needs it before it can know where slot 1 starts; the slot is then
    verified in full by ``Meta.from_page``.
    """
    start = PAGE_HEADER_SIZE + MAGIC_OFFSET
    if page[start : start + len(MAGIC)] != MAGIC:
        return None
    return struct.unpack_from("<I", page, PAGE_HEADER_SIZE + PAGE_SIZE_OFFSET)[0]

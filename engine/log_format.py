"""On-disk format of log generation files, shared by the writer and the reader.

A log stream is a directory of generation files, numbered from 1 in 8 upper-case hex digits;
the highest number is the current generation::

    <logs_dir>/jet00000001.log   oldest generation still present
    <logs_dir>/jet00000002.log   ...
    <logs_dir>/jettmp.log        a generation being created; never read, removed on open

Every generation file is exactly ``log_file_size`` bytes (a multiple of 4096 from 8 KiB to
1 GiB, recorded in its header), preallocated by
writing zeros before it gets its final name, so an append never changes the file's size and
fdatasync need not update metadata.  All integers are little-endian.

File::

    offset        size
    0             4096   header block: the header below, then zeros
    4096          ...    records, back to back, no alignment or padding
    ...                  zeros up to log_file_size

Header (HEADER_FIELDS, then HEADER_CRC)::

    offset  size  field
     0       8    magic                b"JETLOG\\r\\n" (the CR LF shows up text-mode mangling)
     8       4    version              u32, FORMAT_VERSION
    12       4    flags                u32, FLAG_CIRCULAR_NOW 0x2 | FLAG_CIRCULAR_EVER 0x4
    16       8    generation           u64, the number in the file name
    24      16    signature            random, the same in every generation of one stream
    40       8    create_time_ns       u64, wall clock when this generation was created
    48       8    prev_create_time_ns  u64, create_time_ns of generation - 1 (0 for the first)
    56       8    checkpoint_lsn       u64, the checkpoint known when this generation was created
    64       8    log_file_size        u64, the size of this file
    72       4    prev_final_checksum  u32, final checksum of generation - 1 (0 for the first)
    76       4    header_crc           u32, CRC32C of bytes 0..75
    80    4016    zeros

Record (RECORD_HEADER, then the payload)::

    offset  size    field
     0       4      crc      u32, CRC32C of bytes 4 .. 17+length (everything after this field)
     4       4      length   u32, payload bytes after this 17-byte header
     8       8      lsn      u64, make_lsn(generation, offset of this record in its file)
    16       1      type     u8, RECORD_FULL .. RECORD_END_OF_GENERATION
    17    length    payload

END_OF_GENERATION payload (EOG_PAYLOAD; the whole record is EOG_RECORD_SIZE = 25 bytes)::

    offset  size  field
     0       4    final_checksum  u32, see below
     4       4    record_count    u32, records (fragments) in the generation before it

SYNCED payload (SYNCED_PAYLOAD)::

    offset  size  field
     0       8    synced_offset   u64, everything before this offset of the generation had
                                  been fdatasynced when this record was written

Grammar (LevelDB log_format.md style)::

    generation := header (synced? fragment)* end_of_generation? zeros
    logical    := FULL | FIRST MIDDLE* LAST     -- fragments may continue in the next generation

The writer puts a SYNCED record before the first append after each fdatasync.  It is what
tells a torn tail from damage in the last generation: a write cut by a crash can only hurt
records that were never synced, so if a valid SYNCED record after an invalid record claims
that the invalid one had been synced, the bytes there were damaged after they were durable -
corruption, reported as such, never a quietly shortened log.

A record is valid when its header fits in the file, its type is known, its payload ends inside
the file (data fragments never reach into the END_OF_GENERATION reserve), its crc matches and
its lsn equals its own position.  The lsn check is what rejects stale bytes: a torn tail later
overwritten by shorter appends, or the records of another generation in a reused file, carry a
valid crc but the wrong position.  Type 0 never appears, so zero-filled space ends the records.

The generation's final checksum is CRC32C chained from 0 over the bytes, headers included, of
every record of the generation before its END_OF_GENERATION record, in file order.  The
END_OF_GENERATION payload carries it with the number of records it covers, and the
next generation's header repeats it as prev_final_checksum: a closed generation is provably
complete, and a generation swapped for another one breaks the chain.  The writer always keeps
EOG_RECORD_SIZE bytes free at the end of a generation so that it can be closed.

An LSN is (generation << 32) | byte offset in the generation file, so LSNs order like
positions in the stream and the end of one generation sorts before the start of the next.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from crc32c import crc32c

MAGIC = b"JETLOG\r\n"
# 2: SYNCED records; 3: commit records carry their time; 4: every record does (redo_format)
FORMAT_VERSION = 4

FLAG_CIRCULAR_NOW = 0x2
FLAG_CIRCULAR_EVER = 0x4

HEADER_SIZE = 4096
RECORDS_START = HEADER_SIZE
HEADER_FIELDS = struct.Struct("<8sIIQ16sQQQQI")
HEADER_CRC = struct.Struct("<I")
assert struct.calcsize(HEADER_FIELDS.format) == 76
HEADER_CRC_OFFSET = HEADER_FIELDS.size
SIGNATURE_SIZE = 16
# Offsets of the fields a reader checks on their own or names in its error messages.
VERSION_OFFSET = 8
GENERATION_OFFSET = 16
SIGNATURE_OFFSET = 24
PREV_CREATE_TIME_OFFSET = 48
LOG_FILE_SIZE_OFFSET = 64
PREV_FINAL_CHECKSUM_OFFSET = 72
assert struct.calcsize("<8s") == VERSION_OFFSET
assert struct.calcsize("<8sII") == GENERATION_OFFSET
assert struct.calcsize("<8sIIQ") == SIGNATURE_OFFSET
assert struct.calcsize("<8sIIQ16sQ") == PREV_CREATE_TIME_OFFSET
assert struct.calcsize("<8sIIQ16sQQQ") == LOG_FILE_SIZE_OFFSET
assert struct.calcsize("<8sIIQ16sQQQQ") == PREV_FINAL_CHECKSUM_OFFSET

RECORD_HEADER = struct.Struct("<IIQB")
RECORD_HEADER_SIZE = RECORD_HEADER.size
assert struct.calcsize(RECORD_HEADER.format) == RECORD_HEADER_SIZE == 17
RECORD_CRC = struct.Struct("<I")  # the crc field alone, packed last into a built record
CRC_FIELD_SIZE = RECORD_CRC.size

RECORD_ZERO = 0  # never written: zero-filled preallocated space
RECORD_FULL = 1
RECORD_FIRST = 2
RECORD_MIDDLE = 3
RECORD_LAST = 4
RECORD_END_OF_GENERATION = 5
RECORD_SYNCED = 6
# What a generation holds before its END_OF_GENERATION (ZERO is no record at all).
DATA_RECORD_TYPES = frozenset(
    (RECORD_FULL, RECORD_FIRST, RECORD_MIDDLE, RECORD_LAST, RECORD_SYNCED)
)
RECORD_TYPE_NAMES = {
    RECORD_ZERO: "ZERO",
    RECORD_FULL: "FULL",
    RECORD_FIRST: "FIRST",
    RECORD_MIDDLE: "MIDDLE",
    RECORD_LAST: "LAST",
    RECORD_END_OF_GENERATION: "END_OF_GENERATION",
    RECORD_SYNCED: "SYNCED",
}

SYNCED_PAYLOAD = struct.Struct("<Q")  # offset in this generation that an fdatasync covered

EOG_PAYLOAD = struct.Struct("<II")  # final checksum, number of records it covers
EOG_RECORD_SIZE = RECORD_HEADER_SIZE + EOG_PAYLOAD.size
assert EOG_RECORD_SIZE == 25

LOG_FILE_SIZE_UNIT = 4096
MIN_LOG_FILE_SIZE = 2 * LOG_FILE_SIZE_UNIT  # the header block and one block of records
MAX_LOG_FILE_SIZE = 1 << 30  # LSN offsets are 32 bits; a reader reads a file in one pread
MAX_GENERATION = 0xFFFFFFFF  # 8 hex digits in the file name, 32 bits in an LSN

TEMP_FILE_NAME = "jettmp.log"
_GENERATION_FILE_NAME = re.compile(r"jet([0-9A-F]{8})\.log")


def generation_file_name(generation: int) -> str:
    return f"jet{generation:08X}.log"


def parse_generation_file_name(name: str) -> int | None:
    """The generation a file name stands for, or None for any other file (jettmp.log included)."""
    match = _GENERATION_FILE_NAME.fullmatch(name)
    generation = int(match.group(1), 16) if match else 0
    return generation or None


# -- LSNs --------------------------------------------------------------------------------------


def make_lsn(generation: int, offset: int) -> int:
    return (generation << 32) | offset


def lsn_gen(lsn: int) -> int:
    return lsn >> 32


def lsn_offset(lsn: int) -> int:
    return lsn & 0xFFFFFFFF


def format_lsn(lsn: int) -> str:
    """An LSN the way the dumps print it: ``(0xGEN,0xOFFSET)``."""
    return f"({lsn_gen(lsn):#x},{lsn_offset(lsn):#x})"


# -- header ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogHeader:
    """The fields of a generation header (magic and crc are checked, not kept) and its file."""

    version: int
    flags: int
    generation: int
    signature: bytes
    create_time_ns: int
    prev_create_time_ns: int
    checkpoint_lsn: int
    log_file_size: int
    prev_final_checksum: int
    path: str = ""

    @property
    def circular_now(self) -> bool:
        return bool(self.flags & FLAG_CIRCULAR_NOW)

    @property
    def circular_ever(self) -> bool:
        return bool(self.flags & FLAG_CIRCULAR_EVER)

    def pack(self) -> bytes:
        """The whole header block, crc included."""
        fields = HEADER_FIELDS.pack(
            MAGIC,
            self.version,
            self.flags,
            self.generation,
            self.signature,
            self.create_time_ns,
            self.prev_create_time_ns,
            self.checkpoint_lsn,
            self.log_file_size,
            self.prev_final_checksum,
        )
        return (fields + HEADER_CRC.pack(crc32c(fields))).ljust(HEADER_SIZE, b"\0")


def header_version(block: bytes) -> int:
    """The version field alone: read before the crc, whose place a newer version may move."""
    return struct.unpack_from("<I", block, VERSION_OFFSET)[0]


def header_crc_ok(block: bytes) -> bool:
    fields = block[:HEADER_CRC_OFFSET]
    return crc32c(fields) == HEADER_CRC.unpack_from(block, HEADER_CRC_OFFSET)[0]


def unpack_header(block: bytes, path: str) -> LogHeader:
    """The fields of a header block whose magic, version and crc the caller has checked."""
    _magic, *fields = HEADER_FIELDS.unpack_from(block)
    return LogHeader(*fields, path=path)


# -- records -----------------------------------------------------------------------------------


def record_crc(record: memoryview) -> int:
    """CRC32C of one record as stored, its crc field excluded."""
    return crc32c(record[CRC_FIELD_SIZE:])


def pack_record(lsn: int, record_type: int, payload: bytes | memoryview) -> bytearray:
    """One record, ready to be written at the position ``lsn`` names."""
    record = bytearray(RECORD_HEADER.pack(0, len(payload), lsn, record_type))
    record += payload
    with memoryview(record) as view:
        RECORD_CRC.pack_into(record, 0, record_crc(view))
    return record


def unpack_record_header(data: bytes, offset: int) -> tuple[int, int, int, int]:
    """(crc, length, lsn, type) of the record header at ``offset``."""
    return RECORD_HEADER.unpack_from(data, offset)


def pack_end_of_generation(lsn: int, final_checksum: int, record_count: int) -> bytearray:
    return pack_record(
        lsn, RECORD_END_OF_GENERATION, EOG_PAYLOAD.pack(final_checksum, record_count)
    )


def unpack_end_of_generation(payload: bytes | memoryview) -> tuple[int, int]:
    """(final checksum, record count) of an END_OF_GENERATION payload."""
    return EOG_PAYLOAD.unpack(payload)

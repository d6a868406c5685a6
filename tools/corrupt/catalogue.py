"""The catalogue of the campaign: the outcomes, the target classes a flip is drawn from, the
options of the pristine trees, and the ESE error expected for each damaged place with the way
a message must name that place."""

from __future__ import annotations

from jetstore.engine.errors import ERRORS
from jetstore.engine.log_format import HEADER_CRC, HEADER_CRC_OFFSET, VERSION_OFFSET

DETECTED, HARMLESS, VIOLATION = "DETECTED", "HARMLESS", "VIOLATION"
OUTCOMES = (DETECTED, HARMLESS, VIOLATION)
DB_TARGETS = ("db_used_page", "db_free_page", "meta_slot")
LOG_TARGETS = ("log_header", "log_closed", "log_last")
BACKUP_TARGETS = ("backup_db", "backup_log", "manifest")
TARGETS = DB_TARGETS + LOG_TARGETS + BACKUP_TARGETS

PAGE_SIZE = 4096
LOG_FILE_SIZE = 64 << 10
OPTIONS = {"page_size": PAGE_SIZE, "log_file_size": LOG_FILE_SIZE, "cache_size": 1 << 20}
HEADER_FIELDS_END = HEADER_CRC_OFFSET + HEADER_CRC.size  # magic .. header crc; then zeros

# ESE numbers expected per place (the package docstring, under "Outcomes"; engine/errors.py).
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


def page_place(pgno: int) -> str:
    return rf"\bpage {pgno}\b"


def offset_place(offset: int) -> str:
    return rf"\boffset {offset}\b"


def header_expectation(offset: int) -> tuple[int, int, int]:
    """(replay error, backup error, offset named) for a flip in a header's fields."""
    if offset < VERSION_OFFSET:
        return LOG_CORRUPT, LOG_READ_VERIFY, 0
    if offset < VERSION_OFFSET + 4:
        return BAD_LOG_VERSION, BAD_LOG_VERSION, VERSION_OFFSET
    return LOG_CORRUPT, LOG_READ_VERIFY, HEADER_CRC_OFFSET

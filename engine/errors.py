"""ESE error numbers and the exceptions every jetstore failure raises.

The numbers are ESE's own (``published/inc/jethdr.w``), so that an operator who
knows ``esentutl`` output or a ``JET_err*`` from another ESE application reads
ours the same way.  There is exactly one table, ``ERRORS``: the constants below,
``JetError.name`` and the compat layer (``jetstore.engine.jet``) are all derived
from it.  Positive numbers are ESE warnings; they are listed for completeness
and never raised.

Every failure is a ``JetError`` carrying ``err`` (the number), ``name`` and
``message``; ``JetError(number_or_name, message)`` makes an instance of the family
the number belongs to (``FAMILIES``), so a caller catches a kind of failure by class
as with sqlite3's or py-lmdb's exceptions: ``WriteConflictError``,
``CorruptionError``, ``InstanceUnavailableError``, ``NotFoundError``,
``DiskFullError``, ``BackupError``, ``SnapshotTooOldError`` and
``InvalidArgumentError`` (also a ``ValueError``), whose ``InvalidArgumentTypeError``
(also a ``TypeError``) is raised by name where an argument has the wrong type.
A number in no family is a plain ``JetError``.
"""

from __future__ import annotations

ERRORS: dict[str, int] = {
    # A bug in jetstore itself: an actor caught an exception it did not expect.
    "JET_errInternalError": -107,
    # Log files (ese-backup-spec section 7)
    "JET_errLogFileCorrupt": -501,
    "JET_errNoBackupDirectory": -503,
    "JET_errBackupDirectoryNotEmpty": -504,
    "JET_errBackupInProgress": -505,
    "JET_errRestoreInProgress": -506,
    "JET_errMissingPreviousLogFile": -509,
    "JET_errLogWriteFail": -510,
    "JET_errLogGenerationMismatch": -513,
    "JET_errBadLogVersion": -514,
    "JET_errInvalidLogSequence": -515,
    "JET_errLoggingDisabled": -516,
    "JET_errLogSequenceEnd": -519,
    "JET_errNoBackup": -520,
    "JET_errInvalidBackupSequence": -521,
    "JET_errBackupNotAllowedYet": -523,
    "JET_errDeleteBackupFileFail": -524,
    "JET_errMakeBackupDirectoryFail": -525,
    "JET_errInvalidBackup": -526,
    "JET_errRecoveredWithErrors": -527,
    "JET_errMissingLogFile": -528,
    "JET_errLogDiskFull": -529,
    "JET_errBadLogSignature": -530,
    "JET_errBadDbSignature": -531,
    "JET_errBadCheckpointSignature": -532,
    "JET_errCheckpointCorrupt": -533,
    "JET_errMissingPatchPage": -534,
    "JET_errBadPatchPage": -535,
    "JET_errRedoAbruptEnded": -536,
    "JET_errPatchFileMissing": -538,
    "JET_errDatabaseLogSetMismatch": -539,
    "JET_errLogFileSizeMismatch": -541,
    "JET_errCheckpointFileNotFound": -542,
    "JET_errRequiredLogFilesMissing": -543,
    "JET_errSoftRecoveryOnBackupDatabase": -544,
    "JET_errStreamingDataNotLogged": -549,
    "JET_errDatabaseDirtyShutdown": -550,
    "JET_errConsistentTimeMismatch": -551,
    "JET_errDatabasePatchFileMismatch": -552,
    "JET_errEndingRestoreLogTooLow": -553,
    "JET_errStartingRestoreLogTooHigh": -554,
    "JET_errGivenLogFileHasBadSignature": -555,
    "JET_errGivenLogFileIsNotContiguous": -556,
    "JET_errMissingRestoreLogFiles": -557,
    "JET_wrnExistingLogFileHasBadSignature": 558,
    "JET_wrnExistingLogFileIsNotContiguous": 559,
    "JET_errMissingFullBackup": -560,
    "JET_errBadBackupDatabaseSize": -561,
    "JET_errMissingCurrentLogFiles": -565,
    "JET_errMissingFileToBackup": -569,
    "JET_errLogTornWriteDuringHardRestore": -570,
    "JET_errLogTornWriteDuringHardRecovery": -571,
    "JET_errLogCorruptDuringHardRestore": -573,
    "JET_errLogCorruptDuringHardRecovery": -574,
    "JET_errCommittedLogFilesMissing": -582,
    "JET_errCommittedLogFileCorrupt": -586,
    "JET_errLogSequenceChecksumMismatch": -590,
    "JET_errExistingLogFileHasBadSignature": -610,
    "JET_errExistingLogFileIsNotContiguous": -611,
    "JET_errLogReadVerifyFailure": -612,
    "JET_errCheckpointDepthTooDeep": -614,
    "JET_errRestoreOfNonBackupDatabase": -615,
    "JET_errLogFileNotCopied": -616,
    "JET_errSurrogateBackupInProgress": -617,
    # ESE keeps -800 internal (errBackupAbortByCaller); listed, never raised: an abort
    # over the API or the control socket is -801, as JetStopBackup's is in ESE.
    "JET_errBackupAbortByCaller": -800,
    "JET_errBackupAbortByServer": -801,
    "JET_errInvalidGrbit": -900,
    # Instance and API
    "JET_errTermInProgress": -1000,
    "JET_errFeatureNotAvailable": -1001,
    "JET_errInvalidName": -1002,
    "JET_errInvalidParameter": -1003,
    "JET_errDatabaseFileReadOnly": -1008,
    "JET_errOutOfMemory": -1011,
    "JET_errVersionStoreOutOfMemory": -1069,
    "JET_errOutOfDatabaseSpace": -1012,
    "JET_errReadVerifyFailure": -1018,
    "JET_errPageNotInitialized": -1019,
    "JET_errDiskReadVerificationFailure": -1021,
    "JET_errDiskIO": -1022,
    "JET_errInvalidPath": -1023,
    "JET_errInvalidLogDirectory": -1025,
    "JET_errRecordTooBig": -1026,
    "JET_errInvalidDatabase": -1028,
    "JET_errNotInitialized": -1029,
    "JET_errAlreadyInitialized": -1030,
    "JET_errFileAccessDenied": -1032,
    "JET_errNotInTransaction": -1054,
    "JET_errRunningInOneInstanceMode": -1080,
    "JET_errRunningInMultiInstanceMode": -1081,
    "JET_errInstanceUnavailable": -1090,
    "JET_errDatabaseUnavailable": -1091,
    "JET_errInstanceUnavailableDueToFatalLogDiskFull": -1092,
    "JET_errWriteConflict": -1102,
    "JET_errTransTooDeep": -1103,
    "JET_errInvalidSesid": -1104,
    "JET_errInTransaction": -1108,
    "JET_errReadPgnoVerifyFailure": -1118,
    "JET_errReadLostFlushVerifyFailure": -1119,
    "JET_errRecoveryVerifyFailure": -1123,
    "JET_errDatabaseNotFound": -1203,
    "JET_errDatabaseCorrupted": -1206,
    "JET_errPageSizeMismatch": -1213,
    "JET_errAttachedDatabaseMismatch": -1216,
    "JET_errDatabaseAttachedForRecovery": -1231,
    "JET_errTableDuplicate": -1303,
    "JET_errObjectNotFound": -1305,
    "JET_errClientRequestToStopJetService": -1329,
    "JET_errKeyTruncated": -346,
    "JET_errDiskFull": -1808,
    "JET_errFileNotFound": -1811,
    "JET_errAfterInitialization": -1850,
    "JET_errLogCorrupted": -1852,
    "JET_errSessionSharingViolation": -1910,
    "JET_errRollbackError": -1917,
    "JET_errCallbackFailed": -2101,
    "JET_errOSSnapshotInvalidSequence": -2401,
    "JET_errOSSnapshotTimeOut": -2402,
    "JET_errOSSnapshotNotAllowed": -2403,
    "JET_errFileIOBeyondEOF": -4001,
}

# ESE's jethdr.w defines a second name for one number; it resolves to the
# primary entry rather than duplicating a row of the table.
ALIASES: dict[str, str] = {"JET_errDatabaseInconsistent": "JET_errDatabaseDirtyShutdown"}

NAMES: dict[int, str] = {number: name for name, number in ERRORS.items()}
assert len(NAMES) == len(ERRORS), "two names share one ESE number"


class JetError(Exception):
    """A failure with ESE's number (``err``), its name and a message naming the place.

    ``JetError(number_or_name, message)`` makes an instance of the family the number
    belongs to (``FAMILIES``), so ``except WriteConflictError`` catches every -1102
    wherever it was raised, in this process or in an actor.
    """

    def __new__(cls, err: int | str = 0, message: str = ""):
        if cls is JetError:
            cls = _FAMILY_OF.get(_number(err), JetError)
        return super().__new__(cls)

    def __init__(self, err: int | str, message: str = "") -> None:
        err = _number(err)
        self.err: int = err
        self.name: str = NAMES.get(err, f"JET_err{err}")
        self.message = message
        super().__init__(f"{self.name} ({err}): {message}" if message else f"{self.name} ({err})")

    def __reduce__(self):  # survives pickling across processes as the same error
        return (type(self), (self.err, self.message))

    def as_dict(self) -> dict:
        """The error as every message, event and report carries it."""
        return {"err": self.err, "name": self.name, "message": self.message}

    @classmethod
    def of(cls, exc: BaseException) -> JetError:
        """``exc`` itself if it is a JetError, else JET_errInternalError naming it."""
        return exc if isinstance(exc, JetError) else cls("JET_errInternalError", repr(exc))


def _number(err: int | str) -> int:
    return ERRORS[ALIASES.get(err, err)] if isinstance(err, str) else err


# The families a caller tells apart, as sqlite3's and py-lmdb's exception classes do.
class WriteConflictError(JetError):
    """Another transaction committed a key this one wrote since its snapshot: retry."""


class CorruptionError(JetError):
    """A checksum, page number, record or log link is wrong: the data is damaged."""


class InstanceUnavailableError(JetError):
    """The instance is gone, failed, shutting down or stopped: reopen it."""


class NotFoundError(JetError):
    """A table, file, directory or backup that was named does not exist."""


class DiskFullError(JetError):
    """The disk holding the database, the log or a backup is full."""


class BackupError(JetError):
    """A backup or restore cannot go on as asked (one already running, wrong sequence...)."""


class SnapshotTooOldError(JetError):
    """A snapshot or a transaction outgrew the bounds that keep its versions."""


class InvalidArgumentError(JetError, ValueError):
    """An argument has a wrong value (-1003 and friends); also a ``ValueError``."""


class InvalidArgumentTypeError(InvalidArgumentError, TypeError):
    """An argument has a wrong type (a ``str`` key...); also a ``TypeError``."""


FAMILIES: dict[type[JetError], tuple[str, ...]] = {
    WriteConflictError: ("JET_errWriteConflict",),
    CorruptionError: (
        "JET_errLogFileCorrupt",
        "JET_errCheckpointCorrupt",
        "JET_errBadPatchPage",
        "JET_errRedoAbruptEnded",
        "JET_errLogTornWriteDuringHardRestore",
        "JET_errLogTornWriteDuringHardRecovery",
        "JET_errLogCorruptDuringHardRestore",
        "JET_errLogCorruptDuringHardRecovery",
        "JET_errCommittedLogFileCorrupt",
        "JET_errLogSequenceChecksumMismatch",
        "JET_errLogReadVerifyFailure",
        "JET_errReadVerifyFailure",
        "JET_errPageNotInitialized",
        "JET_errDiskReadVerificationFailure",
        "JET_errReadPgnoVerifyFailure",
        "JET_errReadLostFlushVerifyFailure",
        "JET_errRecoveryVerifyFailure",
        "JET_errDatabaseCorrupted",
        "JET_errLogCorrupted",
        "JET_errBadBackupDatabaseSize",
        "JET_errMissingRestoreLogFiles",
    ),
    InstanceUnavailableError: (
        "JET_errTermInProgress",
        "JET_errNotInitialized",
        "JET_errInstanceUnavailable",
        "JET_errDatabaseUnavailable",
        "JET_errInstanceUnavailableDueToFatalLogDiskFull",
        "JET_errClientRequestToStopJetService",
    ),
    NotFoundError: (
        "JET_errNoBackupDirectory",
        "JET_errNoBackup",
        "JET_errMissingFullBackup",
        "JET_errInvalidPath",
        "JET_errDatabaseNotFound",
        "JET_errObjectNotFound",
        "JET_errFileNotFound",
    ),
    DiskFullError: ("JET_errLogDiskFull", "JET_errOutOfDatabaseSpace", "JET_errDiskFull"),
    BackupError: (
        "JET_errBackupDirectoryNotEmpty",
        "JET_errBackupInProgress",
        "JET_errRestoreInProgress",
        "JET_errInvalidBackupSequence",
        "JET_errInvalidBackup",
        "JET_errBackupNotAllowedYet",
        "JET_errMakeBackupDirectoryFail",
        "JET_errBackupAbortByCaller",
        "JET_errBackupAbortByServer",
        "JET_errSurrogateBackupInProgress",
        "JET_errSoftRecoveryOnBackupDatabase",
    ),
    SnapshotTooOldError: ("JET_errVersionStoreOutOfMemory",),
    InvalidArgumentError: (
        "JET_errInvalidName",
        "JET_errInvalidParameter",
        "JET_errInvalidGrbit",
        "JET_errRecordTooBig",
        "JET_errKeyTruncated",
    ),
}
_FAMILY_OF: dict[int, type[JetError]] = {
    ERRORS[name]: family for family, names in FAMILIES.items() for name in names
}
assert len(_FAMILY_OF) == sum(map(len, FAMILIES.values())), "a number in two families"

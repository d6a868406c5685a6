"""ESE-shaped compatibility layer: ``JetBackup`` and friends over the same code.

As in the C API these functions return the error number (0 on success)
instead of raising, take a grbit, and report progress through
``pfnStatus(sesid, snp, snt, (done, total))``.  ``JetBackup`` acts on the
active instance: the one this process opened most recently.  Every
``JET_err*`` constant comes from the one error table in ``errors``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from . import api, backup, backup_restore
from .errors import ERRORS, JetError

globals().update(ERRORS)  # JET_errBackupInProgress = -505, ... one source of truth

JET_bitBackupIncremental = 0x1
JET_bitBackupAtomic = 0x4
_KNOWN_BACKUP_BITS = JET_bitBackupIncremental | JET_bitBackupAtomic

JET_sesidNil = 0
JET_snpRepair, JET_snpCompact, JET_snpRestore, JET_snpBackup = 2, 4, 8, 9
JET_snpUpgrade, JET_snpScrub = 10, 11
JET_sntProgress, JET_sntFail, JET_sntBegin, JET_sntComplete = 0, 3, 5, 6
_SNT = {
    "progress": JET_sntProgress,
    "fail": JET_sntFail,
    "begin": JET_sntBegin,
    "complete": JET_sntComplete,
}

_restoring = threading.Event()  # a JetRestore runs in this process

PfnStatus = Callable[[int, int, int, tuple[int, int]], object]


def _status(pfn: PfnStatus | None, snp: int):
    if pfn is None:
        return None
    return lambda progress: pfn(
        JET_sesidNil, snp, _SNT[progress.snt], (progress.done, progress.total)
    )


def _result(call) -> int:
    try:
        call()
    except JetError as exc:
        return exc.err
    return 0


def JetBackupInstance(
    instance, szBackupPath, grbit: int = 0, pfnStatus: PfnStatus | None = None
) -> int:  # noqa: N802
    """Back up ``instance`` (an open Instance or connected Client) into szBackupPath."""

    def run() -> None:
        if instance is None:
            raise JetError("JET_errNotInitialized", "no instance")
        if _restoring.is_set():
            raise JetError("JET_errRestoreInProgress", "a restore is running in this process")
        if type(grbit) is not int or grbit & ~_KNOWN_BACKUP_BITS:
            raise JetError("JET_errInvalidGrbit", f"unknown backup grbit {grbit!r}")
        instance.backup(
            szBackupPath,
            incremental=bool(grbit & JET_bitBackupIncremental),
            atomic=bool(grbit & JET_bitBackupAtomic),
            status=_status(pfnStatus, JET_snpBackup),
        )

    return _result(run)


def JetBackup(szBackupPath, grbit: int = 0, pfnStatus: PfnStatus | None = None) -> int:  # noqa: N802
    """Back up the active instance (JetBackup in ESE's one-instance mode)."""
    return JetBackupInstance(api.active_instance(), szBackupPath, grbit, pfnStatus)


def JetRestoreInstance(instance, sz, szDest=None, pfn: PfnStatus | None = None) -> int:  # noqa: N802
    """Restore the backup in ``sz`` into ``szDest`` (default: the instance directory
    ``instance`` names - a path, or a closed Instance)."""

    def run() -> None:
        target = szDest if szDest is not None else getattr(instance, "path", instance)
        if target is None:
            raise JetError("JET_errInvalidParameter", "no destination for the restore")
        _restoring.set()
        try:
            backup_restore.restore(sz, target, status=_status(pfn, JET_snpRestore))
        finally:
            _restoring.clear()

    return _result(run)


def JetRestore(sz, pfn: PfnStatus | None = None, szDest=None) -> int:  # noqa: N802
    """Restore into ``szDest``, or into the directory the backup was taken from."""
    if szDest is None:
        try:
            _directory, manifest = backup.locate_backup(os.fsdecode(os.fspath(sz)))
        except (JetError, TypeError) as exc:
            return exc.err if isinstance(exc, JetError) else ERRORS["JET_errInvalidPath"]
        szDest = manifest.get("instance_path")
    return JetRestoreInstance(None, sz, szDest, pfn)


def JetStopService() -> int:  # noqa: N802
    """JetStopService on the active instance."""
    instance = api.active_instance()
    if instance is None:
        return ERRORS["JET_errNotInitialized"]
    return _result(instance.stop_service)

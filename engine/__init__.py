"""jetstore.engine: the embedded API, storage formats, B+tree, log and recovery.

The public names load on first use (PEP 562): the actors import the storage
modules of this package, and the API above them imports the actors, so importing
``jetstore.engine.storage`` must not pull in the API.
"""

from __future__ import annotations

import importlib
import importlib.metadata

try:
    __version__ = importlib.metadata.version("jetstore")
except importlib.metadata.PackageNotFoundError:  # run from a source tree never installed
    __version__ = "0+unknown"

_PUBLIC = {
    "Client": "api",
    "Instance": "api",
    "connect": "api",
    "Progress": "backup",
    "restore": "backup_restore",
    "verify_backup": "backup_restore",
    "backup_info": "catalog",
    "Session": "client",
    "JetError": "errors",
    "BackupError": "errors",
    "CorruptionError": "errors",
    "DiskFullError": "errors",
    "InstanceUnavailableError": "errors",
    "InvalidArgumentError": "errors",
    "InvalidArgumentTypeError": "errors",
    "NotFoundError": "errors",
    "SnapshotTooOldError": "errors",
    "WriteConflictError": "errors",
    "ActorStatus": "results",
    "BackupResult": "results",
    "BackupVerification": "results",
    "InstanceStatus": "results",
    "RestoreResult": "results",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)

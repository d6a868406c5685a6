"""jetstore.engine: the embedded API, storage formats, B+tree, log and recovery.

The public names load on first use (PEP 562): the actors import the storage
modules of this package, and the API above them imports the actors, so importing
``jetstore.engine.storage`` must not pull in the API.
"""

from __future__ import annotations

import importlib

_PUBLIC = {
    "Client": "api",
    "Instance": "api",
    "connect": "api",
    "Progress": "backup",
    "restore": "backup_restore",
    "verify_backup": "backup_restore",
    "Session": "client",
    "JetError": "errors",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)

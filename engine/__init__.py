"""jetstore.engine: the embedded API, storage formats, B+tree, log and recovery."""

from .api import Client, Instance, connect
from .backup import Progress, restore, verify_backup
from .client import Session
from .errors import JetError

__all__ = [
    "Client",
    "Instance",
    "JetError",
    "Progress",
    "Session",
    "connect",
    "restore",
    "verify_backup",
]

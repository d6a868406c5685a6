"""jetstore.engine: the embedded API, storage formats, B+tree, log and recovery."""

from .errors import JetError

__all__ = ["JetError"]

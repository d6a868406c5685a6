"""What the driver and its client processes share: the slots of the shared array, the
record of one second that a client streams (a histogram and counts per backup phase)
and its wire form, and how long the clients may take to get ready."""

from __future__ import annotations

from .histogram import Histogram

READY_TIMEOUT_S = 120.0
START, BACKUP, STOP = 0, 1, 2  # slots of the shared array every client reads


def new_second() -> list[list]:
    """Per phase (0: no backup running, 1: backup running): histogram, read tx, write tx,
    errors."""
    return [[Histogram(), 0, 0, 0], [Histogram(), 0, 0, 0]]


def wire_second(second: list[list]) -> list[list]:
    return [[hist.to_wire(), reads, writes, errors] for hist, reads, writes, errors in second]

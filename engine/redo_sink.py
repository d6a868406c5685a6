"""Where Storage's redo records go (DESIGN.md section 2).

In one process Storage writes its own log (``log_stream.LogStream``).  In an
instance the log writer owns the files, and Storage is opened with a sink the
buffer manager provides (``ShippingLog``), which queues each record for the log
writer's next batch.  Either way ``append`` returns a ``Ticket``: the record's
number in this run of the sink, and the LSN that the pages it changes are
stamped with.

Durability is the owner's: Storage fdatasyncs a LogStream itself (a commit that
is not lazy, a checkpoint); a shipped record is durable when the log writer
reports its number, and the buffer manager answers the commit then.

LSNs are assigned by whoever writes the file - a record's place depends on the
generation it lands in, which only the writer knows.  A shipped record's ticket
carries the newest durable LSN known when it was queued: at or before its own,
which is all a page stamp needs (the write-ahead rule is kept by the checkpoint,
which waits for the log to cover everything sealed).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol


class Ticket(NamedTuple):
    number: int  # records appended before this one, since the sink was made
    lsn: int


class RedoSink(Protocol):
    @property
    def end_lsn(self) -> int:
        """Position after the last record known durable."""

    @property
    def current_generation(self) -> int: ...

    @property
    def oldest_generation(self) -> int: ...

    def append(self, payload: bytes) -> Ticket: ...

    def close(self) -> None: ...

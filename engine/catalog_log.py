"""What a run of log generations holds, for the backup catalog (catalog.py): which
generations are there, whether their headers belong to the stream, and the LSNs and
commit times a point-in-time restore can stop at.

Two depths, as the catalog offers them.  ``check_headers`` reads one header block per
generation.  ``read_span(..., every_record=True)`` reads and verifies every record of
the run (LogReader: record CRCs, positions, END_OF_GENERATION, the header chain) and
decodes each redo payload; without ``every_record`` it reads from the end backwards
only as far as it must to find the last commit, so a catalog of a long archive stays
cheap, and the first commit's time is left to the header's ``create_time_ns`` bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import redo_format
from .log_format import format_lsn, lsn_gen, make_lsn
from .log_reader import LogReader, LogRecord


def contiguous_ranges(generations: list[int]) -> list[tuple[int, int]]:
    """``[1, 2, 3, 7, 8]`` -> ``[(1, 3), (7, 8)]`` (``generations`` ascending)."""
    ranges: list[tuple[int, int]] = []
    for generation in generations:
        if ranges and ranges[-1][1] == generation - 1:
            ranges[-1] = (ranges[-1][0], generation)
        else:
            ranges.append((generation, generation))
    return ranges


def check_headers(reader: LogReader, low: int, high: int) -> int:
    """Every generation low..high is there with a readable header of the reader's
    signature; the first one's ``create_time_ns`` (no commit of the run is older)."""
    first = reader.read_header(low)
    for generation in range(low + 1, high + 1):
        reader.read_header(generation)
    return first.create_time_ns


@dataclass
class Span:
    """What the records of a run of generations show, as a restore measures its range
    (recovery.Replay): the end of the last record, the latest commit time, and - read
    from every record only - the earliest."""

    end_lsn: int | None = None  # None: no record
    first_commit_ns: int | None = None
    last_commit_ns: int | None = None

    def take(self, record: LogRecord, where: str) -> None:
        _kind, body = redo_format.decode(record.payload, where)
        self.end_lsn = record.end_lsn
        time_ns = redo_format.record_time_ns(body)  # a commit's, or a table change's
        if self.first_commit_ns is None or self.last_commit_ns is None:
            self.first_commit_ns = self.last_commit_ns = time_ns
        # The extremes, not the first and last in log order: a restore measures its
        # range so, and a clock set back across a restart would otherwise narrow it.
        self.first_commit_ns = min(self.first_commit_ns, time_ns)
        self.last_commit_ns = max(self.last_commit_ns, time_ns)


def read_span(
    reader: LogReader, low: int, high: int, *, every_record: bool, from_lsn: int = 0
) -> Span:
    """The records of generations low..high (all closed) from ``from_lsn`` on (a backup's
    replay starts at its checkpoint).  Without ``every_record`` it reads back from the
    end only until it meets a record, and ``first_commit_ns`` stays None."""
    if every_record:
        return _span(reader, low, high, from_lsn)
    # A record may start generations before the one holding its end, where a read that
    # starts later does not see it: an empty tail doubles the reach until a record shows.
    reach = 2
    while True:
        start = max(low, high - reach + 1)
        span = _span(reader, start, high, from_lsn)
        if span.last_commit_ns is not None or start == low:
            span.first_commit_ns = None  # only the tail was read
            return span
        reach *= 2


def _span(reader: LogReader, low: int, high: int, from_lsn: int) -> Span:
    span = Span()
    for record in reader.records(make_lsn(low, 0), end_gen=high, all_closed=True):
        if record.lsn >= from_lsn:
            span.take(record, f"{reader.path(lsn_gen(record.lsn))} at {format_lsn(record.lsn)}")
    return span

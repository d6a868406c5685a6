"""Wall-clock times as jetstore prints them: ISO-8601 in UTC, ``Z`` for the zone.

A commit's time (redo_format), a backup's, an archive failure's: all are
``time.time_ns()`` values, and every message, report and catalog shows them through
``iso_time``, so that any of them pasted back as a restore target (``--until``)
means what was printed.
"""

from __future__ import annotations

import datetime


def iso_time(time_ns: int | None, *, timespec: str = "microseconds") -> str | None:
    """``time_ns`` as ISO-8601 UTC (``2026-12-05T07:49:22.123456Z``), None for none.

    Cut to the microsecond, as far as a datetime (a restore target) can say: a target
    at a commit's printed time includes that commit (backup_restore ``_target``).  A
    time no datetime can hold (past the year 9999) reads as its nanoseconds.
    """
    if not time_ns:
        return None
    seconds, rest = divmod(time_ns // 1000, 1_000_000)
    try:
        moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return f"{time_ns} ns since 1970"
    text = moment.replace(microsecond=rest).isoformat(timespec=timespec)
    return text.replace("+00:00", "Z")

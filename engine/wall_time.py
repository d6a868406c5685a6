"""Wall-clock times as jetstore prints them: ISO-8601 in UTC, ``Z`` for the zone.

A commit's time (redo_format), a backup's, an archive failure's: all are
``time.time_ns()`` values, and every message, report and catalog shows them through
``iso_time``, so that any of them pasted back as a restore target (``--until``)
means what was printed.
"""

from __future__ import annotations

import datetime


def iso_time(
    time_ns: int | None, *, timespec: str = "microseconds", round_up: bool = False
) -> str | None:
    """``time_ns`` as ISO-8601 UTC (``2026-12-05T07:49:22.123456Z``), None for none.

    Microseconds are as far as a datetime (a restore target) can say; ``round_up``
    gives a lower bound whose text, taken as a target, does not fall before it.
    """
    if not time_ns:
        return None
    micros = -(-time_ns // 1000) if round_up else time_ns // 1000
    seconds, rest = divmod(micros, 1_000_000)
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    text = moment.replace(microsecond=rest).isoformat(timespec=timespec)
    return text.replace("+00:00", "Z")

"""Every record carries its time (redo_format, log format 4): the wall clock when it
was logged, never below the one before it in the run - commits, and a table's creation
or drop, each a commit of its own."""

from __future__ import annotations

import os
import time

from jetstore.engine import Instance, redo_format
from jetstore.engine.fileio import DEFAULT_ENV
from jetstore.engine.log_reader import LogReader
from jetstore.engine.storage import LOG_DIR, Storage


def record_times(path) -> list[tuple[str, int]]:
    """(kind name, time) of every record of the log."""
    times = []
    for record in LogReader(DEFAULT_ENV, os.path.join(path, LOG_DIR)).records(0):
        kind, body = redo_format.decode(record.payload, "test")
        times.append((redo_format.KIND_NAMES[kind], redo_format.record_time_ns(body)))
    return times


def log_at(tmp_path, wall_clock: list[int]) -> list[tuple[str, int]]:
    """A table created, two commits and the table dropped by a Storage whose wall clock
    reads ``wall_clock`` in turn; the record times its log holds."""
    readings = iter(wall_clock)
    storage = Storage.open(tmp_path)
    storage.wall_clock = lambda: next(readings)
    storage.create_table("t")
    for n in range(2):
        storage.commit({"t": {b"k%d" % n: b"v"}}, None)
    storage.drop_table("t")
    storage.close()
    return record_times(tmp_path)


def test_each_record_carries_the_wall_clock_it_was_logged_at(tmp_path):
    assert log_at(tmp_path, [1_000, 2_000, 3_000, 4_000]) == [
        ("create-table", 1_000),
        ("commit", 2_000),
        ("commit", 3_000),
        ("drop-table", 4_000),
    ]


def test_record_times_never_go_back_when_the_wall_clock_does(tmp_path):
    # NTP steps backwards before the first commit and before the drop
    times = [time for _kind, time in log_at(tmp_path, [5_000, 4_000, 6_000, 1_000])]
    assert times == [5_000, 5_000, 6_000, 6_000]


def test_a_commit_through_the_actors_is_stamped_between_its_call_and_its_return(tmp_path):
    with Instance.open(tmp_path / "db") as inst:
        session = inst.session()
        session.create_table("t")
        before = time.time_ns()
        session.put("t", b"k", b"v")
        after = time.time_ns()
    (_create, (kind, stamped)) = record_times(tmp_path / "db")
    assert kind == "commit" and before <= stamped <= after

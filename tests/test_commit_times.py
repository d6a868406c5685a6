"""Every commit record carries its commit time (redo_format, log format 3): the
wall clock when it was logged, never below the one before it in the run."""

from __future__ import annotations

import os
import time

from jetstore.engine import Instance, redo_format
from jetstore.engine.fileio import DEFAULT_ENV
from jetstore.engine.log_reader import LogReader
from jetstore.engine.storage import LOG_DIR, Storage


def commit_times(path) -> list[int]:
    times = []
    for record in LogReader(DEFAULT_ENV, os.path.join(path, LOG_DIR)).records(0):
        kind, body = redo_format.decode(record.payload, "test")
        if kind == redo_format.COMMIT:
            times.append(redo_format.commit_time_ns(body))
    return times


def commit_three_at(tmp_path, wall_clock: list[int]) -> list[int]:
    """Three commits of a Storage whose wall clock reads ``wall_clock`` in turn; the
    commit times its log holds."""
    readings = iter(wall_clock)
    storage = Storage.open(tmp_path)
    storage.wall_clock = lambda: next(readings)
    storage.create_table("t")
    for n in range(3):
        storage.commit({"t": {b"k%d" % n: b"v"}}, None)
    storage.close()
    return commit_times(tmp_path)


def test_each_commit_record_carries_the_wall_clock_it_was_logged_at(tmp_path):
    assert commit_three_at(tmp_path, [1_000, 2_000, 3_000]) == [1_000, 2_000, 3_000]


def test_commit_times_never_go_back_when_the_wall_clock_does(tmp_path):
    # an NTP step backwards between the first two commits
    assert commit_three_at(tmp_path, [5_000, 4_000, 6_000]) == [5_000, 5_000, 6_000]


def test_a_commit_through_the_actors_is_stamped_between_its_call_and_its_return(tmp_path):
    with Instance.open(tmp_path / "db") as inst:
        session = inst.session()
        session.create_table("t")
        before = time.time_ns()
        session.put("t", b"k", b"v")
        after = time.time_ns()
    (stamped,) = commit_times(tmp_path / "db")
    assert before <= stamped <= after

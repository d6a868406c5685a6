"""Continuous archiving with the real actors: the archiver process beside the log
writer, kill -9 at every step of an archive copy, a foreign archive, status.

The invariant every test checks (``check_archive``): the archive reads as one verified
stream, every generation in it equals the local one where that still exists, and no
generation is gone from the local log without being in the archive.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
from test_backup_errors import wait_until

from jetstore.actors.fault_plan import FAULTS_VARIABLE
from jetstore.engine import Instance, archive_format, connect, restore
from jetstore.engine.archiving import ARCHIVE_STEPS, file_crc
from jetstore.engine.errors import JetError
from jetstore.engine.events_format import EVENTS_FILE
from jetstore.engine.fileio import DEFAULT_ENV
from jetstore.engine.log_format import lsn_gen
from jetstore.engine.log_reader import LogReader, generation_path, list_generations
from jetstore.engine.storage import LOG_DIR

LOG_FILE_SIZE = 64 * 1024


def open_archiving(db, archive, **kw) -> Instance:
    return Instance.open(str(db), log_file_size=LOG_FILE_SIZE, archive_dir=str(archive), **kw)


def commit_generations(inst: Instance, count: int, oracle: dict, prefix: bytes = b"k") -> None:
    """Commit until ``count`` more generations are closed; every commit into ``oracle``."""
    session = inst.session()
    if "t" not in session.list_tables():
        session.create_table("t")
    target = current_generation(inst) + count
    number = len(oracle)
    while current_generation(inst) < target:
        for _ in range(20):
            key, value = prefix + b"%06d" % number, os.urandom(8) * 50
            session.put("t", key, value)
            oracle[key] = value
            number += 1
    session.close()


def current_generation(inst: Instance) -> int:
    return list_generations(DEFAULT_ENV, os.path.join(inst.path, LOG_DIR))[-1]


def caught_up(inst: Instance) -> dict | None:
    closed = current_generation(inst) - 1
    archive = inst.status()["archive"]
    if archive.get("archived_through", -1) >= closed and archive.get("lag_generations") == 0:
        return archive
    return None


def check_archive(db, archive) -> list[int]:
    """The invariant; returns the generations archived."""
    logs = os.path.join(str(db), LOG_DIR)
    local = list_generations(DEFAULT_ENV, logs)
    signature = LogReader(DEFAULT_ENV, logs).read_header(local[-1]).signature
    stream = archive_format.stream_dir(str(archive), signature)
    archived = list_generations(DEFAULT_ENV, stream)
    assert archived == list(range(archived[0], archived[-1] + 1)), "a gap in the archive"
    for _record in LogReader(DEFAULT_ENV, stream).records(0, all_closed=True):
        pass  # every header, record and chain link verifies
    for generation in archived:
        if generation in local:
            assert file_crc(DEFAULT_ENV, generation_path(logs, generation)) == file_crc(
                DEFAULT_ENV, generation_path(stream, generation)
            ), f"archived generation {generation} differs from the local one"
    for generation in range(archived[0], local[0]):
        assert generation in archived, f"generation {generation} deleted, never archived"
    return archived


def events(db, name: str) -> list[dict]:
    with open(os.path.join(str(db), EVENTS_FILE)) as f:
        return [e for e in map(json.loads, f) if e["event"] == name]


def test_closed_generations_reach_the_archive_and_status_shows_it(tmp_path):
    db, archive = tmp_path / "db", tmp_path / "archive"
    with open_archiving(db, archive) as inst:
        oracle: dict = {}
        commit_generations(inst, 3, oracle)
        status = wait_until(lambda: caught_up(inst), "the archive caught up")
        assert status["alive"] and status["archive_dir"] == str(archive)
        assert status["lag_bytes"] == 0 and status["lag_seconds"] == 0
        assert status["failing"] is False and status["last_failure"] is None
        wait_until(
            lambda: inst.status()["log_writer"]["archived_through"] == status["archived_through"],
            "the log writer heard of it",
        )
        # Truncation after a backup takes only what the archive holds.
        (tmp_path / "backup").mkdir()
        inst.backup(str(tmp_path / "backup"))
        check_archive(db, archive)
    archived = check_archive(db, archive)
    assert archived[0] == 1
    assert [e["generation"] for e in events(db, "log-archived")] == archived


def test_archive_timeout_rolls_an_idle_tail_into_the_archive(tmp_path):
    db, archive = tmp_path / "db", tmp_path / "archive"
    with open_archiving(db, archive, archive_timeout=0.3) as inst:
        session = inst.session()
        session.create_table("t")
        session.put("t", b"lonely", b"commit")  # far from filling a generation
        wait_until(lambda: inst.status()["archive"]["archived_through"] >= 1, "the timeout's roll")
    # The commit is in the archive although it filled no generation (that an idle log is
    # not rolled is test_archiving.py's, on an injected clock).
    stream = archive_format.stream_dir(str(archive), _signature(db))
    payloads = [r.payload for r in LogReader(DEFAULT_ENV, stream).records(0, all_closed=True)]
    assert any(b"lonely" in payload for payload in payloads)


@pytest.mark.parametrize(
    "plan",
    [{"crash_at_step": step} for step in ARCHIVE_STEPS]
    + [{"crash_write": n} for n in (1, 2)]
    + [{"crash_sync": n} for n in (1, 2)],
    ids=lambda plan: "-".join(map(str, next(iter(plan.items())))),
)
def test_kill_9_of_the_archiver_at_every_step_loses_nothing(tmp_path, monkeypatch, plan):
    db, archive = tmp_path / "db", tmp_path / "archive"
    monkeypatch.setenv(FAULTS_VARIABLE, json.dumps({"archiver": plan}))
    inst = open_archiving(db, archive)
    monkeypatch.delenv(FAULTS_VARIABLE)  # its successor runs without the plan
    try:
        first_pid = inst.status()["actors"]["archiver"]["pid"]
        oracle: dict = {}
        commit_generations(inst, 2, oracle)
        wait_until(lambda: inst.status()["actors"]["archiver"]["pid"] != first_pid, "the kill")
        inst.backup(None)  # truncation while the archiver is dead or catching up
        check_archive(db, archive)
        wait_until(lambda: caught_up(inst), "the restarted archiver caught up")
        commit_generations(inst, 1, oracle)
        wait_until(lambda: caught_up(inst), "the next generation archived")
        inst.backup(None)
        archived = check_archive(db, archive)
    finally:
        inst.close()
    assert archived[0] == 1


@pytest.mark.parametrize("step", ARCHIVE_STEPS)
def test_kill_9_of_the_log_writer_at_every_step_of_a_copy(tmp_path, monkeypatch, step):
    db, archive = tmp_path / "db", tmp_path / "archive"
    monkeypatch.setenv(FAULTS_VARIABLE, json.dumps({"archiver": {"crash_at_step": step}}))
    inst = open_archiving(db, archive)
    oracle: dict = {}
    try:
        first_pid = inst.status()["actors"]["archiver"]["pid"]
        commit_generations(inst, 1, oracle)
        # The archiver died at the step, and so does every successor with the same plan:
        # the copy stays cut there while the log writer is killed.
        wait_until(lambda: inst.status()["actors"]["archiver"]["pid"] != first_pid, "the kill")
        os.kill(inst.status()["actors"]["log_writer"]["pid"], signal.SIGKILL)
        with pytest.raises(JetError) as caught:
            commit_generations(inst, 1, oracle)
        assert caught.value.err == -1090
    finally:
        inst.close()
    monkeypatch.delenv(FAULTS_VARIABLE)
    with open_archiving(db, archive) as inst:
        session = inst.session()
        for key, value in oracle.items():
            assert session.get("t", key) == value
        session.close()
        commit_generations(inst, 1, oracle)
        wait_until(lambda: caught_up(inst), "the archive caught up after the restart")
        inst.backup(None)
        check_archive(db, archive)


def test_an_archive_of_another_database_refuses_the_open_and_loses_nothing(tmp_path):
    other, db, archive = tmp_path / "other", tmp_path / "db", tmp_path / "archive"
    with open_archiving(other, archive) as inst:
        inst.session().create_table("t")
    with Instance.open(str(db)) as inst:
        session = inst.session()
        session.create_table("t")
        session.put("t", b"k", b"v")
    with pytest.raises(JetError) as caught:
        open_archiving(db, archive)
    assert caught.value.err == -555
    assert str(archive) in caught.value.message
    with Instance.open(str(db)) as inst:  # the instance is as it was
        assert inst.session().get("t", b"k") == b"v"
    assert archive_format.streams(str(archive)) == [_signature(other).hex()]


def test_an_archive_whose_disk_is_not_mounted_at_open_is_not_started_anew(tmp_path):
    """An unmounted disk leaves its mount point, an empty directory: the open refuses
    it (-1811) instead of starting a second archive there that the first, mounted
    again, would hide; deleting DIR/archived-to is how an operator says "anew"."""
    db, archive, disk = tmp_path / "db", tmp_path / "archive", tmp_path / "disk"
    with open_archiving(db, archive) as inst:
        inst.session().create_table("t")
    record = archive_format.read_archived_to(str(db))
    assert record["archive"] == os.path.realpath(archive)
    archive.rename(disk)  # unmounted
    archive.mkdir()
    with pytest.raises(JetError) as refused:
        open_archiving(db, archive)
    assert refused.value.err == -1811
    assert str(archive) in refused.value.message
    assert archive_format.ARCHIVED_TO in refused.value.message
    assert os.listdir(archive) == []  # nothing started there
    archive.rmdir()
    disk.rename(archive)  # mounted again
    with open_archiving(db, archive) as inst:
        assert inst.session().list_tables() == ["t"]
    shutil.rmtree(archive)  # the operator means it: a new archive, and the record forgot
    archive.mkdir()
    os.remove(db / archive_format.ARCHIVED_TO)
    open_archiving(db, archive).close()
    new = archive_format.read_identity(str(archive))
    assert new["created_ns"] > record["created_ns"]
    assert archive_format.read_archived_to(str(db))["created_ns"] == new["created_ns"]


def test_an_archive_removed_while_running_is_loud_and_holds_the_log(tmp_path):
    db, archive = tmp_path / "db", tmp_path / "archive"
    with open_archiving(db, archive) as inst:
        oracle: dict = {}
        commit_generations(inst, 1, oracle)
        wait_until(lambda: caught_up(inst), "the archive caught up")
        moved = tmp_path / "archive.moved"
        os.rename(archive, moved)
        commit_generations(inst, 2, oracle)
        failing = wait_until(
            lambda: (a := inst.status()["archive"])["failing"] and a, "the failure shows"
        )
        assert failing["last_failure"]["err"] == -1811
        assert str(archive) in failing["last_failure"]["message"]
        inst.backup(None)  # the unarchived generations stay
        assert not os.path.exists(archive)  # not recreated behind the operator's back
        os.rename(moved, archive)
        wait_until(lambda: caught_up(inst), "the archive caught up once it was back")
        inst.backup(None)
        check_archive(db, archive)
    assert events(db, "archive-failed") and events(db, "archive-recovered")


@pytest.mark.parametrize(
    ("options", "err"),
    [
        (lambda tmp: {"archive_timeout": 5}, -1003),
        (lambda tmp: {"archive_dir": 5}, -1003),
        (lambda tmp: {"archive_dir": tmp / "a", "archive_timeout": -1}, -1003),
        (lambda tmp: {"archive_dir": tmp / "a", "archive_timeout": float("nan")}, -1003),
        (lambda tmp: {"archive_dir": tmp / "a", "archive_max_lag": 0}, -1003),
        (lambda tmp: {"archive_dir": tmp / "a", "logging": False}, -516),
        (lambda tmp: {"archive_dir": tmp / "db" / "archive"}, -1023),
        (lambda tmp: {"archive_dir": tmp / "a", "archive_max_lag": 0.5}, -1003),
        (lambda tmp: {"archive_dir": tmp / "a", "archive_timeout": 0.01}, -1003),
        (lambda tmp: {"archive_dir": tmp / "no" / "a"}, -1023),
        (lambda tmp: {"archive_dir": _symlink(tmp / "link", tmp / "db")}, -1023),
        (lambda tmp: {"archive_dir": _instance(tmp / "other")}, -1023),
        (lambda tmp: {"archive_dir": _foreign_archive(tmp / "theirs")}, -555),
    ],
    ids=[
        "timeout-alone",
        "not-a-path",
        "negative",
        "nan",
        "zero-lag",
        "no-log",
        "inside",
        "half-a-byte",
        "too-short-a-timeout",
        "no-parent",
        "inside-through-a-symlink",
        "another-instance",
        "another-databases-archive",
    ],
)
def test_archiving_options_are_checked_before_anything_starts(tmp_path, options, err):
    db = tmp_path / "db"
    with pytest.raises(JetError) as caught:
        Instance.open(str(db), **options(tmp_path))
    assert caught.value.err == err
    assert not db.exists() and not (tmp_path / "a").exists()


def _symlink(link, target):
    os.symlink(target, link)
    return link


def _instance(path):
    Instance.open(str(path)).close()
    return path


def _foreign_archive(path):
    archive_format.claim(DEFAULT_ENV, str(path), bytes(16))
    return path


def _signature(db) -> bytes:
    logs = os.path.join(str(db), LOG_DIR)
    return (
        LogReader(DEFAULT_ENV, logs).read_header(list_generations(DEFAULT_ENV, logs)[-1]).signature
    )


def test_serve_archives_and_ctl_status_shows_it(tmp_path):
    db, archive = tmp_path / "db", tmp_path / "archive"
    command = [sys.executable, "-m", "jetstore.tools", "serve", str(db), "--json"]
    command += ["--archive", str(archive), "--archive-timeout", "0.2"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert json.loads(server.stdout.readline())["pids"]["archiver"]
        with connect(str(db)) as client:
            session = client.session()
            session.create_table("t")
            session.put("t", b"k", b"v")
            wait_until(
                lambda: (client.status()["archive"] or {}).get("archived_through", 0) >= 1,
                "the commit archived",
            )
        shown = subprocess.run(
            [sys.executable, "-m", "jetstore.tools", "ctl", str(db), "status"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        assert f"archive          {archive}: up to generation" in shown.stdout
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    assert server.returncode == 0
    check_archive(db, archive)


def test_a_lost_machine_restores_through_the_archive_to_its_last_archived_commit(tmp_path):
    """The recovery point is the last archived generation: the instance directory is
    destroyed, and the backup plus the archive bring back every acknowledged commit up
    to the end of the archive - and, with until, exactly those up to any LSN."""
    db, archive, backup = tmp_path / "db", tmp_path / "archive", tmp_path / "backup"
    backup.mkdir()
    lsns: dict[bytes, int] = {}
    with open_archiving(db, archive, archive_timeout=0.2) as inst:
        session = inst.session()
        session.create_table("t")
        session.put("t", b"before-backup", b"v")
        inst.backup(str(backup))
        for n in range(600):
            key = b"k%05d" % n
            session.begin()
            session.put("t", key, key * 20)
            lsns[key] = session.commit()
        last = max(lsns.values())
        wait_until(
            lambda: inst.status()["archive"]["archived_through"] >= lsn_gen(last),
            "the last commit's generation archived",
        )
        os.kill(inst.status()["actors"]["log_writer"]["pid"], signal.SIGKILL)
    shutil.rmtree(db)  # the machine is lost

    def restored(until, name):
        result = restore(str(backup), str(tmp_path / name), log_dir=str(archive), until=until)
        with Instance.open(str(tmp_path / name)) as inst:
            rows = dict(inst.session().scan("t"))
        return result, rows

    result, rows = restored(None, "latest")
    assert result["stopped_at_lsn"] >= last
    assert rows == {b"before-backup": b"v", **{key: key * 20 for key in lsns}}
    keys = sorted(lsns, key=lsns.get)
    for index, key in enumerate(keys[:: len(keys) // 4][1:]):
        result, rows = restored(lsns[key], f"to-{index}")
        expected = {k for k, lsn in lsns.items() if lsn <= lsns[key]}
        assert result["stopped_at_lsn"] == lsns[key]
        assert set(rows) - {b"before-backup"} == expected


def test_a_gap_in_the_archive_stops_only_the_restores_that_cross_it(tmp_path):
    """A run without the archive leaves a gap in it: a restore to a point before the gap
    succeeds exactly; one past it, or to the end, fails with -528 naming the missing
    generations - never a restore short of the target."""
    db, archive, backup = tmp_path / "db", tmp_path / "archive", tmp_path / "backup"
    backup.mkdir()
    lsns: dict[bytes, int] = {}

    def commit(inst, prefix: bytes, generations: int) -> None:
        session = inst.session()
        target = current_generation(inst) + generations
        while current_generation(inst) < target:
            key = prefix + b"%05d" % len(lsns)
            session.begin()
            session.put("t", key, key)
            lsns[key] = session.commit()
        session.close()

    with open_archiving(db, archive) as inst:
        inst.session().create_table("t")
        inst.backup(str(backup))
        commit(inst, b"a", 2)
        archived = wait_until(lambda: caught_up(inst), "the archive caught up")
        before_gap = max(v for v in lsns.values() if lsn_gen(v) <= archived["archived_through"])
    with Instance.open(str(db)) as inst:  # a run without the archive
        commit(inst, b"b", 2)
        inst.backup(None)  # and its generations truncated
    with open_archiving(db, archive) as inst:
        commit(inst, b"c", 2)
        wait_until(lambda: caught_up(inst), "the archive caught up")
    result = restore(str(backup), str(tmp_path / "before"), log_dir=str(archive), until=before_gap)
    assert result["stopped_at_lsn"] == before_gap
    with Instance.open(str(tmp_path / "before")) as inst:
        assert set(dict(inst.session().scan("t"))) == {
            k for k, v in lsns.items() if v <= before_gap
        }
    for until, name in ((max(lsns.values()), "past"), (None, "end")):
        with pytest.raises(JetError) as caught:
            restore(str(backup), str(tmp_path / name), log_dir=str(archive), until=until)
        assert caught.value.err == -528 and "missing" in caught.value.message
        assert not (tmp_path / name).exists()

"""Point-in-time restore (DESIGN.md section 6): ``restore(..., until=LSN | aware datetime)``
against an oracle of acknowledged commits.

One randomized workload (client processes with fixed seeds, each commit's write set,
LSN and the client's wall clock before and after it) is restored many times: to every
generation boundary, to random LSNs, to each side of a commit, to random times.  A
restore to an LSN holds exactly the commits whose LSN is at or before it; a restore
to a time holds every commit acknowledged before it and none begun after it, and
always a prefix of the log: the oracle's state at the LSN where it reports it stopped.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
from inprocess import run_backup

from jetstore.engine import Instance, JetError, archive_format, restore
from jetstore.engine.backup import locate_backup
from jetstore.engine.fileio import DEFAULT_ENV
from jetstore.engine.log_format import RECORDS_START, format_lsn, lsn_gen, make_lsn
from jetstore.engine.log_reader import LogReader, list_generations
from jetstore.engine.storage import DB_FILE, LOG_DIR, Storage
from jetstore.engine.wall_time import iso_time
from jetstore.tools.arguments import restore_target
from jetstore.tools.cli import main

OPTIONS = {"log_file_size": 64 << 10}
UTC = datetime.timezone.utc

CLIENT = """
import json, os, random, sys, time
from jetstore.engine import JetError, connect
path, seed, stop, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rng = random.Random(seed)
client = connect(path)
session = client.session()
with open(out, "w") as log:
    while not os.path.exists(stop):
        writes = {}
        for _ in range(rng.randint(1, 4)):
            key = "k%03d" % rng.randrange(200)
            size = rng.randint(20, 300)
            writes[key] = None if rng.random() < 0.15 else "%d-%s" % (seed, "v" * size)
        session.begin()
        for key, value in writes.items():
            if value is None:
                session.delete("t", key.encode())
            else:
                session.put("t", key.encode(), value.encode())
        before = time.time_ns()
        try:
            lsn = session.commit()
        except JetError as exc:
            if exc.err != -1102:  # first committer wins: this one was not acknowledged
                raise
            continue
        after = time.time_ns()
        log.write(json.dumps({"lsn": lsn, "before": before, "after": after, "writes": writes}))
        log.write("\\n")
        log.flush()
client.close()
"""


@dataclass(frozen=True)
class Commit:
    lsn: int  # what commit() returned
    before: int  # the client's wall clock just before commit() and just after it returned
    after: int
    writes: dict[bytes, bytes | None]


@dataclass(frozen=True)
class Workload:
    src: str
    backup: str
    logs: str
    roll_lsn: int
    commits: list[Commit]  # acknowledged, by LSN

    def state_at(self, lsn: int) -> dict[bytes, bytes]:
        """The oracle: every acknowledged commit whose LSN is at or before ``lsn``."""
        state: dict[bytes, bytes] = {}
        for commit in self.commits:
            if commit.lsn > lsn:
                break
            for key, value in commit.writes.items():
                if value is None:
                    state.pop(key, None)
                else:
                    state[key] = value
        return state


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def acknowledged(out) -> list[dict]:
    with open(out) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


@pytest.fixture(scope="module")
def workload(tmp_path_factory) -> Workload:
    """Three clients commit random multi-key transactions (puts and deletes on shared
    keys) before, during and for several generations after a full backup."""
    tmp = tmp_path_factory.mktemp("pitr")
    src, backup, stop = tmp / "src", tmp / "bk", tmp / "stop"
    backup.mkdir()
    inst = Instance.open(src, **OPTIONS)
    outs = [tmp / f"client{seed}.jsonl" for seed in range(3)]
    clients = [
        subprocess.Popen([sys.executable, "-c", CLIENT, str(src), str(seed), str(stop), str(out)])
        for seed, out in enumerate(outs)
    ]
    try:
        inst.session().create_table("t")
        wait_for(
            lambda: all(o.exists() and len(acknowledged(o)) >= 30 for o in outs),
            "commits before the backup",
        )
        roll_lsn = inst.backup(backup)["roll_lsn"]
        wait_for(
            lambda: inst.status()["buffer_manager"]["current_generation"] >= lsn_gen(roll_lsn) + 5,
            "five generations after the backup's roll",
        )
        stop.touch()
        assert all(client.wait(60) == 0 for client in clients)
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait(30)
        inst.close()
    commits = sorted(
        (
            Commit(
                c["lsn"],
                c["before"],
                c["after"],
                {k.encode(): None if v is None else v.encode() for k, v in c["writes"].items()},
            )
            for out in outs
            for c in acknowledged(out)
        ),
        key=lambda commit: commit.lsn,
    )
    assert len({c.lsn for c in commits}) == len(commits), "one LSN per commit"
    assert sum(c.lsn > roll_lsn for c in commits) > 100
    return Workload(str(src), str(backup), str(src / LOG_DIR), roll_lsn, commits)


def restored_state(dest) -> dict[bytes, bytes]:
    """What a restored database holds, read by an open of it (which would replay any
    log left past the cut)."""
    with Storage.open(dest, create=False) as storage:
        return dict(storage.scan("t"))


def restore_and_check(workload: Workload, dest, until) -> dict:
    result = restore(workload.backup, dest, log_dir=workload.logs, until=until)
    assert restored_state(dest) == workload.state_at(result["stopped_at_lsn"])
    return result


def test_restores_to_every_generation_boundary_hold_exactly_the_commits_before_it(
    workload, tmp_path
):
    last = lsn_gen(workload.commits[-1].lsn)
    boundaries = [make_lsn(g, RECORDS_START) for g in range(lsn_gen(workload.roll_lsn), last + 1)]
    assert len(boundaries) >= 6
    for n, until in enumerate(boundaries):
        result = restore_and_check(workload, tmp_path / f"g{n}", until)
        assert restored_state(tmp_path / f"g{n}") == workload.state_at(until)
        assert result["stopped_at_lsn"] <= until
        in_ = [c for c in workload.commits if c.lsn <= until]
        assert result["stopped_at_lsn"] >= in_[-1].lsn
        shutil.rmtree(tmp_path / f"g{n}")


def test_restores_to_random_lsns_and_to_each_side_of_a_commit(workload, tmp_path):
    whole = restore_and_check(workload, tmp_path / "all", None)
    assert whole["stopped_at_lsn"] == whole["latest_lsn"] == workload.commits[-1].lsn
    assert restored_state(tmp_path / "all") == workload.state_at(workload.commits[-1].lsn)
    assert whole["commits"] >= sum(c.lsn > workload.roll_lsn for c in workload.commits)
    assert whole["replay_mb_per_s"] > 0 and whole["replay_commits_per_s"] > 0
    rng = random.Random(15)
    after_roll = [c for c in workload.commits if c.lsn > workload.roll_lsn]
    targets = [rng.randint(whole["earliest_lsn"], whole["latest_lsn"]) for _ in range(6)]
    for commit in rng.sample(after_roll, 4):
        targets += [commit.lsn, commit.lsn - 1]  # the commit in, then just out
    for n, until in enumerate(targets):
        result = restore_and_check(workload, tmp_path / f"r{n}", until)
        assert restored_state(tmp_path / f"r{n}") == workload.state_at(until), format_lsn(until)
        assert (result["earliest_lsn"], result["latest_lsn"]) == (
            whole["earliest_lsn"],
            whole["latest_lsn"],
        )
        shutil.rmtree(tmp_path / f"r{n}")


def microsecond(time_ns: int) -> datetime.datetime:
    seconds, rest = divmod(time_ns, 1_000_000_000)
    return datetime.datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)


def test_restores_to_times_hold_what_was_acknowledged_before_and_nothing_begun_after(
    workload, tmp_path
):
    # Every commit up to the roll was stamped before its client heard back; every
    # commit of the log was stamped after its client called commit().
    low = max(c.after for c in workload.commits if c.lsn <= workload.roll_lsn)
    high = workload.commits[-1].before
    rng = random.Random(42)
    for n in range(8):
        target = microsecond(rng.randint(low, high))
        start_ns = int(target.timestamp()) * 1_000_000_000 + target.microsecond * 1000
        result = restore_and_check(workload, tmp_path / f"t{n}", target)
        stop = result["stopped_at_lsn"]
        for commit in workload.commits:
            if commit.after < start_ns:
                assert commit.lsn <= stop, "acknowledged before the target, yet left out"
            if commit.before >= start_ns + 1000:
                assert commit.lsn > stop, "begun after the target, yet restored"
        assert result["last_commit_time_ns"] < start_ns + 1000
        # A commit's own time, printed to the microsecond, is a target that includes it.
        again = restore_and_check(
            workload, tmp_path / f"t{n}-again", microsecond(result["last_commit_time_ns"])
        )
        assert again["stopped_at_lsn"] == stop
        shutil.rmtree(tmp_path / f"t{n}")
        shutil.rmtree(tmp_path / f"t{n}-again")


def test_targets_outside_the_reachable_range_fail_naming_it(workload, tmp_path):
    whole = restore(workload.backup, tmp_path / "all", log_dir=workload.logs)
    earliest, latest = whole["earliest_lsn"], whole["latest_lsn"]
    span = (format_lsn(earliest), format_lsn(latest))
    one_second = datetime.timedelta(seconds=1)
    early_time = microsecond(whole["earliest_time_ns"]) - one_second
    late_time = microsecond(whole["latest_time_ns"]) + one_second
    cases = [
        (earliest - 1, -553, "is before the backup's roll"),
        (0, -553, "is before the backup's roll"),
        (latest + 1, -543, "is beyond the end of the log"),
        (make_lsn(lsn_gen(latest) + 5, RECORDS_START), -543, "is beyond the end of the log"),
        (early_time, -553, "is before the backup's roll"),
        (late_time, -543, "is beyond the end of the log"),
    ]
    for n, (until, err, text) in enumerate(cases):
        dest = tmp_path / f"out{n}"
        with pytest.raises(JetError) as failed:
            restore(workload.backup, dest, log_dir=workload.logs, until=until)
        assert failed.value.err == err, failed.value
        assert text in failed.value.message
        assert all(lsn in failed.value.message for lsn in span)
        assert microsecond(whole["latest_time_ns"]).isoformat()[:19] in failed.value.message
        assert not dest.exists(), "a failed restore leaves no database behind"
    # Without the live log, the end of the backup's own log is the end.
    with pytest.raises(JetError) as failed:
        restore(workload.backup, tmp_path / "alone", until=workload.commits[-1].lsn)
    assert failed.value.err == -543 and not (tmp_path / "alone").exists()


def test_the_ends_of_the_range_as_printed_are_targets_that_take_in_their_commits(
    workload, tmp_path
):
    whole = restore(workload.backup, tmp_path / "all", log_dir=workload.logs)
    for key in ("earliest_time_ns", "latest_time_ns"):
        printed = datetime.datetime.fromisoformat(iso_time(whole[key]).replace("Z", "+00:00"))
        result = restore_and_check(workload, tmp_path / key, printed)
        if key == "latest_time_ns":
            assert result["stopped_at_lsn"] == whole["latest_lsn"]


def test_a_time_no_datetime_past_9999_can_print_is_refused_as_beyond_the_log(workload, tmp_path):
    far = datetime.datetime(
        9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone(-datetime.timedelta(hours=14))
    )
    with pytest.raises(JetError) as failed:
        restore(workload.backup, tmp_path / "out", log_dir=workload.logs, until=far)
    assert failed.value.err == -543 and not (tmp_path / "out").exists()


def test_a_status_callback_that_raises_fails_the_restore_with_2101(workload, tmp_path):
    def callback(progress):
        if progress.phase == "replay":
            raise RuntimeError("the operator's code broke")

    with pytest.raises(JetError) as failed:
        restore(workload.backup, tmp_path / "out", log_dir=workload.logs, status=callback)
    assert failed.value.err == -2101 and "RuntimeError" in failed.value.message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("until", "family", "text"),
    [
        (datetime.datetime(2026, 12, 5, 10, 0), ValueError, "has no time zone"),
        (-1, ValueError, "not negative"),
        (True, TypeError, "not bool"),
        ("(0x5,0x1000)", TypeError, "not str"),
        (1.5, TypeError, "not float"),
    ],
    ids=["naive datetime", "negative", "bool", "str", "float"],
)
def test_a_target_of_the_wrong_kind_is_refused_before_anything_is_written(
    workload, tmp_path, until, family, text
):
    with pytest.raises(family) as failed:
        restore(workload.backup, tmp_path / "out", log_dir=workload.logs, until=until)
    assert failed.value.err == -1003 and text in failed.value.message
    assert not (tmp_path / "out").exists()


def stream_of(logs) -> set[bytes]:
    reader = LogReader(DEFAULT_ENV, str(logs))
    return {reader.read_header(g).signature for g in reader.generations()}


def test_a_restored_database_continues_on_a_new_log_stream(workload, tmp_path):
    _directory, manifest = locate_backup(workload.backup)
    old = bytes.fromhex(manifest["log_signature"])
    cut = [c for c in workload.commits if c.lsn > workload.roll_lsn][50].lsn
    result = restore_and_check(workload, tmp_path / "out", cut)
    new = bytes.fromhex(result["log_signature"])
    logs = tmp_path / "out" / LOG_DIR
    assert new != old and stream_of(logs) == {new}
    # Nothing of the old stream, past the cut or before it, is left to replay; the new
    # one is numbered above every generation the old one had here.
    assert min(list_generations(DEFAULT_ENV, str(logs))) == result["generation"]
    assert result["generation"] > max(list_generations(DEFAULT_ENV, workload.logs))
    events = [json.loads(line) for line in open(tmp_path / "out" / "events.jsonl")]
    assert any(
        e.get("event") == "log-stream-restarted" and e.get("signature") == new.hex() for e in events
    ), events
    expected = workload.state_at(cut)
    with Instance.open(tmp_path / "out", **OPTIONS) as restored:
        (tmp_path / "bk2").mkdir()
        with pytest.raises(JetError) as failed:
            restored.backup(tmp_path / "bk2", incremental=True)
        assert failed.value.err == -560
        restored.backup(tmp_path / "bk2")
        session = restored.session()
        for i in range(300):  # a few generations of the new stream after its backup
            session.put("t", b"new-%04d" % i, b"n" * 200)
            expected[b"new-%04d" % i] = b"n" * 200
    again = restore(tmp_path / "bk2", tmp_path / "again", log_dir=logs)
    assert again["rolled_forward"] and again["log_signature"] not in (old.hex(), new.hex())
    assert restored_state(tmp_path / "again") == expected


def test_the_command_line_restores_to_an_lsn_and_to_a_time(workload, tmp_path, capsys):
    cut = [c for c in workload.commits if c.lsn > workload.roll_lsn][80]
    argv = ["restore", workload.backup, str(tmp_path / "lsn"), "--log-dir", workload.logs]
    assert main([*argv, "--until", format_lsn(cut.lsn), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["stopped_at_lsn"] == cut.lsn
    assert printed["stopped_at_lsn_text"] == format_lsn(cut.lsn)
    assert restored_state(tmp_path / "lsn") == workload.state_at(cut.lsn)

    moment = microsecond(cut.after).isoformat().replace("+00:00", "Z")
    argv[2] = str(tmp_path / "time")
    assert main([*argv, "--until", moment]) == 0
    text = capsys.readouterr().out
    shown = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    stop = restore_target(shown["stopped_at_lsn"])  # printed as (0xGEN,0xOFFSET)
    assert cut.lsn <= stop
    assert restored_state(tmp_path / "time") == workload.state_at(stop)
    last_commit = datetime.datetime.fromisoformat(shown["last_commit_time"])
    assert last_commit <= microsecond(cut.after) and float(shown["replay_mb_per_s"]) > 0


def build_archive(workload: Workload, archive) -> list[int]:
    """An archive of the workload's log as the archiver leaves one: the identity, and
    the closed generations (every one but the live last) in the stream's directory."""
    _directory, manifest = locate_backup(workload.backup)
    archive_format.claim(DEFAULT_ENV, str(archive), bytes.fromhex(manifest["db_signature"]))
    stream = archive_format.stream_dir(str(archive), bytes.fromhex(manifest["log_signature"]))
    os.makedirs(stream)
    closed = list_generations(DEFAULT_ENV, workload.logs)[:-1]
    for generation in closed:
        name = f"jet{generation:08X}.log"
        shutil.copyfile(os.path.join(workload.logs, name), os.path.join(stream, name))
    return closed


def test_an_archive_is_a_log_dir_to_roll_forward_through(workload, tmp_path):
    closed = build_archive(workload, tmp_path / "archive")
    events = []
    whole = restore(
        workload.backup, tmp_path / "all", log_dir=tmp_path / "archive", status=events.append
    )
    replay = [(e.done, e.total) for e in events if e.phase == "replay" and e.total]
    assert len(replay) >= 5, "the replay reports its progress generation by generation"
    assert replay == sorted(replay) and all(done <= total for done, total in replay)
    assert whole["rolled_forward"][-1] == closed[-1]
    assert lsn_gen(whole["latest_lsn"]) <= closed[-1]
    archived = [c for c in workload.commits if lsn_gen(c.lsn) <= closed[-1]]
    assert whole["stopped_at_lsn"] == archived[-1].lsn
    assert restored_state(tmp_path / "all") == workload.state_at(archived[-1].lsn)
    cut = archived[len(archived) * 2 // 3].lsn
    result = restore(workload.backup, tmp_path / "cut", log_dir=tmp_path / "archive", until=cut)
    assert restored_state(tmp_path / "cut") == workload.state_at(cut)
    assert result["stopped_at_lsn"] == cut


def test_an_archive_without_the_backups_stream_names_the_streams_it_holds(workload, tmp_path):
    _directory, manifest = locate_backup(workload.backup)
    archive = tmp_path / "archive"
    archive_format.claim(DEFAULT_ENV, str(archive), bytes.fromhex(manifest["db_signature"]))
    other = archive_format.stream_dir(str(archive), b"\x07" * 16)
    os.makedirs(other)
    with pytest.raises(JetError) as failed:
        restore(workload.backup, tmp_path / "out", log_dir=archive)
    assert failed.value.err == -1025
    assert manifest["log_signature"] in failed.value.message
    assert (b"\x07" * 16).hex() in failed.value.message
    assert not (tmp_path / "out").exists()
    assert not os.path.exists(os.path.join(tmp_path, "out", DB_FILE))


def test_a_time_target_restores_a_prefix_when_the_clock_went_back_across_a_restart(tmp_path):
    """Commit times never go back within a run, but may across a restart whose wall
    clock was stepped back: the replay stops before the first commit later than the
    target (PostgreSQL's recovery_target_time), never skipping one to take a later."""
    second = 1_000_000_000
    # The backup is stamped by the real clock, at about base + 2 s: with no commit
    # between its checkpoint and its roll, that is the earliest time it reaches.
    base = time.time_ns() - 2 * second
    db, run = tmp_path / "db", tmp_path / "run"
    run.mkdir()

    def commits(storage: Storage, stamped: list[tuple[bytes, int]]) -> None:
        readings = iter(time_ns for _key, time_ns in stamped)
        storage.wall_clock = lambda: next(readings)
        for key, _time_ns in stamped:
            storage.commit({"t": {key: b"v"}}, None)

    storage = Storage.open(db, **OPTIONS)
    storage.create_table("t")
    commits(storage, [(b"before-backup", base + 1 * second)])
    run_backup(storage, str(tmp_path / "bk"), run_dir=str(run))
    commits(storage, [(b"a", base + 10 * second), (b"b", base + 20 * second)])
    storage.close()
    with Storage.open(db, **OPTIONS) as storage:  # a new run, its clock stepped back
        commits(storage, [(b"c", base + 5 * second), (b"d", base + 30 * second)])

    def keys_at(name: str, seconds: int) -> set[bytes]:
        target = microsecond(base + seconds * second)
        restore(tmp_path / "bk", tmp_path / name, log_dir=db / LOG_DIR, until=target)
        return set(restored_state(tmp_path / name))

    assert keys_at("t25", 25) == {b"before-backup", b"a", b"b", b"c"}
    # b (20 s) is later than 15 s: c, stamped 5 s but logged after b, stays out too
    assert keys_at("t15", 15) == {b"before-backup", b"a"}
    assert keys_at("t7", 7) == {b"before-backup"}
    with pytest.raises(JetError) as failed:
        keys_at("t31", 31)
    assert failed.value.err == -543 and microsecond(base + 30 * second).isoformat()[:19] in str(
        failed.value
    )


def test_a_restore_to_a_time_before_a_table_was_dropped_has_the_table_and_its_rows(tmp_path):
    """A table's creation or drop is stamped as a commit of its own, so a restore to the
    moment before the mistake - the drop - has the table, and nothing created after it;
    a drop as the log's last record is a reachable target too."""
    second = 1_000_000_000
    base = time.time_ns()  # the backup is stamped about now, before everything after it
    db, run = tmp_path / "db", tmp_path / "run"
    run.mkdir()
    storage = Storage.open(db, **OPTIONS)
    storage.create_table("t")
    storage.commit({"t": {b"before-backup": b"v"}}, None)
    run_backup(storage, str(tmp_path / "bk"), run_dir=str(run))
    readings = iter(base + n * second for n in (10, 20, 25, 30, 40))
    storage.wall_clock = lambda: next(readings)
    storage.commit({"t": {b"precious": b"v"}}, None)  # 10 s
    storage.drop_table("t")  # 20 s: the mistake
    storage.create_table("u")  # 25 s
    storage.commit({"u": {b"later": b"v"}}, None)  # 30 s
    storage.drop_table("u")  # 40 s: the log's last record
    storage.close()

    def tables_at(seconds: int) -> dict[str, dict[bytes, bytes]]:
        dest = tmp_path / f"at{seconds}"
        until = microsecond(base + seconds * second)
        restore(tmp_path / "bk", dest, log_dir=db / LOG_DIR, until=until)
        with Storage.open(dest, create=False) as restored:
            return {table: dict(restored.scan(table)) for table in restored.list_tables()}

    assert tables_at(15) == {"t": {b"before-backup": b"v", b"precious": b"v"}}
    assert tables_at(22) == {}
    assert tables_at(27) == {"u": {}}
    assert tables_at(35) == {"u": {b"later": b"v"}}
    assert tables_at(40) == {}  # the drop's own time
    with pytest.raises(JetError) as failed:
        tables_at(45)
    assert failed.value.err == -543


def test_a_second_restore_into_a_destination_being_restored_fails_at_once(workload, tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    held = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(held, fcntl.LOCK_EX)  # as the first restore holds it
    try:
        with pytest.raises(JetError) as failed:
            restore(workload.backup, dest, log_dir=workload.logs)
        assert failed.value.err == -506 and "another restore" in failed.value.message
        assert os.listdir(dest) == []
    finally:
        os.close(held)
    restore_and_check(workload, dest, None)  # once it is free


def test_a_destination_holding_anything_else_is_refused_and_left_alone(workload, tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(JetError) as failed:
        restore(workload.backup, dest, log_dir=workload.logs)
    assert failed.value.err == -1023 and "notes.txt" in failed.value.message
    assert os.listdir(dest) == ["notes.txt"]


def test_a_restore_killed_while_writing_its_marker_is_completed_by_the_next(workload, tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "restore-in-progress.tmp").write_bytes(b'{"format": 1, "backu')  # cut short
    restore_and_check(workload, dest, None)
    assert not (dest / "restore-in-progress.tmp").exists()


def test_opening_an_unfinished_restore_is_refused_and_leaves_nothing(workload, tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "restore-in-progress").write_text("{}")  # a marker that cannot be read
    with pytest.raises(JetError) as failed:
        Instance.open(str(dest))
    assert failed.value.err == -506
    assert os.listdir(dest) == ["restore-in-progress"]

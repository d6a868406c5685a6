"""Snapshot isolation through the public API (DESIGN.md section 3, invariant 6): one
named test per anomaly that a transaction must not see, and the two that snapshot
isolation allows or refuses by design.  Reads go to read views; a second process
attaches with ``connect``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter

import pytest

from jetstore.engine import Instance, JetError, connect, restore
from jetstore.engine.reader_table_format import ReaderTable
from jetstore.protocol.schema import to_buffer_manager
from jetstore.tools import isolation_check


@pytest.fixture
def inst(tmp_path):
    instance = Instance.open(tmp_path / "db", log_file_size=64 << 10)
    setup = instance.session()
    setup.create_table("t")
    yield instance
    instance.close()


def test_no_read_skew(inst):
    writer, reader = inst.session(), inst.session()
    writer.put("t", b"x", b"0")
    writer.put("t", b"y", b"0")
    reader.begin()
    assert reader.get("t", b"x") == b"0"
    with writer.transaction():
        writer.put("t", b"x", b"1")
        writer.put("t", b"y", b"1")
    assert reader.get("t", b"y") == b"0"  # not the y of a commit after its snapshot
    reader.commit()
    assert (reader.get("t", b"x"), reader.get("t", b"y")) == (b"1", b"1")


def test_no_non_repeatable_read(inst):
    writer, reader = inst.session(), inst.session()
    writer.put("t", b"k", b"old")
    reader.begin()
    first = reader.get("t", b"k")
    writer.put("t", b"k", b"new")
    writer.delete("t", b"k")
    assert reader.get("t", b"k") == first == b"old"
    reader.rollback()
    assert reader.get("t", b"k") is None


def test_no_phantoms_in_a_transactions_scan(inst):
    writer, reader = inst.session(), inst.session()
    for i in range(10):
        writer.put("t", b"k%02d" % i, b"v")
    reader.begin()
    before = list(reader.scan("t"))
    writer.put("t", b"k05a", b"inserted")
    writer.delete("t", b"k07")
    writer.put("t", b"k99", b"appended")
    assert list(reader.scan("t")) == before
    assert list(reader.scan("t", b"k05", b"k08")) == [r for r in before if b"k05" <= r[0] < b"k08"]
    reader.commit()
    keys = [k for k, _v in reader.scan("t")]
    assert b"k05a" in keys and b"k07" not in keys and b"k99" in keys


def test_a_long_scan_reads_one_snapshot_across_checkpoints_rolls_and_truncations(inst, tmp_path):
    writer = inst.session()
    rows = 20_000
    with writer.transaction():
        for i in range(rows):
            writer.put("t", b"r%06d" % i, b"%06d" % i)
    scanner = inst.session()
    scan = scanner.scan("t")  # outside a transaction: its own snapshot from its first row
    seen = [next(scan)]
    for round_ in range(3):
        with writer.transaction():
            for i in range(0, rows, 7):
                writer.put("t", b"r%06d" % i, b"changed %d" % round_)
            writer.delete("t", b"r%06d" % (rows - 1 - round_))
            writer.put("t", b"r%06da" % round_, b"inserted")
        (tmp_path / f"bk{round_}").mkdir()
        inst.backup(tmp_path / f"bk{round_}")  # a checkpoint, a roll and a truncation
        seen += [next(scan) for _ in range(1000)]
    seen += list(scan)
    assert seen == [(b"r%06d" % i, b"%06d" % i) for i in range(rows)]


def test_write_skew_is_allowed(inst):
    """Both read both keys and write a different one: snapshot isolation lets both
    commit (documented; a serializable engine would refuse one)."""
    setup, first, second = inst.session(), inst.session(), inst.session()
    setup.put("t", b"alice", b"on call")
    setup.put("t", b"bob", b"on call")
    first.begin()
    second.begin()
    assert first.get("t", b"bob") == second.get("t", b"alice") == b"on call"
    first.put("t", b"alice", b"off")
    second.put("t", b"bob", b"off")
    first.commit()
    second.commit()
    assert (setup.get("t", b"alice"), setup.get("t", b"bob")) == (b"off", b"off")


def test_a_lost_update_is_refused_first_committer_wins(inst):
    setup, first, second = inst.session(), inst.session(), inst.session()
    setup.put("t", b"balance", b"100")
    first.begin()
    second.begin()
    first.put("t", b"balance", b"%d" % (int(first.get("t", b"balance")) + 10))
    second.put("t", b"balance", b"%d" % (int(second.get("t", b"balance")) + 20))
    first.commit()
    with pytest.raises(JetError) as e:
        second.commit()
    assert e.value.err == -1102
    assert setup.get("t", b"balance") == b"110"


def test_a_commit_is_in_every_snapshot_taken_after_it_returned(inst):
    writer = inst.session()
    client = connect(inst.path)
    try:
        elsewhere = client.session()
        for i in range(50):
            writer.begin()
            writer.put("t", b"k", b"%d" % i)
            lsn = writer.commit()
            elsewhere.begin()
            assert elsewhere.get("t", b"k") == b"%d" % i
            assert elsewhere.snapshot_lsn >= lsn
            elsewhere.rollback()
    finally:
        client.close()


def test_a_session_sees_its_own_lazy_commit_at_once(inst):
    session, other = inst.session(), inst.session()
    session.begin()
    session.put("t", b"lazy", b"1")
    session.commit(lazy=True)
    assert session.get("t", b"lazy") == b"1"
    assert dict(session.scan("t")) == {b"lazy": b"1"}
    session.begin()  # its next transaction sees it too, and does not conflict with it
    session.put("t", b"lazy", b"2")
    session.commit()
    assert session.get("t", b"lazy") == other.get("t", b"lazy") == b"2"


def test_snapshot_lsn_is_the_transactions_snapshot(inst):
    writer, reader = inst.session(), inst.session()
    reader.begin()
    snapshot = reader.snapshot_lsn
    writer.begin()
    writer.put("t", b"k", b"v")
    lsn = writer.commit()
    assert lsn > snapshot and reader.snapshot_lsn == snapshot and reader.get("t", b"k") is None
    reader.rollback()
    with pytest.raises(JetError) as e:
        _ = reader.snapshot_lsn
    assert e.value.err == -1054


def test_reads_send_no_message_the_actors_may_be_stopped(inst):
    """begin, get and scan work with the buffer manager and log writer frozen: nothing
    waits for them (a connected process, whose health check tolerates stopped actors)."""
    session = inst.session()
    for i in range(100):
        session.put("t", b"k%03d" % i, b"v%d" % i)
    pids = inst.status()["actors"]
    frozen = [pids[name]["pid"] for name in ("buffer_manager", "log_writer")]
    script = textwrap.dedent(f"""
        import os, signal, sys
        from jetstore.engine import connect
        client = connect({str(inst.path)!r})
        s = client.session()
        s.get("t", b"k000")  # the view exists before the actors stop
        for pid in {frozen!r}:
            os.kill(pid, signal.SIGSTOP)
        try:
            s.begin()
            values = [s.get("t", b"k%03d" % i) for i in range(100)]
            rows = list(s.scan("t"))
            s.rollback()
        finally:
            for pid in {frozen!r}:
                os.kill(pid, signal.SIGCONT)
        assert values == [b"v%d" % i for i in range(100)], values[:3]
        assert len(rows) == 100
        print("ok")
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    for pid in frozen:
        os.kill(pid, signal.SIGCONT)
    assert done.stdout.strip() == "ok", done.stderr


def test_a_reader_killed_in_a_transaction_holds_nothing(inst):
    script = textwrap.dedent(f"""
        import time
        from jetstore.engine import connect
        s = connect({str(inst.path)!r}).session()
        s.begin()
        s.get("t", b"k")
        print("holding", flush=True)
        time.sleep(600)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    readers = ReaderTable(os.path.join(inst.path, "run"))
    try:
        assert child.stdout.readline().strip() == "holding"
        assert len(readers.holding()) == 1
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        assert readers.holding() == []
    finally:
        child.kill()
        child.wait()
        readers.close()


def test_snapshot_isolation_checker_four_processes(tmp_path):
    path = str(tmp_path / "si")
    with Instance.open(path, log_file_size=64 << 10):
        result = isolation_check.run(path, processes=4, transactions=150, seed=11)
    assert result["failed_workers"] == []
    assert result["violations"] == []
    assert result["committed"] > 100 and result["conflicts"] > 0  # it did contend


def test_the_checker_finds_a_read_of_a_commit_after_the_snapshot():
    committed = {"snapshot": 0, "ops": [["put", "6b", "a"]], "lsn": 100}
    later = {"snapshot": 100, "ops": [["put", "6b", "b"]], "lsn": 200}
    skewed = {"snapshot": 150, "ops": [["get", "6b", "b"], ["scan", "00", "ff", []]], "lsn": None}
    aborted = {
        "snapshot": 100,
        "ops": [["put", "6b", "z"], ["put", "6c", "x"]],
        "lsn": None,
        "conflict": True,  # rightly: "later" wrote 6b after its snapshot
    }
    dirty = {"snapshot": 300, "ops": [["get", "6c", "x"]], "lsn": None}
    needless = {"snapshot": 200, "ops": [["put", "6b", "y"]], "lsn": None, "conflict": True}
    violations = isolation_check.check([committed, later, skewed, aborted, dirty, needless])
    assert len(violations) == 4, violations
    assert "transaction 5" in violations[3] and "no commit after its snapshot" in violations[3]
    assert "expected 'a'" in violations[0] and "expected [['6b', 'a']]" in violations[1]
    assert "expected None" in violations[2]


def test_status_shows_the_readers_and_the_oldest_snapshot(inst):
    reader = inst.session()
    reader.begin()
    reader.get("t", b"k")
    engine = inst.status()["buffer_manager"]
    assert engine["readers"] == 1 and engine["open_snapshots"] == 1
    assert engine["oldest_snapshot_lsn"] == reader.snapshot_lsn
    reader.rollback()
    assert inst.status()["buffer_manager"]["open_snapshots"] == 0


@pytest.mark.parametrize("logging", [True, False], ids=["logged", "no-log"])
def test_every_mode_reads_one_snapshot(tmp_path, logging):
    """The same anomalies, with and without a log (no log: the buffer manager serves
    reads from its version store), with circular logging and after lazy commits."""
    options = {"logging": logging} if not logging else {"circular_logging": True}
    with Instance.open(tmp_path / "db", log_file_size=64 << 10, **options) as inst:
        writer, reader = inst.session(), inst.session()
        writer.create_table("t")
        for i in range(30):
            writer.put("t", b"k%02d" % i, b"old")
        reader.begin()
        before = list(reader.scan("t"))
        assert reader.get("t", b"k00") == b"old"
        writer.begin()
        for i in range(0, 30, 2):
            writer.put("t", b"k%02d" % i, b"new")
        writer.delete("t", b"k01")
        writer.put("t", b"k99", b"inserted")
        writer.commit(lazy=True)
        writer.put("t", b"k03", b"newer")
        inst._control_call(to_buffer_manager.checkpoint())
        assert reader.get("t", b"k02") == b"old" and reader.get("t", b"k01") == b"old"
        assert list(reader.scan("t")) == before
        reader.put("t", b"k00", b"reader")
        with pytest.raises(JetError) as e:
            reader.commit()
        assert e.value.err == -1102
        after = dict(reader.scan("t"))
        assert after[b"k02"] == b"new" and b"k01" not in after and after[b"k03"] == b"newer"


def test_a_snapshot_past_its_bound_fails_with_1069_naming_it(tmp_path):
    with Instance.open(tmp_path / "db", max_snapshot_checkpoints=2) as inst:
        writer, reader = inst.session(), inst.session()
        writer.create_table("t")
        writer.put("t", b"k", b"old")
        reader.begin()
        assert reader.get("t", b"k") == b"old"
        for n in range(4):
            writer.put("t", b"k", b"new %d" % n)
            inst._control_call(to_buffer_manager.checkpoint())
        assert writer.get("t", b"k") == b"new 3"  # the writer's read notices the age
        with pytest.raises(JetError) as e:
            list(reader.scan("t"))
        assert e.value.err == -1069 and "max_snapshot_checkpoints=2" in e.value.message
        reader.rollback()
        assert reader.get("t", b"k") == b"new 3"
    with pytest.raises(JetError) as e:
        Instance.open(tmp_path / "other", max_snapshot_checkpoints=0)
    assert e.value.err == -1003


def test_a_restored_instance_reads_snapshots_too(inst, tmp_path):
    session = inst.session()
    for i in range(20):
        session.put("t", b"k%02d" % i, b"backed up")
    (tmp_path / "bk").mkdir()
    inst.backup(tmp_path / "bk")
    restore(tmp_path / "bk", tmp_path / "restored")
    with Instance.open(tmp_path / "restored") as restored:
        writer, reader = restored.session(), restored.session()
        reader.begin()
        assert reader.get("t", b"k00") == b"backed up"
        writer.put("t", b"k00", b"after the restore")
        writer.delete("t", b"k01")
        assert dict(reader.scan("t")) == {b"k%02d" % i: b"backed up" for i in range(20)}
        reader.rollback()
        assert reader.get("t", b"k00") == b"after the restore"


def test_closing_a_session_lets_its_transactions_snapshot_go(inst):
    session = inst.session()
    session.begin()
    session.get("t", b"k")
    assert inst.status()["buffer_manager"]["open_snapshots"] == 1
    session.close()
    assert inst.status()["buffer_manager"]["open_snapshots"] == 0


def test_a_conflict_with_a_record_still_in_flight_is_refused(inst):
    """The second commit reaches the buffer manager while the first one's record may
    still be on its way to the log: it waits for that record's LSN (parked), and is
    refused - whichever way the race goes, never let through."""
    first, second = inst.session(), inst.session()
    for round_ in range(20):
        second.begin()
        second.get("t", b"k")
        first.begin()
        first.put("t", b"k", b"first %d" % round_)
        first.commit(lazy=True)  # answered before its record is durable
        second.put("t", b"k", b"second")
        with pytest.raises(JetError) as e:
            second.commit()
        assert e.value.err == -1102
    assert first.get("t", b"k") == b"first 19"


def worker_log(*records: dict, cut: str = "") -> str:
    """A worker's log as it writes it; ``cut``: a last line a kill cut short."""
    return "".join(json.dumps(record) + "\n" for record in records) + cut


def test_a_commit_whose_answer_never_came_is_settled_from_the_log():
    put = {"snapshot": 100, "ops": [["put", "6b", "a"], ["put", "6d2d", "w0-0-m"]], "lsn": None}
    log = worker_log({**put, "pending": True}, cut='{"outcome": {"ls')  # killed mid-commit
    read = {"snapshot": 300, "ops": [["get", "6b", "a"]], "lsn": None}

    in_log = isolation_check.read_entries(log)
    assert "unknown" in in_log[0]
    assert isolation_check.resolve(in_log, {"w0-0-m": 200}, log_start=50) == []
    assert in_log[0]["lsn"] == 200
    assert isolation_check.check([*in_log, read]) == []

    # Not in a log that reaches back to its snapshot: it never committed, and the read
    # of its value is what the checker exists to catch.
    absent = isolation_check.read_entries(log)
    isolation_check.resolve(absent, {}, log_start=50)
    assert "unknown" not in absent[0] and absent[0]["lsn"] is None
    assert "expected None" in isolation_check.check([*absent, read])[0]


def test_an_outcome_truncated_from_the_log_leaves_only_later_reads_of_its_keys_unjudged():
    unknown = {"snapshot": 100, "ops": [["put", "6b", "a"]], "lsn": None, "unknown": "-1090"}
    before = {"snapshot": 90, "ops": [["get", "6b", "a"]], "lsn": None}  # cannot see it
    after = {"snapshot": 300, "ops": [["get", "6b", "a"], ["get", "6c", "x"]], "lsn": None}
    isolation_check.resolve([unknown], {}, log_start=150)  # the log starts after it
    counts = Counter()
    violations = isolation_check.check([unknown, before, after], counts)
    assert len(violations) == 2  # "before" read 6b, "after" read 6c: both judged
    assert counts["isolation reads not judged (an unknown outcome)"] == 1


def test_a_commit_answered_with_another_lsn_than_its_record_is_a_violation():
    committed = {"snapshot": 0, "ops": [["put", "6d2d", "w0-0-m"]], "lsn": 200}
    refused = {"snapshot": 0, "ops": [["put", "6d2d", "w0-1-m"]], "lsn": None, "conflict": True}
    logged = {"w0-0-m": 180, "w0-1-m": 220}
    violations = isolation_check.resolve([committed, refused], logged, log_start=0)
    assert "returned 0xc8, its record ends at 0xb4" in violations[0]
    assert "w0-1-m was refused, yet it is logged" in violations[1]

"""A restore killed with kill -9 half-way through its log copy (DESIGN.md section 6).

The restore runs in a child process whose status callback tells the parent when the
first log file is copied and then blocks; the parent kills it there, with most of the
backup's generations not yet copied.  The destination must then refuse to open
(-506, naming the marker), the same restore run again must complete it, and the
restored keys must equal the oracle: every key committed before the backup's last roll.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from oracle import Clients
from test_backup import open_source, restored_keys, run_cli

from jetstore.engine import Instance, JetError, jet, restore, verify_backup
from jetstore.engine.backup import read_manifest
from jetstore.engine.storage import DB_FILE, LOG_DIR

MARKER = "restore-in-progress"  # the name DESIGN.md tells operators to look for

RESTORE_UNTIL_FIRST_LOG = """
import sys, time
from jetstore.engine import restore

def status(progress):
    if progress.phase == "logs":
        print("copied", progress.file, flush=True)
        time.sleep(600)  # the parent kills us here

restore(sys.argv[1], sys.argv[2], status=status)
"""


def put_batches(session, prefix: str, count: int, batch: int = 100) -> set[bytes]:
    """``count`` keys in transactions of ``batch``: a log of many generations, quickly."""
    keys = set()
    for start in range(0, count, batch):
        session.begin()
        for i in range(start, min(start + batch, count)):
            key = b"%s-%05d" % (prefix.encode(), i)
            session.put("t", key, b"v" * 200)
            keys.add(key)
        session.commit()
    return keys


def make_backup(tmp_path, name: str = "bk") -> tuple[str, set[bytes]]:
    """A full backup plus an incremental of many generations taken under client load;
    the keys a restore of it must hold."""
    src, backup_dir = tmp_path / f"src-{name}", tmp_path / name
    inst = open_source(src)
    session = inst.session()
    expected = put_batches(session, "base", 3000)
    clients = Clients(src, src)  # its stop file is this backup's own
    backup_dir.mkdir()
    inst.backup(backup_dir)
    expected |= put_batches(session, "more", 6000)
    roll_lsn = inst.backup(backup_dir, incremental=True)["roll_lsn"]
    acked = clients.finish()
    inst.close()
    before = {key for key, lsn in acked.items() if lsn < roll_lsn}
    assert before != set(acked), "the client load must straddle the roll"
    return str(backup_dir), expected | before


def kill_restore_during_log_copy(backup_dir: str, dest) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", RESTORE_UNTIL_FIRST_LOG, backup_dir, str(dest)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().startswith("copied logs/"), "the restore never copied"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    listed = [n for n in read_manifest(backup_dir)["files"] if n.startswith(LOG_DIR + "/")]
    copied = os.listdir(os.path.join(dest, LOG_DIR))
    assert 0 < len(copied) < len(listed), "the kill must land in the middle of the log copy"


@pytest.fixture
def killed(tmp_path):
    """A backup, and a destination whose restore of it was killed during the log copy."""
    backup_dir, expected = make_backup(tmp_path)
    dest = tmp_path / "out"
    kill_restore_during_log_copy(backup_dir, dest)
    return backup_dir, dest, expected


def test_killed_restore_destination_refuses_to_open_naming_the_marker(killed):
    backup_dir, dest, _expected = killed
    backup_id = verify_backup(backup_dir)["backup_id"]
    with pytest.raises(JetError) as e:
        Instance.open(dest)
    assert e.value.err == -506, e.value
    assert str(dest / MARKER) in e.value.message and backup_id in e.value.message
    with pytest.raises(JetError) as again:  # refused again: opening changed nothing
        Instance.open(dest)
    assert again.value.err == -506


def test_rerun_of_killed_restore_completes_to_the_oracle(killed):
    backup_dir, dest, expected = killed
    assert restored_keys(backup_dir, dest) == expected
    assert not (dest / MARKER).exists()


def test_restore_into_foreign_destination_is_still_refused(tmp_path):
    """A database with no marker is not a restore to resume: refused, and left intact."""
    backup_dir, _expected = make_backup(tmp_path)
    foreign = tmp_path / "foreign"
    with Instance.open(foreign) as inst:
        inst.session().create_table("t")
        inst.session().put("t", b"mine", b"keep")
    with pytest.raises(JetError) as e:
        restore(backup_dir, foreign)
    assert e.value.err == -1023
    assert str(foreign) in e.value.message and MARKER in e.value.message
    assert not (foreign / MARKER).exists()
    with Instance.open(foreign) as inst:
        assert [key for key, _ in inst.session().scan("t")] == [b"mine"]


def test_restore_marker_of_a_different_backup_is_refused(killed, tmp_path):
    backup_dir, dest, expected = killed
    other_dir, _other = make_backup(tmp_path, "other")
    killed_id = verify_backup(backup_dir)["backup_id"]
    assert verify_backup(other_dir)["backup_id"] != killed_id
    database = (dest / DB_FILE).read_bytes()
    with pytest.raises(JetError) as e:
        restore(other_dir, dest)
    assert e.value.err == -1023
    assert str(dest / MARKER) in e.value.message and killed_id in e.value.message
    assert (dest / DB_FILE).read_bytes() == database  # the refusal touched nothing
    with pytest.raises(JetError) as still:
        Instance.open(dest)
    assert still.value.err == -506
    assert restored_keys(backup_dir, dest) == expected  # its own restore still completes it


def test_jet_and_cli_restore_resume_and_refuse_like_restore(killed, tmp_path):
    backup_dir, dest, expected = killed
    other_dir, _other = make_backup(tmp_path, "other")
    assert jet.JetRestoreInstance(None, other_dir, str(dest)) == jet.JET_errInvalidPath
    refused = run_cli("restore", other_dir, str(dest))
    assert refused.returncode == 1 and "JET_errInvalidPath" in refused.stderr
    assert str(dest / MARKER) in refused.stderr
    resumed = run_cli("restore", backup_dir, str(dest), "--json")
    assert resumed.returncode == 0, resumed.stderr
    with Instance.open(dest) as inst:
        assert {key for key, _ in inst.session().scan("t")} == expected
    kill_restore_during_log_copy(backup_dir, tmp_path / "out2")
    assert jet.JetRestoreInstance(None, backup_dir, str(tmp_path / "out2")) == 0
    assert not (tmp_path / "out2" / MARKER).exists()

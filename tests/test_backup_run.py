"""The steps of a backup (engine/backup_run.py) run in one process, over a Storage and a
LogKeeper (tests/inprocess.py): what each backup restores, and what a failure at a
step leaves behind - nothing it wrote, no pin, the previous backup intact."""

from __future__ import annotations

import os

import pytest
from inprocess import RecordingHooks, StoragePeers, run_backup

from jetstore.engine.backup import locate_backup, read_manifest
from jetstore.engine.backup_restore import restore, verify_backup
from jetstore.engine.errors import JetError
from jetstore.engine.storage import Storage

OPTIONS = {"log_file_size": 1 << 20, "auto_checkpoint": False}


def commit(storage: Storage, oracle: dict, first: int, count: int) -> None:
    for i in range(first, first + count):
        txn = storage.begin()
        key, value = b"k%06d" % i, os.urandom(200)
        txn.put("t", key, value)
        txn.commit(lazy=True)  # the backup's checkpoint makes them durable
        oracle[key] = value


def restored_rows(backup: str, into: str) -> dict:
    restore(backup, into)
    with Storage.open(into, create=False) as storage:
        return dict(storage.scan("t"))


@pytest.fixture
def db(tmp_path):
    storage = Storage.open(str(tmp_path / "db"), **OPTIONS)
    storage.create_table("t")
    os.makedirs(tmp_path / "run")
    yield storage
    storage.close()


def test_full_then_incremental_restore_what_each_roll_held(db, tmp_path):
    oracle: dict = {}
    commit(db, oracle, 0, 3000)
    hooks, peers = RecordingHooks(), StoragePeers(db)
    full = run_backup(
        db, str(tmp_path / "bk"), peers=peers, hooks=hooks, run_dir=str(tmp_path / "run")
    )
    commit(db, oracle, 3000, 3000)
    incremental = run_backup(
        db, str(tmp_path / "bk"), incremental=True, peers=peers, run_dir=str(tmp_path / "run")
    )
    commit(db, oracle, 6000, 10)  # after the incremental's roll: in no backup

    assert incremental["gen_low"] == full["gen_high"] + 1
    assert [e.snt for e in hooks.events][0] == "begin" and hooks.events[-1].snt == "complete"
    assert db.pins == [] and not +peers.keeper.pins
    assert verify_backup(str(tmp_path / "bk"))
    assert restored_rows(str(tmp_path / "bk"), str(tmp_path / "r1")) == {
        k: v for k, v in oracle.items() if k < b"k%06d" % 6000
    }
    assert not os.path.exists(tmp_path / "run" / "backup-in-progress.json")


def test_a_copy_stopped_midway_removes_what_it_wrote_and_every_pin(db, tmp_path):
    commit(db, {}, 0, 3000)
    peers = StoragePeers(db)
    abort = JetError("JET_errBackupAbortByServer", "aborted on request")
    dest = tmp_path / "bk"
    with pytest.raises(JetError) as failure:
        run_backup(
            db,
            str(dest),
            peers=peers,
            hooks=RecordingHooks(stop_at="pages", error=abort),
            run_dir=str(tmp_path / "run"),
        )
    assert failure.value is abort  # the cause, not a cleanup's error
    assert os.listdir(dest) == []  # nothing it wrote, and its claim released
    assert db.pins == [] and not +peers.keeper.pins
    assert not os.path.exists(tmp_path / "run" / "backup-in-progress.json")


def test_an_incremental_failing_at_its_record_leaves_the_chain_as_it_was(db, tmp_path):
    commit(db, {}, 0, 2000)
    dest = str(tmp_path / "bk")
    run_backup(db, dest, run_dir=str(tmp_path / "run"))
    before, files_before = read_manifest(dest), sorted(os.listdir(os.path.join(dest, "logs")))
    commit(db, {}, 2000, 2000)
    peers = StoragePeers(db)

    def refuse(incremental, record):
        raise JetError("JET_errDiskFull", "db/jet.edb: no space left to record the backup")

    peers.record_backup = refuse
    with pytest.raises(JetError, match="JET_errDiskFull"):
        run_backup(db, dest, incremental=True, peers=peers, run_dir=str(tmp_path / "run"))
    assert read_manifest(dest) == before
    assert sorted(os.listdir(os.path.join(dest, "logs"))) == files_before
    assert not +peers.keeper.pins


def test_an_atomic_backup_that_fails_keeps_the_previous_one(db, tmp_path):
    oracle: dict = {}
    commit(db, oracle, 0, 1500)
    dest = str(tmp_path / "bk")
    first = run_backup(db, dest, atomic=True, run_dir=str(tmp_path / "run"))
    commit(db, oracle, 1500, 1500)
    abort = JetError("JET_errBackupAbortByServer", "aborted on request")
    with pytest.raises(JetError):
        run_backup(
            db,
            dest,
            atomic=True,
            hooks=RecordingHooks(stop_at="logs", error=abort),
            run_dir=str(tmp_path / "run"),
        )
    directory, manifest = locate_backup(dest)
    assert manifest["backup_id"] == first["backup_id"]
    assert len(restored_rows(dest, str(tmp_path / "r"))) == 1500
    assert directory == os.path.join(dest, "new")

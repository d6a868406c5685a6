"""Online backup against an oracle of acknowledged commits.

Client processes commit continuously (explicit transactions, so each
acknowledgement carries the LSN after its commit record) while backups run.
A backup restores to exactly the commits whose LSN lies before its roll: the
first LSN of the generation the roll started.  Plus: the truncation rule
against a model of the generations, the event log, verification of damaged
backups, the ESE compat layer and the command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from oracle import Clients

from jetstore.engine import Instance, JetError, jet, restore, verify_backup
from jetstore.engine.log_format import lsn_gen
from jetstore.engine.storage import LOG_DIR
from jetstore.protocol.schema import to_backup

OPTIONS = {"log_file_size": 64 << 10}


def restored_keys(backup_dir, out, **kwargs) -> set[bytes]:
    restore(backup_dir, out, **kwargs)
    with Instance.open(out) as inst:
        return {key for key, _ in inst.session().scan("t")}


def open_source(path) -> Instance:
    inst = Instance.open(path, **OPTIONS)
    inst.session().create_table("t")
    return inst


def test_full_backup_under_load_restores_exactly_the_commits_before_the_roll(tmp_path):
    inst = open_source(tmp_path / "src")
    clients = Clients(tmp_path / "src", tmp_path)
    time.sleep(0.3)  # let the log grow past a generation or two; not needed for correctness
    (tmp_path / "bk").mkdir()
    result = inst.backup(tmp_path / "bk")
    time.sleep(0.2)  # commits after the roll exist, so "nothing after it" is tested
    acked = clients.finish()
    inst.close()
    before = {k for k, lsn in acked.items() if lsn < result["roll_lsn"]}
    after = set(acked) - before
    assert before and after, "the load must straddle the roll"
    assert restored_keys(tmp_path / "bk", tmp_path / "out") == before


def test_full_then_incrementals_restore_to_the_last_roll(tmp_path):
    inst = open_source(tmp_path / "src")
    (tmp_path / "bk").mkdir()
    clients = Clients(tmp_path / "src", tmp_path)
    rolls = [inst.backup(tmp_path / "bk")["roll_lsn"]]
    for _ in range(3):
        time.sleep(0.15)
        rolls.append(inst.backup(tmp_path / "bk", incremental=True)["roll_lsn"])
    time.sleep(0.1)
    acked = clients.finish()
    inst.close()
    assert rolls == sorted(rolls)
    expected = {k for k, lsn in acked.items() if lsn < rolls[-1]}
    assert expected != set(acked)
    assert restored_keys(tmp_path / "bk", tmp_path / "out") == expected
    chain = verify_backup(tmp_path / "bk")["chain"]
    assert [entry["type"] for entry in chain] == [
        "full",
        "incremental",
        "incremental",
        "incremental",
    ]


def test_restore_rolls_forward_through_the_live_log(tmp_path):
    inst = open_source(tmp_path / "src")
    (tmp_path / "bk").mkdir()
    clients = Clients(tmp_path / "src", tmp_path)
    time.sleep(0.2)
    inst.backup(tmp_path / "bk")
    time.sleep(0.3)
    acked = clients.finish()
    inst.close()
    result = restore(tmp_path / "bk", tmp_path / "out", log_dir=tmp_path / "src" / LOG_DIR)
    assert result["rolled_forward"], "the live log continues the backup"
    with Instance.open(tmp_path / "out") as restored:
        keys = {key for key, _ in restored.session().scan("t")}
    assert keys == set(acked)


def test_truncation_follows_the_rule_and_keeps_what_is_needed(tmp_path):
    """After each backup, generations on disk == {g >= min(checkpoint generation, copyMac)}
    (DESIGN 6.8); recovery's generations and the next incremental's first one stay."""
    inst = open_source(tmp_path / "src")
    session = inst.session()
    (tmp_path / "bk").mkdir()
    logs = tmp_path / "src" / LOG_DIR

    def on_disk() -> list[int]:
        return sorted(int(name[3:11], 16) for name in os.listdir(logs) if name.endswith(".log"))

    for round_ in range(5):
        for i in range(150):
            session.put("t", b"%d-%04d" % (round_, i), b"x" * 300)
        before = on_disk()
        result = inst.backup(tmp_path / "bk", incremental=round_ > 0)
        copy_mac = result["gen_high"] + 1
        checkpoint_gen = lsn_gen(inst.status()["buffer_manager"]["checkpoint_lsn"])
        keep_from = min(checkpoint_gen, copy_mac)
        assert on_disk() == [g for g in range(before[0], before[-1] + 2) if g >= keep_from]
        assert result["truncated"] == [g for g in before if g < keep_from]
        assert checkpoint_gen in on_disk() and copy_mac in on_disk()
    inst.close()
    assert len(restored_keys(tmp_path / "bk", tmp_path / "out")) == 750


def test_events_record_every_step(tmp_path):
    inst = open_source(tmp_path / "src")
    inst.session().put("t", b"k", b"v")
    (tmp_path / "bk").mkdir()
    inst.backup(tmp_path / "bk")
    with pytest.raises(JetError):
        inst.backup(tmp_path / "missing")
    inst.close()
    lines = (tmp_path / "src" / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    names = [e["event"] for e in events]
    assert names[0] == "backup-begin" and "roll" in names and "truncate" in names
    assert "backup-complete" in names
    files = [e for e in events if e["event"] == "backup-file"]
    assert files[0]["file"] == "jet.edb" and all(e["bytes"] > 0 for e in files)
    complete = next(e for e in events if e["event"] == "backup-complete")
    assert complete["bytes"] > 0 and complete["seconds"] >= 0


def test_verify_backup_finds_a_flipped_bit(tmp_path):
    inst = open_source(tmp_path / "src")
    for i in range(300):
        inst.session().put("t", b"%04d" % i, b"y" * 100)
    (tmp_path / "bk").mkdir()
    inst.backup(tmp_path / "bk")
    inst.close()
    assert verify_backup(tmp_path / "bk")["files"] >= 2
    victim = tmp_path / "bk" / "jet.edb"
    data = bytearray(victim.read_bytes())
    data[3 * 8192 + 100] ^= 0x04
    victim.write_bytes(bytes(data))
    with pytest.raises(JetError) as e:
        verify_backup(tmp_path / "bk")
    assert e.value.err == -526 and "jet.edb" in e.value.message
    with pytest.raises(JetError):
        restore(tmp_path / "bk", tmp_path / "out")
    assert not (tmp_path / "out" / "jet.edb").exists()


def test_jet_compat_backup_and_restore(tmp_path):
    inst = open_source(tmp_path / "src")
    inst.session().put("t", b"k", b"v")
    (tmp_path / "bk").mkdir()
    events = []
    status = lambda sesid, snp, snt, progress: events.append((snp, snt, progress))  # noqa: E731
    assert jet.JetBackup(str(tmp_path / "bk"), jet.JET_bitBackupAtomic, status) == 0
    assert events[0][:2] == (jet.JET_snpBackup, jet.JET_sntBegin)
    assert events[-1][:2] == (jet.JET_snpBackup, jet.JET_sntComplete)
    assert jet.JetBackup(str(tmp_path / "bk"), jet.JET_bitBackupIncremental, None) == 0
    assert jet.JetBackup(str(tmp_path / "nope"), 0, None) == jet.JET_errInvalidPath
    inst.close()
    assert jet.JetRestoreInstance(None, str(tmp_path / "bk"), str(tmp_path / "out"), None) == 0
    with Instance.open(tmp_path / "out") as restored:
        assert restored.session().get("t", b"k") == b"v"


def test_restored_database_needs_a_new_full_backup(tmp_path):
    inst = open_source(tmp_path / "src")
    inst.session().put("t", b"k", b"v")
    (tmp_path / "bk").mkdir()
    inst.backup(tmp_path / "bk")
    inst.close()
    restore(tmp_path / "bk", tmp_path / "out")
    with Instance.open(tmp_path / "out") as restored:
        (tmp_path / "bk2").mkdir()
        with pytest.raises(JetError) as e:
            restored.backup(tmp_path / "bk2", incremental=True)
        assert e.value.err == -560
        restored.backup(tmp_path / "bk2")
        restored.session().put("t", b"k2", b"v2")
        restored.backup(tmp_path / "bk2", incremental=True)


def test_throttle_rate_can_change_while_a_backup_runs(tmp_path):
    inst = open_source(tmp_path / "src")
    session = inst.session()
    for i in range(400):
        session.put("t", b"%04d" % i, b"z" * 1000)
    (tmp_path / "bk").mkdir()
    control = inst._channel("backup")
    control.call(to_backup.set_backup_rate(rate=200_000))  # ~0.5 MB of pages: seconds at this rate
    changed = []

    def status(progress) -> None:
        if progress.phase == "pages" and progress.done and not changed:
            changed.append(control.call(to_backup.set_backup_rate(rate=0)))

    started = time.monotonic()
    inst.backup(tmp_path / "bk", status=status)
    assert changed[0]["rate"] == 0
    assert time.monotonic() - started < 30  # the unthrottled rest did not crawl
    control.close()
    inst.close()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jetstore.tools.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_restore_verify_and_inspect_backup(tmp_path):
    inst = open_source(tmp_path / "src")
    inst.session().put("t", b"k", b"v")
    (tmp_path / "bk").mkdir()
    inst.backup(tmp_path / "bk")
    inst.close()
    verified = run_cli("verify-backup", str(tmp_path / "bk"), "--json")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["files"] >= 2
    inspected = run_cli("inspect", "backup", str(tmp_path / "bk"), "--json")
    assert inspected.returncode == 0 and json.loads(inspected.stdout)["integrity"] == "ok"
    restored = run_cli("restore", str(tmp_path / "bk"), str(tmp_path / "out"), "--json")
    assert restored.returncode == 0, restored.stderr
    again = run_cli("restore", str(tmp_path / "bk"), str(tmp_path / "out"))
    assert again.returncode == 1 and "JET_errInvalidPath" in again.stderr
    (tmp_path / "bk" / "MANIFEST").write_text("{}")
    broken = run_cli("verify-backup", str(tmp_path / "bk"))
    assert broken.returncode == 3 and "JET_errInvalidBackup" in broken.stderr


@pytest.mark.parametrize("atomic", [False, True], ids=["plain", "atomic"])
def test_buffer_manager_dying_mid_backup_leaves_nothing_after_reopen(tmp_path, atomic):
    """The instance dies while a backup runs (here: at its last progress event before the
    MANIFEST): the backup fails, and the worker of the next open undoes what it wrote."""
    inst = open_source(tmp_path / "src")
    session = inst.session()
    for i in range(300):
        session.put("t", b"%04d" % i, b"x" * 200)
    dest = tmp_path / "bk"
    dest.mkdir()
    if atomic:
        inst.backup(dest, atomic=True)
        previous = verify_backup(dest)["backup_id"]
    pid = inst.status()["actors"]["buffer_manager"]["pid"]

    def status(progress) -> None:
        if progress.phase == "logs" and progress.snt == "progress":
            os.kill(pid, 9)

    with pytest.raises(JetError):
        inst.backup(dest, atomic=atomic, status=status)
    inst.close()
    Instance.open(tmp_path / "src", **OPTIONS).close()  # its backup worker undoes the rest
    if atomic:
        assert sorted(os.listdir(dest)) == ["new"]
        assert verify_backup(dest)["backup_id"] == previous
    else:
        assert os.listdir(dest) == []


def test_a_backup_file_streams_to_disk_a_window_at_a_time(tmp_path):
    """Write-behind hands contiguous windows to writeback, each waiting for the one before,
    and leaves the bytes exactly as written."""
    from jetstore.engine.backup import WRITE_BEHIND_BYTES, WriteBehind
    from jetstore.engine.fileio import Env, File

    calls = []

    class RecordingFile(File):
        def write_behind(self, offset, length, previous):
            calls.append((offset, length, previous))
            super().write_behind(offset, length, previous)

    env = Env()
    env.file_class = RecordingFile
    dest = env.open(str(tmp_path / "copy"), create=True)
    streamed = WriteBehind(dest)
    chunk, written = os.urandom(WRITE_BEHIND_BYTES // 3 + 1), 0
    for _ in range(10):
        dest.pwrite(chunk, written)
        written += len(chunk)
        streamed.wrote_up_to(written)
    dest.sync()
    dest.close()
    assert len(calls) == 10 // 3
    start, previous = 0, None
    for offset, length, waited_for in calls:
        assert offset == start and length >= WRITE_BEHIND_BYTES and waited_for == previous
        previous, start = (offset, length), offset + length
    assert (tmp_path / "copy").read_bytes() == chunk * 10

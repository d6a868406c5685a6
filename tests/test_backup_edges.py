"""The edges of backup (DESIGN.md section 6, "The edges"; invariants 7 and 8).

Each test is one way an outside test broke a backup on an earlier main:
- two backups into one destination (one owner at a time; a stale claim is undone);
- an incremental failing on a full destination disk (a real small tmpfs);
- a caller that dies (kill -9) or is stopped (SIGSTOP) while its callback is awaited;
- CPU-bound neighbours on every core (the backup is starved, not dead, and finishes);
- an actor's startup failure racing its exit.

Real instances, processes, signals and files; the oracle is what was committed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import psutil
import pytest
from test_backup_errors import (
    NO_HANG_S,
    WAIT_S,
    backup_worker,
    contents,
    fill,
    open_instance,
    raises_jet,
    restored_contents,
    tree,
    wait_for_no_log_pins,
    wait_until,
)

from jetstore.engine import JetError, verify_backup
from jetstore.engine.claim_format import CLAIM_FILE
from jetstore.engine.storage import DB_FILE, LOG_DIR


def blocking_status(reached: threading.Event, release: threading.Event):
    """A status callback that holds its backup at its first pages event until released."""

    def status(progress) -> None:
        if progress.phase == "pages" and progress.snt == "progress" and not reached.is_set():
            reached.set()
            assert release.wait(WAIT_S * 3)

    return status


def in_thread(call) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - looked at by the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


# -- one owner per destination ------------------------------------------------------


def test_a_second_backup_into_a_claimed_destination_fails_and_touches_nothing(tmp_path):
    dest = tmp_path / "shared"
    dest.mkdir()
    first, second = open_instance(tmp_path / "a"), open_instance(tmp_path / "b")
    try:
        written = fill(first, "a", 200)
        fill(second, "b", 200)
        reached, release = threading.Event(), threading.Event()
        thread, outcome = in_thread(
            lambda: first.backup(dest, status=blocking_status(reached, release))
        )
        assert reached.wait(WAIT_S), "the first backup never reached its pages"
        during = tree(dest)
        assert DB_FILE in during
        for incremental in (False, True):
            with raises_jet(-505, "JET_errBackupInProgress") as info:
                second.backup(dest, incremental=incremental)
            assert str(dest) in info.value.message
        with raises_jet(-505, "JET_errBackupInProgress"):
            second.backup(dest, atomic=True)
        assert tree(dest) == during  # the loser neither wrote nor cleaned up anything
        release.set()
        thread.join(NO_HANG_S)
        assert "error" not in outcome, outcome
        assert CLAIM_FILE not in tree(dest)  # released with the backup
        verify_backup(dest)
    finally:
        release.set()
        first.close()
        second.close()
    assert restored_contents(dest, tmp_path / "out") == written


def test_backups_of_two_instances_racing_for_one_destination_all_verify(tmp_path):
    """Whoever wins, every backup that reports success verifies and restores exactly."""
    first, second = open_instance(tmp_path / "a"), open_instance(tmp_path / "b")
    try:
        oracles = {id(first): fill(first, "a", 300), id(second): fill(second, "b", 300)}
        for round_ in range(4):
            dest = tmp_path / f"dest-{round_}"
            dest.mkdir()
            threads = [
                in_thread(lambda inst=inst, dest=dest: (inst, inst.backup(dest)))
                for inst in (first, second)
            ]
            winners = []
            for thread, outcome in threads:
                thread.join(NO_HANG_S * 3)
                if "error" in outcome:
                    assert outcome["error"].err in (-505, -504), repr(outcome["error"])
                else:
                    winners.append(outcome["result"][0])
            assert len(winners) == 1
            verify_backup(dest)
            restored = restored_contents(dest, tmp_path / f"out-{round_}")
            assert restored == oracles[id(winners[0])]
    finally:
        first.close()
        second.close()


STALE_CLAIMER = """
import os, sys, time
from jetstore.engine import Instance
inst = Instance.open(sys.argv[1], log_file_size=64 << 10)
session = inst.session()
session.create_table("t")
for i in range(300):
    session.put("t", b"dead-%05d" % i, b"x" * 100)
def status(progress):
    if progress.phase == "pages" and progress.snt == "progress":
        open(sys.argv[3], "w").close()
        time.sleep(600)
inst.backup(sys.argv[2], status=status)
"""


def kill_tree(process: subprocess.Popen) -> None:
    """kill -9 a process and every process under it (its instance's actors)."""
    victims = psutil.Process(process.pid).children(recursive=True) + [psutil.Process(process.pid)]
    for victim in victims:
        try:
            victim.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=WAIT_S)
    process.wait(WAIT_S)


def test_a_claim_left_by_a_killed_instance_is_undone_by_the_next_backup(tmp_path):
    dest, ready = tmp_path / "shared", tmp_path / "ready"
    dest.mkdir()
    dead = subprocess.Popen(
        [sys.executable, "-c", STALE_CLAIMER, str(tmp_path / "dead"), str(dest), str(ready)]
    )
    try:
        wait_until(ready.exists, "the doomed backup is copying pages", timeout=60)
    finally:
        kill_tree(dead)
    assert CLAIM_FILE in tree(dest) and DB_FILE in tree(dest)  # what the kill left
    with open_instance(tmp_path / "live") as inst:
        written = fill(inst, "live", 100)
        inst.backup(dest)  # the stale claim is undone, then the destination is empty
    verify_backup(dest)
    # The killed instance reopens: its new worker finds its claim gone and leaves the
    # other instance's backup alone.
    with open_instance(tmp_path / "dead") as inst:
        wait_until(lambda: backup_worker(inst)["info"], "the reopened worker is running")
        assert len(contents(inst)) == 300
    verify_backup(dest)
    assert restored_contents(dest, tmp_path / "out") == written


def test_a_claim_torn_by_a_kill_mid_record_still_names_what_was_written(tmp_path):
    """A backup killed while appending its next state leaves a torn last line: the next
    owner undoes from the line before it, which covers everything done (each state is
    recorded before the work it describes)."""
    from jetstore.engine.claim_format import DestinationClaim, _encode

    dead = DestinationClaim.take(str(tmp_path), "feedface")
    dead.record({"created": ["a"]})
    dead.record({"created": ["a", "b"]})
    torn = _encode("feedface", {"swapped": True, "had_previous": True})
    os.pwrite(dead.fd, torn[: len(torn) // 2], os.fstat(dead.fd).st_size)  # appended, torn
    os.close(dead.fd)  # killed: the kernel drops the lock, the file stays

    claim = DestinationClaim.take(str(tmp_path))
    try:
        assert claim.left["state"] == {"created": ["a", "b"]}
        assert claim.holds("feedface") == {"created": ["a", "b"]}
    finally:
        claim.release()
    assert CLAIM_FILE not in os.listdir(tmp_path)


# -- a full destination -------------------------------------------------------------


def fill_disk(mount, leave: int) -> str:
    """A filler file that leaves about ``leave`` bytes free on ``mount``."""
    filler = os.path.join(mount, "filler")
    free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def test_an_incremental_failing_on_a_full_disk_leaves_nothing_and_reports_the_copy(
    tmp_path, small_disk
):
    dest = small_disk / "bk"
    dest.mkdir()
    with open_instance(tmp_path / "db") as inst:
        written = fill(inst, "a", 100)
        inst.backup(dest)
        before, manifest = tree(dest), (dest / "MANIFEST").read_bytes()
        filler = fill_disk(small_disk, 96 << 10)  # less than the generations to copy
        written |= fill(inst, "b", 1500)  # several 64 KiB generations
        with raises_jet(-1808, "JET_errDiskFull") as info:
            inst.backup(dest, incremental=True)
        assert LOG_DIR in info.value.message and "MANIFEST" not in info.value.message
        assert tree(dest) == before  # no copied generation is left behind
        assert (dest / "MANIFEST").read_bytes() == manifest
        wait_for_no_log_pins(inst)
        os.unlink(filler)
        inst.backup(dest, incremental=True)  # nothing left in its way
    verify_backup(dest)
    assert restored_contents(dest, tmp_path / "out") == written


# -- a caller that dies or stops ----------------------------------------------------

DOOMED_CALLER = """
import sys, time
from jetstore.engine import connect
client = connect(sys.argv[1])
def status(progress):
    if progress.phase == "pages" and progress.snt == "progress":
        open(sys.argv[3], "w").close()
        time.sleep(600)
client.backup(sys.argv[2], status=status)
"""


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_a_caller_that_dies_or_stops_during_its_callback_ends_its_backup(how, tmp_path):
    dest, ready = tmp_path / "bk", tmp_path / "ready"
    dest.mkdir()
    inst = open_instance(tmp_path / "db")
    try:
        written = fill(inst, "a", 300)
        caller = subprocess.Popen(
            [sys.executable, "-c", DOOMED_CALLER, str(tmp_path / "db"), str(dest), str(ready)]
        )
        try:
            wait_until(ready.exists, "the caller's backup is copying pages", timeout=60)
            assert backup_worker(inst)["info"]
            os.kill(caller.pid, signal.SIGKILL if how == "kill" else signal.SIGSTOP)
            # The backup fails and cleans up within seconds, not the callback timeout.
            wait_until(lambda: tree(dest) == [], "the caller's backup is undone", timeout=10)
            wait_for_no_log_pins(inst)
            # Its reply has nobody to go to: the worker's status says when it has ended.
            ended = lambda: not backup_worker(inst)["info"]["backup_in_progress"]  # noqa: E731
            wait_until(ended, "the worker reports the backup ended", timeout=10)
        finally:
            caller.kill()
            caller.wait(WAIT_S)
        other = tmp_path / "other"
        other.mkdir()
        inst.backup(other)  # the next backup starts at once
        verify_backup(other)
        events = (tmp_path / "db" / "events.jsonl").read_text()
        assert f"(pid {caller.pid})" in events
    finally:
        inst.close()
    assert restored_contents(other, tmp_path / "out") == written


# -- a busy machine -----------------------------------------------------------------

SPIN = "while True: pass"


@pytest.mark.parametrize("per_core", [1, 3])
def test_a_backup_beside_cpu_bound_neighbours_succeeds(per_core, tmp_path):
    inst = open_instance(tmp_path / "db")
    neighbours = []
    try:
        written = fill(inst, "a", 2000)
        neighbours = [
            subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(per_core * os.cpu_count())
        ]
        dest = tmp_path / "bk"
        dest.mkdir()
        inst.backup(dest)
        verify_backup(dest)
        assert all(a["alive"] for a in inst.status()["actors"].values())
    finally:
        for spinner in neighbours:
            spinner.kill()
            spinner.wait(WAIT_S)
        inst.close()
    assert restored_contents(tmp_path / "bk", tmp_path / "out") == written


# -- startup -----------------------------------------------------------------------


def test_an_actors_startup_failure_is_reported_however_its_exit_races_it(tmp_path):
    """A directory holding a random jet.edb: always its error (-1028, not a jetstore
    database), never 'exited'."""
    db = tmp_path / "db"
    db.mkdir()
    (db / DB_FILE).write_bytes(os.urandom(64 << 10))
    for _ in range(20):
        with pytest.raises(JetError) as info:
            open_instance(db, create=False)
        assert info.value.err == -1028, repr(info.value)

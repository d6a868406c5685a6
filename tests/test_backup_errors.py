"""Backup errors: every error of the JetBackup reference page, and what a failed backup leaves.

A. Each error ESE documents for JetBackup (ese-backup-spec section 7, DESIGN.md
   section 6.1), reached through ``Instance.backup`` - checking the ESE number and
   the name - and, where it is natural, through the compat layer ``jet.JetBackup``,
   which returns the number.
B. DESIGN 6, last paragraph, for each way a backup fails midway (corruption found, a
   full destination disk, the worker killed, the status callback raising, an abort
   over the API): nothing of the failed backup is left, the previous atomic backup
   in the same destination is intact and restorable, no log generation was deleted,
   the backup history in the meta is unchanged, the pins are released and the next
   backup succeeds.
C. An atomic backup whose worker dies at any named step leaves a complete backup in
   DEST/new or DEST/old, restorable to the old or the new state.

Real actor processes and real files throughout.  Failures inside actors come from
fault plans (``JETSTORE_FAULTS``, actors/fault_plan.py) or from damaging files on disk;
nothing of the engine is mocked.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

import psutil
import pytest

import jetstore.actors.supervisor
from jetstore.actors.fault_plan import FAULTS_VARIABLE
from jetstore.engine import Instance, JetError, jet, restore, verify_backup
from jetstore.engine.backup import ATOMIC_NEW, ATOMIC_OLD, ATOMIC_TEMP, locate_backup
from jetstore.engine.backup_run import BACKUP_STEPS
from jetstore.engine.database_file import read_meta
from jetstore.engine.fileio import DEFAULT_ENV
from jetstore.engine.inspectors import dump_header
from jetstore.engine.log_format import RECORDS_START
from jetstore.engine.meta_format import FIRST_DATA_PAGE
from jetstore.engine.page_format import PAGE_BRANCH, PAGE_LEAF
from jetstore.engine.pager import Pager
from jetstore.engine.storage import DB_FILE, LOG_DIR
from jetstore.protocol.schema import to_backup, to_buffer_manager

LOG_FILE_SIZE = 64 << 10
NO_HANG_S = 10.0  # a failing backup reports within this long (it takes milliseconds)
WAIT_S = 10.0

# -- helpers ------------------------------------------------------------------------


@contextmanager
def raises_jet(err: int, name: str):
    """``pytest.raises(JetError)`` that checks the ESE number and the name."""
    with pytest.raises(JetError) as info:
        yield info
    assert (info.value.err, info.value.name) == (err, name), repr(info.value)


def open_instance(path, **options) -> Instance:
    return Instance.open(path, log_file_size=LOG_FILE_SIZE, **options)


def fill(inst, prefix: str, count: int = 100, table: str = "t") -> dict[bytes, bytes]:
    """``count`` one-operation commits; returns what they wrote."""
    session = inst.session()
    if table not in session.list_tables():
        session.create_table(table)
    written = {}
    for i in range(count):
        key, value = f"{prefix}-{i:05d}".encode(), f"{prefix} value {i} ".encode() * 4
        session.put(table, key, value)
        written[key] = value
    session.close()
    return written


def contents(inst, table: str = "t") -> dict[bytes, bytes]:
    session = inst.session()
    try:
        return dict(session.scan(table))
    finally:
        session.close()


def tree(path) -> list[str]:
    """Every file and directory under ``path``, relative, sorted ([] for a missing path)."""
    found = []
    for root, dirs, files in os.walk(path):
        found.extend(os.path.relpath(os.path.join(root, n), path) for n in dirs + files)
    return sorted(found)


def generations(db) -> list[str]:
    return sorted(os.listdir(os.path.join(db, LOG_DIR)))


def restored_contents(backup_dir, out) -> dict[bytes, bytes]:
    """Restore ``backup_dir`` into ``out``, open the result and return its table t."""
    restore(backup_dir, out)
    with open_instance(out, create=False) as inst:
        return contents(inst)


def wait_until(condition, what: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def backup_worker(inst) -> dict:
    return inst.status()["actors"]["backup_worker"]


def backup_within(inst, path, timeout: float = NO_HANG_S, **options) -> dict:
    """``inst.backup`` that must answer within ``timeout``.  A hung backup fails the test;
    the backup worker is then killed so that the call and the instance's close end."""
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = inst.backup(path, **options)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pid = backup_worker(inst)["pid"]
        os.kill(pid, signal.SIGKILL)
        thread.join(NO_HANG_S)
        pytest.fail(f"the backup did not answer in {timeout} s (backup worker {pid} killed)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def wait_for_new_backup_worker(inst, old_pid: int) -> dict:
    """The supervisor's replacement of a dead worker, running: its first heartbeat
    arrived, and a worker sends heartbeats only after ``undo_dead_worker``."""

    def replaced():
        worker = backup_worker(inst)
        return worker if worker["pid"] != old_pid and worker["alive"] and worker["info"] else None

    return wait_until(replaced, f"the backup worker (pid {old_pid}) was replaced")


def wait_for_no_log_pins(inst) -> None:
    """The log writer's figures come with its heartbeats (every 100 ms)."""
    wait_until(lambda: inst.status()["log_writer"]["pins"] == [], "no backup pin is held")


def flip_byte(path, offset: int) -> None:
    """XOR one byte of a file with 0x01, in place, synced (twice restores it)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        original = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([original ^ 0x01]))
        f.flush()
        os.fsync(f.fileno())


def used_tree_pages(db) -> tuple[int, list[int]]:
    """(page size, the B+tree pages - leaves and branches - the durable checkpoint uses),
    read from the live database file without changing it."""
    file = DEFAULT_ENV.open_read(os.path.join(db, DB_FILE))
    try:
        meta = read_meta(file)
        pager = Pager(
            file, meta.page_size, 1 << 20, page_count=meta.page_count, sealed_seq=meta.seq
        )
        _holders, free = pager.read_freelist(meta.freelist_root)
        free = set(free)
        pages = []
        for pgno in range(FIRST_DATA_PAGE, meta.page_count):
            if pgno not in free:
                page_type = file.pread(meta.page_size, pgno * meta.page_size)[16]
                if page_type in (PAGE_LEAF, PAGE_BRANCH):
                    pages.append(pgno)
        return meta.page_size, pages
    finally:
        file.close()


def corrupt_a_used_page(inst, db) -> tuple[int, Callable[[], None]]:
    """Checkpoint (no write follows), flip a bit in the middle of a tree page that
    checkpoint uses; returns the page number and a function that repairs it."""
    inst._control_call(to_buffer_manager.checkpoint())
    page_size, pages = used_tree_pages(db)
    pgno = pages[-1]
    offset = pgno * page_size + page_size // 2
    flip_byte(db / DB_FILE, offset)
    return pgno, lambda: flip_byte(db / DB_FILE, offset)


# -- fault plans for the actors ----------------------------------------------------------


@pytest.fixture
def faults(monkeypatch):
    """``faults(plan)``: the actors of every instance opened afterwards follow ``plan``
    (JETSTORE_FAULTS, actors/fault_plan.py); ``faults(None)``: no plan."""

    def apply(plan: dict | None) -> None:
        if plan is None:
            monkeypatch.delenv(FAULTS_VARIABLE, raising=False)
        else:
            monkeypatch.setenv(FAULTS_VARIABLE, json.dumps(plan))

    return apply


@pytest.fixture
def opened():
    """``opened(path, **options)`` opens an instance that is closed after the test."""
    instances = []

    def open_(path, **options):
        instances.append(open_instance(path, **options))
        return instances[-1]

    yield open_
    for inst in instances:
        inst.close()


# =====================================================================================
# A. Every error of the JetBackup reference page
# =====================================================================================


class TestOnASharedInstance:
    """The errors that leave an instance as it was share one (closed after the class)."""

    @pytest.fixture(scope="class")
    @classmethod
    def shared(cls, tmp_path_factory):
        inst = open_instance(tmp_path_factory.mktemp("shared") / "db")
        fill(inst, "shared", 150)
        yield inst
        inst.close()

    def test_backup_in_progress(self, shared, tmp_path):
        """A second backup while one runs: -505.  The first waits in its status callback
        (pfnStatus is synchronous), so the overlap is certain; it completes afterwards."""
        first, second = tmp_path / "first", tmp_path / "second"
        first.mkdir()
        second.mkdir()
        began, release = threading.Event(), threading.Event()
        outcome: dict = {}

        def status(progress):
            if progress.snt == "begin" and not began.is_set():
                began.set()
                assert release.wait(WAIT_S * 3)

        def run_first():
            try:
                outcome["result"] = shared.backup(first, status=status)
            except BaseException as exc:  # noqa: BLE001 - checked below
                outcome["error"] = exc

        thread = threading.Thread(target=run_first)
        thread.start()
        try:
            assert began.wait(WAIT_S), "the first backup never reported begin"
            with raises_jet(-505, "JET_errBackupInProgress"):
                shared.backup(second)
            with raises_jet(-505, "JET_errBackupInProgress"):
                shared.backup(second, atomic=True)
            with raises_jet(-505, "JET_errBackupInProgress"):
                shared.backup(None)
            assert jet.JetBackupInstance(shared, str(second), 0, None) == -505
        finally:
            release.set()
            thread.join(NO_HANG_S)
        assert not thread.is_alive()
        assert "error" not in outcome, outcome.get("error")
        assert verify_backup(first)["backup_id"] == outcome["result"]["backup_id"]
        assert tree(second) == []

    def test_invalid_parameter(self, shared, tmp_path):
        dest = tmp_path / "dest"
        dest.mkdir()
        for status in ("not callable", 42):
            with raises_jet(-1003, "JET_errInvalidParameter"):
                shared.backup(dest, status=status)
        assert tree(dest) == []

    def test_invalid_path(self, shared, tmp_path):
        missing = tmp_path / "missing" / "dest"
        with raises_jet(-1023, "JET_errInvalidPath"):
            shared.backup(missing)
        with raises_jet(-1023, "JET_errInvalidPath"):
            shared.backup(missing, atomic=True)
        a_file = tmp_path / "a-file"
        a_file.write_bytes(b"not a directory")
        with raises_jet(-1023, "JET_errInvalidPath"):
            shared.backup(a_file)
        assert jet.JetBackupInstance(shared, str(missing), 0, None) == -1023
        assert not (tmp_path / "missing").exists()
        assert a_file.read_bytes() == b"not a directory"

    def test_backup_directory_not_empty(self, shared, tmp_path):
        dest = tmp_path / "dest"
        dest.mkdir()
        (dest / "stranger").write_bytes(b"someone else's")
        with raises_jet(-504, "JET_errBackupDirectoryNotEmpty"):
            shared.backup(dest)
        assert jet.JetBackupInstance(shared, str(dest), 0, None) == -504
        assert tree(dest) == ["stranger"]
        # An atomic backup builds in DEST/temp and publishes DEST/new: allowed there.
        shared.backup(dest, atomic=True)
        verify_backup(dest)
        assert "stranger" in tree(dest) and ATOMIC_TEMP not in tree(dest)

    def test_invalid_backup_sequence(self, shared, tmp_path, opened):
        full, empty, foreign = tmp_path / "full", tmp_path / "empty", tmp_path / "foreign"
        for directory in (full, empty, foreign):
            directory.mkdir()
        other = opened(tmp_path / "other")
        fill(other, "other", 20)
        other.backup(foreign)
        foreign_files = tree(foreign)
        foreign_manifest = (foreign / "MANIFEST").read_bytes()
        shared.backup(full)
        fill(shared, "more", 20)
        with raises_jet(-521, "JET_errInvalidBackupSequence"):
            shared.backup(empty, incremental=True)
        with raises_jet(-521, "JET_errInvalidBackupSequence"):
            shared.backup(foreign, incremental=True)
        assert jet.JetBackupInstance(shared, str(empty), jet.JET_bitBackupIncremental, None) == -521
        assert tree(empty) == []
        assert tree(foreign) == foreign_files
        assert (foreign / "MANIFEST").read_bytes() == foreign_manifest
        shared.backup(full, incremental=True)  # the right chain takes it
        verify_backup(full)

    def test_callback_failed(self, shared, tmp_path):
        dest = tmp_path / "dest"
        dest.mkdir()
        boom = ValueError("the caller's callback failed")

        def status(progress):
            if progress.snt == "progress" and progress.phase == "pages" and progress.done:
                raise boom

        with raises_jet(-2101, "JET_errCallbackFailed") as info:
            shared.backup(dest, status=status)
        assert info.value.__cause__ is boom
        assert tree(dest) == []

        def pfn(sesid, snp, snt, progress):
            raise RuntimeError("pfnStatus failed")

        assert jet.JetBackupInstance(shared, str(dest), 0, pfn) == -2101
        assert tree(dest) == []
        shared.backup(dest)  # nothing was left behind, not even a pin
        verify_backup(dest)

    def test_session_sharing_violation_stand_in(self, shared):
        """JET_errSessionSharingViolation (-1910) is on JetBackup's reference page because
        ESE checks the session of every API call.  A jetstore backup is an instance-level
        call without a session (JetBackup takes none), so no backup can share one: the
        error has no natural trigger on the backup path.  What stands in is the rule
        itself - one session used by two threads at once - through the session's own
        guard, held by thread A while thread B calls the session."""
        session = shared.session()
        inside, release = threading.Event(), threading.Event()

        def hold():
            with session._entered:
                inside.set()
                release.wait(WAIT_S * 3)

        thread = threading.Thread(target=hold)
        thread.start()
        try:
            assert inside.wait(WAIT_S)
            with raises_jet(-1910, "JET_errSessionSharingViolation"):
                session.get("t", b"shared-00001")
        finally:
            release.set()
            thread.join(NO_HANG_S)
        assert session.get("t", b"shared-00001") is not None  # A left: B may use it now
        session.close()


def test_backup_not_allowed_yet_while_the_worker_restarts(tmp_path, monkeypatch, opened):
    # The supervisor runs in this process: a long backoff holds the window open.
    monkeypatch.setattr(jetstore.actors.supervisor, "RESTART_BACKOFF", (5.0,))
    inst = opened(tmp_path / "db")
    fill(inst, "a", 20)
    dest = tmp_path / "dest"
    dest.mkdir()
    pid = backup_worker(inst)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not psutil.pid_exists(pid), f"pid {pid} is gone")
    wait_until(lambda: not backup_worker(inst)["alive"], "the supervisor saw the death")
    with raises_jet(-523, "JET_errBackupNotAllowedYet"):
        inst.backup(dest)
    assert jet.JetBackup(str(dest), 0, None) == -523
    assert backup_worker(inst)["pid"] == pid, "restarted before the backoff: no window"
    assert tree(dest) == []
    inst.session().put("t", b"after", b"commits never notice")


def test_client_request_to_stop_service(tmp_path, opened):
    inst = opened(tmp_path / "db")
    fill(inst, "a", 10)
    dest = tmp_path / "dest"
    dest.mkdir()
    inst.stop_service()
    with raises_jet(-1329, "JET_errClientRequestToStopJetService"):
        inst.backup(dest)
    with raises_jet(-1329, "JET_errClientRequestToStopJetService"):
        inst.backup(None)
    assert jet.JetBackup(str(dest), 0, None) == -1329
    assert tree(dest) == []


def test_instance_unavailable_after_the_log_writer_died(tmp_path, opened):
    inst = opened(tmp_path / "db")
    fill(inst, "a", 10)
    dest = tmp_path / "dest"
    dest.mkdir()
    os.kill(inst.status()["actors"]["log_writer"]["pid"], signal.SIGKILL)

    def calls_fail():
        try:
            inst.session().get("t", b"a-00001")
        except JetError as exc:
            return exc.err == -1090
        return False

    wait_until(calls_fail, "calls fail with -1090")
    with raises_jet(-1090, "JET_errInstanceUnavailable"):
        inst.backup(dest)
    assert jet.JetBackup(str(dest), 0, None) == -1090
    assert tree(dest) == []


def test_invalid_backup_incremental_under_circular_logging(tmp_path, opened):
    inst = opened(tmp_path / "db", circular_logging=True)
    fill(inst, "a", 50)
    dest = tmp_path / "dest"
    dest.mkdir()
    inst.backup(dest)  # a full backup exists: the answer is not -560
    before = tree(dest)
    fill(inst, "b", 20)
    with raises_jet(-526, "JET_errInvalidBackup"):
        inst.backup(dest, incremental=True)
    assert jet.JetBackup(str(dest), jet.JET_bitBackupIncremental, None) == -526
    assert tree(dest) == before


def test_invalid_grbit(tmp_path, opened):
    inst = opened(tmp_path / "db")
    fill(inst, "a", 10)
    dest = tmp_path / "dest"
    dest.mkdir()
    for options in ({"incremental": "yes"}, {"atomic": 1}, {"incremental": True, "atomic": True}):
        with raises_jet(-900, "JET_errInvalidGrbit"):
            inst.backup(dest, **options)
    with raises_jet(-900, "JET_errInvalidGrbit"):
        inst.backup(None, atomic=True)  # truncation alone takes no options
    assert jet.JetBackup(str(dest), 0x80, None) == -900
    both = jet.JET_bitBackupIncremental | jet.JET_bitBackupAtomic
    assert jet.JetBackup(str(dest), both, None) == -900
    assert jet.JetBackup(str(dest), "0", None) == -900
    assert tree(dest) == []


def test_invalid_path_created_with_create_path_if_not_exist(tmp_path, opened):
    inst = opened(tmp_path / "db", create_path_if_not_exist=True)
    written = fill(inst, "a", 30)
    dest = tmp_path / "missing" / "dest"
    inst.backup(dest)
    verify_backup(dest)
    assert restored_contents(dest, tmp_path / "out") == written


def test_logging_disabled(tmp_path, opened):
    inst = opened(tmp_path / "db", logging=False)
    fill(inst, "a", 10)
    dest = tmp_path / "dest"
    dest.mkdir()
    with raises_jet(-516, "JET_errLoggingDisabled"):
        backup_within(inst, dest, timeout=3.0)
    with raises_jet(-516, "JET_errLoggingDisabled"):
        backup_within(inst, None, timeout=3.0)
    assert jet.JetBackup(str(dest), 0, None) == -516
    assert tree(dest) == []


def test_log_read_verify_failure(tmp_path, opened):
    """A flipped bit in an acknowledged record of the current generation: the backup rolls,
    verifies the generation and fails with -612 naming the file and the offset."""
    db = tmp_path / "db"
    inst = opened(db)
    fill(inst, "a", 30)
    current = generations(db)[-1]
    path = db / LOG_DIR / current
    data = path.read_bytes()
    # In an early record's payload: past the first record's 17-byte header, a non-zero byte.
    flip_byte(path, next(i for i in range(RECORDS_START + 40, len(data)) if data[i]))
    dest = tmp_path / "dest"
    dest.mkdir()
    with raises_jet(-612, "JET_errLogReadVerifyFailure") as info:
        inst.backup(dest)
    assert current in info.value.message and "offset" in info.value.message, info.value.message
    assert tree(dest) == []
    wait_for_no_log_pins(inst)
    # The failed backup rolled the log; a new one starts at a later checkpoint, whose
    # generations are sound.
    inst.backup(dest)
    verify_backup(dest)


def test_log_write_fail(tmp_path, faults, opened):
    faults({"log_writer": {"fail_write": [12, "EIO"]}})
    inst = opened(tmp_path / "db")
    session = inst.session()
    session.create_table("t")
    failure = None
    for i in range(200):
        try:
            session.put("t", b"k%05d" % i, b"v" * 40)
        except JetError as exc:
            failure = exc
            break
    assert failure is not None, "the planned log write failure never happened"
    assert (failure.err, failure.name) == (-510, "JET_errLogWriteFail"), failure
    dest = tmp_path / "dest"
    dest.mkdir()
    with raises_jet(-510, "JET_errLogWriteFail"):
        inst.backup(dest)
    assert jet.JetBackup(str(dest), 0, None) == -510
    assert tree(dest) == []


def test_not_initialized(tmp_path):
    inst = open_instance(tmp_path / "db")
    fill(inst, "a", 10)
    inst.close()
    dest = tmp_path / "dest"
    dest.mkdir()
    with raises_jet(-1029, "JET_errNotInitialized"):
        inst.backup(dest)
    assert jet.JetBackup(str(dest), 0, None) == -1029  # the active instance is closed
    # No active instance at all is hard to arrange in-process (the module keeps the most
    # recently opened one); JetBackupInstance takes the instance explicitly.
    assert jet.JetBackupInstance(None, str(dest), 0, None) == -1029
    assert tree(dest) == []


def test_read_verify_failure(tmp_path, opened):
    db = tmp_path / "db"
    inst = opened(db)
    fill(inst, "a", 300)
    pgno, repair = corrupt_a_used_page(inst, db)
    dest = tmp_path / "dest"
    dest.mkdir()
    with raises_jet(-1018, "JET_errReadVerifyFailure") as info:
        inst.backup(dest)
    assert f"page {pgno} " in info.value.message, info.value.message
    assert tree(dest) == []
    assert jet.JetBackup(str(dest), 0, None) == -1018
    assert tree(dest) == []
    repair()
    inst.backup(dest)
    verify_backup(dest)


def test_read_pgno_verify_failure(tmp_path, opened):
    db = tmp_path / "db"
    inst = opened(db)
    fill(inst, "a", 300)
    inst._control_call(to_buffer_manager.checkpoint())  # the pages are on disk; no write follows
    page_size, pages = used_tree_pages(db)
    assert len(pages) >= 2, pages
    with open(db / DB_FILE, "r+b") as f:  # a used page's bytes over another used page
        f.seek(pages[0] * page_size)
        image = f.read(page_size)
        f.seek(pages[-1] * page_size)
        f.write(image)
    dest = tmp_path / "dest"
    dest.mkdir()
    with raises_jet(-1118, "JET_errReadPgnoVerifyFailure") as info:
        inst.backup(dest)
    assert f"page {pages[-1]} " in info.value.message, info.value.message
    assert tree(dest) == []
    assert jet.JetBackup(str(dest), 0, None) == -1118
    assert tree(dest) == []


def test_restore_in_progress(tmp_path, opened):
    """JetBackup while a JetRestore of this process waits in its pfnStatus: -506."""
    inst = opened(tmp_path / "db")
    written = fill(inst, "a", 30)
    source = tmp_path / "source"
    source.mkdir()
    inst.backup(source)
    waiting, release = threading.Event(), threading.Event()

    def pfn(sesid, snp, snt, progress):
        if not waiting.is_set():
            waiting.set()
            assert release.wait(WAIT_S * 3)

    returned: list[int] = []
    restored = tmp_path / "restored"
    thread = threading.Thread(
        target=lambda: returned.append(
            jet.JetRestoreInstance(None, str(source), str(restored), pfn)
        )
    )
    thread.start()
    dest = tmp_path / "dest"
    dest.mkdir()
    try:
        assert waiting.wait(WAIT_S), "the restore never called its pfnStatus"
        assert jet.JetBackup(str(dest), 0, None) == -506
        assert jet.JetBackupInstance(inst, str(dest), jet.JET_bitBackupAtomic, None) == -506
    finally:
        release.set()
        thread.join(NO_HANG_S)
    assert returned == [0]
    assert tree(dest) == []
    assert jet.JetBackup(str(dest), 0, None) == 0  # the restore is over
    with open_instance(restored, create=False) as again:
        assert contents(again) == written


def _close_during_a_backup(tmp_path, monkeypatch) -> dict:
    """A backup whose status callback, at "begin", starts inst.close() in another thread,
    waits until the instance is closing, tries a second backup, waits until close()
    returned (bounded), then returns.  What everyone saw."""
    # Bounds what a backup that close() cannot stop would cost (the worker is killed
    # after STOP_TIMEOUT); test_close_during_a_backup_is_prompt checks it is not needed.
    monkeypatch.setattr(jetstore.actors.supervisor, "STOP_TIMEOUT", 3.0)
    inst = open_instance(tmp_path / "db")
    fill(inst, "a", 30)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    seen: dict = {}

    def close():
        started = time.monotonic()
        inst.close()
        seen["close_s"] = time.monotonic() - started

    closer = threading.Thread(target=close)

    def status(progress):
        if progress.snt != "begin" or "second" in seen:
            return
        closer.start()
        wait_until(lambda: inst.closing, "close() started")
        try:
            inst.backup(second)
            seen["second"] = None
        except JetError as exc:
            seen["second"] = exc
        seen["jet"] = jet.JetBackupInstance(inst, str(second), 0, None)
        closer.join(20)

    try:
        seen["first"] = inst.backup(first, status=status)
    except JetError as exc:
        seen["first"] = exc
    closer.join(20)
    assert not closer.is_alive(), "close() hung"
    seen["first_dir"], seen["second_dir"] = tree(first), tree(second)
    return seen


def test_term_in_progress(tmp_path, monkeypatch):
    """inst.backup while inst.close() runs: -1000.  The first backup, held in its callback
    until close() returned, fails (the instance stopped under it) and leaves no file."""
    seen = _close_during_a_backup(tmp_path, monkeypatch)
    error = seen["second"]
    assert error is not None and (error.err, error.name) == (-1000, "JET_errTermInProgress")
    assert seen["jet"] == -1000
    assert seen["second_dir"] == []
    assert isinstance(seen["first"], JetError), seen["first"]
    assert seen["first_dir"] == [], f"{seen['first']} left files"


def test_close_during_a_backup_is_prompt(tmp_path, monkeypatch):
    """close() aborts a running backup rather than waiting for it to time out."""
    seen = _close_during_a_backup(tmp_path, monkeypatch)
    assert seen["close_s"] < 1.5, f"close() took {seen['close_s']:.1f} s"


def test_missing_full_backup(tmp_path, opened):
    inst = opened(tmp_path / "db")
    fill(inst, "a", 30)
    dest = tmp_path / "dest"
    dest.mkdir()
    with raises_jet(-560, "JET_errMissingFullBackup"):
        inst.backup(dest, incremental=True)
    assert jet.JetBackup(str(dest), jet.JET_bitBackupIncremental, None) == -560
    assert tree(dest) == []
    written = fill(inst, "b", 30) | fill(inst, "a", 30)
    inst.backup(dest)
    # A restored database has no backup history: before its own first full backup,
    # an incremental is -560 too (into the very backup it was restored from).
    restored_db = tmp_path / "restored"
    restore(dest, restored_db)
    restored = opened(restored_db, create=False)
    assert contents(restored) == written
    before = tree(dest)
    with raises_jet(-560, "JET_errMissingFullBackup"):
        restored.backup(dest, incremental=True)
    assert jet.JetBackup(str(dest), jet.JET_bitBackupIncremental, None) == -560
    assert tree(dest) == before
    again = tmp_path / "again"
    again.mkdir()
    restored.backup(again)
    fill(restored, "c", 30)
    restored.backup(again, incremental=True)  # after its own full backup: fine
    verify_backup(again)


def test_missing_file_to_backup_after_truncation(tmp_path, opened):
    inst = opened(tmp_path / "db")
    fill(inst, "a", 200)
    dest = tmp_path / "dest"
    dest.mkdir()
    inst.backup(dest)
    fill(inst, "b", 200)
    truncated = inst.backup(None)  # truncation alone breaks the incremental chain
    assert truncated["truncated"], truncated
    fill(inst, "c", 50)
    before = tree(dest)
    manifest = (dest / "MANIFEST").read_bytes()
    with raises_jet(-569, "JET_errMissingFileToBackup"):
        inst.backup(dest, incremental=True)
    assert jet.JetBackup(str(dest), jet.JET_bitBackupIncremental, None) == -569
    assert tree(dest) == before
    assert (dest / "MANIFEST").read_bytes() == manifest
    wait_for_no_log_pins(inst)


def test_a_fault_plan_set_after_an_earlier_open_reaches_the_actors(tmp_path, monkeypatch):
    """Actors are forked from a forkserver started at the process's first Instance.open:
    the plan must reach them from the opener's environment at open time, not from the
    forkserver's."""
    with open_instance(tmp_path / "first"):
        pass  # this process has opened an instance: its forkserver runs
    plan = {"backup_worker": {"crash_at_step": "pages-copied"}}
    monkeypatch.setenv(FAULTS_VARIABLE, json.dumps(plan))
    dest = tmp_path / "dest"
    dest.mkdir()
    with open_instance(tmp_path / "db") as inst:
        fill(inst, "a", 10)
        with raises_jet(-801, "JET_errBackupAbortByServer"):
            inst.backup(dest)
    monkeypatch.delenv(FAULTS_VARIABLE)  # and a plan removed is gone for the next open
    with open_instance(tmp_path / "db") as inst:
        inst.backup(dest)
    verify_backup(dest)


# =====================================================================================
# B. A failed backup leaves nothing (DESIGN 6, last paragraph)
# =====================================================================================


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A closed instance ("old" data) and DEST holding its successful atomic backup."""
    root = tmp_path_factory.mktemp("template")
    db, dest = root / "db", root / "dest"
    dest.mkdir()
    with open_instance(db) as inst:
        old = fill(inst, "old", 150)
        backup_id = inst.backup(dest, atomic=True)["backup_id"]
    assert tree(dest)[0] == ATOMIC_NEW and ATOMIC_TEMP not in tree(dest)
    return {"db": db, "dest": dest, "old": old, "backup_id": backup_id}


def copy_template(template, tmp_path):
    db, dest = tmp_path / "db", tmp_path / "dest"
    shutil.copytree(template["db"], db, ignore=shutil.ignore_patterns("run"))
    shutil.copytree(template["dest"], dest)
    return db, dest


def abort_backup(inst) -> None:
    """Abort the running backup through the backup worker's API."""
    channel = inst._channel("backup")
    try:
        assert channel.call(to_backup.abort_backup()) == {"aborted": True}
    finally:
        channel.close()


def abort_over_the_api(inst):
    """A status callback that aborts its own backup, midway through the pages."""

    def status(progress):
        if progress.snt == "progress" and progress.phase == "pages" and progress.done:
            abort_backup(inst)

    return status


def raising_callback(inst):
    def status(progress):
        if progress.snt == "progress" and progress.phase == "pages" and progress.done:
            raise OSError("the caller's callback failed")

    return status


# name: (fault plan, status callback factory, err, name, the worker dies)
FAILURES = {
    "corruption": (None, None, -1018, "JET_errReadVerifyFailure", False),
    "disk-full": (
        {"backup_worker": {"fail_write": [3, "ENOSPC"]}},
        None,
        -1808,
        "JET_errDiskFull",
        False,
    ),
    "killed-pages-copied": (
        {"backup_worker": {"crash_at_step": "pages-copied"}},
        None,
        -801,
        "JET_errBackupAbortByServer",
        True,
    ),
    "killed-logs-copied": (
        {"backup_worker": {"crash_at_step": "logs-copied"}},
        None,
        -801,
        "JET_errBackupAbortByServer",
        True,
    ),
    "callback-raises": (None, raising_callback, -2101, "JET_errCallbackFailed", False),
    "aborted": (None, abort_over_the_api, -801, "JET_errBackupAbortByServer", False),
}


@pytest.mark.parametrize("how", list(FAILURES))
def test_a_failed_backup_leaves_nothing(how, template, tmp_path, faults):
    plan, make_status, err, name, dies = FAILURES[how]
    db, dest = copy_template(template, tmp_path)
    old = template["old"]
    if plan is not None:
        faults(plan)
    inst = open_instance(db)
    try:
        new = fill(inst, "new", 100)
        repair = corrupt_a_used_page(inst, db)[1] if how == "corruption" else None
        before_dest = tree(dest)
        manifest = (dest / ATOMIC_NEW / "MANIFEST").read_bytes()
        before_logs = generations(db)
        before_info = inst._control_call(to_buffer_manager.backup_info())
        assert before_info["last_full"]["backup_id"].hex() == template["backup_id"]
        worker = backup_worker(inst)["pid"]
        status = make_status(inst) if make_status else None
        started = time.monotonic()
        with raises_jet(err, name):
            inst.backup(dest, atomic=True, status=status)
        assert time.monotonic() - started < NO_HANG_S
        if dies:
            wait_for_new_backup_worker(inst, worker)  # it undoes the dead one's backup
        else:
            assert backup_worker(inst)["pid"] == worker
        # Nothing of the failed backup is left; the previous one is untouched.
        assert tree(dest) == before_dest
        assert (dest / ATOMIC_NEW / "MANIFEST").read_bytes() == manifest
        # No generation was deleted (the backup's roll may have added one).
        assert set(before_logs) <= set(generations(db))
        # The backup history in the meta is unchanged; the pins are released.
        assert inst._control_call(to_buffer_manager.backup_info()) == before_info
        wait_for_no_log_pins(inst)
        # The next backups succeed.
        if repair is not None:
            repair()
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        if dies:  # the restarted worker follows the plan too: truncation only runs no step
            inst.backup(None)
        else:
            inst.backup(fresh)
            verify_backup(fresh)
    finally:
        inst.close()
    header = dump_header(str(db))["current"]
    if dies:
        assert header["last_full_backup"]["backup_id"] == template["backup_id"]
        faults(None)
        with open_instance(db) as inst:
            inst.backup(fresh)
        verify_backup(fresh)
    # The previous atomic backup is intact and restores the old state.
    assert verify_backup(dest)["backup_id"] == template["backup_id"]
    assert restored_contents(dest, tmp_path / "out") == old
    assert restored_contents(fresh, tmp_path / "out-fresh") == old | new


# =====================================================================================
# C. Atomic mode: the worker killed at every step leaves a restorable new or old
# =====================================================================================

ATOMIC_STEPS = list(BACKUP_STEPS)


@pytest.mark.parametrize("step", ATOMIC_STEPS)
def test_atomic_backup_killed_at_each_step_leaves_a_complete_backup(
    step, template, tmp_path, faults
):
    db, dest = copy_template(template, tmp_path)
    faults({"backup_worker": {"crash_at_step": step}})
    with open_instance(db) as inst:
        new = fill(inst, "new", 60)
        worker = backup_worker(inst)["pid"]
        with raises_jet(-801, "JET_errBackupAbortByServer"):
            inst.backup(dest, atomic=True)
        wait_for_new_backup_worker(inst, worker)
    directory, manifest = locate_backup(str(dest))
    assert os.path.basename(directory) in (ATOMIC_NEW, ATOMIC_OLD)
    assert ATOMIC_TEMP not in os.listdir(dest), "the dead worker's temp was not undone"
    verify_backup(dest)
    restored = restored_contents(dest, tmp_path / "out")
    if manifest["backup_id"] == template["backup_id"]:
        assert restored == template["old"]
    else:  # the swap had placed the new backup: complete, of the moment of its roll
        assert step == "swap-new-placed", f"a new backup was published before the swap ({step})"
        assert restored == template["old"] | new


@pytest.mark.parametrize("how", ["callback-raises", "aborted"])
def test_a_failure_at_the_complete_event_is_all_or_nothing(how, tmp_path, opened):
    """The last event a backup reports: too late to undo it, so the backup either succeeds
    or - if its failure is reported - leaves nothing, truncates nothing, records nothing."""
    db = tmp_path / "db"
    inst = opened(db)
    fill(inst, "a", 200)
    dest = tmp_path / "dest"
    dest.mkdir()
    logs = generations(db)
    info = inst._control_call(to_buffer_manager.backup_info())

    def status(progress):
        if progress.snt != "complete":
            return
        if how == "aborted":
            abort_backup(inst)
        else:
            raise ValueError("the caller's callback failed at complete")

    try:
        result = inst.backup(dest, status=status)
    except JetError as exc:
        assert tree(dest) == [], f"{exc!r} left {tree(dest)}"
        assert set(logs) <= set(generations(db)), f"{exc!r} truncated the log"
        assert inst._control_call(to_buffer_manager.backup_info()) == info, (
            f"{exc!r} recorded the backup"
        )
    else:
        assert verify_backup(dest)["backup_id"] == result["backup_id"]


# -- an atomic swap undone wherever it stopped ---------------------------------------

SWAP_STOPS = {
    # name: (was there a previous backup, what the directory holds when the undo runs)
    "marked, not begun": (True, {"new": "previous", "temp": "failed"}),
    "previous moved to old": (True, {"old": "previous", "temp": "failed"}),
    "failed placed as new": (True, {"old": "previous", "new": "failed"}),
    "undo cut after removing new": (True, {"old": "previous"}),
    "undo done, run again": (True, {"new": "previous"}),
    "no previous, not begun": (False, {"temp": "failed"}),
    "no previous, failed placed": (False, {"new": "failed"}),
}


@pytest.mark.parametrize("stop", list(SWAP_STOPS))
def test_undo_of_an_atomic_swap_keeps_the_previous_backup_wherever_it_stopped(stop, tmp_path):
    """A worker killed between marking the swap and finishing it (or its undo) leaves one of
    these directories; undoing it - twice, as a successor killed mid-undo would - leaves
    exactly the previous backup in new, or nothing if there was none."""
    from jetstore.engine.backup import undo_atomic
    from jetstore.engine.fileio import DEFAULT_ENV

    had_previous, layout = SWAP_STOPS[stop]
    for name, which in layout.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "MANIFEST").write_text(which)
    for _ in range(2):
        undo_atomic(DEFAULT_ENV, str(tmp_path), had_previous)
    if had_previous:
        assert sorted(os.listdir(tmp_path)) == ["new"]
        assert (tmp_path / "new" / "MANIFEST").read_text() == "previous"
    else:
        assert os.listdir(tmp_path) == []

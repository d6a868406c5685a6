"""Something other than a regular file where a backup, a log or an archive holds one
(fileio.open_regular): a FIFO once blocked the open until a writer came - forever -
and a directory or a symlink loop surfaced as a bare OSError.  Each is now -1022
naming the path, at once; the catalog lists it as damage.  One named test per case.
"""

from __future__ import annotations

import os
import shutil
import signal

import pytest
from inprocess import run_backup

from jetstore.engine import Instance, JetError, backup_info, restore, verify_backup
from jetstore.engine.storage import DB_FILE, LOG_DIR, Storage


class Hung(BaseException):
    """Not an OSError (TimeoutError is one, which the code under test may translate)."""


@pytest.fixture(autouse=True)
def no_hang():
    """A hang is this file's bug: fail the test after 20 s instead of waiting."""

    def hung(*_):
        raise Hung("hung on something that is not a regular file")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A full backup and the live log that continues it."""
    base = tmp_path_factory.mktemp("irregular")
    (base / "run").mkdir()
    with Storage.open(base / "db", log_file_size=64 << 10) as storage:
        storage.create_table("t")
        for n in range(300):
            storage.commit({"t": {b"before-%d" % n: b"v" * 200}}, None)
        run_backup(storage, str(base / "bk"), run_dir=str(base / "run"))
        for n in range(300):
            storage.commit({"t": {b"after-%d" % n: b"v" * 200}}, None)
    return base


def backup_copy(source, tmp_path) -> str:
    copy = str(tmp_path / "bk")
    shutil.copytree(source / "bk", copy, symlinks=True)
    return copy


def fifo_instead(path: str) -> str:
    os.remove(path)
    os.mkfifo(path)
    return path


def assert_refused_naming(call, path: str, err: int = -1022) -> None:
    with pytest.raises(JetError) as refused:
        call()
    assert refused.value.err == err and path in refused.value.message, refused.value


def test_a_fifo_in_place_of_the_database_fails_verify_restore_and_the_catalog(source, tmp_path):
    backup = backup_copy(source, tmp_path)
    fifo = fifo_instead(os.path.join(backup, DB_FILE))
    assert_refused_naming(lambda: verify_backup(backup), fifo)
    assert_refused_naming(lambda: restore(backup, tmp_path / "out"), fifo)
    assert not (tmp_path / "out").exists()
    (chain,) = backup_info(backup, verify=True)["chains"]
    assert not chain["verified"] and fifo in chain["error"]["message"]


def test_a_fifo_in_place_of_the_manifest_fails_the_restore_at_once(source, tmp_path):
    backup = backup_copy(source, tmp_path)
    fifo = fifo_instead(os.path.join(backup, "MANIFEST"))
    assert_refused_naming(lambda: restore(backup, tmp_path / "out"), fifo, err=-526)


def test_a_directory_in_place_of_the_database_is_1022_not_an_os_error(source, tmp_path):
    backup = backup_copy(source, tmp_path)
    path = os.path.join(backup, DB_FILE)
    os.remove(path)
    os.mkdir(path)
    assert_refused_naming(lambda: verify_backup(backup), path)
    (chain,) = backup_info(backup)["chains"]
    assert not chain["verified"] and chain["error"]["err"] == -1022


def test_a_symlink_loop_in_place_of_a_generation_is_listed_as_damage(source, tmp_path):
    backup = backup_copy(source, tmp_path)
    logs = os.path.join(backup, LOG_DIR)
    generation = os.path.join(logs, sorted(os.listdir(logs))[0])
    os.remove(generation)
    os.symlink(os.path.basename(generation), generation)  # points at itself
    assert_refused_naming(lambda: verify_backup(backup), generation)
    for verify in (False, True):
        (chain,) = backup_info(backup, verify=verify)["chains"]
        assert not chain["verified"] and chain["error"]["err"] == -1022


def test_a_fifo_generation_in_the_roll_forward_log_fails_the_restore_at_once(source, tmp_path):
    logs = tmp_path / "logs"
    shutil.copytree(source / "db" / LOG_DIR, logs)
    fifo = fifo_instead(str(logs / sorted(os.listdir(logs))[-2]))
    assert_refused_naming(lambda: restore(source / "bk", tmp_path / "out", log_dir=logs), fifo)
    assert not (tmp_path / "out").exists()


def test_a_fifo_in_place_of_the_archive_identity_fails_the_open_at_once(tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    os.mkfifo(archive / "JETARCHIVE")
    assert_refused_naming(
        lambda: Instance.open(tmp_path / "db", archive_dir=archive), str(archive / "JETARCHIVE")
    )

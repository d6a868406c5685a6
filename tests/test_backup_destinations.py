"""What a backup directory is not: an instance to open, a place where an atomic backup may
delete or hide what it did not write; and what a restore must not roll forward through."""

from __future__ import annotations

import os

import pytest

from jetstore.engine import BackupError, Instance, JetError, restore, verify_backup
from jetstore.engine.backup import locate_backup


def tree(path) -> dict[str, bytes]:
    return {
        os.path.relpath(os.path.join(folder, name), path): open(
            os.path.join(folder, name), "rb"
        ).read()
        for folder, _dirs, names in os.walk(path)
        for name in names
    }


@pytest.fixture
def instance(tmp_path):
    with Instance.open(tmp_path / "db") as inst:
        session = inst.session()
        session.create_table("t")
        for n in range(50):
            session.put("t", b"%04d" % n, b"v" * 200)
        yield inst


def backed_up(tmp_path, instance, **kind):
    """A backup of ``instance`` in tmp_path/bk, and its files as they are now."""
    backup = tmp_path / "bk"
    backup.mkdir()
    instance.backup(backup, **kind)
    return backup, tree(backup)


@pytest.mark.parametrize("atomic", [False, True], ids=["plain", "atomic"])
def test_opening_a_backup_directory_is_refused_and_leaves_it_verifying(tmp_path, instance, atomic):
    backup, before = backed_up(tmp_path, instance, atomic=atomic)
    with pytest.raises(BackupError) as refused:
        Instance.open(backup)
    assert refused.value.err == -544 and "MANIFEST" in refused.value.message
    assert tree(backup) == before
    verify_backup(backup)


def test_an_atomic_backup_refuses_a_directory_holding_a_plain_backup(tmp_path, instance):
    backup, before = backed_up(tmp_path, instance)
    with pytest.raises(BackupError) as refused:
        instance.backup(backup, atomic=True)
    assert refused.value.err == -504 and "MANIFEST" in refused.value.message
    assert tree(backup) == before  # the plain backup is still the one a restore finds
    assert locate_backup(str(backup))[0] == str(backup)


@pytest.mark.parametrize("folder", ["new", "old", "temp"])
def test_an_atomic_backup_never_deletes_folders_it_did_not_write(tmp_path, instance, folder):
    backup = tmp_path / "bk"
    (backup / folder).mkdir(parents=True)
    (backup / folder / "important.txt").write_text("precious")
    with pytest.raises(BackupError) as refused:
        instance.backup(backup, atomic=True)
    assert refused.value.err == -504 and folder in refused.value.message
    assert tree(backup) == {os.path.join(folder, "important.txt"): b"precious"}


def test_atomic_backups_still_replace_each_other(tmp_path, instance):
    backup = tmp_path / "bk"
    backup.mkdir()
    first = instance.backup(backup, atomic=True)
    second = instance.backup(backup, atomic=True)
    directory, manifest = locate_backup(str(backup))
    assert manifest["backup_id"] == second["backup_id"] != first["backup_id"]
    assert directory == str(backup / "new")


def test_a_restore_through_another_instances_log_is_refused_not_rolled_past(tmp_path, instance):
    backup, _files = backed_up(tmp_path, instance)
    with Instance.open(tmp_path / "other") as other:  # its generations: all below ours
        other.session().create_table("x")
    with pytest.raises(JetError) as refused:
        restore(backup, tmp_path / "out", log_dir=tmp_path / "other" / "logs")
    assert refused.value.err == -555 and "other" in refused.value.message
    assert not (tmp_path / "out").exists()  # the failed restore removed what it created


def test_a_restore_into_the_backup_itself_is_refused(tmp_path, instance):
    backup, before = backed_up(tmp_path, instance)
    with pytest.raises(JetError) as refused:
        restore(backup, backup / "sub")
    assert refused.value.err == -1023 and "inside the backup" in refused.value.message
    assert tree(backup) == before


def test_a_restore_into_the_log_it_rolls_forward_through_is_refused(tmp_path, instance):
    backup, _files = backed_up(tmp_path, instance)
    logs = tmp_path / "db" / "logs"
    before = tree(logs)
    with pytest.raises(JetError) as refused:
        restore(backup, logs / "restored", log_dir=logs)
    assert refused.value.err == -1023 and "inside the log directory" in refused.value.message
    assert tree(logs) == before


def test_an_atomic_backup_replaces_what_a_failed_one_left_in_temp(tmp_path, instance):
    backup = tmp_path / "bk"
    (backup / "temp" / "logs").mkdir(parents=True)
    (backup / "temp" / "jet.edb").write_bytes(b"half a copy")
    (backup / "temp" / "logs" / "jet00000001.log").write_bytes(b"half a log")
    (backup / "notes.txt").write_text("the operator's own file stays")
    instance.backup(backup, atomic=True)
    verify_backup(backup)
    assert not (backup / "temp").exists()
    assert (backup / "notes.txt").read_text() == "the operator's own file stays"

"""The log has no silent gaps (DESIGN.md section 6): whatever leaves acknowledged commits
outside the log stream a backup chain depends on - generations truncated away, a run with
``logging=False``, a lost log directory - makes the next incremental and any roll-forward
across the gap fail, naming it; restores that do succeed hold every acknowledged commit.
"""

from __future__ import annotations

import shutil

import pytest
from test_backup import OPTIONS, open_source
from test_backup_errors import contents, raises_jet

from jetstore.engine import Instance, JetError, restore
from jetstore.engine.fileio import DEFAULT_ENV
from jetstore.engine.log_reader import list_generations
from jetstore.engine.storage import LOG_DIR


def commit(inst, prefix: str, transactions: int, *, delete: tuple[bytes, ...] = ()) -> dict:
    """``transactions`` commits of 20 puts (~8 KiB) each, then one deleting ``delete``; the
    oracle: what each acknowledged commit wrote (None for a deleted key)."""
    session = inst.session()
    acked: dict[bytes, bytes | None] = {}
    for t in range(transactions):
        writes = {
            f"{prefix}-{t:04d}-{i:02d}".encode(): f"{prefix} {t} {i} ".encode() * 25
            for i in range(20)
        }
        with session.transaction() as tx:
            for key, value in writes.items():
                tx.put("t", key, value)
        acked.update(writes)
    if delete:
        with session.transaction() as tx:
            for key in delete:
                tx.delete("t", key)
        acked.update(dict.fromkeys(delete))
    session.close()
    return acked


def expected(*oracles: dict) -> dict:
    state: dict = {}
    for oracle in oracles:
        state.update(oracle)
    return {key: value for key, value in state.items() if value is not None}


def restored(backup_dir, out, **options) -> dict:
    restore(backup_dir, out, **options)
    with Instance.open(out, create=False) as inst:
        return contents(inst)


def generations(path) -> list[int]:
    return list_generations(DEFAULT_ENV, str(path / LOG_DIR))


def test_roll_forward_across_truncated_generations_fails_naming_them(tmp_path):
    src, bk1, bk2 = tmp_path / "src", tmp_path / "bk1", tmp_path / "bk2"
    inst = open_source(src)
    first = commit(inst, "a", 20)
    bk1.mkdir()
    gen_high = inst.backup(bk1)["gen_high"]
    between = commit(inst, "b", 40)  # several generations that bk2's truncation removes
    bk2.mkdir()
    inst.backup(bk2)
    after = commit(inst, "c", 10)
    inst.close()
    oldest = generations(src)[0]
    assert oldest > gen_high + 1, "the second backup truncated generations after the first's"
    with raises_jet(-528, "JET_errMissingLogFile") as info:
        restore(bk1, tmp_path / "out", log_dir=src / LOG_DIR)
    missing = f"{gen_high + 1}" if oldest == gen_high + 2 else f"{gen_high + 1}..{oldest - 1}"
    assert f"generation(s) {missing} missing" in info.value.message
    assert str(src / LOG_DIR) in info.value.message
    assert not (tmp_path / "out" / "jet.edb").exists()
    # the backup whose log does continue still rolls forward through every commit
    got = restored(bk2, tmp_path / "out2", log_dir=src / LOG_DIR)
    assert got == expected(first, between, after)


def unlogged_run(src, prefix: str, overwrite: dict, delete: tuple[bytes, ...]) -> dict:
    """Reopen with logging=False: new keys, new values for ``overwrite``, ``delete`` deleted."""
    with Instance.open(src, logging=False, **OPTIONS) as inst:
        acked = commit(inst, prefix, 30, delete=delete)
        session = inst.session()
        for key in overwrite:
            session.put("t", key, b"unlogged value")
        session.close()
    return {**acked, **dict.fromkeys(overwrite, b"unlogged value")}


def test_incremental_after_a_run_with_logging_disabled_fails(tmp_path):
    src, bk = tmp_path / "src", tmp_path / "bk"
    inst = open_source(src)
    before = commit(inst, "a", 10)
    bk.mkdir()
    inst.backup(bk)
    inst.close()
    unlogged = unlogged_run(src, "u", overwrite={}, delete=())
    with Instance.open(src, **OPTIONS) as inst:
        logged = commit(inst, "l", 5)
        with raises_jet(-560, "JET_errMissingFullBackup"):
            inst.backup(bk, incremental=True)
        (tmp_path / "bk2").mkdir()
        inst.backup(tmp_path / "bk2")
        inst.backup(tmp_path / "bk2", incremental=True)
    assert restored(tmp_path / "bk2", tmp_path / "out") == expected(before, unlogged, logged)


def test_roll_forward_through_the_log_after_a_run_with_logging_disabled_fails(tmp_path):
    src, bk = tmp_path / "src", tmp_path / "bk"
    inst = open_source(src)
    commit(inst, "a", 10)
    bk.mkdir()
    inst.backup(bk)
    commit(inst, "b", 10)  # in the live log, after the backup
    inst.close()
    unlogged_run(src, "u", overwrite={}, delete=())
    restart = generations(src)[-1] + 1  # where the new log stream must start
    with Instance.open(src, **OPTIONS) as inst:
        commit(inst, "l", 10)
    with pytest.raises(JetError) as info:
        restore(bk, tmp_path / "out", log_dir=src / LOG_DIR)
    assert info.value.err in (-528, -610), repr(info.value)
    assert f"generation {restart}" in info.value.message
    assert "logging=False" in info.value.message
    assert not (tmp_path / "out" / "jet.edb").exists()


def test_log_directory_removed_while_clean_breaks_the_chain(tmp_path):
    src, bk = tmp_path / "src", tmp_path / "bk"
    inst = open_source(src)
    commit(inst, "a", 10)
    bk.mkdir()
    gen_high = inst.backup(bk)["gen_high"]
    commit(inst, "b", 10)
    inst.close()
    shutil.rmtree(src / LOG_DIR)
    with Instance.open(src, **OPTIONS) as inst:
        commit(inst, "c", 10)
        with raises_jet(-560, "JET_errMissingFullBackup"):
            inst.backup(bk, incremental=True)
    assert generations(src)[0] > gen_high + 1, "the new stream's names follow the old ones"
    with raises_jet(-528, "JET_errMissingLogFile") as info:
        restore(bk, tmp_path / "out", log_dir=src / LOG_DIR)
    assert f"generation(s) {gen_high + 1}" in info.value.message
    assert not (tmp_path / "out" / "jet.edb").exists()


def test_roll_forward_after_a_log_restart_restores_every_commit(tmp_path):
    """The new stream after a logging=False run is a chain of its own: a full backup of it
    rolls forward through the live log to every acknowledged commit - and the open that
    starts it replays nothing of the old stream over the unlogged changes."""
    src, bk = tmp_path / "src", tmp_path / "bk"
    inst = open_source(src)
    first = commit(inst, "a", 10)
    bk.mkdir()
    inst.backup(bk)
    old = commit(inst, "b", 10)  # in the old stream, after its last backup
    inst.close()
    overwrite = dict.fromkeys(list(old)[:20])
    unlogged = unlogged_run(src, "u", overwrite, delete=tuple(list(old)[20:40]))
    with Instance.open(src, **OPTIONS) as inst:
        assert contents(inst) == expected(first, old, unlogged)
        (tmp_path / "bk2").mkdir()
        inst.backup(tmp_path / "bk2")
        logged = commit(inst, "l", 20)
    result = restore(tmp_path / "bk2", tmp_path / "out", log_dir=src / LOG_DIR)
    assert result["rolled_forward"], "the live log continues the new stream's backup"
    with Instance.open(tmp_path / "out", create=False) as out:
        assert contents(out) == expected(first, old, unlogged, logged)


def test_roll_forward_from_a_missing_log_directory_is_refused(tmp_path):
    """Asked to roll forward, a restore that found no log would succeed short of it."""
    src = tmp_path / "src"
    with open_source(src) as inst:
        commit(inst, "a", 5)
        (tmp_path / "bk").mkdir()
        inst.backup(tmp_path / "bk")
    missing = tmp_path / "no-such-logs"
    with raises_jet(-1023, "JET_errInvalidPath") as info:
        restore(tmp_path / "bk", tmp_path / "out", log_dir=missing)
    assert str(missing) in info.value.message
    assert not (tmp_path / "out").exists()  # refused before anything was written

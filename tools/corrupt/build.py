"""Building the pristine trees: the ``main`` and ``quiet`` instances (in-process ``Storage``,
fixed workloads, then a crash) and the ``backup`` taken by the real actors."""

from __future__ import annotations

import random

from jetstore.engine.storage import Storage
from jetstore.tools.corrupt.catalogue import LOG_FILE_SIZE, OPTIONS, PAGE_SIZE
from jetstore.tools.corrupt.model import Model


def _value(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _crashing_storage(path: str, model: Model):
    """A fresh ``Storage`` and a ``commit`` that records each change in ``model``."""
    storage = Storage.open(path, auto_checkpoint=False, **OPTIONS)

    def commit(table: str, writes: dict[bytes, bytes | None] | None) -> None:
        if writes is None:
            storage.create_table(table)
        else:
            storage.commit({table: writes}, None)
        model.add(storage.log.end_lsn, table, writes)

    return storage, commit


def build_instance(path: str) -> Model:
    """The main pristine instance: three phases, two checkpoints, then a crash.

    Phase 3 writes pages after the last checkpoint (an overflow value goes to disk at once,
    and a working set larger than the cache makes dirty pages evicted), into pages the older
    checkpoint used: the older meta slot then describes a checkpoint that no longer exists.
    """
    model = Model()
    storage, commit = _crashing_storage(path, model)
    try:
        commit("t", None)
        commit("u", None)
        # Phase 1: small rows and overflow values, then checkpoint 1.
        for batch in range(60):
            commit(
                "t", {b"k%05d" % (batch * 80 + i): _value(batch * 80 + i, 180) for i in range(80)}
            )
        for i in range(4):
            commit("u", {b"big%d" % i: _value(1000 + i, 20000 + 700 * i)})
        storage.checkpoint()
        # Phase 2: updates and deletes free pages, then checkpoint 2 (its free list is not empty).
        for batch in range(10):
            commit("t", {b"k%05d" % (batch * 37 + 5): _value(2000 + batch, 150)})
        commit("t", {b"k%05d" % i: None for i in range(100, 160)})
        commit("u", {b"big0": None, b"big1": _value(3000, 26000)})
        storage.checkpoint()
        # Phase 3, replayed by recovery: an overflow value, updates across the whole tree, a
        # value spanning generations, small commits in the last generation.
        commit("u", {b"big4": _value(4000, 20000)})
        for batch in range(12):
            commit("t", {b"k%05d" % i: _value(5000 + i, 190) for i in range(batch, 4800, 12)})
        commit("u", {b"huge": _value(6000, 150_000)})
        for i in range(40):
            commit("t", {b"tail%03d" % i: _value(7000 + i, 120)})
    finally:
        storage.close_files()  # the process dies: no checkpoint, no clean state
    return model


def build_quiet_instance(path: str) -> Model:
    """A second instance whose crash comes before any page is written after its last
    checkpoint: the older meta slot still describes intact pages, so losing the newest slot
    must be recovered from the older checkpoint and the log (the torn-meta-write case)."""
    model = Model()
    storage, commit = _crashing_storage(path, model)
    try:
        commit("t", None)
        for batch in range(20):
            commit("t", {b"q%05d" % (batch * 30 + i): _value(8000 + i, 150) for i in range(30)})
        storage.checkpoint()
        for batch in range(10):
            commit("t", {b"q%05d" % (batch * 7): _value(8500 + batch, 140), b"r%d" % batch: b""})
        storage.checkpoint()
        for batch in range(15):
            commit("t", {b"s%03d" % batch: _value(8700 + batch, 130)})
    finally:
        storage.close_files()
    return model


def build_backup(source: str, backup: str) -> None:
    """A full and an incremental backup of a small instance, by the real actors."""
    from jetstore.engine import Instance

    with Instance.open(
        source, page_size=PAGE_SIZE, log_file_size=LOG_FILE_SIZE, create_path_if_not_exist=True
    ) as inst:
        session = inst.session()
        session.create_table("t")
        session.create_table("u")
        for batch in range(8):
            with session.transaction() as tx:
                for i in range(40):
                    tx.put("t", b"k%05d" % (batch * 40 + i), _value(batch * 40 + i, 160))
        session.put("u", b"big", _value(9000, 30000))
        inst.backup(backup)
        for batch in range(8):
            with session.transaction() as tx:
                for i in range(40):
                    tx.put("t", b"n%05d" % (batch * 40 + i), _value(9100 + i, 170))
        session.put("u", b"big2", _value(9200, 70000))
        inst.backup(backup, incremental=True)

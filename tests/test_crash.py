"""Crash at the Nth write or fsync, for every N of a workload (SQLite's crash-test loop).

Each trial runs the same workload over a ``FaultEnv`` that dies at call N,
throws away what was not synced (or, in the torn variant, keeps a random
subset of it, some writes cut short), reopens with recovery, and compares
with an oracle: the database must equal the state after the last
acknowledged commit, or after the commit that was in flight - never anything
in between - and its checkpoint must pass the structural check.
"""

from __future__ import annotations

import random

import pytest

from jetstore.engine.faults import FaultEnv, SimulatedCrash
from jetstore.engine.integrity import check_checkpoint
from jetstore.engine.storage import Storage

OPTIONS = {"page_size": 4096, "log_file_size": 64 << 10, "cache_size": 1 << 20}


def workload(storage: Storage, states: list) -> None:
    """Commits of mixed sizes with checkpoints between; ``states`` grows per acknowledged step."""
    rng = random.Random(7)
    model: dict[bytes, bytes] = {}
    storage.create_table("t")
    states.append(dict(model))
    for step in range(40):
        writes = {}
        for _ in range(rng.randrange(1, 12)):
            key = b"k%03d" % rng.randrange(120)
            writes[key] = None if rng.random() < 0.2 else rng.randbytes(rng.choice((10, 300, 5000)))
        storage.commit({"t": writes}, None)
        for key, value in writes.items():
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
        states.append(dict(model))
        if step % 13 == 12:
            storage.checkpoint()
    storage.close()


class _ModelOnly:
    """Stands in for Storage so the workload yields its oracle without any I/O."""

    def create_table(self, name):
        pass

    def commit(self, writes, begin_seq):
        pass

    def checkpoint(self):
        pass

    def close(self):
        pass


ORACLE: list = []
workload(_ModelOnly(), ORACLE)


def run_trial(tmp_path, env: FaultEnv, rng: random.Random | None) -> None:
    acknowledged: list = []
    storage = None
    try:
        storage = Storage.open(tmp_path, env=env, **OPTIONS)
        workload(storage, acknowledged)
    except SimulatedCrash:
        if storage is not None:
            storage.close_files()  # the process is gone; only its descriptors remain here
    env.crash(rng)
    with Storage.open(tmp_path, env=env, **OPTIONS) as storage:
        done = len(acknowledged)
        if "t" not in storage.list_tables():
            assert done == 0, "an acknowledged create_table was lost"
        else:
            actual = dict(storage.scan("t"))
            # The last acknowledged state, or the one the in-flight commit would make.
            allowed = ORACLE[max(done - 1, 0) : done + 1]
            assert actual in allowed, (
                f"after {done} acknowledged steps the database holds {len(actual)} keys, "
                "matching neither the acknowledged state nor the in-flight one"
            )
        storage.checkpoint()
        check_checkpoint(storage.pager, storage.durable_meta)


def count_calls(tmp_path) -> tuple[int, int]:
    env = FaultEnv()
    workload(Storage.open(tmp_path, env=env, **OPTIONS), [])
    return env.writes, env.syncs


@pytest.mark.parametrize("torn", [False, True], ids=["clean-cut", "torn"])
def test_crash_at_every_write(tmp_path, torn):
    writes, _syncs = count_calls(tmp_path / "count")
    assert writes > 50
    for n in range(1, writes + 1):
        rng = random.Random(n) if torn else None
        run_trial(tmp_path / f"w{n}", FaultEnv(crash_at_write=n, torn_rng=rng), rng)


def test_crash_at_every_sync(tmp_path):
    _writes, syncs = count_calls(tmp_path / "count")
    assert syncs > 20
    for n in range(1, syncs + 1):
        run_trial(tmp_path / f"s{n}", FaultEnv(crash_at_sync=n), None)

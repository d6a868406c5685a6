"""Hypothesis state machine: the storage engine against a dict model.

Random puts, deletes, transactions with commit and rollback, scans, lazy
commits, checkpoints, clean close-and-reopen, and crash-and-reopen through a
``FaultEnv`` that loses every unsynced write.  After a crash the database must
equal one of the model states between the last durable commit and the newest
one (lazy commits may be lost, in order, never partially).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from jetstore.engine.faults import FaultEnv
from jetstore.engine.integrity import check_checkpoint
from jetstore.engine.storage import Storage

OPTIONS = {"page_size": 4096, "log_file_size": 64 << 10, "cache_size": 1 << 20}
KEYS = st.sampled_from([b"", b"a", b"ab", b"b", b"k" * 1000] + [b"key%02d" % i for i in range(30)])
# Around the 4 KiB page's inline limit (~2 KiB) and well past it (overflow chains).
VALUES = st.one_of(
    st.binary(max_size=40),
    st.integers(1900, 2100).map(lambda n: b"v" * n),
    st.integers(3000, 20000).map(lambda n: os.urandom(n)),
)


class StorageMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="jet-stateful-")
        self.env = FaultEnv()
        self.storage = Storage.open(self.dir, env=self.env, **OPTIONS)
        self.storage.create_table("t")
        self.model: dict[bytes, bytes] = {}
        self.since_durable: list[dict[bytes, bytes]] = [{}]  # states a crash may go back to
        self.txn = None
        self.txn_model: dict[bytes, bytes] | None = None

    def teardown(self) -> None:
        self.storage.close_files()
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)

    def _committed(self, writes: dict[bytes, bytes | None], durable: bool) -> None:
        for key, value in writes.items():
            if value is None:
                self.model.pop(key, None)
            else:
                self.model[key] = value
        if durable:
            self.since_durable = [dict(self.model)]
        else:
            self.since_durable.append(dict(self.model))

    @precondition(lambda self: self.txn is None)
    @rule(
        writes=st.dictionaries(KEYS, st.none() | VALUES, min_size=1, max_size=6), lazy=st.booleans()
    )
    def commit_batch(self, writes, lazy):
        self.storage.commit({"t": writes}, None, lazy=lazy)
        self._committed(writes, durable=not lazy)

    @precondition(lambda self: self.txn is None)
    @rule()
    def begin(self):
        self.txn = self.storage.begin()
        self.txn_model = dict(self.model)
        self.txn_writes = {}

    @precondition(lambda self: self.txn is not None)
    @rule(key=KEYS, value=st.none() | VALUES)
    def txn_write(self, key, value):
        if value is None:
            self.txn.delete("t", key)
            self.txn_model.pop(key, None)
        else:
            self.txn.put("t", key, value)
            self.txn_model[key] = value
        self.txn_writes[key] = value
        assert self.txn.get("t", key) == value
        assert dict(self.txn.scan("t")) == self.txn_model

    @precondition(lambda self: self.txn is not None)
    @rule(commit=st.booleans())
    def end_txn(self, commit):
        if commit:
            self.txn.commit()
            if self.txn_writes:  # an empty transaction logs nothing, so syncs nothing
                self._committed(self.txn_writes, durable=True)
        else:
            self.txn.rollback()
        self.txn = None

    @rule(start=KEYS, end=KEYS)
    def scan_range(self, start, end):
        expected = sorted((k, v) for k, v in self.model.items() if start <= k < end)
        assert list(self.storage.scan("t", start, end)) == expected

    @rule()
    def checkpoint(self):
        self.storage.checkpoint()
        self.since_durable = [dict(self.model)]

    @precondition(lambda self: self.txn is None)
    @rule()
    def close_and_reopen(self):
        self.storage.close()
        self.storage = Storage.open(self.dir, env=self.env, **OPTIONS)
        self.since_durable = [dict(self.model)]
        assert dict(self.storage.scan("t")) == self.model

    @precondition(lambda self: self.txn is None)
    @rule()
    def crash_and_reopen(self):
        self.storage.close_files()
        self.env.crash()
        self.storage = Storage.open(self.dir, env=self.env, **OPTIONS)
        actual = dict(self.storage.scan("t"))
        assert actual in self.since_durable, "recovered state is not a committed prefix"
        self.model = actual
        self.since_durable = [dict(actual)]
        self.storage.checkpoint()
        check_checkpoint(self.storage.pager, self.storage.durable_meta)

    @invariant()
    def point_reads_match(self):
        for key in (b"a", b"key07", b"k" * 1000):
            assert self.storage.get("t", key) == self.model.get(key)


StorageMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("JETSTORE_HYPOTHESIS_EXAMPLES", "100")),
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
test_storage_state_machine = StorageMachine.TestCase

"""The version store in one process: a registered transaction reads the snapshot of
its begin, whatever commits after it (engine/version_store.py)."""

from __future__ import annotations

import pytest

from jetstore.engine.errors import JetError
from jetstore.engine.storage import Storage
from jetstore.engine.version_store import VersionStore


@pytest.mark.parametrize("logging", [True, False], ids=["logged", "no-log"])
def test_a_transaction_reads_its_begin_whatever_commits_after(tmp_path, logging):
    with Storage.open(tmp_path / "db", logging=logging) as s:
        s.create_table("t")
        s.commit({"t": {b"a": b"1", b"b": b"1", b"gone": b"1"}}, None)
        reader = s.begin()
        s.commit({"t": {b"a": b"2", b"gone": None, b"new": b"2"}}, None)
        s.commit({"t": {b"a": b"3", b"b": None}}, None)
        assert [reader.get("t", k) for k in (b"a", b"b", b"gone", b"new")] == [
            b"1",
            b"1",
            b"1",
            None,
        ]
        assert list(reader.scan("t")) == [(b"a", b"1"), (b"b", b"1"), (b"gone", b"1")]
        assert list(reader.scan("t", b"b", b"h")) == [(b"b", b"1"), (b"gone", b"1")]
        later = s.begin()
        s.commit({"t": {b"a": b"4"}}, None)
        assert list(later.scan("t")) == [(b"a", b"3"), (b"new", b"2")]
        reader.rollback()
        assert list(s.transactions.versions.versions) == [("t", b"a")]  # later needs a's
        later.rollback()
        assert not s.transactions.versions.versions and s.transactions.versions.bytes == 0


def test_versions_past_the_bound_fail_the_commit_with_1069():
    store = VersionStore(max_bytes=1000)
    store.record(1, {("t", b"k%d" % i): b"v" for i in range(10)})
    with pytest.raises(JetError) as e:
        store.check_room({"t": {b"k%d" % i: b"w" for i in range(10)}})
    assert e.value.err == -1069 and "max_bytes=1000" in e.value.message

"""The public API of DESIGN.md section 4, against real actor processes (no mocks).

Covers tables, reads, writes, scans (chunked), transactions, large values,
write conflicts, the one-thread-per-session rule, JetStopService, paths,
argument errors, the directory lock, close/reopen persistence, status,
``connect`` from this process and from other processes, and what a clean
shutdown leaves behind.  Backup, restore and verify_backup have their own
tests.

Most tests share one module-scoped instance and each works in its own table;
the ones that stop, close or lock an instance open their own.
"""

from __future__ import annotations

import itertools
import os
import pathlib
import subprocess
import sys
import threading

import psutil
import pytest

from jetstore.actors.buffer_manager import SCAN_CHUNK_BYTES, SCAN_CHUNK_ITEMS
from jetstore.engine import Instance, JetError, connect

MiB = 1 << 20
ACTORS = ("log_writer", "buffer_manager", "backup_worker")


def raises_jet(err: int, name: str | None = None):
    """``pytest.raises(JetError)`` that also checks the ESE number (and name)."""
    return _RaisesJet(err, name)


class _RaisesJet:
    def __init__(self, err: int, name: str | None) -> None:
        self.err, self.name = err, name
        self._cm = pytest.raises(JetError)

    def __enter__(self):
        self.info = self._cm.__enter__()
        return self.info

    def __exit__(self, *exc_info):
        suppressed = self._cm.__exit__(*exc_info)
        if not suppressed:
            return False
        error = self.info.value
        assert error.err == self.err, f"expected {self.err}, got {error!r}"
        if self.name is not None:
            assert error.name == self.name
        return suppressed


# -- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="module")
def inst(tmp_path_factory):
    instance = Instance.open(tmp_path_factory.mktemp("api") / "db")
    yield instance
    instance.close()


_table_numbers = itertools.count(1)


@pytest.fixture
def s(inst):
    session = inst.session()
    yield session
    session.close()


@pytest.fixture
def table(s):
    name = f"t{next(_table_numbers)}"
    s.create_table(name)
    return name


def assert_usable(session, table: str) -> None:
    """A normal one-operation put and a get still work (the instance is not broken)."""
    key = b"still-usable-%d" % next(_table_numbers)
    session.put(table, key, b"ok")
    assert session.get(table, key) == b"ok"


# -- tables ---------------------------------------------------------------------


def test_create_duplicate_drop_and_list_tables(s):
    s.create_table("alpha")
    s.create_table("beta")
    s.create_table("tábla")  # any non-empty str name
    tables = s.list_tables()
    assert {"alpha", "beta", "tábla"} <= set(tables)
    assert all(isinstance(t, str) for t in tables)
    with raises_jet(-1303, "JET_errTableDuplicate"):
        s.create_table("alpha")

    s.put("alpha", b"k", b"v")
    s.drop_table("alpha")
    assert "alpha" not in s.list_tables()
    assert "beta" in s.list_tables()
    with raises_jet(-1305, "JET_errObjectNotFound"):
        s.get("alpha", b"k")
    # A table created again under the same name starts empty.
    s.create_table("alpha")
    assert s.get("alpha", b"k") is None
    assert list(s.scan("alpha")) == []
    s.drop_table("alpha")


def test_missing_table(s, table):
    with raises_jet(-1305, "JET_errObjectNotFound"):
        s.get("missing", b"k")
    with raises_jet(-1305):
        list(s.scan("missing"))
    with raises_jet(-1305):
        s.put("missing", b"k", b"v")
    with raises_jet(-1305):
        s.delete("missing", b"k")
    with raises_jet(-1305):
        s.drop_table("missing")
    assert "missing" not in s.list_tables()
    assert_usable(s, table)


def test_missing_table_in_transaction_fails_it_whole(s, table):
    s.begin()
    s.put(table, b"a", b"1")
    with raises_jet(-1305, "JET_errObjectNotFound"):
        s.put("missing", b"k", b"v")  # the error may come here or at commit
        s.commit()
    try:
        s.rollback()  # only needed if the put itself failed
    except JetError as exc:
        assert exc.err == -1054
    assert s.get(table, b"a") is None  # atomic: nothing of it was applied
    assert "missing" not in s.list_tables()
    assert_usable(s, table)


# -- put / get / delete -----------------------------------------------------------


def test_put_get_delete_one_operation_transactions(inst, s, table):
    assert s.get(table, b"k") is None
    s.put(table, b"k", b"v1")
    assert s.get(table, b"k") == b"v1"
    s.put(table, b"k", b"v2")  # overwrite
    assert s.get(table, b"k") == b"v2"
    s.put(table, b"empty", b"")  # an empty value is a value, not a missing key
    assert s.get(table, b"empty") == b""
    s.put(table, bytearray(b"ba"), memoryview(b"mv"))  # bytes-like keys and values
    assert s.get(table, b"ba") == b"mv"
    s.put(table, b"\x00\xff" * 500, b"max-key")  # a 1000-byte key is the limit, allowed
    assert s.get(table, b"\x00\xff" * 500) == b"max-key"
    s.delete(table, b"k")
    assert s.get(table, b"k") is None
    s.delete(table, b"never-written")  # deleting an absent key is not an error
    # One-operation writes are committed: another session sees them at once.
    other = inst.session()
    assert other.get(table, b"empty") == b""
    assert other.get(table, b"k") is None
    other.close()


# -- scans --------------------------------------------------------------------------


def _key(i: int) -> bytes:
    return b"key%06d" % i


MANY = 2500  # more than SCAN_CHUNK_ITEMS small entries
BIG_COUNT, BIG_SIZE = 40, 64 << 10  # 2.5 MiB: more than SCAN_CHUNK_BYTES in few entries


@pytest.fixture(scope="module")
def scan_tables(inst):
    s = inst.session()
    s.create_table("many")
    s.create_table("big")
    s.create_table("empty")
    with s.transaction() as tx:
        # Inserted out of order: the scan must still come back in key order.
        for i in reversed(range(MANY)):
            tx.put("many", _key(i), b"v%d" % i)
    with s.transaction() as tx:
        for i in range(BIG_COUNT):
            tx.put("big", _key(i), bytes([i]) * BIG_SIZE)
    s.close()
    assert MANY > 2 * SCAN_CHUNK_ITEMS
    assert BIG_COUNT < SCAN_CHUNK_ITEMS and BIG_COUNT * BIG_SIZE > 2 * SCAN_CHUNK_BYTES
    return {
        "many": {_key(i): b"v%d" % i for i in range(MANY)},
        "big": {_key(i): bytes([i]) * BIG_SIZE for i in range(BIG_COUNT)},
    }


def test_scan_more_than_one_chunk_of_items(s, scan_tables):
    result = list(s.scan("many"))
    assert result == sorted(scan_tables["many"].items())


def test_scan_more_than_one_chunk_of_bytes(s, scan_tables):
    result = list(s.scan("big"))
    assert [k for k, _ in result] == sorted(scan_tables["big"])
    assert result == sorted(scan_tables["big"].items())


def test_scan_ranges(s, scan_tables):
    many = scan_tables["many"]
    # start inclusive, end exclusive, across chunk boundaries
    assert list(s.scan("many", start=_key(500), end=_key(2100))) == [
        (_key(i), many[_key(i)]) for i in range(500, 2100)
    ]
    assert [k for k, _ in s.scan("many", start=_key(2490))] == [_key(i) for i in range(2490, MANY)]
    assert [k for k, _ in s.scan("many", end=_key(3))] == [_key(0), _key(1), _key(2)]
    # start/end need not be existing keys
    assert [k for k, _ in s.scan("many", start=_key(7) + b"\0", end=_key(10) + b"\0")] == [
        _key(8),
        _key(9),
        _key(10),
    ]
    big = list(s.scan("big", start=_key(10), end=_key(30)))
    assert big == [(_key(i), scan_tables["big"][_key(i)]) for i in range(10, 30)]


def test_scan_empty_ranges(s, scan_tables):
    assert list(s.scan("empty")) == []
    assert list(s.scan("many", start=_key(5), end=_key(5))) == []  # start == end
    assert list(s.scan("many", start=_key(9), end=_key(1))) == []  # start > end
    assert list(s.scan("many", start=_key(5) + b"\0", end=_key(6))) == []  # between two keys
    assert list(s.scan("many", start=b"z")) == []  # after the last key
    assert list(s.scan("many", end=b"a")) == []  # before the first key


def test_scan_chunking_with_max_length_keys(s, table):
    """More than one chunk of 1000-byte keys: a chunk boundary falls on a key of the
    maximum length."""
    keys = [b"%04d" % i + b"x" * 996 for i in range(SCAN_CHUNK_ITEMS + 200)]
    with s.transaction() as tx:
        for key in keys:
            tx.put(table, key, b"v")
    assert [k for k, _ in s.scan(table)] == keys


# -- transactions ----------------------------------------------------------------------


def test_begin_commit_rollback(inst, s, table):
    s.begin()
    s.put(table, b"a", b"1")
    s.put(table, b"b", b"2")
    s.delete(table, b"b")
    lsn = s.commit()
    assert isinstance(lsn, int) and lsn > 0
    assert s.get(table, b"a") == b"1" and s.get(table, b"b") is None

    s.begin()
    s.put(table, b"a", b"changed")
    s.put(table, b"c", b"3")
    s.rollback()
    assert s.get(table, b"a") == b"1" and s.get(table, b"c") is None
    other = inst.session()
    assert other.get(table, b"a") == b"1" and other.get(table, b"c") is None
    other.close()

    s.begin()
    s.put(table, b"lazy", b"1")
    assert isinstance(s.commit(lazy=True), int)
    assert s.get(table, b"lazy") == b"1"

    s.begin()
    s.commit()  # an empty transaction commits fine


def test_transaction_state_errors(s, table):
    with raises_jet(-1054, "JET_errNotInTransaction"):
        s.commit()
    with raises_jet(-1054):
        s.rollback()
    s.begin()
    with raises_jet(-1103, "JET_errTransTooDeep"):
        s.begin()
    s.put(table, b"k", b"v")
    s.rollback()
    with raises_jet(-1054):
        s.rollback()
    assert s.get(table, b"k") is None
    assert_usable(s, table)


def test_transaction_context_manager_commits(inst, s, table):
    with s.transaction() as tx:
        tx.put(table, b"a", b"1")
        tx.put(table, b"b", b"2")
        tx.delete(table, b"b")
        assert tx.get(table, b"a") == b"1"
        assert tx.get(table, b"b") is None
    other = inst.session()
    assert other.get(table, b"a") == b"1"
    assert other.get(table, b"b") is None
    other.close()
    # The session is out of the transaction again.
    with raises_jet(-1054):
        s.commit()
    # Ending the transaction explicitly inside the block is allowed; exit then does nothing.
    with s.transaction() as tx:
        tx.put(table, b"explicit", b"1")
        tx.commit()
    with s.transaction() as tx:
        tx.put(table, b"rolled", b"1")
        tx.rollback()
    assert s.get(table, b"explicit") == b"1" and s.get(table, b"rolled") is None


def test_transaction_context_manager_rolls_back_and_propagates(s, table):
    s.put(table, b"a", b"before")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with s.transaction() as tx:
            tx.put(table, b"a", b"inside")
            tx.put(table, b"b", b"inside")
            raise Boom
    assert s.get(table, b"a") == b"before"
    assert s.get(table, b"b") is None
    with raises_jet(-1054):
        s.rollback()  # rolled back already: not in a transaction
    # A JetError raised inside propagates as itself, too.
    with raises_jet(-1003):
        with s.transaction() as tx:
            tx.put(table, b"c", b"1")
            tx.put(table, "not bytes", b"1")
    assert s.get(table, b"c") is None
    assert_usable(s, table)


def test_reads_in_a_transaction_see_its_own_writes(s, table):
    for i in range(0, 20, 2):
        s.put(table, _key(i), b"committed")
    s.begin()
    s.put(table, _key(3), b"new")  # between committed keys
    s.put(table, _key(4), b"overwritten")  # over a committed key
    s.delete(table, _key(6))  # a committed key deleted
    s.put(table, _key(25), b"new")  # after the last committed key
    s.put(table, _key(99), b"out of range")
    assert s.get(table, _key(3)) == b"new"
    assert s.get(table, _key(4)) == b"overwritten"
    assert s.get(table, _key(6)) is None
    assert s.get(table, _key(8)) == b"committed"
    expected = {_key(i): b"committed" for i in range(0, 20, 2)}
    expected.update({_key(3): b"new", _key(4): b"overwritten", _key(25): b"new"})
    del expected[_key(6)]
    assert list(s.scan(table, start=_key(0), end=_key(50))) == sorted(expected.items())
    assert list(s.scan(table, start=_key(3), end=_key(5))) == [
        (_key(3), b"new"),
        (_key(4), b"overwritten"),
    ]
    assert list(s.scan(table, start=_key(5), end=_key(7))) == []
    s.rollback()
    assert s.get(table, _key(4)) == b"committed" and s.get(table, _key(3)) is None


def test_transaction_overlay_on_a_chunked_scan(s, scan_tables):
    many = dict(scan_tables["many"])
    s.begin()
    for i in (0, 999, 1000, 1001, 2499):
        s.delete("many", _key(i))
        del many[_key(i)]
    for i in (1000, 1500, 2499):
        s.put("many", _key(i) + b"+", b"mine")
        many[_key(i) + b"+"] = b"mine"
    s.put("many", _key(1200), b"replaced")
    many[_key(1200)] = b"replaced"
    try:
        assert list(s.scan("many")) == sorted(many.items())
    finally:
        s.rollback()
    assert list(s.scan("many")) == sorted(scan_tables["many"].items())


def test_writes_invisible_to_other_sessions_before_commit(inst, s, table):
    other = inst.session()
    s.put(table, b"old", b"1")
    s.begin()
    s.put(table, b"new", b"2")
    s.delete(table, b"old")
    assert other.get(table, b"new") is None
    assert other.get(table, b"old") == b"1"
    assert list(other.scan(table)) == [(b"old", b"1")]
    s.commit()
    assert other.get(table, b"new") == b"2"
    assert other.get(table, b"old") is None
    assert list(other.scan(table)) == [(b"new", b"2")]
    other.close()


# -- large values -----------------------------------------------------------------------


@pytest.mark.parametrize("size", [MiB, 8 * MiB], ids=["1MiB", "8MiB"])
def test_large_values_round_trip(inst, s, table, size):
    value = os.urandom(size)
    s.put(table, b"big", value)
    assert s.get(table, b"big") == value
    other = inst.session()
    assert other.get(table, b"big") == value
    assert list(other.scan(table)) == [(b"big", value)]
    other.close()
    with s.transaction() as tx:
        tx.put(table, b"big2", value[::-1])
        assert tx.get(table, b"big2") == value[::-1]
    assert s.get(table, b"big2") == value[::-1]
    s.delete(table, b"big")
    assert s.get(table, b"big") is None


def test_value_size_limit(s, table):
    limit = 16 * MiB
    value = b"\xab" * limit  # exactly the limit is allowed
    s.put(table, b"limit", value)
    assert s.get(table, b"limit") == value
    with raises_jet(-1026, "JET_errRecordTooBig"):
        s.put(table, b"too-big", b"x" * (limit + 1))
    with raises_jet(-1026):
        with s.transaction() as tx:
            tx.put(table, b"small", b"1")
            tx.put(table, b"too-big", b"x" * (limit + 1))
    assert s.get(table, b"too-big") is None and s.get(table, b"small") is None
    assert_usable(s, table)


# -- write conflicts ---------------------------------------------------------------------


def test_write_conflict_first_committer_wins(inst, table):
    a, b = inst.session(), inst.session()
    a.begin()
    b.begin()
    a.put(table, b"k", b"A")
    b.put(table, b"k", b"B")
    b.put(table, b"b-only", b"B")
    a.commit()
    with raises_jet(-1102, "JET_errWriteConflict"):
        b.commit()
    assert a.get(table, b"k") == b"A"
    assert a.get(table, b"b-only") is None  # the loser's other writes are not applied
    # The loser is out of its transaction and can start a new one.
    with raises_jet(-1054):
        b.rollback()
    b.begin()
    b.put(table, b"k", b"B2")
    b.commit()
    assert a.get(table, b"k") == b"B2"
    a.close()
    b.close()


def test_write_conflict_with_a_one_operation_write_and_a_delete(inst, table):
    a, b = inst.session(), inst.session()
    a.put(table, b"k", b"0")
    a.begin()
    a.delete(table, b"k")
    b.put(table, b"k", b"1")  # committed after a began
    with raises_jet(-1102):
        a.commit()
    assert b.get(table, b"k") == b"1"
    # In the context manager the conflict escapes from the exit.
    with raises_jet(-1102):
        with a.transaction() as tx:
            tx.put(table, b"k", b"2")
            tx.put(table, b"other", b"2")
            b.put(table, b"k", b"3")
    assert b.get(table, b"k") == b"3" and b.get(table, b"other") is None
    # Disjoint keys do not conflict.
    a.begin()
    b.begin()
    a.put(table, b"x", b"a")
    b.put(table, b"y", b"b")
    a.commit()
    b.commit()
    assert a.get(table, b"x") == b"a" and a.get(table, b"y") == b"b"
    a.close()
    b.close()


# -- one thread at a time per session -------------------------------------------------------


def test_session_sharing_violation(s, table):
    s.put(table, b"k", b"v")
    inside, release = threading.Event(), threading.Event()
    holder_results = []

    def hold():
        with s._entered:  # the session's own guard: thread A is inside a call
            holder_results.append(s.get(table, b"k"))  # the owner itself may go on
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert inside.wait(10)
        for intrude in (
            lambda: s.get(table, b"k"),
            lambda: s.put(table, b"k", b"intruder"),
            lambda: s.delete(table, b"k"),
            lambda: list(s.scan(table)),
            lambda: s.begin(),
            lambda: s.list_tables(),
            lambda: s.create_table("intruder"),
        ):
            with raises_jet(-1910, "JET_errSessionSharingViolation"):
                intrude()
    finally:
        release.set()
        holder.join(10)
    assert holder_results == [b"v"]
    # The intruder changed nothing, and once A has left the session works again.
    assert s.get(table, b"k") == b"v"
    assert "intruder" not in s.list_tables()
    assert_usable(s, table)


def test_session_used_by_threads_one_after_another(s, table):
    errors = []

    def work(n):
        try:
            s.put(table, b"t%d" % n, b"%d" % n)
            assert s.get(table, b"t%d" % n) == b"%d" % n
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    for n in range(3):
        thread = threading.Thread(target=work, args=(n,))
        thread.start()
        thread.join(30)
    assert errors == []
    assert list(s.scan(table)) == [(b"t0", b"0"), (b"t1", b"1"), (b"t2", b"2")]


def test_sessions_in_concurrent_threads(inst, table):
    errors = []

    def work(n):
        try:
            session = inst.session()
            for i in range(50):
                session.put(table, b"%d-%02d" % (n, i), b"v")
            session.close()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    s = inst.session()
    assert len(list(s.scan(table))) == 200
    s.close()


# -- bad arguments ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, err",
    [
        (lambda s, t: s.put(t, "str key", b"v"), -1003),
        (lambda s, t: s.get(t, "str key"), -1003),
        (lambda s, t: s.delete(t, 5), -1003),
        (lambda s, t: s.get(t, None), -1003),
        (lambda s, t: s.put(t, b"k", "str value"), -1003),
        (lambda s, t: s.put(t, b"k", None), -1003),
        (lambda s, t: list(s.scan(t, start="a")), -1003),
        (lambda s, t: s.put(t, b"k" * 1001, b"v"), -346),
        (lambda s, t: s.get(t, b"k" * 1001), -346),
        (lambda s, t: s.delete(t, b"k" * 1001), -346),
        (lambda s, t: list(s.scan(t, end=b"k" * 1001)), -346),
        (lambda s, t: s.create_table(""), -1002),
        (lambda s, t: s.create_table("x" * 256), -1002),
        (lambda s, t: s.create_table("nul\0name"), -1002),
        (lambda s, t: s.get("", b"k"), -1002),
        (lambda s, t: s.create_table(5), -1003),
        (lambda s, t: s.create_table(b"bytes"), -1003),
        (lambda s, t: s.put(None, b"k", b"v"), -1003),
    ],
    ids=[
        "put-str-key",
        "get-str-key",
        "delete-int-key",
        "get-none-key",
        "put-str-value",
        "put-none-value",
        "scan-str-start",
        "put-long-key",
        "get-long-key",
        "delete-long-key",
        "scan-long-end",
        "create-empty-name",
        "create-long-name",
        "create-nul-name",
        "get-empty-name",
        "create-int-name",
        "create-bytes-name",
        "put-none-table",
    ],
)
def test_bad_arguments(s, table, call, err):
    with raises_jet(err):
        call(s, table)
    assert_usable(s, table)
    if err == -1002 or err == -1003:
        assert all(isinstance(t, str) and t for t in s.list_tables())


def test_bad_arguments_inside_a_transaction_keep_it(s, table):
    s.begin()
    s.put(table, b"a", b"1")
    with raises_jet(-346, "JET_errKeyTruncated"):
        s.put(table, b"k" * 1001, b"v")
    with raises_jet(-1003, "JET_errInvalidParameter"):
        s.put(table, "k", b"v")
    s.put(table, b"b", b"2")
    s.commit()
    assert [k for k, _ in s.scan(table)] == [b"a", b"b"]


@pytest.mark.parametrize(
    "options",
    [
        {"page_size": 5000},
        {"log_file_size": 1024},
        {"cache_size": "x"},
        {"logging": "yes"},
        {"page_size": "8192"},
        {"create": 1},
    ],
    ids=["page_size", "log_file_size", "cache_size", "logging", "page_size-str", "create-int"],
)
def test_bad_open_parameters(tmp_path, inst, s, table, options):
    with raises_jet(-1003, "JET_errInvalidParameter"):
        Instance.open(tmp_path / "bad", **options)
    # Nothing was left running or locked: a good open of the same directory works.
    with Instance.open(tmp_path / "bad") as good:
        session = good.session()
        session.create_table("t")
        assert_usable(session, "t")
    assert_usable(s, table)  # and the shared instance never noticed


def test_invalid_paths(tmp_path):
    with raises_jet(-1023, "JET_errInvalidPath"):
        Instance.open("")
    with raises_jet(-1023):
        Instance.open(b"")
    with raises_jet(-1023):
        Instance.open(str(tmp_path / "nul\0byte"))
    with raises_jet(-1023):
        Instance.open(12345)
    with raises_jet(-1023):
        connect("")


def test_open_path_that_is_a_file(tmp_path):
    file = tmp_path / "a-file"
    file.write_bytes(b"not an instance")
    with raises_jet(-1023, "JET_errInvalidPath"):
        Instance.open(file)
    assert file.read_bytes() == b"not an instance"


def test_open_missing_directory_without_create(tmp_path):
    missing = tmp_path / "missing"
    with raises_jet(-1203, "JET_errDatabaseNotFound"):
        Instance.open(missing, create=False)
    assert not missing.exists()


# -- paths, open, close, reopen -------------------------------------------------------------


def test_str_bytes_and_pathlike_paths(tmp_path):
    path = tmp_path / "p"
    with Instance.open(str(path)) as inst:
        s = inst.session()
        s.create_table("t")
        s.put("t", b"k", b"from str")
    with Instance.open(os.fsencode(path)) as inst:
        s = inst.session()
        assert s.get("t", b"k") == b"from str"
        s.put("t", b"k", b"from bytes")
    with Instance.open(pathlib.Path(path), create=False) as inst:
        assert inst.session().get("t", b"k") == b"from bytes"


def test_open_close_empty_instance_repeatedly(tmp_path):
    path = tmp_path / "empty"
    for n in range(5):
        inst = Instance.open(path)
        s = inst.session()
        if n == 0:
            assert s.list_tables() == []
            s.create_table("count")
        assert s.get("count", b"n") == (b"%d" % (n - 1) if n else None)
        s.put("count", b"n", b"%d" % n)
        inst.close()
        inst.close()  # a second close is harmless


def test_second_open_is_refused_and_data_survives_reopen(tmp_path):
    path = tmp_path / "locked"
    value = os.urandom(MiB)
    inst = Instance.open(path)
    try:
        s = inst.session()
        s.create_table("t")
        s.create_table("dropped")
        with s.transaction() as tx:
            for i in range(300):
                tx.put("t", _key(i), b"v%d" % i)
        s.put("t", b"overflow", value)
        s.delete("t", _key(7))
        s.begin()
        s.put("t", b"lazy", b"1")
        s.commit(lazy=True)
        s.begin()
        s.put("t", b"rolled-back", b"1")
        s.rollback()
        s.drop_table("dropped")
        for variant in (path, str(path), os.fsencode(path)):
            with raises_jet(-1032, "JET_errFileAccessDenied"):
                Instance.open(variant)
        # The refused open took nothing from the first: it and connect still work.
        assert s.get("t", _key(1)) == b"v1"
        client = connect(path)
        assert client.session().get("t", _key(2)) == b"v2"
        client.close()
    finally:
        inst.close()

    expected = {_key(i): b"v%d" % i for i in range(300) if i != 7}
    expected.update({b"overflow": value, b"lazy": b"1"})
    inst = Instance.open(path, create=False)
    try:
        s = inst.session()
        assert s.list_tables() == ["t"]
        assert dict(s.scan("t")) == expected
        with raises_jet(-1032):
            Instance.open(path)
    finally:
        inst.close()


# -- status ----------------------------------------------------------------------------------


def test_status_reports_live_actors(inst):
    status = inst.status()
    pids = set()
    for name in ACTORS:
        actor = status["actors"][name]
        assert type(actor["pid"]) is int
        assert actor["alive"] is True
        assert psutil.pid_exists(actor["pid"])
        pids.add(actor["pid"])
    assert len(pids) == 3 and os.getpid() not in pids


# -- stop_service --------------------------------------------------------------------------------


def test_stop_service(tmp_path):
    path = tmp_path / "stopped"
    inst = Instance.open(path)
    s = inst.session()
    s.create_table("t")
    s.put("t", b"k", b"v")
    client = connect(path)
    client_session = client.session()
    assert client_session.get("t", b"k") == b"v"

    inst.stop_service()
    for call in (
        lambda: s.get("t", b"k"),
        lambda: s.put("t", b"k2", b"v"),
        lambda: s.delete("t", b"k"),
        lambda: s.create_table("u"),
        lambda: s.drop_table("t"),
        lambda: s.list_tables(),
        lambda: list(s.scan("t")),
        lambda: s.begin(),
        lambda: inst.session().get("t", b"k"),
        lambda: client_session.put("t", b"k3", b"v"),
        lambda: client.session().get("t", b"k"),
    ):
        with raises_jet(-1329, "JET_errClientRequestToStopJetService"):
            call()
    # What an operator needs most now still answers, and says why nothing else does.
    assert inst.status()["buffer_manager"]["service_stopped"] is True
    assert client.status()["buffer_manager"]["service_stopped"] is True
    client.close()
    inst.close()  # still a clean shutdown
    assert not (path / "run" / "endpoints.json").exists()
    # The stop does not outlive the instance, and nothing was written after it.
    with Instance.open(path) as again:
        s = again.session()
        assert s.get("t", b"k") == b"v" and s.get("t", b"k2") is None
        assert s.list_tables() == ["t"]


def test_new_session_after_stop_service(tmp_path):
    with Instance.open(tmp_path / "stopped") as inst:
        inst.stop_service()
        with raises_jet(-1329, "JET_errClientRequestToStopJetService"):
            inst.session()


# -- connect ----------------------------------------------------------------------------------


def test_connect_in_the_same_process(inst, table):
    s = inst.session()
    s.put(table, b"from-instance", b"1")
    for variant in (inst.path, os.fsencode(inst.path), pathlib.Path(inst.path)):
        client = connect(variant)
        cs = client.session()
        assert cs.get(table, b"from-instance") == b"1"
        cs.put(table, b"from-client", b"2")
        with cs.transaction() as tx:
            tx.put(table, b"from-client-tx", b"3")
        status = client.status()
        assert set(status["actors"]) >= {"buffer_manager", "log_writer"}
        client.close()
        with raises_jet(-1029):
            cs.get(table, b"from-instance")  # detached
    # close() only detached: the instance goes on.
    assert s.get(table, b"from-client") == b"2"
    assert s.get(table, b"from-client-tx") == b"3"
    assert_usable(s, table)
    s.close()


CHILD = """
import sys
from jetstore.engine import connect
path, table = sys.argv[1], sys.argv[2]
client = connect(path)
s = client.session()
print(s.get(table, b"from-parent").decode(), flush=True)
s.put(table, b"from-child", b"hello parent")
with s.transaction() as tx:
    tx.put(table, b"child-tx", b"1")
print(sorted(client.status()["actors"]), flush=True)
client.close()
"""


def test_connect_from_a_child_process(inst, table):
    s = inst.session()
    s.put(table, b"from-parent", b"hello child")
    result = subprocess.run(
        [sys.executable, "-c", CHILD, inst.path, table], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "hello child"
    assert "buffer_manager" in lines[1]
    assert s.get(table, b"from-child") == b"hello parent"
    assert s.get(table, b"child-tx") == b"1"
    assert_usable(s, table)  # the child's close() only detached it
    assert all(a["alive"] for a in inst.status()["actors"].values())
    s.close()


def test_connect_without_a_running_instance(tmp_path):
    with raises_jet(-1029, "JET_errNotInitialized"):
        connect(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with raises_jet(-1029):
        connect(tmp_path / "empty")
    with Instance.open(tmp_path / "closed") as inst:
        inst.session().create_table("t")
    with raises_jet(-1029):
        connect(tmp_path / "closed")  # opened once, closed since


WRITER = """
import sys
from jetstore.engine import connect
path, client_id, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
client = connect(path)
s = client.session()
i = 0
while i < count:
    if i % 20 < 10:  # one-operation transactions ...
        key = b"c%d-%04d" % (client_id, i)
        s.put("mp", key, b"value-" + key)
        print(key.decode(), flush=True)
        i += 1
    else:  # ... and transactions of 5 keys
        keys = [b"c%d-%04d" % (client_id, j) for j in range(i, min(i + 5, count))]
        with s.transaction() as tx:
            for key in keys:
                tx.put("mp", key, b"value-" + key)
        for key in keys:
            print(key.decode(), flush=True)
        i += len(keys)
client.close()
"""


def test_client_processes_commit_concurrently_and_survive_reopen(tmp_path):
    path = tmp_path / "mp"
    clients, per_client = 4, 200
    inst = Instance.open(path)
    try:
        inst.session().create_table("mp")
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, str(path), str(n), str(per_client)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in range(clients)
        ]
        acknowledged = set()
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            acknowledged.update(line.encode() for line in out.split())
        assert len(acknowledged) == clients * per_client
        s = inst.session()
        assert dict(s.scan("mp")) == {key: b"value-" + key for key in acknowledged}
    finally:
        inst.close()
    with Instance.open(path, create=False) as inst:
        s = inst.session()
        found = dict(s.scan("mp"))
        for key in acknowledged:
            assert found.get(key) == b"value-" + key, key
        assert len(found) == len(acknowledged)


# -- clean shutdown ----------------------------------------------------------------------------


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_close_leaves_nothing_behind(tmp_path):
    path = tmp_path / "clean"
    inst = Instance.open(path)
    s = inst.session()
    s.create_table("t")
    s.put("t", b"k", b"v")
    client = connect(path)  # an attached client does not hold the close up
    assert client.session().get("t", b"k") == b"v"
    pids = [inst.status()["actors"][name]["pid"] for name in ACTORS]
    sockets = [e[len("ipc://") :] for e in inst.endpoints.values() if e.startswith("ipc://")]
    run = path / "run"
    assert (run / "endpoints.json").exists()
    assert sockets and all(os.path.exists(sock) for sock in sockets)

    inst.close()
    assert all(_gone(pid) for pid in pids), [(p, psutil.pid_exists(p)) for p in pids]
    assert not any(os.path.exists(sock) for sock in sockets)
    assert set(os.listdir(run)) <= {"lock"}
    with raises_jet(-1029):
        s.get("t", b"k")  # the instance is closed
    with raises_jet(-1029):
        inst.session()
    with raises_jet(-1029):
        connect(path)
    # A client still attached learns at once that the instance is gone - no hang.
    with pytest.raises(JetError) as excinfo:
        client.session().get("t", b"k")
    assert excinfo.value.err in (-1090, -1029)
    client.close()
    inst.close()  # idempotent

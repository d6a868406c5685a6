"""The in-process storage engine: data model, durability, checkpoints, pins, errors."""

from __future__ import annotations

import os
import random
import struct

import pytest

from jetstore.engine.database_file import read_meta
from jetstore.engine.errors import JetError
from jetstore.engine.integrity import check_checkpoint
from jetstore.engine.meta_format import DB_CLEAN, DB_DIRTY
from jetstore.engine.pager import used_pages
from jetstore.engine.storage import DB_FILE, LOG_DIR, Storage
from jetstore.tools.corrupt import flip_bit

SMALL = {"page_size": 4096, "log_file_size": 64 << 10, "cache_size": 1 << 20}


def open_storage(path, **options) -> Storage:
    return Storage.open(path, **{**SMALL, **options})


def check(storage: Storage) -> dict:
    storage.checkpoint()
    return check_checkpoint(storage.pager, storage.durable_meta)


def contents(storage: Storage, table: str = "t") -> dict[bytes, bytes]:
    return dict(storage.scan(table))


def test_put_get_delete_scan(tmp_path):
    with open_storage(tmp_path) as s:
        s.create_table("t")
        s.commit({"t": {b"b": b"2", b"a": b"1", b"c": b"3"}}, None)
        assert s.get("t", b"a") == b"1" and s.get("t", b"zz") is None
        s.commit({"t": {b"b": None}}, None)
        assert list(s.scan("t")) == [(b"a", b"1"), (b"c", b"3")]
        assert list(s.scan("t", start=b"b", end=b"c")) == []
        assert list(s.scan("t", start=b"a", end=b"c")) == [(b"a", b"1")]
        assert check(s)["keys"] == 2


def test_many_keys_split_and_survive_reopen(tmp_path):
    rng = random.Random(1)
    expected = {}
    with open_storage(tmp_path) as s:
        s.create_table("t")
        for _batch in range(40):
            writes = {}
            for _ in range(100):
                key = rng.randbytes(rng.randrange(1, 40))
                value = rng.randbytes(rng.randrange(0, 600))
                writes[key] = value
            for key in rng.sample(sorted(expected), min(len(expected), 30)):
                writes[key] = None
            s.commit({"t": writes}, None)
            for key, value in writes.items():
                if value is None:
                    expected.pop(key, None)
                else:
                    expected[key] = value
        assert contents(s) == expected
        assert check(s)["keys"] == len(expected)
    with open_storage(tmp_path) as s:
        assert contents(s) == dict(sorted(expected.items()))
        assert [k for k, _ in s.scan("t")] == sorted(expected)


def test_sequential_bulk_load_fills_pages(tmp_path):
    with open_storage(tmp_path, cache_size=64 << 20) as s:
        s.create_table("t")
        s.commit({"t": {b"%08d" % i: b"x" * 100 for i in range(20000)}}, None)
        stats = check(s)
        # ~110 bytes an entry, 4 KiB pages: full leaves hold ~36; half-full ones would need 2x.
        assert stats["pages"] < 20000 / 30
        assert s.get("t", b"00012345") == b"x" * 100


def test_large_values_use_overflow_pages(tmp_path):
    big = os.urandom(8 << 20)
    with open_storage(tmp_path) as s:
        s.create_table("t")
        s.commit({"t": {b"big": big, b"mid": b"m" * 5000, b"small": b"s"}}, None)
        assert s.get("t", b"big") == big
        s.commit({"t": {b"mid": b"m" * 9000}}, None)
        before = check(s)
        s.commit({"t": {b"big": None}}, None)
        after = check(s)
        assert after["free"] > before["free"] + 1000  # the 8 MiB chain was freed
    with open_storage(tmp_path) as s:
        assert s.get("t", b"mid") == b"m" * 9000 and s.get("t", b"big") is None


def test_small_cache_evicts_dirty_pages_and_loses_nothing(tmp_path):
    rng = random.Random(2)
    data = {rng.randbytes(16): rng.randbytes(300) for _ in range(5000)}
    with open_storage(tmp_path, cache_size=1 << 20) as s:
        s.create_table("t")
        items = list(data.items())
        for i in range(0, len(items), 500):
            s.commit({"t": dict(items[i : i + 500])}, None)
        assert len(s.pager.cache) <= s.pager.cache_pages
        assert contents(s) == data
        check(s)
    with open_storage(tmp_path) as s:
        assert contents(s) == data


def test_tables_create_drop_list(tmp_path):
    with open_storage(tmp_path) as s:
        for name in ("b", "a", "ü-nicode"):
            s.create_table(name)
        with pytest.raises(JetError) as e:
            s.create_table("a")
        assert (e.value.err, e.value.name) == (-1303, "JET_errTableDuplicate")
        s.commit({"a": {b"k%d" % i: b"v" * 500 for i in range(200)}}, None)
        s.drop_table("a")
        assert s.list_tables() == ["b", "ü-nicode"]
        with pytest.raises(JetError) as e:
            s.get("a", b"k1")
        assert e.value.err == -1305
        stats = check(s)
        assert stats["tables"] == 2 and stats["keys"] == 0
    with open_storage(tmp_path) as s:
        assert s.list_tables() == ["b", "ü-nicode"]


@pytest.mark.parametrize(
    "call, err",
    [
        (lambda s: s.create_table(""), -1002),
        (lambda s: s.create_table(5), -1003),
        (lambda s: s.get("t", "str-key"), -1003),
        (lambda s: s.get("t", b"k" * 1001), -346),
        (lambda s: s.commit({"t": {b"k": b"v" * ((16 << 20) + 1)}}, None), -1026),
        (lambda s: s.begin().put("t", b"k", 7), -1003),
        (lambda s: s.get("missing", b"k"), -1305),
        (lambda s: s.begin().put("missing", b"k", b"v"), -1305),
    ],
)
def test_bad_arguments_give_ese_errors(tmp_path, call, err):
    with open_storage(tmp_path) as s:
        s.create_table("t")
        with pytest.raises(JetError) as e:
            call(s)
        assert e.value.err == err
        s.commit({"t": {b"still": b"works"}}, None)  # bad input never breaks the engine


def test_bad_open_parameters(tmp_path):
    for options in (
        {"page_size": 5000},
        {"page_size": 65536},
        {"log_file_size": 1024},
        {"cache_size": "big"},
    ):
        with pytest.raises(JetError) as e:
            Storage.open(tmp_path / "x", **options)
        assert e.value.err == -1003
    with pytest.raises(JetError) as e:
        Storage.open(tmp_path / "absent", create=False)
    assert e.value.err == -1203
    with pytest.raises(JetError) as e:
        Storage.open("")
    assert e.value.err == -1023


def test_transactions_read_their_writes_and_roll_back(tmp_path):
    with open_storage(tmp_path) as s:
        s.create_table("t")
        s.commit({"t": {b"a": b"1", b"b": b"2"}}, None)
        tx = s.begin()
        tx.put("t", b"c", b"3")
        tx.delete("t", b"a")
        assert tx.get("t", b"c") == b"3" and tx.get("t", b"a") is None
        assert list(tx.scan("t")) == [(b"b", b"2"), (b"c", b"3")]
        assert s.get("t", b"c") is None  # not visible outside before commit
        tx.rollback()
        assert contents(s) == {b"a": b"1", b"b": b"2"}
        with pytest.raises(JetError) as e:
            tx.put("t", b"x", b"y")
        assert e.value.err == -1054


def test_write_conflict_first_committer_wins(tmp_path):
    with open_storage(tmp_path) as s:
        s.create_table("t")
        first, second = s.begin(), s.begin()
        first.put("t", b"k", b"first")
        second.put("t", b"k", b"second")
        second.put("t", b"other", b"x")
        first.commit()
        with pytest.raises(JetError) as e:
            second.commit()
        assert (e.value.err, e.value.name) == (-1102, "JET_errWriteConflict")
        assert s.get("t", b"k") == b"first" and s.get("t", b"other") is None
        third = s.begin()  # began after the commit: no conflict
        third.put("t", b"k", b"third")
        third.commit()
        assert s.get("t", b"k") == b"third"


def test_clean_close_then_reopen_replays_nothing(tmp_path):
    with open_storage(tmp_path) as s:
        s.create_table("t")
        s.commit({"t": {b"k": b"v"}}, None)
    with open(tmp_path / DB_FILE, "rb") as f:
        assert read_meta(_RawFile(f)).state == DB_CLEAN
    with open_storage(tmp_path) as s:
        assert s.replayed == 0 and s.get("t", b"k") == b"v"
        assert s.durable_meta.state == DB_DIRTY  # open for business


def test_crash_without_close_replays_the_log(tmp_path):
    s = open_storage(tmp_path)
    s.create_table("t")
    for i in range(300):
        s.commit({"t": {b"%d" % i: b"v%d" % i}}, None)
    s.close_files()  # the process dies: no checkpoint, no clean state
    with open_storage(tmp_path) as s:
        assert s.replayed > 0
        assert contents(s) == {b"%d" % i: b"v%d" % i for i in range(300)}
        check(s)


def test_lazy_commits_are_durable_after_checkpoint(tmp_path):
    s = open_storage(tmp_path)
    s.create_table("t")
    s.commit({"t": {b"lazy": b"1"}}, None, lazy=True)
    s.checkpoint()  # the write-ahead rule syncs the log first
    s.close_files()
    with open_storage(tmp_path) as s:
        assert s.get("t", b"lazy") == b"1"


def test_logging_disabled_has_no_log_and_clean_close_persists(tmp_path):
    with open_storage(tmp_path, logging=False) as s:
        s.create_table("t")
        s.commit({"t": {b"k": b"v"}}, None)
    assert not (tmp_path / LOG_DIR).exists()
    with open_storage(tmp_path, logging=False) as s:
        assert s.get("t", b"k") == b"v"


def test_pinned_checkpoint_pages_never_change(tmp_path):
    rng = random.Random(3)
    with open_storage(tmp_path) as s:
        s.create_table("t")
        s.commit({"t": {rng.randbytes(8): rng.randbytes(200) for _ in range(2000)}}, None)
        s.checkpoint()
        pin = s.pin_checkpoint()
        used = used_pages(s.pager, pin.meta)
        with open(tmp_path / DB_FILE, "rb") as f:
            before = {p: os.pread(f.fileno(), 4096, p * 4096) for p in used}
        for _ in range(30):  # heavy rewriting, deletes and checkpoints while pinned
            keys = [k for k, _ in s.scan("t")]
            writes = {k: rng.randbytes(250) for k in rng.sample(keys, 200)}
            writes.update({k: None for k in rng.sample(keys, 50)})
            writes.update({rng.randbytes(8): rng.randbytes(200) for _ in range(100)})
            s.commit({"t": writes}, None)
            s.checkpoint()
        with open(tmp_path / DB_FILE, "rb") as f:
            after = {p: os.pread(f.fileno(), 4096, p * 4096) for p in used}
        assert after == before
        assert check_checkpoint(s.pager, pin.meta)["pages"] == pin.meta.page_count
        s.unpin_checkpoint(pin.seq)
        grown = s.pager.page_count
        for _ in range(5):
            keys = [k for k, _ in s.scan("t")]
            s.commit({"t": {k: rng.randbytes(250) for k in rng.sample(keys, 200)}}, None)
            s.checkpoint()
        assert s.pager.page_count <= grown + 50  # freed pages are reused once unpinned


class _RawFile:
    def __init__(self, f) -> None:
        self.f, self.path = f, f.name

    def pread(self, size: int, offset: int) -> bytes:
        return os.pread(self.f.fileno(), size, offset)


def _data_page_of(tmp_path) -> int:
    with open_storage(tmp_path) as s:
        s.create_table("t")
        s.commit({"t": {b"k%04d" % i: b"v" * 100 for i in range(500)}}, None)
        return s.tables["t"]


def test_flipped_bit_in_page_is_read_verify_failure(tmp_path):
    root = _data_page_of(tmp_path)
    flip_bit(tmp_path / DB_FILE, root * 4096 + 100)
    with open_storage(tmp_path) as s, pytest.raises(JetError) as e:
        s.get("t", b"k0001")
    assert e.value.err == -1018
    assert f"page {root}" in str(e.value) and DB_FILE in str(e.value)


def test_page_written_at_wrong_offset_is_pgno_failure(tmp_path):
    root = _data_page_of(tmp_path)
    other = root - 1 if root > 2 else root + 1
    with open(tmp_path / DB_FILE, "r+b") as f:  # page `root` lands where `other` belongs
        os.pwrite(f.fileno(), os.pread(f.fileno(), 4096, root * 4096), other * 4096)
    with open_storage(tmp_path) as s, pytest.raises(JetError) as e:
        s.pager.cache.clear()
        s.pager.node(other)
    assert e.value.err == -1118 and f"page {other}" in str(e.value)
    assert f"holds page {root}" in str(e.value)


def test_both_meta_slots_bad_is_a_clear_error(tmp_path):
    _data_page_of(tmp_path)
    flip_bit(tmp_path / DB_FILE, 100)
    flip_bit(tmp_path / DB_FILE, 4096 + 100)
    with pytest.raises(JetError) as e:
        open_storage(tmp_path)
    assert e.value.err == -1206
    assert "slot 0" in str(e.value) and "slot 1" in str(e.value)


def test_one_bad_meta_slot_falls_back_to_the_other(tmp_path):
    _data_page_of(tmp_path)
    with open(tmp_path / DB_FILE, "rb") as f:
        newest = read_meta(_RawFile(f))
    flip_bit(tmp_path / DB_FILE, newest.slot * 4096 + 60)
    with open_storage(tmp_path) as s:  # the previous checkpoint plus the log
        assert s.get("t", b"k0499") == b"v" * 100


def test_empty_file_is_not_a_database(tmp_path):
    (tmp_path / DB_FILE).write_bytes(bytes(8192))
    with pytest.raises(JetError) as e:
        open_storage(tmp_path)
    assert e.value.err == -1028


def test_meta_layout_fields_roundtrip(tmp_path):
    with open_storage(tmp_path) as s:
        s.create_table("t")
        meta = s.durable_meta
    page = meta.to_page()
    assert struct.unpack_from("<I", page, 4)[0] == meta.slot
    with open(tmp_path / DB_FILE, "rb") as f:
        again = read_meta(_RawFile(f))
    assert again.db_signature == meta.db_signature and again.seq == meta.seq + 1


def test_a_transaction_past_its_deadline_is_ended_by_the_clock(tmp_path):
    """The buffer manager's sessions are ended when their client goes away: their
    deadline passes on the clock the caller gives, no waiting here."""
    with Storage.open(str(tmp_path / "db")) as s:
        kept, _ = s.begin_transaction(deadline=1000.0)
        lost, _ = s.begin_transaction(deadline=10.0)
        local = s.begin()  # no deadline: a transaction of this process ends when it ends
        assert s.expire_transactions(now=9.0) == []
        assert s.expire_transactions(now=11.0) == [lost]
        assert set(s.transactions.active) == {kept, local.txn_id}
        local.rollback()
        s.end_transaction(kept)
        assert s.transactions.active == {} and s.expire_transactions(now=2000.0) == []

"""Read views in one process: a Storage writes, a ReadView reads the files it leaves
(jet.edb, the log, DIR/run/published and DIR/run/readers) - DESIGN.md 3 and 3a.

Every expected value comes from an oracle of what was committed, with the LSN each
commit returned; a snapshot must read exactly the newest committed write at or
below its LSN.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from jetstore.engine.errors import JetError
from jetstore.engine.log_format import lsn_gen
from jetstore.engine.published_format import create_published
from jetstore.engine.read_view import ReadView
from jetstore.engine.reader_table_format import IDLE_GRACE_NS, ReaderTable, create_reader_table
from jetstore.engine.storage import DB_FILE, Storage


def open_pair(tmp_path, **view_options) -> tuple[Storage, ReadView]:
    path = str(tmp_path / "db")
    run = os.path.join(path, "run")
    os.makedirs(run)
    create_published(run)
    create_reader_table(run)
    storage = Storage.open(path, run_dir=run, page_size=4096, log_file_size=64 << 10)
    storage.create_table("t")
    return storage, ReadView(path, run, **view_options)


class Oracle:
    """Every committed write with the LSN its commit returned."""

    def __init__(self) -> None:
        self.writes: list[tuple[int, bytes, bytes | None]] = []

    def commit(self, storage: Storage, changes: dict[bytes, bytes | None]) -> int:
        storage.commit({"t": changes}, None)
        lsn = storage.log.durable_lsn  # a durable commit: its record ends here
        self.writes += [(lsn, key, value) for key, value in changes.items()]
        return lsn

    def state(self, lsn: int) -> dict[bytes, bytes]:
        state: dict[bytes, bytes | None] = {}
        for written_at, key, value in self.writes:
            if written_at <= lsn:
                state[key] = value
        return {k: v for k, v in sorted(state.items()) if v is not None}


def fill(storage: Storage, keys: int, value: bytes) -> None:
    """One durable commit per key: k0000 .. k{keys - 1}."""
    for i in range(keys):
        storage.commit({"t": {b"k%04d" % i: value}}, None)


def read_all(snapshot) -> dict[bytes, bytes]:
    return dict(snapshot.scan("t", None, None))


def assert_past_bound(snapshot, key: bytes, bound: str) -> None:
    """A read of a snapshot past one of the view's bounds: -1069, naming the bound."""
    with pytest.raises(JetError) as e:
        snapshot.get("t", key)
    assert e.value.err == -1069 and bound in e.value.message


def test_a_snapshot_reads_exactly_the_commits_at_or_below_its_lsn(tmp_path):
    storage, view = open_pair(tmp_path)
    oracle = Oracle()
    oracle.commit(storage, {b"x": b"0", b"y": b"0"})
    old = view.snapshot(hold=True)
    oracle.commit(storage, {b"x": b"1", b"y": b"1"})  # read skew would mix these
    oracle.commit(storage, {b"z": b"1"})
    oracle.commit(storage, {b"x": None})
    new = view.snapshot(hold=True)
    assert (old.get("t", b"x"), old.get("t", b"y"), old.get("t", b"z")) == (b"0", b"0", None)
    assert read_all(old) == oracle.state(old.lsn) == {b"x": b"0", b"y": b"0"}
    assert read_all(new) == oracle.state(new.lsn) == {b"y": b"1", b"z": b"1"}
    assert new.get("t", b"x") is None
    old.close()
    new.close()
    view.close()
    storage.close()


def test_old_snapshots_read_through_checkpoints_and_page_rewrites(tmp_path):
    storage, view = open_pair(tmp_path)
    oracle = Oracle()
    for i in range(300):
        oracle.commit(storage, {b"k%04d" % i: b"a" * 200})
    storage.checkpoint()
    old = view.snapshot(hold=True)
    for round_ in range(6):  # rewrite every page, checkpoint each time: pages are freed
        for i in range(300):
            oracle.commit(storage, {b"k%04d" % i: b"%d" % round_ * 100})
        storage.checkpoint()
    assert read_all(old) == oracle.state(old.lsn)
    assert old.base.seq < storage.meta.seq - 4  # its checkpoint is long superseded
    new = view.snapshot(hold=True)
    assert read_all(new) == oracle.state(new.lsn)
    old.close()
    new.close()
    view.close()
    storage.close()


def test_pages_an_old_snapshot_reads_are_reused_only_after_it_closes(tmp_path):
    storage, view = open_pair(tmp_path)
    fill(storage, 200, b"v" * 100)
    storage.checkpoint()
    old = view.snapshot(hold=True)
    for _ in range(4):
        fill(storage, 200, b"w" * 100)
        storage.checkpoint()
    held_back = len(storage.pager.pending)
    assert held_back > 0 and not storage.pager.free_now
    old.close()
    view.snapshot()  # the view moves to the newest checkpoint; its slot says so
    storage.checkpoint()
    storage.checkpoint()
    assert len(storage.pager.pending) < held_back
    view.close()
    storage.close()


def test_tables_created_and_dropped_after_the_checkpoint(tmp_path):
    storage, view = open_pair(tmp_path)
    storage.commit({"t": {b"a": b"1"}}, None)
    before = view.snapshot(hold=True)
    storage.drop_table("t")
    dropped = view.snapshot(hold=True)
    storage.create_table("t")
    storage.commit({"t": {b"b": b"2"}}, None)
    storage.create_table("u")
    recreated = view.snapshot(hold=True)
    assert read_all(before) == {b"a": b"1"} and before.list_tables() == ["t"]
    with pytest.raises(JetError) as e:
        dropped.get("t", b"a")
    assert e.value.err == -1305
    assert read_all(recreated) == {b"b": b"2"} and recreated.get("t", b"a") is None
    assert recreated.list_tables() == ["t", "u"]
    for snapshot in (before, dropped, recreated):
        snapshot.close()
    view.close()
    storage.close()


def test_large_values_and_records_split_across_generations(tmp_path):
    storage, view = open_pair(tmp_path)
    big = os.urandom(150_000)  # two and a half 64 KiB generations, and overflow pages
    storage.commit({"t": {b"big": big, b"small": b"s"}}, None)
    assert view.snapshot().get("t", b"big") == big
    storage.checkpoint()
    assert view.snapshot().get("t", b"big") == big
    view.close()
    storage.close()


def test_a_flipped_bit_in_a_page_is_the_named_error(tmp_path):
    storage, view = open_pair(tmp_path)
    for i in range(100):
        storage.commit({"t": {b"k%03d" % i: b"v" * 100}}, None)
    storage.checkpoint()
    root = storage.tables["t"]
    storage.close()
    with open(tmp_path / "db" / DB_FILE, "r+b") as f:
        f.seek(root * 4096 + 100)
        byte = f.read(1)
        f.seek(root * 4096 + 100)
        f.write(bytes([byte[0] ^ 0x10]))
    with pytest.raises(JetError) as e:
        view.snapshot().get("t", b"k001")
    assert e.value.name == "JET_errReadVerifyFailure" and f"page {root}" in e.value.message
    assert DB_FILE in e.value.message
    view.close()


def test_a_flipped_bit_in_the_log_is_the_named_error(tmp_path):
    storage, view = open_pair(tmp_path)
    storage.checkpoint()
    view.snapshot()
    storage.commit({"t": {b"k": b"v" * 100}}, None)
    generation = storage.log.current_generation
    path = tmp_path / "db" / "logs" / f"jet{generation:08X}.log"
    data = bytearray(path.read_bytes())
    data[4096 + 40] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(JetError) as e:
        view.snapshot()
    assert e.value.name == "JET_errLogCorrupted" and path.name in e.value.message
    view.close()
    storage.close()


def test_a_snapshot_held_too_many_checkpoints_fails_with_1069(tmp_path):
    storage, view = open_pair(tmp_path, max_snapshot_checkpoints=2)
    storage.commit({"t": {b"k": b"1"}}, None)
    old = view.snapshot(hold=True)
    for _ in range(3):
        storage.commit({"t": {b"k": b"2"}}, None)
        storage.checkpoint()
    assert view.snapshot().get("t", b"k") == b"2"  # the view notices when a read starts
    assert_past_bound(old, b"k", "max_snapshot_checkpoints=2")
    old.close()
    view.close()
    storage.close()


def test_an_idle_view_holds_nothing_and_revalidates(tmp_path):
    now = [10**12]
    storage, view = open_pair(tmp_path, clock_ns=lambda: now[0])
    storage.commit({"t": {b"k": b"1"}}, None)
    assert view.snapshot().get("t", b"k") == b"1"
    readers = ReaderTable(str(tmp_path / "db" / "run"))
    assert [s.checkpoint_seq for s in readers.holding(now[0])] == [view.bases[0].seq]
    now[0] += IDLE_GRACE_NS
    assert readers.holding(now[0]) == []  # idle: the buffer manager may reuse its pages
    storage.commit({"t": {b"k": b"2"}}, None)
    storage.checkpoint()
    assert view.snapshot().get("t", b"k") == b"2"
    assert view.bases[0].seq == storage.meta.seq
    readers.close()
    view.close()
    storage.close()


def test_a_reader_killed_while_holding_a_snapshot_holds_nothing(tmp_path):
    storage, view = open_pair(tmp_path)
    view.close()
    path = tmp_path / "db"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import sys, time
                from jetstore.engine.read_view import ReadView
                view = ReadView({str(path)!r}, {str(path / "run")!r})
                snapshot = view.snapshot(hold=True)
                print(snapshot.base.seq, flush=True)
                time.sleep(600)
            """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        seq = int(child.stdout.readline())
        readers = ReaderTable(str(path / "run"))
        assert [s.checkpoint_seq for s in readers.holding()] == [seq]
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        assert readers.holding() == []
        readers.close()
    finally:
        child.kill()
        child.wait()
    storage.close()


def outrun_the_view(storage: Storage, oracle: Oracle) -> list[int]:
    """Several 64 KiB generations of commits, a checkpoint, and the log truncated below
    it; the generations removed."""
    for i in range(400):
        oracle.commit(storage, {b"k%04d" % i: b"v" * 300})
    storage.checkpoint()
    return storage.log.truncate_below(lsn_gen(storage.meta.checkpoint_lsn))


def test_a_view_whose_next_generation_was_truncated_starts_from_the_newest_checkpoint(tmp_path):
    storage, view = open_pair(tmp_path)
    oracle = Oracle()
    oracle.commit(storage, {b"a": b"1"})
    held = view.snapshot(hold=True)
    assert view.snapshot().get("t", b"a") == b"1"
    removed = outrun_the_view(storage, oracle)
    assert lsn_gen(held.lsn) in removed  # the generation the view would read next is gone
    fresh = view.snapshot()
    assert read_all(fresh) == oracle.state(fresh.lsn) and len(read_all(fresh)) == 401
    assert read_all(held) == {b"a": b"1"}  # an open snapshot needs nothing of the log
    held.close()
    view.close()
    storage.close()


def test_a_view_re_bases_again_when_the_log_is_truncated_during_its_re_base(tmp_path, monkeypatch):
    """The writer outruns the view twice: the generation it would read next is gone,
    and so is the one of the checkpoint it re-bases on, before it reads there."""
    storage, view = open_pair(tmp_path)
    oracle = Oracle()
    oracle.commit(storage, {b"a": b"1"})
    held = view.snapshot(hold=True)

    def writer_moves_on() -> None:
        outrun_the_view(storage, oracle)
        oracle.commit(storage, {b"after": b"%d" % len(oracle.writes)})  # past the checkpoint

    def once_before(method):
        def wrapped(self):
            monkeypatch.setattr(ReadView, method.__name__, method)
            writer_moves_on()
            method(self)

        return wrapped

    def once_after(method):
        def wrapped(self):
            monkeypatch.setattr(ReadView, method.__name__, method)
            method(self)
            writer_moves_on()

        return wrapped

    monkeypatch.setattr(ReadView, "_catch_up", once_before(ReadView._catch_up))
    monkeypatch.setattr(ReadView, "_add_base", once_after(ReadView._add_base))
    fresh = view.snapshot()
    assert read_all(fresh) == oracle.state(fresh.lsn) and len(read_all(fresh)) == 402
    assert read_all(held) == {b"a": b"1"}
    held.close()
    view.close()
    storage.close()


def test_a_snapshot_past_its_bound_no_longer_holds_pages_back(tmp_path):
    storage, view = open_pair(tmp_path, max_snapshot_checkpoints=2)
    fill(storage, 200, b"v" * 100)
    storage.checkpoint()
    old = view.snapshot(hold=True)  # held, and never read again: the process went quiet
    for _ in range(6):
        fill(storage, 200, b"w" * 100)
        storage.checkpoint()
    assert storage.pager.free_now  # freed pages are reusable although the slot still holds
    assert_past_bound(old, b"k0150", "max_snapshot_checkpoints=2")
    old.close()
    view.close()
    storage.close()


def test_versions_past_max_overlay_bytes_fail_the_old_snapshots_first(tmp_path):
    storage, view = open_pair(tmp_path, max_overlay_bytes=50_000)
    storage.commit({"t": {b"k": b"old"}}, None)
    old = view.snapshot(hold=True)
    storage.checkpoint()
    for i in range(100):  # ~100 KB of versions, and one more checkpoint to move to
        storage.commit({"t": {b"k%03d" % i: b"v" * 1000}}, None)
    new = view.snapshot(hold=True)
    assert new.get("t", b"k050") == b"v" * 1000  # the newest snapshot is always served
    assert_past_bound(old, b"k", "max_overlay_bytes=50000")
    old.close()
    new.close()
    view.close()
    storage.close()

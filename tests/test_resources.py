"""Resource faults: a full log disk, a client that never reads, open/close cycles, and
an actor dying at its Nth message - each checked against what was acknowledged."""

from __future__ import annotations

import json
import os
import threading

import psutil
import pytest
import zmq

from jetstore.actors.fault_plan import FAULTS_VARIABLE
from jetstore.engine import Instance, JetError
from jetstore.protocol import codec


def commit_until_failure(inst: Instance, limit: int = 2000) -> tuple[dict, JetError | None]:
    session, acked = inst.session(), {}
    for i in range(limit):
        key = b"%06d" % i
        try:
            session.put("t", key, b"v" * 300)
        except JetError as exc:
            return acked, exc
        acked[key] = b"v" * 300
    return acked, None


def reopened_contents(path) -> dict:
    with Instance.open(path, log_file_size=64 << 10) as inst:
        return dict(inst.session().scan("t"))


def open_with_plan(path, monkeypatch, plan: dict) -> Instance:
    monkeypatch.setenv(FAULTS_VARIABLE, json.dumps(plan))
    inst = Instance.open(path, log_file_size=64 << 10)
    monkeypatch.delenv(FAULTS_VARIABLE)
    inst.session().create_table("t")
    return inst


def test_log_disk_full_fails_commits_cleanly_and_recovers(tmp_path, monkeypatch):
    inst = open_with_plan(tmp_path, monkeypatch, {"log_writer": {"fail_write": [60, "ENOSPC"]}})
    acked, failure = commit_until_failure(inst)
    assert failure is not None and failure.name == "JET_errLogDiskFull"
    with pytest.raises(JetError) as later:
        inst.session().put("t", b"later", b"x")
    assert later.value.err in (-1090, -529)
    inst.close()
    stored = reopened_contents(tmp_path)  # "space returned": no fault plan any more
    assert all(stored.get(k) == v for k, v in acked.items())


def test_an_actor_dying_at_its_nth_message(tmp_path, monkeypatch):
    inst = open_with_plan(tmp_path, monkeypatch, {"buffer_manager": {"crash_message": 120}})
    acked, failure = commit_until_failure(inst)
    assert failure is not None and failure.err == -1090
    inst.close()
    stored = reopened_contents(tmp_path)
    assert all(stored.get(k) == v for k, v in acked.items()) and len(acked) > 50


def test_a_buffer_manager_dying_during_close_does_not_hold_close(tmp_path, monkeypatch):
    """close() waits on the actor's process, not on a reply that can no longer come."""
    import time

    inst = open_with_plan(tmp_path, monkeypatch, {"buffer_manager": {"crash_at_step": "shutdown"}})
    acked, failure = commit_until_failure(inst, limit=300)
    assert failure is None
    began = time.monotonic()
    inst.close()
    assert time.monotonic() - began < 10  # the shutdown call's own limit is 30 s
    assert reopened_contents(tmp_path) == acked  # recovery: every acknowledged commit


def test_a_client_that_never_reads_does_not_block_the_engine(tmp_path):
    with Instance.open(tmp_path) as inst:
        session = inst.session()
        session.create_table("t")
        session.put("t", b"k", b"v" * 1000)
        context = zmq.Context()
        silent = context.socket(zmq.DEALER)
        silent.setsockopt(zmq.LINGER, 0)
        silent.setsockopt(zmq.SNDHWM, 100_000)
        silent.connect(inst.endpoints["buffer_manager"])
        request = {"table": "t", "key": b"k"}
        for i in range(20_000):  # replies pile up unread, then are dropped
            silent.send(codec.encode(i, "get", request))
        done = threading.Event()

        def work() -> None:
            for i in range(300):
                session.put("t", b"%d" % i, b"x")
            done.set()

        worker = threading.Thread(target=work)
        worker.start()
        worker.join(60)
        assert done.is_set(), "a client that never reads blocked the engine"
        assert all(actor["alive"] for actor in inst.status()["actors"].values())
        silent.close()
        context.term()


def test_open_close_cycles_leak_nothing(tmp_path):
    me = psutil.Process()

    def resources() -> tuple[int, int, int]:
        return me.num_fds(), me.num_threads(), me.memory_info().rss

    def cycle(n: int) -> None:
        with Instance.open(tmp_path / f"i{n % 3}") as inst:
            inst.session().list_tables()

    for n in range(5):  # warm up: the forkserver, imports, zmq's global context
        cycle(n)
    fds, threads, rss = resources()
    pids = {p.pid for p in me.children(recursive=True)}
    for n in range(25):
        cycle(n)
    fds_after, threads_after, rss_after = resources()
    assert fds_after <= fds + 2, f"file descriptors grew from {fds} to {fds_after}"
    assert threads_after <= threads + 1
    assert rss_after - rss < 30 << 20, f"memory grew by {(rss_after - rss) >> 20} MiB"
    leftovers = [
        p
        for p in me.children(recursive=True)
        if p.pid not in pids and p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    ]
    assert not leftovers, f"processes left behind: {[p.pid for p in leftovers]}"
    assert not os.path.exists(tmp_path / "i0" / "run" / "endpoints.json")


def test_a_log_failure_abandons_the_checkpoint_waiting_for_it(tmp_path):
    """The log writer fails the batch a checkpoint waits for: the checkpoint is abandoned
    with that error and shutdown completes, instead of waiting for an LSN that never comes
    (seen in the torture campaign as a 30 s close after ENOSPC on the log)."""
    from jetstore.actors.buffer_manager import BufferManager, ShippingLog
    from jetstore.engine.storage import Storage

    with Storage.open(tmp_path) as storage:
        storage.create_table("t")
    storage = Storage.open(tmp_path, auto_checkpoint=False, ship_redo=ShippingLog)
    context = zmq.Context()
    router, client = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
    router.bind("inproc://buffer-manager")
    client.connect("inproc://buffer-manager")
    to_log, log_writer = context.socket(zmq.PUSH), context.socket(zmq.PULL)
    to_log.bind("inproc://log-append")
    log_writer.connect("inproc://log-append")
    manager = BufferManager(storage, router, to_log)
    try:
        client.send(codec.encode(1, "commit", {"writes": {"t": {b"k": b"v"}}}))
        client.send(codec.encode(2, "checkpoint", {}))
        assert router.poll(5000)
        manager.serve()
        manager.ship()
        manager.maybe_checkpoint()
        assert manager.checkpoint is not None and manager.checkpoint.lsn is None
        batch = codec.decode(log_writer.recv()).body["batch"]
        disk_full = JetError("JET_errLogDiskFull", "log disk full")
        failed = {"batch": batch, "err": disk_full.err, "message": disk_full.message}
        manager.on_log_event(codec.encode(0, "failed", failed))
        assert manager.checkpoint is None
        for _ in range(2):  # the commit and the checkpoint both get the log's error
            assert client.poll(5000)
            with pytest.raises(JetError) as answered:
                codec.result_of(codec.decode(client.recv()))
            assert answered.value.name == "JET_errLogDiskFull"
        client.send(codec.encode(3, "shutdown", {}))
        assert router.poll(5000)
        manager.serve()
        assert manager.finish_shutdown()
        assert client.poll(5000)
        assert codec.result_of(codec.decode(client.recv())) == {"clean": False}
    finally:
        manager.writer.shutdown(wait=True)
        storage.close_files()
        for sock in (router, client, to_log, log_writer):
            sock.close(0)
        context.term()

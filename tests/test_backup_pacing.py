"""How a backup shares the machine (DESIGN.md section 6, "A busy machine still finishes
its backup"), and how its messages reach a client that reads slowly.

- ``Throttle``: a ceiling (``rate``), a floor (``min_rate``) below which the copy stops
  yielding until it leads again, and a share of the time while commits arrive; driven
  by an injected clock, so nothing here sleeps.
- ``LogActivity``: commits are arriving when the live generation was just written.
- ``Outbox``: a final reply is never dropped because the client's queue is full (real
  ZeroMQ sockets with a tiny high-water mark).
"""

from __future__ import annotations

import os

import pytest
import zmq

from jetstore.actors.runtime import Outbox, Request
from jetstore.engine.backup import (
    CATCH_UP,
    CATCH_UP_S,
    STEADY,
    YIELD,
    LogActivity,
    Throttle,
    verify_generations,
)
from jetstore.engine.fileio import DEFAULT_ENV
from jetstore.engine.log_format import generation_file_name
from jetstore.engine.log_reader import list_generations
from jetstore.engine.storage import LOG_DIR, Storage
from jetstore.protocol import codec


class FakeTime:
    """A clock that only moves when told to, or when the throttle sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def make_throttle(fake: FakeTime, *, foreground: bool, **options) -> tuple[Throttle, list]:
    paces: list[str] = []
    throttle = Throttle(
        clock=fake.clock,
        sleep=fake.sleep,
        on_pace=paces.append,
        foreground=lambda: foreground,
        **options,
    )
    return throttle, paces


def copy_chunk(fake: FakeTime, throttle: Throttle, seconds: float, size: int = 1 << 20) -> None:
    """A chunk that took ``seconds`` to read, verify and write."""
    fake.now += seconds
    throttle.consume(size)


def test_copy_keeps_to_its_share_while_commits_arrive():
    fake = FakeTime()
    throttle, paces = make_throttle(fake, foreground=True, share=0.4, min_rate=0)
    with throttle.copying():
        for _ in range(10):
            copy_chunk(fake, throttle, 0.01)
    assert fake.slept == pytest.approx([0.015] * 10)  # 0.01 busy, 0.015 yielded: 40%
    assert paces == [YIELD, STEADY]


def test_copy_runs_flat_out_without_commits():
    fake = FakeTime()
    throttle, _ = make_throttle(fake, foreground=False, share=0.4, min_rate=0)
    with throttle.copying():
        for _ in range(10):
            copy_chunk(fake, throttle, 0.01)
    assert fake.slept == []


def test_copy_behind_its_floor_stops_yielding_until_it_leads_again():
    fake = FakeTime()
    mib = 1 << 20
    throttle, paces = make_throttle(fake, foreground=True, share=0.4, min_rate=10 * mib)
    with throttle.copying():
        copy_chunk(fake, throttle, 0.5)  # 1 MiB in 0.5 s: 2 MiB/s, far behind 10 MiB/s
        assert paces == [YIELD, CATCH_UP] and fake.slept == []
        while throttle.behind:  # catching up at 100 MiB/s, without yielding
            assert fake.slept == []
            caught_up_at = fake.now + 0.01
            copy_chunk(fake, throttle, 0.01)
        assert throttle.sent >= 10 * mib * (caught_up_at - throttle.started + CATCH_UP_S)
        assert fake.slept == pytest.approx([0.015])  # the chunk that led yields again
    assert paces == [YIELD, CATCH_UP, YIELD, STEADY]


def test_work_that_copies_nothing_counts_against_the_floor():
    """A verifying read (ticks of 0 bytes) starved for 0.2 s puts the copy behind."""
    fake = FakeTime()
    throttle, paces = make_throttle(fake, foreground=True, share=0.4, min_rate=10 << 20)
    with throttle.copying():
        copy_chunk(fake, throttle, 0.2, size=0)
        assert throttle.behind
    assert paces == [YIELD, CATCH_UP, STEADY]


def test_a_failed_copy_leaves_the_thread_steady():
    fake = FakeTime()
    throttle, paces = make_throttle(fake, foreground=False, min_rate=10 << 20)
    with pytest.raises(OSError), throttle.copying():
        copy_chunk(fake, throttle, 1.0)
        raise OSError("the destination went away")
    assert paces == [YIELD, CATCH_UP, STEADY]


def test_verifying_a_generation_ticks_per_chunk(tmp_path):
    """The backup's verifying read of the live log beats the throttle as it goes."""
    with Storage.open(str(tmp_path / "db"), log_file_size=1 << 20) as storage:
        storage.create_table("t")
        for i in range(60):
            txn = storage.begin()
            txn.put("t", b"k%04d" % i, os.urandom(60_000))
            txn.commit()
        signature = storage.meta.log_signature
    logs = str(tmp_path / "db" / LOG_DIR)
    closed = list_generations(DEFAULT_ENV, logs)[:-1]
    ticks = []
    verify_generations(
        DEFAULT_ENV, logs, closed[0], closed[-1], signature, "backup", tick=lambda: ticks.append(1)
    )
    assert len(closed) >= 3 and len(ticks) >= len(closed)  # at least once per generation


def test_time_idle_since_the_rate_was_set_earns_no_burst():
    fake = FakeTime()
    throttle, _ = make_throttle(fake, foreground=False, rate=1 << 20, min_rate=0)
    fake.now += 3.0  # the operator set the rate a while before the backup
    with throttle.copying():
        copy_chunk(fake, throttle, 0.01)
    assert fake.slept == pytest.approx([0.99])  # 1 MiB at 1 MiB/s takes a second


def test_ceiling_holds_the_copy_to_its_rate():
    fake = FakeTime()
    throttle, _ = make_throttle(fake, foreground=False, rate=1 << 20, min_rate=0)
    with throttle.copying():
        for _ in range(4):
            copy_chunk(fake, throttle, 0.1)
    assert fake.now - throttle.started == pytest.approx(4.0)  # 4 MiB at 1 MiB/s


def test_a_floor_above_the_ceiling_is_the_ceiling():
    """``set-backup-rate 1M --min-rate 10M``: the cap wins, and a copy at the cap is not
    behind (it keeps yielding to commits rather than catching up to 10 MiB/s)."""
    fake = FakeTime()
    throttle, paces = make_throttle(fake, foreground=True, share=0.4, rate=1 << 20)
    throttle.set_rate(1 << 20, 10 << 20)
    with throttle.copying():
        for _ in range(4):
            copy_chunk(fake, throttle, 0.2)  # 5 MiB/s: above the cap, below the floor
            assert not throttle.behind
    assert fake.now - throttle.started == pytest.approx(4.0)  # 4 MiB at 1 MiB/s
    assert paces == [YIELD, STEADY]


def test_log_activity_follows_the_live_generation(tmp_path):
    now = [5000.0]
    activity = LogActivity(str(tmp_path), window=0.1, clock=lambda: now[0])
    assert activity() is False  # no generation at all
    now[0] += 1
    live = tmp_path / generation_file_name(7)
    live.write_bytes(b"\0" * 64)
    os.utime(live, (now[0] - 0.05, now[0] - 0.05))  # written 50 ms ago
    assert activity() is True
    now[0] += 0.2
    assert activity() is False  # nothing for 250 ms
    os.utime(live, (now[0], now[0]))
    assert activity() is True
    now[0] += 0.15  # the newest generation is looked up again at most once a window
    rolled = tmp_path / generation_file_name(8)  # a roll: the old generation goes quiet
    rolled.write_bytes(b"\0" * 64)
    os.utime(rolled, (now[0], now[0]))
    os.utime(live, (now[0] - 1, now[0] - 1))
    assert activity() is True


def test_a_final_reply_outlasts_a_full_client_queue():
    """A client that stops reading fills its queue with progress; the reply still arrives."""
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    router.setsockopt(zmq.SNDHWM, 2)
    router.bind("inproc://outbox")
    client = context.socket(zmq.DEALER)
    client.setsockopt(zmq.RCVHWM, 2)
    client.connect("inproc://outbox")
    try:
        client.send(b"hello")
        identity, _ = router.recv_multipart()
        request = Request(identity, 7, "backup")
        outbox = Outbox()
        for done in range(50):
            outbox.put(router, request, "progress", {"done": done})
            outbox.flush()
        outbox.put(router, request, "ok", {"bytes": 50})
        outbox.flush()
        assert outbox.waiting, "the queue was never full: the test proves nothing"
        assert len(outbox.waiting) <= 2  # the newest progress and the reply
        received = []
        for _ in range(100):  # the client reads again; the actor's loop flushes each turn
            if client.poll(50):
                received.append(codec.decode(client.recv()))
                if received[-1].kind != "progress":
                    break
            outbox.flush()
        assert received[-1].kind == codec.REPLY_OK and received[-1].body == {"bytes": 50}
        progress = [m.body["done"] for m in received if m.kind == "progress"]
        assert progress == sorted(progress) and progress[-1] == 49  # in order, newest kept
    finally:
        client.close(0)
        router.close(0)
        context.term()

"""The supervisor's watch rules, driven by an injected clock (no waiting, no timing).

Real processes are exercised in test_failures.py; here each rule is checked
on its own: silence past ``hang_timeout`` from a stopped process, silence past
``starved_timeout`` from a runnable one, and work past ``busy_timeout`` count
as death; a starved but runnable actor is not killed for a short silence; an
essential actor's death fails the instance; a backup worker is
restarted with growing backoff, at most MAX_RESTARTS times in a row.
"""

from __future__ import annotations

import json

from jetstore.actors import supervisor as sup
from jetstore.actors.supervisor import ActorState, Supervisor
from jetstore.engine.events_format import EVENTS_FILE


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeProcess:
    """Stands in for a multiprocess.Process: alive until killed."""

    def __init__(self, pid: int) -> None:
        self.pid, self.exitcode, self.killed = pid, None, False
        self.sentinel = -1

    def is_alive(self) -> bool:
        return self.exitcode is None

    def terminate(self) -> None:
        self.exitcode = -15

    def kill(self) -> None:
        self.killed, self.exitcode = True, -9

    def join(self, timeout=None) -> None:
        pass

    def close(self) -> None:
        assert self.exitcode is not None, "closing a process object that still runs"


def make_supervisor(tmp_path, clock, stopped=None):
    """``stopped``: the pids the kernel holds stopped (every pid when None)."""
    supervisor = Supervisor(
        str(tmp_path),
        {},
        clock=clock,
        hang_timeout=1.0,
        busy_timeout=5.0,
        starved_timeout=30.0,
        is_stopped=lambda pid: stopped is None or pid in stopped,
    )
    supervisor.sockets_dir = str(tmp_path)
    for pid, name in enumerate(("buffer_manager", "log_writer", "backup_worker"), start=100):
        supervisor.actors[name] = ActorState(name, FakeProcess(pid), clock(), clock(), pid=pid)
    respawned = []

    def spawn(name, options):
        pid = 200 + len(respawned)
        state = ActorState(name, FakeProcess(pid), clock(), clock(), pid=pid)
        supervisor.actors[name] = state
        respawned.append(state)
        return state

    supervisor._spawn = spawn
    return supervisor, respawned


def heartbeat_all(supervisor, clock) -> None:
    for state in supervisor.actors.values():
        state.last_heartbeat = clock()


def test_silence_past_the_hang_timeout_fails_the_instance(tmp_path):
    clock = FakeClock()
    supervisor, _ = make_supervisor(tmp_path, clock)
    clock.now += 0.9
    supervisor.check()
    assert supervisor.failure is None
    clock.now += 0.2  # log writer silent for 1.1 s
    supervisor.actors["buffer_manager"].last_heartbeat = clock()
    supervisor.actors["backup_worker"].last_heartbeat = clock()
    supervisor.check()
    assert supervisor.failure.err == -1090 and "log_writer" in supervisor.failure.message
    assert all(not s.process.is_alive() for s in supervisor.actors.values())


def test_a_runnable_actor_silent_for_seconds_is_starved_not_dead(tmp_path):
    clock = FakeClock()
    supervisor, _ = make_supervisor(tmp_path, clock, stopped=set())
    clock.now += 20.0  # every actor silent, all runnable: CPU-bound neighbours
    supervisor.check()
    assert supervisor.failure is None
    assert all(s.process.is_alive() for s in supervisor.actors.values())
    clock.now += 10.5  # past the starved timeout: stuck, whatever the kernel says
    supervisor.check()
    assert supervisor.failure.err == -1090


def test_a_stopped_actor_is_lost_after_the_short_timeout(tmp_path):
    clock = FakeClock()
    supervisor, _ = make_supervisor(tmp_path, clock, stopped={101})  # the log writer
    clock.now += 1.1
    supervisor.check()
    assert supervisor.failure.err == -1090 and "log_writer" in supervisor.failure.message


def test_a_stuck_loop_is_a_death(tmp_path):
    clock = FakeClock()
    supervisor, _ = make_supervisor(tmp_path, clock)
    supervisor.actors["buffer_manager"].busy_s = 4.9
    supervisor.check()
    assert supervisor.failure is None
    supervisor.actors["buffer_manager"].busy_s = 5.1
    supervisor.check()
    assert "busy" in supervisor.failure.message


def test_backup_worker_restarts_with_backoff_then_gives_up(tmp_path):
    clock = FakeClock()
    supervisor, respawned = make_supervisor(tmp_path, clock)
    for attempt in range(sup.MAX_RESTARTS):
        supervisor.actors["backup_worker"].process.exitcode = 1  # it dies
        supervisor.check()
        assert supervisor.failure is None
        clock.now += sup.RESTART_BACKOFF[attempt] - 0.01
        heartbeat_all(supervisor, clock)
        supervisor.check()
        assert len(respawned) == attempt  # not before its backoff
        clock.now += 0.02
        heartbeat_all(supervisor, clock)
        supervisor.check()
        assert len(respawned) == attempt + 1
        assert supervisor.actors["backup_worker"].restarts == attempt + 1
    supervisor.actors["backup_worker"].process.exitcode = 1
    supervisor.check()
    clock.now += 100
    heartbeat_all(supervisor, clock)
    supervisor.check()
    assert len(respawned) == sup.MAX_RESTARTS  # gave up
    assert supervisor.failure is None  # commits are not affected
    status = supervisor.actor_status()["backup_worker"]
    assert status["given_up"] and status["restarts"] == sup.MAX_RESTARTS  # and says so
    with open(tmp_path / EVENTS_FILE) as events:
        (given_up,) = [e for e in map(json.loads, events) if e["event"] == "actor-given-up"]
    assert given_up["actor"] == "backup_worker"


def test_a_stable_worker_earns_back_its_restarts(tmp_path):
    clock = FakeClock()
    supervisor, respawned = make_supervisor(tmp_path, clock)
    supervisor.actors["backup_worker"].process.exitcode = 1
    supervisor.check()
    clock.now += 1
    heartbeat_all(supervisor, clock)
    supervisor.check()
    assert supervisor.actors["backup_worker"].restarts == 1
    clock.now += sup.STABLE_AFTER + 1
    heartbeat_all(supervisor, clock)
    supervisor.check()
    assert supervisor.actors["backup_worker"].restarts == 0


def test_a_watcher_frozen_past_the_hang_timeout_blames_no_actor(tmp_path):
    """After a SIGSTOP of the whole process, the watcher may run before the I/O thread has
    handed it the heartbeats sent meanwhile: its own stall is not the actors' silence."""
    clock = FakeClock()
    supervisor, _ = make_supervisor(tmp_path, clock)  # every pid looks stopped
    clock.now += 1.3  # the process was frozen for 1.3 s (hang_timeout 1.0)
    supervisor.watch_turn(since_last_turn=1.3)
    assert supervisor.failure is None
    clock.now += 1.1  # then a real silence, across ordinary turns
    for _ in range(22):
        supervisor.watch_turn(since_last_turn=0.05)
    assert supervisor.failure is not None and "no heartbeat" in supervisor.failure.message

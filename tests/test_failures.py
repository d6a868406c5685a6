"""Actor failures: kill -9 (or freeze) an actor under a commit-heavy load.

The log writer or the buffer manager dying makes every pending and later call
fail with JET_errInstanceUnavailable (never hang), and reopening recovers
every acknowledged commit.  The backup worker or a client process dying
leaves commits untouched.  The oracle is the set of commits whose ``put``
returned.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from jetstore.engine import Instance, JetError

NO_HANG_S = 5.0  # a generous bound: proves "no hang"; the 1 s figure is measured in benchmarks


class Load:
    """Threads committing distinct keys; records what was acknowledged and how each ended."""

    def __init__(self, inst: Instance, threads: int = 4) -> None:
        self.acked: list[tuple[bytes, bytes]] = []
        self.errors: list[tuple[JetError, float]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(inst, n)) for n in range(threads)]
        for thread in self.threads:
            thread.start()

    def _run(self, inst: Instance, n: int) -> None:
        session = inst.session()
        i = 0
        while not self.stop.is_set():
            key, value = b"%d-%07d" % (n, i), b"v%d" % i * 20
            try:
                session.put("t", key, value)
            except JetError as exc:
                with self.lock:
                    self.errors.append((exc, time.monotonic()))
                return
            with self.lock:
                self.acked.append((key, value))
            i += 1

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 60
        while len(self.acked) < count:
            assert time.monotonic() < deadline, "the load made no progress"
            time.sleep(0.01)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(NO_HANG_S * 2)
            assert not thread.is_alive(), "a call hung after the failure"


def open_with_table(path) -> Instance:
    inst = Instance.open(path, log_file_size=64 << 10)
    if "t" not in inst.session().list_tables():
        inst.session().create_table("t")
    return inst


def assert_recovered(path, acked) -> None:
    with Instance.open(path, log_file_size=64 << 10) as inst:
        session = inst.session()
        stored = dict(session.scan("t"))
        missing = [key for key, value in acked if stored.get(key) != value]
        assert not missing, f"{len(missing)} acknowledged commits lost, e.g. {missing[:3]}"


@pytest.mark.parametrize("actor", ["log_writer", "buffer_manager"])
@pytest.mark.parametrize("after", [30, 400])
def test_killing_an_essential_actor_fails_calls_and_reopen_recovers(tmp_path, actor, after):
    inst = open_with_table(tmp_path)
    load = Load(inst)
    load.wait_for(after)
    pid = inst.status()["actors"][actor]["pid"]
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    load.join()
    assert len(load.errors) == len(load.threads)
    assert {exc.err for exc, _ in load.errors} == {-1090}
    assert max(at for _, at in load.errors) - killed_at < NO_HANG_S
    with pytest.raises(JetError) as later:
        inst.session().get("t", b"x")
    assert later.value.err == -1090
    status = inst.status()
    assert not any(a["alive"] for a in status["actors"].values()), "survivors were not stopped"
    inst.close()
    assert_recovered(tmp_path, load.acked)


def test_a_frozen_log_writer_is_declared_hung(tmp_path):
    inst = open_with_table(tmp_path)
    load = Load(inst, threads=2)
    load.wait_for(50)
    pid = inst.status()["actors"]["log_writer"]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        load.join()
        assert {exc.err for exc, _ in load.errors} == {-1090}
    finally:
        if psutil.pid_exists(pid):
            os.kill(pid, signal.SIGCONT)
    inst.close()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert_recovered(tmp_path, load.acked)


def test_killing_the_backup_worker_does_not_disturb_commits(tmp_path):
    inst = open_with_table(tmp_path)
    load = Load(inst, threads=2)
    load.wait_for(50)
    old_pid = inst.status()["actors"]["backup_worker"]["pid"]
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while True:
        worker = inst.status()["actors"]["backup_worker"]
        if worker["pid"] != old_pid and worker["alive"]:
            break
        assert time.monotonic() < deadline, "the backup worker was not restarted"
        time.sleep(0.05)
    assert worker["restarts"] == 1
    before = len(load.acked)
    load.wait_for(before + 100)
    load.stop.set()
    load.join()
    assert not load.errors
    inst.close()
    assert_recovered(tmp_path, load.acked)


CLIENT = """
import sys
from jetstore.engine import connect
session = connect(sys.argv[1]).session()
i = 0
while True:
    session.put("t", b"client-%d" % i, b"x")
    print(i, flush=True)
    i += 1
"""


def test_killing_a_client_process_leaves_the_instance_working(tmp_path):
    inst = open_with_table(tmp_path)
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    for _ in range(20):  # it is committing
        assert client.stdout.readline()
    client.kill()
    client.wait(10)
    session = inst.session()
    session.put("t", b"after", b"client death")
    assert session.get("t", b"after") == b"client death"
    assert all(a["alive"] for a in inst.status()["actors"].values())
    inst.close()

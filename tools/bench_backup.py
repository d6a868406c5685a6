"""Backup benchmark: online backup against ``cp`` + ``sync``, and its foreground impact.

    python -m jetstore.tools.bench_backup [--size-mb 1024] [--clients 8] [--seconds 6]
                                          [--json FILE]

In one invocation, on one disk:
  1. builds a database of SIZE_MB (in-process bulk load, then a clean close);
  2. full backup throughput (verification included) vs ``cp`` of the same files
     followed by ``sync`` - the anchor - and the backup worker's peak RSS;
  3. commit throughput and p99 latency of CLIENTS client processes without a
     backup, then with a full backup running in the middle of the window; the
     "during" figures count only commits that started while the backup ran;
  4. two harder neighbours, each with the backup's rate as a ratio of its idle
     rate and the foreground's as a ratio of its rate without backups:
     - a saturating commit load: 2 x cores client processes with no think time;
     - CPU-bound neighbours: one ``while`` loop per core (nothing of jetstore), the
       foreground being their loop iterations per second;
     backups run back to back for the whole load, so every moment is compared;
  5. restore of that backup: seconds, and the replay rate in MB of log.
Prints the machine and configuration first.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import threading
import time

import psutil

from jetstore.engine import Instance, restore
from jetstore.engine.storage import DB_FILE, LOG_DIR, Storage
from jetstore.protocol.schema import to_backup
from jetstore.tools.bench_commit import collect, jetstore_client, summarize
from jetstore.tools.benchmark import add_common_arguments, benchmark_run, start_clients


def build_database(path: str, megabytes: int) -> int:
    """Random 16-byte keys with 1 KiB values until the file holds ``megabytes``."""
    storage = Storage.open(path, cache_size=256 << 20)
    storage.create_table("t")
    rng = random.Random(5)
    value = rng.randbytes(1024)
    while storage.pager.page_count * storage.page_size < megabytes << 20:
        storage.commit({"t": {rng.randbytes(16): value for _ in range(5000)}}, None, lazy=True)
    storage.close()
    return os.path.getsize(os.path.join(path, DB_FILE))


def cp_and_sync(source: str, destination: str) -> float:
    """The anchor: copy the database and log files with cp, then sync."""
    os.makedirs(destination)
    started = time.perf_counter()
    subprocess.run(
        ["cp", "-r", os.path.join(source, DB_FILE), os.path.join(source, LOG_DIR), destination],
        check=True,
    )
    subprocess.run(["sync"], check=True)
    return time.perf_counter() - started


def sqlite_online_backup(scratch: str, megabytes: int) -> dict:
    """The second anchor: SQLite's online backup API on a same-sized database, fsynced."""
    path = os.path.join(scratch, "anchor.sqlite")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB)")
    rng = random.Random(5)
    value = rng.randbytes(1024)
    while os.path.getsize(path) + os.path.getsize(path + "-wal") < megabytes << 20:
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO t VALUES (?, ?)", ((rng.randbytes(16), value) for _ in range(5000))
        )
        db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = os.path.getsize(path)
    copy_path = os.path.join(scratch, "anchor-copy.sqlite")
    started = time.perf_counter()
    with sqlite3.connect(copy_path) as copy:
        db.backup(copy)
    fd = os.open(copy_path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    seconds = time.perf_counter() - started
    db.close()
    return {"bytes": size, "seconds": seconds, "mb_per_s": size / 1e6 / seconds}


def recovery_after_kill(scratch: str, clients: int, seconds: float) -> dict:
    """kill -9 the buffer manager under load, then time the reopen that recovers."""
    path = os.path.join(scratch, "crash")
    inst = Instance.open(path)
    inst.session().create_table("t")
    _start, processes, results = start_clients(jetstore_client, path, clients, seconds, lead=1.0)
    time.sleep(1.0 + seconds / 2)
    os.kill(inst.status()["actors"]["buffer_manager"]["pid"], 9)
    for process in processes:  # the clients fail with -1090 and exit
        process.join(30)
        if process.is_alive():
            process.kill()
    inst.close()
    started = time.perf_counter()
    with Instance.open(path) as reopened:
        seconds_to_open = time.perf_counter() - started
        replayed = reopened.status()["buffer_manager"]["replayed"]
    return {"reopen_seconds": seconds_to_open, "replayed_records": replayed}


def timed_backup(inst: Instance, destination: str) -> tuple[dict, float, int]:
    """Run a full backup; (its result, seconds, the backup worker's peak RSS in bytes)."""
    worker = psutil.Process(inst.status()["actors"]["backup_worker"]["pid"])
    peak = [worker.memory_info().rss]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], worker.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    os.makedirs(destination)
    started = time.perf_counter()
    try:
        result = inst.backup(destination)
    finally:
        done.set()
        sampler.join()
    return result, time.perf_counter() - started, peak[0]


def load_with_backup(inst: Instance, path: str, clients: int, seconds: float, destination):
    """Commit load for ``seconds``; with ``destination``, a full backup starts a third of the
    way in.  Returns (samples, the window to compare as wall-clock (start, end)): the whole
    load without a backup, else the part of the backup that ran while the load did - a
    backup outlasting the load must not count the idle end as slow commits."""
    start_at, processes, results = start_clients(jetstore_client, path, clients, seconds)
    window = (start_at, start_at + seconds)
    if destination is not None:
        time.sleep(max(0.0, start_at - time.time()) + seconds / 3)
        began = time.time()
        os.makedirs(destination)
        inst.backup(destination)
        window = (began, min(time.time(), start_at + seconds))
    return collect(processes, results, seconds), window


def backups_until(inst: Instance, scratch: str, until: float) -> dict:
    """Full backups back to back until wall-clock ``until`` (the last one may end after it):
    the window they covered and their rate, each backup's deletion excluded."""
    began, copied, busy, n = time.time(), 0, 0.0, 0
    while not n or time.time() < until:
        destination = os.path.join(scratch, f"bk-back-to-back-{n}")
        os.makedirs(destination)
        started = time.perf_counter()
        copied += inst.backup(destination)["bytes"]
        busy += time.perf_counter() - started
        shutil.rmtree(destination)
        n += 1
    return {"window": (began, time.time()), "backups": n, "mb_per_s": copied / 1e6 / busy}


def saturating_load(inst: Instance, path: str, scratch: str, seconds: float, idle: float) -> dict:
    """2 x cores committing clients with no think time, without and then with backups."""
    clients = 2 * (os.cpu_count() or 1)
    quiet, quiet_window = load_with_backup(inst, path, clients, seconds, None)
    start_at, processes, results = start_clients(jetstore_client, path, clients, seconds)
    time.sleep(max(0.0, start_at - time.time()))
    backups = backups_until(inst, scratch, start_at + seconds)
    busy = collect(processes, results, seconds)
    began, ended = backups["window"]
    baseline = in_window(quiet, quiet_window)
    loaded = in_window(busy, (began, min(ended, start_at + seconds)))
    return {
        "clients": clients,
        "backups": backups["backups"],
        "backup_mb_per_s": backups["mb_per_s"],
        "backup_ratio_to_idle": backups["mb_per_s"] / idle,
        "no_backup_tx_per_s": baseline["tx_per_s"],
        "during_backup_tx_per_s": loaded["tx_per_s"],
        "foreground_ratio": loaded["tx_per_s"] / baseline["tx_per_s"],
    }


NEIGHBOUR = """
import sys, time
end, n = time.time() + float(sys.argv[1]), 0
while time.time() < end:
    n += 1
print(n)
"""


def cpu_neighbours(seconds: float, during=None) -> float:
    """Loop iterations per second of one CPU-bound process per core running for ``seconds``,
    with ``during()`` called meanwhile (and waited for)."""
    spinners = [
        subprocess.Popen(
            [sys.executable, "-c", NEIGHBOUR, str(seconds)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(os.cpu_count() or 1)
    ]
    if during is not None:
        during()
    return sum(int(spinner.communicate()[0]) for spinner in spinners) / seconds


def beside_cpu_neighbours(inst: Instance, scratch: str, seconds: float, idle: float) -> dict:
    quiet = cpu_neighbours(seconds)
    backups: dict = {}
    loaded = cpu_neighbours(
        seconds, lambda: backups.update(backups_until(inst, scratch, time.time() + seconds))
    )
    return {
        "neighbours": os.cpu_count() or 1,
        "backups": backups["backups"],
        "backup_mb_per_s": backups["mb_per_s"],
        "backup_ratio_to_idle": backups["mb_per_s"] / idle,
        "foreground_ratio": loaded / quiet,
    }


def in_window(samples: list[tuple[float, float]], window: tuple[float, float]) -> dict:
    """tx/s and latencies of the commits that started within ``window``."""
    return summarize([s for s in samples if window[0] <= s[0] < window[1]], window[1] - window[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--seconds",
        type=float,
        default=12.0,
        help="commit load per run; the backup starts a third of the way in and should end in it",
    )
    parser.add_argument(
        "--rate",
        type=int,
        default=0,
        help="backup throttle in bytes/s for the foreground test (0: none)",
    )
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    with benchmark_run(args) as (scratch, report):
        results = report["results"]
        source = os.path.join(scratch, "src")
        size = build_database(source, args.size_mb)
        results["database_bytes"] = size
        cp_seconds = cp_and_sync(source, os.path.join(scratch, "cp"))
        shutil.rmtree(os.path.join(scratch, "cp"))
        with Instance.open(source) as inst:
            backup, backup_seconds, rss = timed_backup(inst, os.path.join(scratch, "bk"))
            cp_rate, backup_rate = size / cp_seconds, backup["bytes"] / backup_seconds
            results["backup"] = {
                "bytes": backup["bytes"],
                "seconds": backup_seconds,
                "mb_per_s": backup_rate / 1e6,
                "cp_sync_seconds": cp_seconds,
                "cp_sync_mb_per_s": cp_rate / 1e6,
                "ratio_to_cp": backup_rate / cp_rate,
                "backup_worker_peak_rss_mb": rss / 1e6,
            }
            print("backup       " + json.dumps(results["backup"]))
            anchor = sqlite_online_backup(scratch, args.size_mb)
            results["sqlite_online_backup"] = {
                **anchor,
                "ratio": backup_rate / 1e6 / anchor["mb_per_s"],
            }
            print("sqlite       " + json.dumps(results["sqlite_online_backup"]))
            quiet, quiet_window = load_with_backup(inst, source, args.clients, args.seconds, None)
            inst._backup_control(to_backup.set_backup_rate(rate=args.rate))
            busy, window = load_with_backup(
                inst, source, args.clients, args.seconds, os.path.join(scratch, "bk2")
            )
        baseline, loaded = in_window(quiet, quiet_window), in_window(busy, window)
        results["foreground"] = {
            "no_backup": baseline,
            "during_backup": loaded,
            "backup_window_s": window[1] - window[0],
            "throughput_ratio": loaded["tx_per_s"] / baseline["tx_per_s"],
            "p99_ratio": (loaded["p99_ms"] or 0) / baseline["p99_ms"],
        }
        print("foreground   " + json.dumps(results["foreground"]))
        idle = backup_rate / 1e6
        with Instance.open(source) as inst:
            results["saturating_load"] = saturating_load(inst, source, scratch, args.seconds, idle)
            print("saturating   " + json.dumps(results["saturating_load"]))
            results["cpu_neighbours"] = beside_cpu_neighbours(inst, scratch, args.seconds, idle)
            print("neighbours   " + json.dumps(results["cpu_neighbours"]))
        started = time.perf_counter()
        restored = restore(os.path.join(scratch, "bk2"), os.path.join(scratch, "out"))
        seconds = time.perf_counter() - started
        log_bytes = sum(
            os.path.getsize(os.path.join(scratch, "bk2", LOG_DIR, n))
            for n in os.listdir(os.path.join(scratch, "bk2", LOG_DIR))
        )
        results["restore"] = {
            "seconds": seconds,
            "replayed_records": restored["replayed"],
            "log_mb": log_bytes / 1e6,
            "replay_seconds": restored["replay_seconds"],
            "replay_log_mb_per_s": log_bytes / 1e6 / restored["replay_seconds"],
        }
        print("restore      " + json.dumps(results["restore"]))
        results["recovery_after_kill"] = recovery_after_kill(scratch, args.clients, args.seconds)
        print("recovery     " + json.dumps(results["recovery_after_kill"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Commit benchmark: jetstore's actors against SQLite, measured in one invocation.

    python -m jetstore.tools.bench_commit [--clients 1 8 16] [--seconds 5] [--json FILE]

Workload: durable one-put transactions, 100-byte values, distinct keys, every
client its own process.  jetstore clients ``connect`` to one instance;
SQLite clients each open their own connection (WAL, synchronous=FULL,
busy_timeout) to one database file.  Reports tx/s and p50/p99 commit latency
per client count, the ratio to SQLite, and the time to open and close an
empty instance.  Each row also shows the floor: the same four ZeroMQ hops and
fdatasync with no engine in them (``bench_floor``), the most this architecture
can do on the machine.  Prints the machine and configuration first.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import time

from jetstore.tools import bench_floor
from jetstore.tools.benchmark import (
    add_common_arguments,
    benchmark_run,
    commit_loop,
    start_clients,
)

VALUE = b"v" * 100


def jetstore_client(path: str, index: int, seconds: float, start_at: float, results) -> None:
    from jetstore.engine import connect

    client = connect(path)
    session = client.session()
    results.put(commit_loop(lambda key: session.put("t", key, VALUE), index, seconds, start_at))
    client.close()


def _sqlite_client(path: str, index: int, seconds: float, start_at: float, results) -> None:
    db = sqlite3.connect(path, isolation_level=None, timeout=60)
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=60000")
    insert = "INSERT INTO t VALUES (?, ?)"
    results.put(commit_loop(lambda key: db.execute(insert, (key, VALUE)), index, seconds, start_at))
    db.close()


def collect(processes, results, seconds: float) -> list[tuple[float, float]]:
    samples = [s for _ in processes for s in results.get(timeout=seconds + 120)]
    for process in processes:
        process.join()
    return samples


def summarize(samples: list[tuple[float, float]], seconds: float) -> dict:
    latencies = sorted(latency for _wall, latency in samples)
    if not latencies:
        return {"tx_per_s": 0.0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "tx_per_s": len(latencies) / seconds,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "max_ms": latencies[-1] * 1000,
    }


def run_clients(target, path: str, clients: int, seconds: float) -> dict:
    _start, processes, results = start_clients(target, path, clients, seconds)
    return {"clients": clients, **summarize(collect(processes, results, seconds), seconds)}


def open_close_seconds(scratch: str, repeats: int = 5) -> float:
    from jetstore.engine import Instance

    best = float("inf")
    for n in range(repeats):
        began = time.perf_counter()
        Instance.open(os.path.join(scratch, f"empty{n}")).close()
        best = min(best, time.perf_counter() - began)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--seconds", type=float, default=5.0)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    from jetstore.engine import Instance

    with benchmark_run(args) as (scratch, report):
        report["open_close_empty_s"] = open_close_seconds(scratch)
        print(f"open+close of an empty instance: {report['open_close_empty_s']:.3f} s (best of 5)")
        for clients in args.clients:
            jet_path = os.path.join(scratch, f"jet{clients}")
            with Instance.open(jet_path) as inst:
                inst.session().create_table("t")
                jet = run_clients(jetstore_client, jet_path, clients, args.seconds)
            sql_path = os.path.join(scratch, f"sqlite{clients}.db")
            db = sqlite3.connect(sql_path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB)")
            db.close()
            sql = run_clients(_sqlite_client, sql_path, clients, args.seconds)
            floor_path = os.path.join(scratch, f"floor{clients}")
            with bench_floor.Pipeline(floor_path):
                floor = run_clients(bench_floor.client, floor_path, clients, args.seconds)
            row = {
                "clients": clients,
                "jetstore": jet,
                "sqlite": sql,
                "floor": floor,
                "ratio": jet["tx_per_s"] / sql["tx_per_s"],
                "floor_ratio": floor["tx_per_s"] / sql["tx_per_s"],
            }
            report["results"].setdefault("commits", []).append(row)
            print(
                f"{clients:3d} clients  jetstore {jet['tx_per_s']:8,.0f} tx/s "
                f"p50 {jet['p50_ms']:.2f} ms p99 {jet['p99_ms']:.2f} ms | "
                f"SQLite {sql['tx_per_s']:8,.0f} tx/s p50 {sql['p50_ms']:.2f} ms "
                f"p99 {sql['p99_ms']:.2f} ms | ratio {row['ratio']:.2f}x | floor "
                f"{floor['tx_per_s']:,.0f} tx/s = {row['floor_ratio']:.2f}x SQLite"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

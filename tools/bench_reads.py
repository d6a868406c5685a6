"""Read benchmark: jetstore's read views against SQLite, measured in one invocation.

Point gets of random keys through the public API from 1 and from N processes, and
a full scan, against SQLite (WAL) on the same rows in the same run; then what a
read view costs a process that writes (durable commits with and without a read
after each), and how much the database file grows while a reader holds one
snapshot and N clients commit, against the same load with no reader.

    python -m jetstore.tools.bench_reads --keys 50000 --seconds 3 --processes 8
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import time

from jetstore.tools.benchmark import add_common_arguments, benchmark_run, start_clients

VALUE = b"v" * 100


def key(i: int) -> bytes:
    return b"%010d" % i


def _get_loop(get, keys: int, seconds: float, start_at: float, seed: int) -> int:
    rng = random.Random(seed)
    order = [key(rng.randrange(keys)) for _ in range(10_000)]
    while time.time() < start_at:
        time.sleep(0.001)
    done, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        for k in order[:1000]:
            get(k)
        done += 1000
        order = order[1000:] + order[:1000]
    return done


def jetstore_reader(path: str, index: int, seconds: float, start_at: float, results) -> None:
    from jetstore.engine import connect

    client = connect(path)
    session = client.session()
    keys = int(open(os.path.join(path, "keys")).read())
    results.put(_get_loop(lambda k: session.get("t", k), keys, seconds, start_at, index))
    client.close()


def sqlite_reader(path: str, index: int, seconds: float, start_at: float, results) -> None:
    db = sqlite3.connect(path)
    keys = db.execute("SELECT count(*) FROM t").fetchone()[0]
    select = "SELECT v FROM t WHERE k = ?"
    results.put(
        _get_loop(lambda k: db.execute(select, (k,)).fetchone(), keys, seconds, start_at, index)
    )
    db.close()


def parallel_gets(target, path: str, processes: int, seconds: float) -> float:
    _start, workers, results = start_clients(target, path, processes, seconds)
    total = sum(results.get(timeout=seconds + 120) for _ in workers)
    for worker in workers:
        worker.join()
    return total / seconds


def committer(path: str, index: int, seconds: float, start_at: float, results) -> None:
    from jetstore.engine import connect

    client = connect(path)
    session = client.session()
    while time.time() < start_at:
        time.sleep(0.001)
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        session.put("t", key(n % 5000) + b"-%d" % index, VALUE)
        n += 1
    results.put(n)
    client.close()


def file_growth(scratch: str, name: str, clients: int, seconds: float, hold: bool) -> dict:
    from jetstore.engine import Instance

    path = os.path.join(scratch, name)
    with Instance.open(path) as inst:
        setup = inst.session()
        setup.create_table("t")
        reader = inst.session()
        if hold:
            reader.begin()
        reader.get("t", b"x")
        before = os.path.getsize(os.path.join(path, "jet.edb"))
        _start, workers, results = start_clients(committer, path, clients, seconds)
        commits = sum(results.get(timeout=seconds + 120) for _ in workers)
        for worker in workers:
            worker.join()
        if hold:
            reader.rollback()
        grown = os.path.getsize(os.path.join(path, "jet.edb")) - before
    return {"commits": commits, "grown_mb": grown / 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: python -m jetstore.tools.bench_reads --keys 50000 --seconds 3",
    )
    parser.add_argument("--keys", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--processes", type=int, default=8, help="readers, and committers")
    parser.add_argument("--hold-seconds", type=float, default=60.0, help="the held snapshot")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    from jetstore.engine import Instance

    with benchmark_run(args) as (scratch, report):
        results = report["results"]
        path = os.path.join(scratch, "jet")
        lite_path = os.path.join(scratch, "lite.db")
        lite = sqlite3.connect(lite_path)
        lite.execute("PRAGMA journal_mode=WAL")
        lite.execute("CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB)")
        lite.executemany("INSERT INTO t VALUES (?, ?)", ((key(i), VALUE) for i in range(args.keys)))
        lite.commit()
        with Instance.open(path) as inst:
            with open(os.path.join(path, "keys"), "w") as f:
                f.write(str(args.keys))
            session = inst.session()
            session.create_table("t")
            with session.transaction():
                for i in range(args.keys):
                    session.put("t", key(i), VALUE)

            rng = random.Random(1)
            sample = [key(rng.randrange(args.keys)) for _ in range(20_000)]
            for name, get in (
                ("jetstore", lambda k: session.get("t", k)),
                ("sqlite", lambda k: lite.execute("SELECT v FROM t WHERE k = ?", (k,)).fetchone()),
            ):
                get(sample[0])
                began = time.perf_counter()
                for k in sample:
                    get(k)
                results[f"gets_1_{name}"] = len(sample) / (time.perf_counter() - began)
                began = time.perf_counter()
                rows = sum(
                    1
                    for _ in (
                        session.scan("t")
                        if name == "jetstore"
                        else lite.execute("SELECT k, v FROM t ORDER BY k")
                    )
                )
                results[f"scan_{name}"] = rows / (time.perf_counter() - began)
            n = args.processes
            results[f"gets_{n}_jetstore"] = parallel_gets(jetstore_reader, path, n, args.seconds)
            results[f"gets_{n}_sqlite"] = parallel_gets(sqlite_reader, lite_path, n, args.seconds)

            for reads in (False, True):  # what catching up costs a process that writes
                count, end = 0, time.perf_counter() + args.seconds
                while time.perf_counter() < end:
                    session.put("t", key(count % args.keys), VALUE)
                    if reads:
                        session.get("t", key(count % args.keys))
                    count += 1
                results["commits_" + ("with_a_read_each" if reads else "only")] = (
                    count / args.seconds
                )
        lite.close()
        for hold in (False, True):
            results["growth_" + ("held" if hold else "free")] = file_growth(
                scratch, f"growth-{hold}", n, args.hold_seconds, hold
            )

    def line(label: str, ours: float, theirs: float, unit: str) -> None:
        print(
            f"  {label:28s} jetstore {ours:>12,.0f} {unit} | SQLite {theirs:>12,.0f} {unit}"
            f" | ratio {ours / theirs:.2f}x"
        )

    print("results:")
    line("point gets, 1 process", results["gets_1_jetstore"], results["gets_1_sqlite"], "/s")
    line(
        f"point gets, {n} processes",
        results[f"gets_{n}_jetstore"],
        results[f"gets_{n}_sqlite"],
        "/s",
    )
    line("full scan", results["scan_jetstore"], results["scan_sqlite"], "rows/s")
    only, read = results["commits_only"], results["commits_with_a_read_each"]
    print(
        f"  durable commits of one process: {only:,.0f}/s; with a get after each "
        f"{read:,.0f}/s ({read / only:.2f}x)"
    )
    free, held = results["growth_free"], results["growth_held"]
    print(
        f"  file growth, {n} committers for {args.hold_seconds:g} s: "
        f"{free['grown_mb']:.1f} MB ({free['commits']:,} commits) with no reader, "
        f"{held['grown_mb']:.1f} MB ({held['commits']:,} commits) with one snapshot held"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

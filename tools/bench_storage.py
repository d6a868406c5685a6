"""Storage-core benchmark: the in-process engine against SQLite, measured in one run.

    python -m jetstore.tools.bench_storage [--keys 200000] [--value-size 1024]
                                           [--open-mb 1024] [--dir DIR] [--json FILE]

Measures, each with its anchor from the same run on the same disk:
  1. bulk load: KEYS random keys with VALUE_SIZE-byte values in ONE durable
     transaction - jetstore vs SQLite (WAL, synchronous=FULL) - and the ratio;
  2. point gets of random loaded keys from a warm cache (jetstore vs SQLite);
  3. open of a database of OPEN_MB after a clean close (target: under 1 s).
Prints the machine and configuration first, so a number is never read without them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import time

from jetstore.engine.storage import Storage
from jetstore.tools.benchmark import add_common_arguments, benchmark_run


def dataset(keys: int, value_size: int, seed: int = 42) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    value = rng.randbytes(value_size)
    return [(rng.randbytes(16), value) for _ in range(keys)]


def bench_jetstore_load(path: str, data, cache_size: int) -> tuple[float, Storage]:
    storage = Storage.open(path, cache_size=cache_size)
    storage.create_table("t")
    started = time.perf_counter()
    storage.commit({"t": dict(data)}, None)
    return time.perf_counter() - started, storage


def bench_sqlite_load(path: str, data, cache_size: int) -> tuple[float, sqlite3.Connection]:
    """SQLite's natural schema (a rowid table, faster here than WITHOUT ROWID for 1 KB
    values) and the same page-cache budget as jetstore."""
    db = sqlite3.connect(os.path.join(path, "bench.sqlite"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(f"PRAGMA cache_size=-{cache_size >> 10}")
    db.execute("CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB)")
    started = time.perf_counter()
    db.execute("BEGIN")
    db.executemany("INSERT OR REPLACE INTO t VALUES (?, ?)", data)
    db.execute("COMMIT")
    return time.perf_counter() - started, db


def bench_gets(get, keys: list[bytes]) -> float:
    for key in keys[:1000]:  # warm
        get(key)
    started = time.perf_counter()
    for key in keys:
        get(key)
    return len(keys) / (time.perf_counter() - started)


def bench_open(path: str, megabytes: int, value_size: int) -> dict:
    """Build a database of the given size, close it cleanly, time the reopen."""
    storage = Storage.open(path, cache_size=256 << 20)
    storage.create_table("t")
    rng = random.Random(7)
    value = rng.randbytes(value_size)
    target = megabytes << 20
    while storage.pager.page_count * storage.page_size < target:
        storage.commit({"t": {rng.randbytes(16): value for _ in range(5000)}}, None, lazy=True)
    storage.close()
    size = os.path.getsize(os.path.join(path, "jet.edb"))
    started = time.perf_counter()
    storage = Storage.open(path)
    opened = time.perf_counter() - started
    storage.close()
    return {"database_bytes": size, "open_seconds": opened}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--value-size", type=int, default=1024)
    parser.add_argument("--gets", type=int, default=200_000)
    parser.add_argument("--open-mb", type=int, default=1024, help="0 skips the open test")
    add_common_arguments(parser)
    args = parser.parse_args(argv)

    with benchmark_run(args) as (scratch, report):
        results = report["results"]
        data = dataset(args.keys, args.value_size)
        cache = max(64 << 20, 2 * args.keys * (args.value_size + 64))
        jet_seconds, storage = bench_jetstore_load(os.path.join(scratch, "jet"), data, cache)
        os.makedirs(os.path.join(scratch, "sqlite"))
        sql_seconds, db = bench_sqlite_load(os.path.join(scratch, "sqlite"), data, cache)
        results["bulk_load"] = {
            "jetstore_rows_per_s": args.keys / jet_seconds,
            "sqlite_rows_per_s": args.keys / sql_seconds,
            "ratio": sql_seconds / jet_seconds,
        }
        rng = random.Random(1)
        keys = [rng.choice(data)[0] for _ in range(args.gets)]
        jet_gets = bench_gets(lambda k: storage.get("t", k), keys)
        sql_gets = bench_gets(
            lambda k: db.execute("SELECT v FROM t WHERE k = ?", (k,)).fetchone(), keys
        )
        results["point_gets"] = {
            "jetstore_per_s": jet_gets,
            "sqlite_per_s": sql_gets,
            "ratio": jet_gets / sql_gets,
        }
        storage.close()
        db.close()
        for name, figures in results.items():
            print(
                f"{name:12s} "
                + "  ".join(
                    f"{k}={v:,.2f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in figures.items()
                )
            )
        if args.open_mb:
            results["open_after_clean_close"] = bench_open(
                os.path.join(scratch, "open"), args.open_mb, args.value_size
            )
            print("open         " + json.dumps(results["open_after_clean_close"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

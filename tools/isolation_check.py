"""The snapshot-isolation checker (DESIGN.md invariant 6).

Several processes run random transactions against one instance - gets, scans,
puts and deletes over a small key space, every written value unique - and log
each operation with what it saw, the transaction's ``snapshot_lsn`` and the LSN
its commit returned (or that it aborted).  The checker then replays every
transaction against the oracle of committed writes: each read must return the
transaction's own latest write of the key, or else the newest committed write
at or below its snapshot; a scan must return exactly that state over its range.
An aborted transaction's writes must never be seen.

    python -m jetstore.tools.isolation_check DIR --processes 4 --transactions 300
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import random
import sys
import tempfile

import multiprocess

KEYS = [b"k%02d" % i for i in range(16)]
TABLE = "si"


def worker(path: str, name: str, seed: int, transactions: int, log_path: str) -> None:
    """One client process: ``transactions`` random transactions, each logged as a line."""
    from jetstore.engine import JetError, connect

    rng = random.Random(seed)
    client = connect(path)
    session = client.session()
    with open(log_path, "w") as log:
        for number in range(transactions):
            session.begin()
            entry = {"snapshot": session.snapshot_lsn, "ops": [], "lsn": None}
            for op_number in range(rng.randint(1, 8)):
                choice = rng.random()
                key = rng.choice(KEYS)
                if choice < 0.4:
                    value = session.get(TABLE, key)
                    entry["ops"].append(["get", key.hex(), value and value.decode()])
                elif choice < 0.55:
                    low, high = sorted(rng.sample(KEYS, 2))
                    rows = [[k.hex(), v.decode()] for k, v in session.scan(TABLE, low, high)]
                    entry["ops"].append(["scan", low.hex(), high.hex(), rows])
                elif choice < 0.9:
                    value = f"{name}-{number}-{op_number}"
                    session.put(TABLE, key, value.encode())
                    entry["ops"].append(["put", key.hex(), value])
                else:
                    session.delete(TABLE, key)
                    entry["ops"].append(["put", key.hex(), None])
            try:
                entry["lsn"] = session.commit() if rng.random() < 0.9 else session.rollback()
            except JetError as exc:
                if exc.err != -1102:
                    raise
                entry["conflict"] = True
            log.write(json.dumps(entry) + "\n")
    client.close()


def _apply(state: dict[str, str], op: list) -> None:
    """A logged put (value None: a delete) applied to a state; other operations read."""
    if op[0] == "put":
        if op[2] is None:
            state.pop(op[1], None)
        else:
            state[op[1]] = op[2]


class Oracle:
    """Every committed write, by the LSN its commit returned."""

    def __init__(self, entries: list[dict]) -> None:
        committed = sorted((e for e in entries if e["lsn"]), key=lambda e: e["lsn"])
        lsns = [e["lsn"] for e in committed]
        if len(set(lsns)) != len(lsns):
            raise AssertionError("two commits returned the same LSN")
        self.lsns = lsns
        self.states: list[dict[str, str]] = []  # the committed state after each commit
        state: dict[str, str] = {}
        for entry in committed:
            for op in entry["ops"]:
                _apply(state, op)
            self.states.append(dict(state))

    def at(self, lsn: int) -> dict[str, str]:
        index = bisect.bisect_right(self.lsns, lsn)
        return self.states[index - 1] if index else {}


def check(entries: list[dict]) -> list[str]:
    """Every way a transaction's reads differ from its snapshot and own writes."""
    oracle = Oracle(entries)
    violations = []
    written_at: dict[str, list[int]] = {}  # key -> the LSNs of the commits that wrote it
    for entry in entries:
        for op in entry["ops"] if entry["lsn"] else ():
            if op[0] == "put":
                written_at.setdefault(op[1], []).append(entry["lsn"])
    for number, entry in enumerate(entries):
        if entry.get("conflict"):
            keys = {op[1] for op in entry["ops"] if op[0] == "put"}
            if not any(lsn > entry["snapshot"] for k in keys for lsn in written_at.get(k, ())):
                violations.append(
                    f"transaction {number} (snapshot {entry['snapshot']:#x}) failed with a "
                    "write conflict, yet no commit after its snapshot wrote any of its keys"
                )
        seen = dict(oracle.at(entry["snapshot"]))
        for op in entry["ops"]:
            if op[0] == "put":
                _apply(seen, op)
            elif op[0] == "get":
                if seen.get(op[1]) != op[2]:
                    violations.append(
                        f"transaction {number} (snapshot {entry['snapshot']:#x}) read key "
                        f"{op[1]} = {op[2]!r}, expected {seen.get(op[1])!r}"
                    )
            else:
                _kind, low, high, rows = op
                expected = [[k, v] for k, v in sorted(seen.items()) if low <= k < high]
                if rows != expected:
                    violations.append(
                        f"transaction {number} (snapshot {entry['snapshot']:#x}) scanned "
                        f"[{low}, {high}) = {rows}, expected {expected}"
                    )
    return violations


def run(path: str, processes: int, transactions: int, seed: int) -> dict:
    """Run the workers against the open instance at ``path`` and check their logs."""
    from jetstore.engine import connect

    setup = connect(path)
    try:
        setup.session().create_table(TABLE)
    finally:
        setup.close()
    logs = tempfile.mkdtemp(prefix="si-")
    spawn = multiprocess.get_context("spawn")
    workers = [
        spawn.Process(
            target=worker,
            args=(path, f"w{i}", seed * 1000 + i, transactions, os.path.join(logs, f"w{i}")),
        )
        for i in range(processes)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join()
    failed = [p.exitcode for p in workers if p.exitcode]
    entries = []
    for i in range(processes):
        with open(os.path.join(logs, f"w{i}")) as f:
            entries += [json.loads(line) for line in f]
    return {
        "transactions": len(entries),
        "committed": sum(1 for e in entries if e["lsn"]),
        "conflicts": sum(1 for e in entries if e.get("conflict")),
        "failed_workers": failed,
        "violations": check(entries),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jetstore.tools.isolation_check",
        description=__doc__.split("\n\n")[0],
        epilog="example: python -m jetstore.tools.isolation_check /tmp/si --processes 4 "
        "--transactions 300 --seed 7",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dir", help="instance directory (created)")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--transactions", type=int, default=300, help="per process")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    from jetstore.engine import Instance

    with Instance.open(args.dir, log_file_size=64 << 10):
        result = run(args.dir, args.processes, args.transactions, args.seed)
    print(json.dumps({**result, "violations": result["violations"][:20]}, indent=2))
    return 1 if result["violations"] or result["failed_workers"] else 0


if __name__ == "__main__":
    sys.exit(main())

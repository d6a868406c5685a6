"""The snapshot-isolation checker (DESIGN.md invariant 6).

Several processes run random transactions against one instance - gets, scans,
puts and deletes over a small key space, every written value unique - and log
each operation with what it saw, the transaction's ``snapshot_lsn`` and the LSN
its commit returned (or that it aborted).  The checker then replays every
transaction against the oracle of committed writes: each read must return the
transaction's own latest write of the key, or else the newest committed write
at or below its snapshot; a scan must return exactly that state over its range.
An aborted transaction's writes must never be seen.

Under kills (``jetstore torture`` runs it so): a transaction is logged as
pending before its commit is sent, so one whose answer never came - its process
was killed, or the instance died under it - is *unknown*, not forgotten.
``resolve`` settles each from the log: every commit also writes its worker's own
marker key with a unique value, so its record, and the LSN where it ends, is
there if it committed.  One still unknown (its generation was truncated
meanwhile) may or may not have committed: reads of its keys at later snapshots
are not judged, and are counted.

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
from collections import Counter

import multiprocess

KEYS = [b"k%02d" % i for i in range(16)]
MARKER = b"m-"  # + a worker's name: only that worker writes it, and outside KEYS' scans
TABLE = "si"


def worker(path: str, name: str, seed: int, transactions: int | None, log_path: str) -> None:
    """One client process: random transactions, each logged as it ends; with
    ``transactions`` None, until the instance goes away (torture kills it)."""
    from jetstore.engine import JetError, connect

    rng = random.Random(seed)
    marker = (MARKER + name.encode()).hex()
    number = 0
    with open(log_path, "w") as log:
        try:
            session = connect(path).session()
        except JetError:
            if transactions is not None:
                raise
            return  # the instance died before this worker started
        while transactions is None or number < transactions:
            try:
                entry = _random_transaction(session, rng, f"{name}-{number}")
                commit = rng.random() < 0.9
                if commit:
                    value = f"{name}-{number}-m"
                    session.put(TABLE, bytes.fromhex(marker), value.encode())
                    entry["ops"].append(["put", marker, value])
                else:
                    session.rollback()
            except JetError:
                if transactions is not None:
                    raise
                return  # the instance is gone
            if not commit:
                _write(log, entry)
            else:
                _write(log, {**entry, "pending": True})
                try:
                    outcome = {"lsn": session.commit()}
                except JetError as exc:
                    if exc.err != -1102 and transactions is not None:
                        raise
                    outcome = {"conflict": True} if exc.err == -1102 else {"unknown": exc.name}
                _write(log, {"outcome": outcome})
                if "unknown" in outcome:
                    return
            number += 1


def _random_transaction(session, rng: random.Random, prefix: str) -> dict:
    """Begin, and run 1 to 8 random operations; the entry that logs them."""
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
            value = f"{prefix}-{op_number}"
            session.put(TABLE, key, value.encode())
            entry["ops"].append(["put", key.hex(), value])
        else:
            session.delete(TABLE, key)
            entry["ops"].append(["put", key.hex(), None])
    return entry


def _write(log, record: dict) -> None:
    log.write(json.dumps(record) + "\n")
    log.flush()  # one write per line: a kill leaves whole lines and at most one cut one


def read_entries(text: str) -> list[dict]:
    """A worker's log as one entry per transaction: a last line cut short by a kill is
    dropped, and a transaction still pending is ``unknown``."""
    entries: list[dict] = []
    for line in text.split("\n")[:-1]:
        record = json.loads(line)
        if "outcome" in record:
            del entries[-1]["pending"]
            entries[-1].update(record["outcome"])
        else:
            entries.append(record)
    for entry in entries:
        if entry.pop("pending", False):
            entry["unknown"] = "no answer logged"
    return entries


def logged_commits(records) -> dict[str, int]:
    """Marker value -> the end LSN of its commit record, from the log's records
    (``LogRecord``s, as ``LogReader.records`` yields them)."""
    from jetstore.engine import redo_format

    found = {}
    for record in records:
        kind, body = redo_format.decode(record.payload, "the log")
        if kind != redo_format.COMMIT:
            continue
        for table, items in redo_format.commit_tables(body):
            if table == TABLE:
                found.update(
                    (value.decode(), record.end_lsn)
                    for key, value in items
                    if key.startswith(MARKER) and value is not None
                )
    return found


def resolve(entries: list[dict], logged: dict[str, int], log_start: int) -> list[str]:
    """Settle unknown outcomes from ``logged`` (logged_commits), the log's records from
    ``log_start`` on: a commit is there, or - if the log reaches back to its snapshot -
    it never committed.  A commit whose answer names another LSN than its record's, or
    a refused one that is logged, is a violation."""
    violations = []
    for entry in entries:
        if entry.get("lsn") is None and "unknown" not in entry:
            if entry.get("conflict") and entry["ops"][-1][2] in logged:
                violations.append(f"commit {entry['ops'][-1][2]} was refused, yet it is logged")
            continue
        marker = entry["ops"][-1][2]
        end = logged.get(marker)
        if "unknown" in entry and end is not None:
            del entry["unknown"]
            entry["lsn"] = end
        elif "unknown" in entry and entry["snapshot"] >= log_start:
            del entry["unknown"]  # its record would end after its snapshot: in the log
        elif entry.get("lsn") is not None and end is not None and end != entry["lsn"]:
            violations.append(
                f"commit {marker} returned {entry['lsn']:#x}, its record ends at {end:#x}"
            )
    return violations


def _apply(state: dict[str, str], op: list) -> None:
    """A logged put (value None: a delete) applied to a state; other operations read."""
    if op[0] == "put":
        if op[2] is None:
            state.pop(op[1], None)
        else:
            state[op[1]] = op[2]


def _may_see_unknown(unknown_from: dict[str, int], keys, snapshot: int) -> bool:
    """Whether a snapshot may see the commit of an unknown writer of one of ``keys``."""
    return any(unknown_from.get(key, snapshot) < snapshot for key in keys)


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


def check(entries: list[dict], counts: Counter | None = None) -> list[str]:
    """Every way a transaction's reads differ from its snapshot and own writes.

    Unknown outcomes (``resolve`` could not settle them) may have committed at any
    LSN after their snapshot: reads of their keys at later snapshots are counted in
    ``counts`` and not judged, and they may justify any write conflict.
    """
    oracle = Oracle(entries)
    counts = Counter() if counts is None else counts
    violations = []
    written_at: dict[str, list[int]] = {}  # key -> the LSNs of the commits that wrote it
    unknown_from: dict[str, int] = {}  # key -> the oldest snapshot of an unknown writer
    for entry in entries:
        for op in entry["ops"] if entry["lsn"] or "unknown" in entry else ():
            if op[0] != "put":
                continue
            if "unknown" in entry:
                since = unknown_from.get(op[1], entry["snapshot"])
                unknown_from[op[1]] = min(since, entry["snapshot"])
            else:
                written_at.setdefault(op[1], []).append(entry["lsn"])
    for number, entry in enumerate(entries):
        snapshot = entry["snapshot"]

        if entry.get("conflict"):
            keys = {op[1] for op in entry["ops"] if op[0] == "put"}
            later = any(lsn > snapshot for k in keys for lsn in written_at.get(k, ()))
            if not later and not any(key in unknown_from for key in keys):
                violations.append(
                    f"transaction {number} (snapshot {snapshot:#x}) failed with a "
                    "write conflict, yet no commit after its snapshot wrote any of its keys"
                )
        seen = dict(oracle.at(snapshot))
        for op in entry["ops"]:
            if op[0] == "put":
                _apply(seen, op)
            elif op[0] == "get":
                if _may_see_unknown(unknown_from, [op[1]], snapshot):
                    counts["isolation reads not judged (an unknown outcome)"] += 1
                elif seen.get(op[1]) != op[2]:
                    violations.append(
                        f"transaction {number} (snapshot {snapshot:#x}) read key "
                        f"{op[1]} = {op[2]!r}, expected {seen.get(op[1])!r}"
                    )
            else:
                _kind, low, high, rows = op
                in_range = [key for key in unknown_from if low <= key < high]
                if _may_see_unknown(unknown_from, in_range, snapshot):
                    counts["isolation reads not judged (an unknown outcome)"] += 1
                    continue
                expected = [[k, v] for k, v in sorted(seen.items()) if low <= k < high]
                if rows != expected:
                    violations.append(
                        f"transaction {number} (snapshot {snapshot:#x}) scanned "
                        f"[{low}, {high}) = {rows}, expected {expected}"
                    )
        counts["isolation transactions checked"] += 1
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
            entries += read_entries(f.read())
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

"""``jetstore demo``: the storage core end to end, in one process.

Loads keys in durable commits, abandons the instance without closing it (as a
crash would), reopens it - recovery replays the log - and verifies every
acknowledged key.  The online-backup demo of the full product replaces this
once the actors and the backup worker exist.
"""

from __future__ import annotations

import hashlib
import tempfile
import time

from jetstore.engine.storage import Storage

BATCH = 1000


def value_for(i: int) -> bytes:
    return hashlib.blake2b(b"%d" % i, digest_size=32).digest() * 4


def run_demo(directory: str | None, *, keys: int) -> int:
    with tempfile.TemporaryDirectory(prefix="jetstore-demo-") as scratch:
        path = directory or scratch
        started = time.perf_counter()
        storage = Storage.open(path)
        if "demo" not in storage.list_tables():
            storage.create_table("demo")
        for first in range(0, keys, BATCH):
            batch = {b"key%09d" % i: value_for(i) for i in range(first, min(first + BATCH, keys))}
            storage.commit({"demo": batch}, None)
        loaded = time.perf_counter()
        storage._close_files()  # no checkpoint, no clean state: what a crash leaves
        storage = Storage.open(path)
        recovered = time.perf_counter()
        mismatches = sum(
            1 for i in range(keys) if storage.get("demo", b"key%09d" % i) != value_for(i)
        )
        replayed = storage.replayed
        storage.close()
        print(f"instance:       {path}")
        print(
            f"loaded:         {keys} keys in {(keys + BATCH - 1) // BATCH} durable commits, "
            f"{keys / (loaded - started):,.0f} keys/s"
        )
        print(f"crash recovery: {replayed} redo records replayed in {recovered - loaded:.2f} s")
        print(f"verified:       {keys - mismatches} keys, {mismatches} mismatches")
        return 1 if mismatches else 0

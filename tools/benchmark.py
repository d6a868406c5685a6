"""What every benchmark shares: the machine it ran on, a scratch directory, the report.

A figure is never printed without the machine and the configuration that
produced it, and ``--json FILE`` keeps all of them together.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import multiprocess

from jetstore.engine.errors import JetError


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", help="scratch directory (default: a temporary one)")
    parser.add_argument("--json", help="write every figure and the configuration to this file")


@contextmanager
def benchmark_run(args: argparse.Namespace) -> Iterator[tuple[str, dict]]:
    """(scratch directory, report); prints machine and configuration first, writes the
    report to ``--json`` at the end, removes the scratch directory whatever happens."""
    scratch = tempfile.mkdtemp(prefix="jetstore-bench-", dir=args.dir)
    report = {"machine": machine(), "config": vars(args), "results": {}}
    print("machine:", json.dumps(report["machine"]))
    print("config: ", json.dumps(report["config"]))
    try:
        yield scratch, report
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


def commit_loop(commit, index: int, seconds: float, start_at: float) -> list[tuple[float, float]]:
    """Commit in a loop from ``start_at`` for ``seconds``: (wall-clock start, latency) each."""
    while time.time() < start_at:
        time.sleep(0.001)
    samples = []
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        wall, began = time.time(), time.perf_counter()
        try:
            commit(b"%03d-%09d" % (index, i))
        except JetError:
            break  # the instance went away (a crash benchmark kills it on purpose)
        samples.append((wall, time.perf_counter() - began))
        i += 1
    return samples


def start_clients(target, path: str, clients: int, seconds: float, lead: float = 1.5):
    """Start client processes that begin committing together ``lead`` seconds from now."""
    context = multiprocess.get_context("spawn")
    results = context.Queue()
    start_at = time.time() + lead
    processes = [
        context.Process(target=target, args=(path, n, seconds, start_at, results))
        for n in range(clients)
    ]
    for process in processes:
        process.start()
    return start_at, processes, results

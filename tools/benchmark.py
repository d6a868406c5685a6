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
from collections.abc import Iterator
from contextlib import contextmanager


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

"""``jetstore load DIR``: the command - its help, its registration on the ``jetstore``
parser, and the run from options to report, JSON and plot, with its exit code."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from jetstore.tools import exit_codes
from jetstore.tools.arguments import epilog
from jetstore.tools.output import text_aside, write_report

from .options import add_arguments, build_config, usage_problem
from .plot import plot
from .report import describe, print_comparison, print_result
from .summary import comparison
from .targets import run_jetstore, run_sqlite

DESCRIPTION = """\
A seeded, reproducible load generator with online backups.

Starts an instance in DIR (or attaches to the one already running there), loads
the key space, and runs CLIENTS client processes (multiprocess, spawn) that each
issue transactions drawn from a seeded workload: KEYS_PER_TX operations, each a
read with probability READ_RATIO, keys uniform or zipfian (scrambled), values
from a size distribution; lazy or durable commits.  The first WARMUP seconds are
run but not measured.  A latency is a whole transaction's, from its first call
to the return of its commit (a durable commit includes the log flush); tx/s and
latencies count successful transactions, errors are counted apart.

Every client keeps HDR-style latency histograms (log-linear buckets, 2
significant digits: every reported percentile is within 1/128 of the exact
nearest-rank value) per second of the run, split by whether a backup was
running when the transaction started.  Clients send bucket counts, never raw
samples; the driver merges them into the per-second timeline and into three
windows: overall, during backup, no backup.  With --backup-every S the driver
asks the instance's control socket for a backup every S seconds (full ones, or
one full then incrementals) and records each backup's window, bytes and MB/s.
With -P N, a line every N seconds gives that interval's tx/s, p50, p99 and
errors, from the same per-second figures as the final report.

Errors are counted by their ESE name (JET_errWriteConflict...) and never stop
the run, except those that mean the instance is gone (JET_errInstanceUnavailable
and friends), which end that client.  --compare sqlite runs the same workload -
same seed, clients, mix, and backups through SQLite's online backup API -
against SQLite (one connection per process, WAL, synchronous=FULL, or NORMAL with
--lazy, busy_timeout) on the same filesystem, and prints the ratios."""

EPILOG = epilog(
    "jetstore load db --clients 8 --duration 30 -P 5",
    "jetstore load db --read-ratio 0.9 --key-dist zipfian --value-size lognormal:1K,0.8",
    "jetstore load db --backup-every 10 --backup-mode incremental --json-file l.json --plot l.png",
    "jetstore load db --transactions 100000 --lazy --compare sqlite",
    codes="Exit codes: 0 ok; 1 the run failed (a backup, a client process, no transaction\n"
    "at all, or the ESE error printed); 2 usage (including --plot without matplotlib);\n"
    "130 interrupted (the partial report is still printed and written).",
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``load`` on the ``jetstore`` command's subparsers."""
    parser = subparsers.add_parser(
        "load",
        help="run a load (N client processes, workload mix, periodic backups) and report",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _configure(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m jetstore.tools.load ARGS``: the same as ``jetstore load ARGS``."""
    from jetstore.tools.cli import main as jetstore  # imported here: cli imports this package

    return jetstore(["load", *(sys.argv[1:] if argv is None else argv)])


def _configure(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser)
    parser.set_defaults(func=run, usage_error=parser.error)


def run(args: argparse.Namespace) -> int:
    """The ``load`` subcommand: a usage error exits 2 (``SystemExit``); a failure reaches
    ``jetstore``'s main, which prints it in one line."""
    config = build_config(args)
    problem = usage_problem(config)
    if problem:
        args.usage_error(problem)
    to_stdout = args.json is True  # a bare --json; --json FILE is a file, as in DESIGN
    with text_aside(to_stdout):
        code, report = _load(config)
    write_report(report, to_stdout, config["json_file"])
    return code


def _scratch_beside(directory: str, prefix: str) -> str:
    """A temporary directory on DIR's filesystem (fair fsync comparisons), else in /tmp."""
    parent = os.path.dirname(os.path.abspath(directory))
    try:
        os.makedirs(parent, exist_ok=True)
        return tempfile.mkdtemp(prefix=prefix, dir=parent)
    except OSError:
        return tempfile.mkdtemp(prefix=prefix)


def _load(config: dict) -> tuple[int, dict]:
    from jetstore.tools.benchmark import machine

    report: dict = {"tool": "jetstore load", "format": 1, "config": config, "machine": machine()}
    print("machine: " + json.dumps(report["machine"]))
    print("load:    " + describe(config))
    own_backup_dir = config["backup_every"] and not config["backup_dir"]
    backup_root = None
    if config["backup_every"]:
        if config["backup_dir"]:  # one fresh directory per run: backups never collide
            os.makedirs(config["backup_dir"], exist_ok=True)
            backup_root = tempfile.mkdtemp(
                prefix=time.strftime("load-%Y%m%d-%H%M%S-"), dir=config["backup_dir"]
            )
        else:
            backup_root = _scratch_beside(config["dir"], ".jetstore-load-bk-")
        report["backup_root"] = backup_root
    try:
        info, result = run_jetstore(
            config, os.path.join(backup_root, "jetstore") if backup_root else None
        )
        report["instance"] = info
        report.update(result)
        print_result(f"jetstore ({info['mode']} {info['path']})", result)
        if config["compare"] == "sqlite" and not result["interrupted"]:
            scratch = _scratch_beside(config["dir"], ".jetstore-load-sqlite-")
            try:
                sql_info, sql_result = run_sqlite(
                    config, scratch, os.path.join(backup_root, "sqlite") if backup_root else None
                )
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            report["sqlite"] = {"settings": sql_info, **sql_result}
            report["comparison"] = comparison(result, sql_result)
            print_result(
                f"sqlite (WAL, synchronous={sql_info['synchronous']}, same workload)", sql_result
            )
            print_comparison(report["comparison"])
        code = _exit_code([result] + ([report["sqlite"]] if "sqlite" in report else []))
        report["exit_code"] = code
        if config["plot"]:
            plot(config["plot"], report)
            print(f"plot:    {config['plot']}")
    finally:
        if own_backup_dir and backup_root and not config["keep_backups"]:
            shutil.rmtree(backup_root, ignore_errors=True)
    return code, report


def _exit_code(runs: list[dict]) -> int:
    if any(r["interrupted"] for r in runs):
        return exit_codes.INTERRUPTED
    if any(
        r["overall"]["transactions"] == 0
        or r["backup_summary"]["failed"]
        or any(c["aborted"] for c in r["clients"])
        for r in runs
    ):
        return exit_codes.FAILED
    return exit_codes.OK

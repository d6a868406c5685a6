"""The options of ``jetstore load``: their types, which refuse a value that makes no sense
before anything starts (``--clients 0``, ``--read-ratio 1.5``, a DIR that is a file, a
report file in a missing directory), and the run's configuration built from them."""

from __future__ import annotations

import argparse
import os
import sys

from jetstore.engine.page_format import PAGE_SIZES
from jetstore.engine.reader_table_format import SLOTS
from jetstore.tools.arguments import (
    instance_directory,
    non_negative_float,
    non_negative_int,
    number,
    output_file,
    positive_float,
    positive_int,
)
from jetstore.tools.progress import is_terminal

from .workload import ValueSize

PROGRESS_ON_A_TERMINAL_S = 5

# Each client process holds one of the instance's reader slots while it runs; the load
# tool's own process may hold one more.  More clients would fail partway with -1059.
MAX_CLIENTS = SLOTS - 1


def _ratio(text: str) -> float:
    value = non_negative_float(text)
    if not value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _value_size(text: str) -> str:
    ValueSize(text)  # raises ArgumentTypeError with the reason
    return text


def _table_name(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("a table name must not be empty")
    if '"' in text:
        raise argparse.ArgumentTypeError(f"{text}: a table name must not contain '\"'")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dir",
        metavar="DIR",
        type=instance_directory,
        help="instance directory: attached to if an instance is running there, else opened "
        "(created if missing; its parent must exist) for the run and closed at the end",
    )
    group = parser.add_argument_group("run length")
    length = group.add_mutually_exclusive_group()
    length.add_argument(
        "--duration",
        type=positive_float,
        metavar="S",
        help="measured seconds after the warm-up (default 10)",
    )
    length.add_argument(
        "--transactions",
        type=positive_int,
        metavar="N",
        help="measured transactions in total, split evenly over the clients (instead of "
        "--duration); errors do not count",
    )
    group.add_argument(
        "--warmup",
        type=non_negative_float,
        default=1.0,
        metavar="S",
        help="seconds run before measuring, excluded from every figure (default 1)",
    )
    group.add_argument(
        "--clients",
        type=number(int, 1, f"from 1 to {MAX_CLIENTS}", MAX_CLIENTS),
        default=4,
        metavar="N",
        help=f"client processes, each with its own connection and reader slot (default 4, "
        f"at most {MAX_CLIENTS})",
    )
    work = parser.add_argument_group("workload (seeded: the same options give the same stream)")
    work.add_argument(
        "--read-ratio",
        type=_ratio,
        default=0.5,
        metavar="R",
        help="probability that an operation is a read, else a write (default 0.5); a "
        "transaction without writes is read-only",
    )
    work.add_argument(
        "--keys-per-tx",
        type=positive_int,
        default=1,
        metavar="N",
        help="operations per transaction (default 1: single-operation calls; more: "
        "begin, operations, commit)",
    )
    work.add_argument(
        "--keys",
        type=positive_int,
        default=100_000,
        metavar="K",
        help="key space: keys key000000000000..K-1 (default 100000)",
    )
    work.add_argument(
        "--key-dist",
        choices=("uniform", "zipfian"),
        default="uniform",
        help="key choice: uniform, or zipfian with exponent --zipf-s over scrambled ranks "
        "(the same keys are hot for every client) (default uniform)",
    )
    work.add_argument(
        "--zipf-s",
        type=positive_float,
        default=0.99,
        metavar="S",
        help="zipfian exponent (default 0.99, as YCSB)",
    )
    work.add_argument(
        "--value-size",
        type=_value_size,
        default="100",
        metavar="SPEC",
        help="value sizes: N (fixed), uniform:MIN-MAX, lognormal:MEDIAN,SIGMA; K/M suffixes "
        "(default 100)",
    )
    work.add_argument(
        "--lazy",
        action="store_true",
        help="lazy commits (commit(lazy=True): not waiting for the log flush); SQLite then "
        "uses synchronous=NORMAL",
    )
    work.add_argument("--seed", type=int, default=42, help="workload seed (default 42)")
    work.add_argument(
        "--table", type=_table_name, default="load", help="table to use (default 'load')"
    )
    work.add_argument(
        "--populate",
        choices=("auto", "always", "never"),
        default="auto",
        help="write every key once before the run: auto = when this run creates the table "
        "(default), always, never",
    )
    backups = parser.add_argument_group("online backups")
    backups.add_argument(
        "--backup-every",
        type=positive_float,
        metavar="S",
        help="ask for a backup over the control socket every S seconds of the measured "
        "window (the first at S)",
    )
    backups.add_argument(
        "--backup-mode",
        choices=("full", "incremental"),
        default="full",
        help="full: every backup full; incremental: the first full, then incrementals into "
        "the same directory (default full)",
    )
    backups.add_argument(
        "--backup-atomic",
        action="store_true",
        help="atomic backups (DEST/temp, then new/old); full mode then reuses one directory",
    )
    backups.add_argument(
        "--backup-dir",
        type=instance_directory,
        metavar="PATH",
        help="keep backups under PATH, in a fresh load-DATE-TIME-* directory per run (default: "
        "a temporary directory beside DIR, removed at the end)",
    )
    backups.add_argument(
        "--keep-backups",
        action="store_true",
        help="keep every full backup, and the temporary backup directory (default: only the "
        "latest full backup is kept while running, and nothing after the run without "
        "--backup-dir)",
    )
    backups.add_argument(
        "--backup-timeout",
        type=positive_float,
        default=120.0,
        metavar="S",
        help="give up on a backup that sends no progress for S seconds (default 120)",
    )
    out = parser.add_argument_group("output and comparison")
    out.add_argument(
        "--json",
        nargs="?",
        const=True,
        type=output_file,
        metavar="FILE",
        help="print the report as one JSON document on stdout (the text goes to stderr); "
        "--json FILE writes it to FILE instead, as --json-file does",
    )
    out.add_argument(
        "--json-file",
        type=output_file,
        metavar="FILE",
        help="write every figure and the configuration",
    )
    out.add_argument(
        "--plot",
        type=output_file,
        metavar="FILE.png",
        help="draw throughput and p99 latency per second, backup windows shaded (matplotlib)",
    )
    out.add_argument(
        "--compare",
        choices=("sqlite",),
        help="also run the identical workload against SQLite (WAL, synchronous=FULL, "
        "busy_timeout, same filesystem) and print the ratios",
    )
    shown = out.add_mutually_exclusive_group()
    shown.add_argument(
        "-P",
        "--progress",
        type=non_negative_int,
        metavar="N",
        help="every N seconds of the measured window, print a line on stderr with that "
        "interval's tx/s, p50, p99 and errors, as the final report counts them; 0: none "
        "(default 5 when stderr is a terminal, else 0)",
    )
    shown.add_argument("--quiet", action="store_true", help="no progress on stderr (-P 0)")
    opening = parser.add_argument_group("instance options (only when this run opens DIR)")
    opening.add_argument(
        "--page-size",
        type=int,
        choices=PAGE_SIZES,
        default=8192,
        metavar="B",
        help="page size: " + ", ".join(map(str, PAGE_SIZES)) + " (default 8192)",
    )
    opening.add_argument(
        "--cache-mb", type=positive_int, default=64, metavar="MB", help="page cache (default 64)"
    )
    opening.add_argument(
        "--log-file-mb",
        type=positive_int,
        default=1,
        metavar="MB",
        help="log generation size (default 1)",
    )


def _progress_every(args: argparse.Namespace) -> int:
    if args.progress is not None:
        return args.progress
    if args.quiet or not is_terminal(sys.stderr):
        return 0
    return PROGRESS_ON_A_TERMINAL_S


def build_config(args: argparse.Namespace) -> dict:
    """The run's configuration: what the clients get, and the report's "config"."""
    duration = args.duration if args.duration or args.transactions else 10.0
    config = {
        "dir": os.path.abspath(args.dir),
        "clients": args.clients,
        "duration": None if args.transactions else duration,
        "transactions": args.transactions,
        "transactions_per_client": (
            [len(range(n, args.transactions, args.clients)) for n in range(args.clients)]
            if args.transactions
            else None
        ),
        "warmup": args.warmup,
        "read_ratio": args.read_ratio,
        "keys_per_tx": args.keys_per_tx,
        "keys": args.keys,
        "key_dist": args.key_dist,
        "zipf_s": args.zipf_s,
        "value_size": args.value_size,
        "lazy": args.lazy,
        "seed": args.seed,
        "table": args.table,
        "populate": args.populate,
        "backup_every": args.backup_every,
        "backup_mode": args.backup_mode,
        "backup_atomic": args.backup_atomic,
        "backup_dir": os.path.abspath(args.backup_dir) if args.backup_dir else None,
        "keep_backups": args.keep_backups,
        "backup_timeout": args.backup_timeout,
        "json_file": args.json_file or (args.json if isinstance(args.json, str) else None),
        "plot": args.plot,
        "compare": args.compare,
        "quiet": args.quiet,
        "progress": _progress_every(args),
        "page_size": args.page_size,
        "cache_mb": args.cache_mb,
        "log_file_mb": args.log_file_mb,
        "latency_histogram": "log-linear, 2 significant digits (relative error <= 1/128), µs",
    }
    return config


def usage_problem(config: dict) -> str | None:
    """What is wrong with a combination of options that each parsed."""
    backup_dir = config["backup_dir"]
    if backup_dir:
        inside = os.path.realpath(backup_dir) + os.sep
        if inside.startswith(os.path.realpath(config["dir"]) + os.sep):
            return "--backup-dir must not be inside the instance directory"
    if config["plot"]:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return "--plot needs matplotlib, which is not installed (pip install matplotlib)"
    return None

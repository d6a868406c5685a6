"""The ``jetstore corrupt`` command line: its arguments (checked before any work starts), its
help with examples and exit codes, and running a campaign from them."""

from __future__ import annotations

import argparse
import os
import random
import sys

from jetstore.tools.arguments import (
    epilog,
    existing_directory,
    instance_directory,
    non_negative_int,
    output_file,
    positive_int,
)
from jetstore.tools.corrupt.campaigns import campaign
from jetstore.tools.corrupt.catalogue import TARGETS
from jetstore.tools.corrupt.report import print_summary, print_trial
from jetstore.tools.exit_codes import FAILED, INTERRUPTED, OK, USAGE
from jetstore.tools.output import text_aside, write_report

DESCRIPTION = """\
Build a small instance and a backup, then per trial flip one random bit in a database page,
a meta slot, a log header or record, a backup file or the MANIFEST, and run the matching
detectors (verify_database, dump_header, dump_log, recovery with a full scan and integrity
check, verify_backup, restore).  Each trial is DETECTED (right ESE error naming the file and
page/offset), HARMLESS (free space or padding nothing reads, with the reason) or a VIOLATION
(silently accepted, wrong error, wrong data, or a crash)."""

EPILOG = epilog(
    "jetstore corrupt --trials 200",
    "jetstore corrupt --trials 3000 --seed 2028 --json-file report.json",
    "jetstore corrupt --seed 2028 --trial 17 -v          (replay trial 17 alone)",
    "jetstore corrupt --trials 50 --target log_last --actors --keep damaged",
    codes=f"Exit codes: {OK} no violation, {FAILED} a violation, or the pristine fixture failed "
    f"its own checks\n(stderr says which), {USAGE} usage, {INTERRUPTED} interrupted.",
)


def writable_directory(path: str) -> str:
    """An argument type: an existing directory this process may create files in."""
    existing_directory(path)
    if not os.access(path, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{path}: not writable")
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trials",
        type=positive_int,
        default=200,
        metavar="N",
        help="number of trials (default 200)",
    )
    parser.add_argument(
        "--seed", type=int, metavar="S", help="campaign seed (default: random, printed)"
    )
    parser.add_argument(
        "--target",
        action="append",
        choices=TARGETS,
        metavar="CLASS",
        help=f"only this target class (repeatable; default: all): {', '.join(TARGETS)}",
    )
    parser.add_argument(
        "--trial",
        type=non_negative_int,
        metavar="K",
        help="run only trial K of the campaign (replay)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the full report as one JSON document on stdout (the text goes to stderr)",
    )
    parser.add_argument(
        "--json-file",
        type=output_file,
        metavar="FILE",
        help="write the full report as JSON to FILE",
    )
    parser.add_argument(
        "--workdir",
        type=writable_directory,
        metavar="DIR",
        help="an existing directory for the scratch trees (default: $TMPDIR)",
    )
    parser.add_argument(
        "--keep",
        type=instance_directory,
        metavar="DIR",
        help="keep each trial's damaged tree in DIR (created if missing; its parent must exist)",
    )
    parser.add_argument(
        "--actors",
        action="store_true",
        help="also open each damaged instance with Instance.open (actor processes; slower)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per trial")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``corrupt`` on the ``jetstore`` command's subparsers."""
    parser = subparsers.add_parser(
        "corrupt",
        help="bit-flip campaign: every flip detected or provably harmless",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    add_arguments(parser)
    parser.set_defaults(func=run_command)
    return parser


def run_command(args: argparse.Namespace) -> int:
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    targets = tuple(args.target) if args.target else TARGETS
    try:
        with text_aside(args.json):
            report = campaign(
                args.trials,
                seed,
                targets=targets,
                only_trial=args.trial,
                workdir=args.workdir,
                keep=args.keep,
                actors=args.actors,
                progress=print_trial if args.verbose else None,
            )
            print_summary(report)
    except RuntimeError as exc:
        print(f"jetstore corrupt: {exc}", file=sys.stderr)
        return FAILED
    try:
        write_report(report, args.json, args.json_file)
    except OSError as exc:
        print(f"jetstore corrupt: cannot write {args.json_file}: {exc.strerror}", file=sys.stderr)
        return FAILED
    return FAILED if report["violations"] else OK


def main(argv: list[str] | None = None) -> int:
    """``python -m jetstore.tools.corrupt ARGS``: the same as ``jetstore corrupt ARGS``."""
    from jetstore.tools.cli import main as jetstore  # imported here: cli imports this package

    return jetstore(["corrupt", *(sys.argv[1:] if argv is None else argv)])

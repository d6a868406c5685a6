"""The ``jetstore`` command.  Every subcommand has --help; those that print data have --json."""

from __future__ import annotations

import argparse
import json
import os
import sys

from jetstore.engine.errors import JetError
from jetstore.tools import corrupt, ctl, load, torture


def _print(data, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        _print_human(data, 0)


def _print_human(data, indent: int) -> None:
    pad = "  " * indent
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, (dict, list)) and value:
                print(f"{pad}{key}:")
                _print_human(value, indent + 1)
            else:
                print(f"{pad}{key}: {value}")
    elif isinstance(data, list):
        for item in data:
            if isinstance(item, dict):
                print(f"{pad}-")
                _print_human(item, indent + 1)
            else:
                print(f"{pad}- {item}")
    else:
        print(f"{pad}{data}")


def cmd_inspect(args: argparse.Namespace) -> int:
    from jetstore.engine import inspectors
    from jetstore.engine.log_reader import dump_log

    if args.what == "backup":
        from jetstore.engine.backup import locate_backup
        from jetstore.engine.backup_restore import verify_backup

        directory, manifest = locate_backup(args.path)
        report = {"directory": directory, "manifest": manifest}
        try:
            report["verification"] = verify_backup(args.path)
            report["integrity"] = "ok"
        except JetError as exc:
            report["integrity"] = "error"
            report["error"] = exc.as_dict()
    elif args.what == "header":
        report = inspectors.dump_header(args.path)
    elif args.what == "log":
        instance_logs = os.path.join(args.path, "logs")
        report = dump_log(instance_logs if os.path.isdir(instance_logs) else args.path)
    else:
        report = inspectors.verify_database(args.path)
    _print(report, args.json)
    return 0 if report.get("integrity", "ok") == "ok" else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from jetstore.tools.demo import run_demo

    return run_demo(args.dir, seconds=args.seconds)


def _progress_printer(enabled: bool):
    """A status callback that keeps one line on stderr up to date."""
    if not enabled:
        return None

    def show(progress) -> None:
        percent = 100 * progress.done / progress.total if progress.total else 0
        print(
            f"\r{progress.phase:8s} {progress.done:>14,d} / {progress.total:,d} bytes "
            f"({percent:5.1f}%) {progress.file or ''}",
            end="",
            file=sys.stderr,
            flush=True,
        )
        if progress.snt in ("complete", "fail"):
            print(file=sys.stderr)

    return show


def cmd_restore(args: argparse.Namespace) -> int:
    from jetstore.engine.backup_restore import restore

    result = restore(
        args.backup, args.dest, log_dir=args.log_dir, status=_progress_printer(not args.json)
    )
    _print(result, args.json)
    return 0


def cmd_verify_backup(args: argparse.Namespace) -> int:
    from jetstore.engine.backup_restore import verify_backup

    _print(
        verify_backup(args.backup, report=_progress_printer(not args.json) or (lambda p: None)),
        args.json,
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from jetstore.tools.serve import serve

    return serve(args.dir, as_json=args.json, control=args.control, backup_roots=args.backup_root)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jetstore",
        description="jetstore: an ESE-style transactional key-value engine with online backup.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="online backup of a database that keeps committing, restored and verified",
        description="Open an instance, commit from several client processes, take a full "
        "then an incremental online backup while they write (with progress), restore both, "
        "and verify each restore against the commits acknowledged before its roll.  Exit "
        "code 1 on any mismatch.",
    )
    demo.add_argument("dir", nargs="?", help="instance directory (default: a temporary one)")
    demo.add_argument(
        "--seconds", type=float, default=2.5, help="length of each writing phase (default 2.5)"
    )
    demo.set_defaults(func=cmd_demo)

    ctl.add_parser(sub)

    restore = sub.add_parser(
        "restore",
        help="restore a backup into a new instance directory (JetRestore)",
        description="Verify the backup in BACKUP (or BACKUP/new, BACKUP/old), copy it into "
        "DEST, replay its logs, roll forward through the contiguous generations of --log-dir "
        "after the backup's last, and leave DEST clean.",
    )
    restore.add_argument("backup")
    restore.add_argument("dest")
    restore.add_argument("--log-dir", help="roll forward with this live log directory")
    restore.add_argument("--json", action="store_true", help="machine-readable output")
    restore.set_defaults(func=cmd_restore)

    verify = sub.add_parser(
        "verify-backup",
        help="check a backup completely without restoring it",
        description="Check the manifest, every file's size and CRC32C, every page the backup "
        "holds and every log record and generation link.  Exit code 2 on damage.",
    )
    verify.add_argument("backup")
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.set_defaults(func=cmd_verify_backup)

    serve = sub.add_parser(
        "serve",
        help="run an instance in the foreground until SIGINT/SIGTERM",
        description="Open the instance in DIR (creating it if missing), print the endpoints "
        "clients attach to (jetstore.engine.connect(DIR) finds them itself), and run until "
        "SIGINT or SIGTERM, then shut down cleanly.  Exit code 1 if the instance fails.",
    )
    serve.add_argument("dir")
    serve.add_argument("--json", action="store_true", help="print the endpoints as JSON")
    serve.add_argument(
        "--control",
        metavar="EP",
        help="also serve the control socket on tcp://127.0.0.1:PORT (CURVE)",
    )
    serve.add_argument(
        "--backup-root",
        action="append",
        default=[],
        metavar="PATH",
        help="over tcp, backups may only go below this directory (repeatable)",
    )
    serve.set_defaults(func=cmd_serve)

    inspect = sub.add_parser(
        "inspect",
        help="dump or verify files (esentutl /mh, /ml, /k)",
        description="header: database meta (esentutl /mh); log: verify and describe log "
        "generations (/ml); verify: checksum every database page (/k); backup: a backup's "
        "manifest and a full verification.  PATH is an instance "
        "directory, a database file, a logs directory or one generation file.  Exit code 1 "
        "when damage is found.",
    )
    inspect.add_argument("what", choices=["header", "log", "verify", "backup"])
    inspect.add_argument("path")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(func=cmd_inspect)

    corrupt.add_parser(sub)
    load.add_parser(sub)
    torture.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except JetError as exc:
        print(f"jetstore: {exc.name} ({exc.err}): {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

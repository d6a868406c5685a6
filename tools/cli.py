"""The ``jetstore`` command: one parser, one error policy and one table of exit codes
(tools/exit_codes.py) for every subcommand.  Each has --help with examples; those that
print data print text for people by default and JSON to stdout with --json."""

from __future__ import annotations

import argparse
import os
import sys

from jetstore.engine.api import MIN_ARCHIVE_TIMEOUT
from jetstore.engine.errors import CorruptionError, JetError
from jetstore.tools import corrupt, ctl, exit_codes, info, keygen, load, torture
from jetstore.tools.arguments import (
    CommandParser,
    control_endpoint,
    epilog,
    existing_directory,
    existing_path,
    instance_directory,
    new_directory,
    number,
    restore_target,
)
from jetstore.tools.output import print_data
from jetstore.tools.progress import status_callback
from jetstore.tools.sizes import positive_size


def version() -> str:
    from jetstore.engine import __version__

    return __version__


def damage_found(exc: JetError) -> bool:
    """Whether an error means damaged data or a backup that does not verify."""
    return isinstance(exc, CorruptionError) or exc.name == "JET_errInvalidBackup"


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
    print_data(report, args.json)
    return exit_codes.OK if report.get("integrity", "ok") == "ok" else exit_codes.DAMAGED


def cmd_demo(args: argparse.Namespace) -> int:
    from jetstore.tools.demo import run_demo

    return run_demo(args.dir, seconds=args.seconds)


def cmd_restore(args: argparse.Namespace) -> int:
    from jetstore.engine.backup_restore import restore

    status = None if args.json else status_callback("restore")
    result = restore(args.backup, args.dest, log_dir=args.log_dir, status=status, until=args.until)
    print_data(result, args.json)
    return exit_codes.OK


def cmd_verify_backup(args: argparse.Namespace) -> int:
    from jetstore.engine.backup_restore import verify_backup

    status = None if args.json else status_callback("verify")
    print_data(verify_backup(args.backup, status=status), args.json)
    return exit_codes.OK


def cmd_serve(args: argparse.Namespace) -> int:
    from jetstore.tools.serve import serve

    if args.archive is None and (args.archive_timeout is not None or args.archive_max_lag):
        args.parser.error("--archive-timeout and --archive-max-lag need --archive DIR")
    return serve(
        args.dir,
        as_json=args.json,
        control=args.control,
        backup_roots=args.backup_root,
        archive_dir=args.archive,
        archive_timeout=args.archive_timeout,
        archive_max_lag=args.archive_max_lag,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="jetstore",
        description="jetstore: an ESE-style transactional key-value engine with online backup.",
        epilog=epilog(
            "jetstore demo",
            "jetstore serve db",
            "jetstore ctl db backup /backups/db --atomic",
            "jetstore restore /backups/db restored --log-dir db/logs",
        ),
    )
    parser.add_argument("--version", action="version", version=f"jetstore {version()}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=CommandParser
    )

    demo = sub.add_parser(
        "demo",
        help="online backup of a database that keeps committing, restored and verified",
        description="Open an instance, commit from several client processes, take a full "
        "then an incremental online backup while they write (with progress), restore both, "
        "and verify each restore against the commits acknowledged before its roll.",
        epilog=epilog(
            "jetstore demo",
            "jetstore demo /tmp/jet-demo --seconds 10",
            codes="Exit codes: 0 every restore verified, 1 the demo failed (the ESE error is "
            "printed), 2 usage, 3 a restore did not hold exactly the acknowledged commits.",
        ),
    )
    demo.add_argument(
        "dir",
        nargs="?",
        type=new_directory,
        help="a new or empty directory for the instance, backups and restores "
        "(default: a temporary one)",
    )
    demo.add_argument(
        "--seconds",
        type=number(float, 0, "from 0 to 3600 seconds", high=3600),
        default=2.5,
        help="length of each writing phase, up to an hour (default 2.5)",
    )
    demo.set_defaults(func=cmd_demo)

    ctl.add_parser(sub)

    restore = sub.add_parser(
        "restore",
        help="restore a backup into a new instance directory (JetRestore)",
        description="Verify the backup in BACKUP (or BACKUP/new, BACKUP/old), copy it into "
        "DEST, replay its logs, roll forward through the contiguous generations of --log-dir "
        "after the backup's last (up to --until, if given), and leave DEST clean, writing "
        "a new log stream.  It prints where the replay stopped and the range of points the "
        "backup and log could reach.",
        epilog=epilog(
            "jetstore restore /backups/db restored",
            "jetstore restore /backups/db restored --log-dir db/logs",
            "jetstore restore /backups/db restored --log-dir /archive/db --until "
            "2026-12-05T09:30:00Z",
            "jetstore restore /backups/db restored --log-dir db/logs --until '(0x2a,0x1f000)'",
            "jetstore restore /backups/db restored --json",
        ),
    )
    restore.add_argument("backup", type=existing_directory, help="the backup directory")
    restore.add_argument(
        "dest",
        type=instance_directory,
        help="a new or empty directory to restore into (or the destination of an "
        "interrupted restore of the same backup, to complete it)",
    )
    restore.add_argument(
        "--log-dir",
        type=existing_directory,
        help="roll forward with the log generations in this directory (the live instance's "
        "logs/, a copy of it, or a log archive)",
    )
    restore.add_argument(
        "--until",
        type=restore_target,
        metavar="LSN|TIME",
        help="stop after the last commit at or before this LSN (decimal, 0x-hex or "
        "(0xGEN,0xOFFSET)) or ISO-8601 time with its zone (Z or +hh:mm); it must lie "
        "between the backup's roll and the end of the log",
    )
    restore.add_argument("--json", action="store_true", help="print the result as JSON")
    restore.set_defaults(func=cmd_restore)

    verify = sub.add_parser(
        "verify-backup",
        help="check a backup completely without restoring it",
        description="Check the manifest, every file's size and CRC32C, every page the backup "
        "holds and every log record and generation link.",
        epilog=epilog("jetstore verify-backup /backups/db", "jetstore verify-backup bk --json"),
    )
    verify.add_argument("backup", type=existing_directory, help="the backup directory")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.set_defaults(func=cmd_verify_backup)

    serve = sub.add_parser(
        "serve",
        help="run an instance in the foreground until SIGINT/SIGTERM",
        description="Open the instance in DIR (creating DIR if missing - its parent must "
        "exist), print the endpoints clients attach to (jetstore.engine.connect(DIR) finds "
        "them itself), and run until SIGINT or SIGTERM, then shut down cleanly.",
        epilog=epilog(
            "jetstore serve db",
            "jetstore serve db --json",
            "jetstore serve db --control tcp://127.0.0.1:5555 --backup-root /backups",
            "jetstore serve db --archive /mnt/archive/db --archive-timeout 60",
            codes="Exit codes: 0 stopped cleanly, 1 the instance failed, 2 usage.",
        ),
    )
    serve.add_argument("dir", type=instance_directory, help="the instance directory")
    serve.add_argument("--json", action="store_true", help="print the endpoints as JSON")
    serve.add_argument(
        "--control",
        type=control_endpoint,
        metavar="EP",
        help="also serve the control socket on tcp://127.0.0.1:PORT (CURVE; "
        "see 'jetstore keygen --help')",
    )
    serve.add_argument(
        "--backup-root",
        type=existing_directory,
        action="append",
        default=[],
        metavar="PATH",
        help="over tcp, backups may only go below this directory (repeatable)",
    )
    serve.add_argument(
        "--archive",
        type=instance_directory,
        metavar="DIR",
        help="copy every closed log generation into DIR, verified and fsynced, before the "
        "log may delete it (continuous archiving; restore through it with "
        "'jetstore restore BACKUP DEST --log-dir DIR [--until ...]')",
    )
    serve.add_argument(
        "--archive-timeout",
        type=number(float, MIN_ARCHIVE_TIMEOUT, f"at least {MIN_ARCHIVE_TIMEOUT} seconds"),
        metavar="S",
        help="roll the log at least every S seconds while commits arrive, so that at most "
        "S seconds of commits are only on this machine",
    )
    serve.add_argument(
        "--archive-max-lag",
        type=positive_size,
        metavar="SIZE",
        help="unarchived local log (e.g. 1G) past which the archive stops holding the log "
        "back; default: hold it for as long as the archive fails",
    )
    serve.set_defaults(func=cmd_serve, parser=serve)

    inspect = sub.add_parser(
        "inspect",
        help="dump or verify files (esentutl /mh, /ml, /k)",
        description="header: database meta (esentutl /mh); log: verify and describe log "
        "generations (/ml); verify: checksum every database page (/k); backup: a backup's "
        "manifest and a full verification.  PATH is an instance "
        "directory, a database file, a logs directory or one generation file.",
        epilog=epilog(
            "jetstore inspect header db",
            "jetstore inspect log db/logs --json",
            "jetstore inspect verify db/jet.edb",
            "jetstore inspect backup /backups/db",
        ),
    )
    inspect.add_argument("what", choices=["header", "log", "verify", "backup"])
    inspect.add_argument("path", type=existing_path)
    inspect.add_argument("--json", action="store_true", help="print the result as JSON")
    inspect.set_defaults(func=cmd_inspect)

    corrupt.add_parser(sub)
    load.add_parser(sub)
    torture.add_parser(sub)
    keygen.add_parser(sub)
    info.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            args = build_parser().parse_args(argv)
            try:
                return args.func(args)
            except JetError as exc:
                print(f"jetstore {args.command}: {exc}", file=sys.stderr)
                return exit_codes.DAMAGED if damage_found(exc) else exit_codes.FAILED
            except OSError as exc:
                if isinstance(exc, BrokenPipeError):
                    raise
                where = f"{exc.filename}: " if exc.filename else ""
                print(f"jetstore {args.command}: {where}{exc.strerror or exc}", file=sys.stderr)
                return exit_codes.FAILED
        finally:
            sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
    except BrokenPipeError:
        # The reader went away (| head): no traceback, and nothing more written to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return exit_codes.FAILED
    except KeyboardInterrupt:
        return exit_codes.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

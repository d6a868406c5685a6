"""The ``jetstore`` command.  Every subcommand has --help; those that print data have --json."""

from __future__ import annotations

import argparse
import json
import os
import sys

from jetstore.engine.errors import JetError


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
    from jetstore.engine import inspect
    from jetstore.engine.log import dump_log

    if args.what == "header":
        report = inspect.dump_header(args.path)
    elif args.what == "log":
        instance_logs = os.path.join(args.path, "logs")
        report = dump_log(instance_logs if os.path.isdir(instance_logs) else args.path)
    else:
        report = inspect.verify_database(args.path)
    _print(report, args.json)
    return 0 if report.get("integrity", "ok") == "ok" else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from jetstore.tools.demo import run_demo

    return run_demo(args.dir, keys=args.keys)


def cmd_serve(args: argparse.Namespace) -> int:
    from jetstore.tools.serve import serve

    return serve(args.dir, as_json=args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jetstore",
        description="jetstore: an ESE-style transactional key-value engine with online backup.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the demo (the README's main job)")
    demo.add_argument("dir", nargs="?", help="instance directory (default: a temporary one)")
    demo.add_argument("--keys", type=int, default=50_000, help="keys to load (default 50000)")
    demo.set_defaults(func=cmd_demo)

    serve = sub.add_parser(
        "serve",
        help="run an instance in the foreground until SIGINT/SIGTERM",
        description="Open the instance in DIR (creating it if missing), print the endpoints "
        "clients attach to (jetstore.engine.connect(DIR) finds them itself), and run until "
        "SIGINT or SIGTERM, then shut down cleanly.  Exit code 1 if the instance fails.",
    )
    serve.add_argument("dir")
    serve.add_argument("--json", action="store_true", help="print the endpoints as JSON")
    serve.set_defaults(func=cmd_serve)

    inspect = sub.add_parser(
        "inspect",
        help="dump or verify files (esentutl /mh, /ml, /k)",
        description="header: database meta (esentutl /mh); log: verify and describe log "
        "generations (/ml); verify: checksum every database page (/k).  PATH is an instance "
        "directory, a database file, a logs directory or one generation file.  Exit code 1 "
        "when damage is found.",
    )
    inspect.add_argument("what", choices=["header", "log", "verify"])
    inspect.add_argument("path")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(func=cmd_inspect)
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

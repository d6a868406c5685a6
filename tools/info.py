"""``jetstore info PATH``: the backup catalog (engine/catalog.py), like pgBackRest's
``info`` - each backup chain and archive stream at PATH, its ranges, whether it
verifies, and the earliest and latest point a restore from each chain can reach.

Text for people by default, one block per chain and per archive; ``--json`` prints
``backup_info()``'s result as one JSON document.  Damage is listed with the rest and
makes the exit code 3, so a script checking a whole directory of backups learns of
one bad chain without losing sight of the others.
"""

from __future__ import annotations

import argparse

from jetstore.actors.control_commands import megabytes
from jetstore.tools import exit_codes
from jetstore.tools.arguments import epilog, existing_directory
from jetstore.tools.output import print_data

EXIT_CODES = (
    "Exit codes: 0 everything listed checks out, 1 PATH could not be read or holds no backup "
    "or archive,\n2 usage, 3 damage found (each damaged chain or stream says what and where)."
)


def run_info(args: argparse.Namespace) -> int:
    from jetstore.engine import backup_info

    catalog = backup_info(args.path, verify=args.verify)
    if args.json:
        print_data(catalog, as_json=True)
    else:
        print("\n".join(describe(catalog)))
    return exit_codes.OK if catalog["verified"] else exit_codes.DAMAGED


def describe(catalog: dict) -> list[str]:
    """The catalog as text: a block per chain, then per archive and its streams."""
    depth = "every byte read" if catalog["verify"] else "manifests and headers checked"
    lines = [f"{catalog['path']}: {depth}"]
    for chain in catalog["chains"]:
        lines += ["", *_chain(chain)]
    for archive in catalog["archives"]:
        lines += ["", *_archive(archive)]
    if catalog["ignored"]:
        lines += ["", f"ignored (neither a backup nor an archive): {', '.join(catalog['ignored'])}"]
    return lines


def _state(item: dict) -> str:
    """What the checks found in this item itself (an archive's streams say their own)."""
    error = item["error"]
    if error is not None:
        return f"DAMAGED: {error['name']} ({error['err']}): {error['message']}"
    return "ok" if item["verified"] else "DAMAGED (a stream below)"


def _when(text: str | None) -> str:
    return text or "-"


def _chain(chain: dict) -> list[str]:
    lines = [f"backup chain {chain['directory']}", f"  status:   {_state(chain)}"]
    if chain["backup_id"] is None:
        return lines
    lines += [
        f"  id:       {chain['backup_id']}",
        f"  db:       {chain['db_signature']}   log: {chain['log_signature']}",
        f"  log:      generations {chain['gen_low']}-{chain['gen_high']}, "
        f"{chain['start_lsn_text']} to {chain['end_lsn_text']}, {megabytes(chain['bytes'])}",
        "  backups:",
    ]
    for backup in chain["backups"]:
        lines.append(
            f"    {backup['type']:<12} {backup['id']}  {backup['time']}  "
            f"generations {backup['gen_low']}-{backup['gen_high']}  roll {backup['roll_lsn_text']}"
        )
    if chain["earliest_lsn"] is None:
        return [*lines, "  restore:  - (not known while the chain is damaged)"]
    through = f" (through {chain['latest_through']})" if chain["latest_through"] else ""
    lines += [
        f"  restore:  from {chain['earliest_lsn_text']} {_when(chain['earliest_time'])}",
        f"            to   {chain['latest_lsn_text']} {_when(chain['latest_time'])}{through}",
    ]
    return lines


def _archive(archive: dict) -> list[str]:
    lines = [f"archive {archive['directory']}", f"  status:   {_state(archive)}"]
    if archive["db_signature"]:
        lines.append(f"  db:       {archive['db_signature']}")
    for stream in archive["streams"]:
        lines += [f"  stream {stream['log_signature']}", f"    status:      {_state(stream)}"]
        if stream["gen_low"] is None:
            lines.append("    generations: none archived yet")
            continue
        runs = ", ".join(f"{run['gen_low']}-{run['gen_high']}" for run in stream["ranges"])
        gaps = ", ".join(f"{gap['gen_low']}-{gap['gen_high']}" for gap in stream["gaps"])
        first = stream["first_commit_time"] or f"after {_when(stream['created_time'])}"
        lines += [
            f"    generations: {runs}" + (f"   MISSING: {gaps}" if gaps else ""),
            f"    log:         {stream['start_lsn_text']} to {_when(stream['end_lsn_text'])}, "
            f"{megabytes(stream['bytes'])}",
            f"    commits:     {first} to {_when(stream['last_commit_time'])}",
        ]
    return lines


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "info",
        help="list backup chains and log archives, and the points a restore can reach",
        description="Describe PATH - a backup directory (a full backup and its incrementals; "
        "an atomic destination's new/ and old/), a log archive, or a directory holding such "
        "directories (other entries are ignored) - as pgBackRest's info does: each chain's "
        "backups with their ids, types, times, generation and LSN ranges and size, each "
        "archive stream's generations and gaps, and the earliest and latest point a restore "
        "of each chain can reach (through an archive beside it that continues its log).  "
        "Without --verify only manifests and headers are checked.",
        epilog=epilog(
            "jetstore info /backups/db",
            "jetstore info /backups --verify",
            "jetstore info /backups/archive --json",
            codes=EXIT_CODES,
        ),
    )
    parser.add_argument(
        "path", type=existing_directory, help="a backup, an archive, or a directory of them"
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="read every page and log record (as verify-backup does), not only the headers",
    )
    parser.add_argument("--json", action="store_true", help="print the catalog as JSON")
    parser.set_defaults(func=run_info)
    return parser

"""The control socket's commands, each defined once (circus's manner): the schema of
its body, the ``jetstore ctl`` arguments that build that body, its help line, what
the control server does with it, and how ``ctl`` shows the reply to a person.

The control server (control.py) serves exactly ``COMMANDS`` and checks every body
against ``SCHEMA``; ``jetstore ctl`` offers exactly ``COMMANDS`` and lists their
help.  A new command is one class here.

Shown to a person, an LSN reads as ``jetstore inspect`` prints it, ``(0xGEN,0xOFFSET)``;
a time as ISO-8601 in UTC; bytes in MB (10**6) to 0.1, a rate in MiB/s (what the
``10M`` a rate is given in means); seconds to 0.1 or 0.01.
"""

from __future__ import annotations

import argparse
import os
import textwrap
import threading
from typing import TYPE_CHECKING

from jetstore.engine.log_format import format_lsn
from jetstore.engine.wall_time import iso_time
from jetstore.protocol import codec
from jetstore.protocol.schema import OPTIONAL, Requests, to_backup, to_buffer_manager

from .runtime import Request

if TYPE_CHECKING:
    from .control import ControlServer, Via

MAX_RATE = (1 << 63) - 1  # bytes/s: what the wire's int carries


class UsageError(ValueError):
    """``jetstore ctl`` was given arguments this command cannot take."""


# -- how ctl shows figures to a person -------------------------------------------------------


def lsn_text(lsn: int | None) -> str:
    """An LSN as ``jetstore inspect`` prints it: ``(0xGEN,0xOFFSET)``."""
    return "-" if lsn is None else format_lsn(lsn)


def megabytes(count: int | None) -> str:
    return f"{(count or 0) / 1e6:,.1f} MB"


def byte_rate(rate: int) -> str:
    """A backup rate as set-backup-rate takes it (MiB/s: ``10M`` is 10 MiB/s)."""
    return f"{rate / (1 << 20):,.1f} MiB/s ({rate:,} bytes/s)"


def duration(seconds: float | None) -> str:
    """0.09 s, 3.3 s, 12 min 05 s, 2 h 03 min."""
    seconds = seconds or 0.0
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def generations(numbers: list[int]) -> str:
    """``generation 4``, ``generations 1..5``, ``generations 1..3, 7``."""
    if not numbers:
        return "none"
    runs: list[list[int]] = []
    for number in sorted(numbers):
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    listed = ", ".join(str(low) if low == high else f"{low}..{high}" for low, high in runs)
    return f"generation{'s' if len(numbers) > 1 else ''} {listed}"


# -- the commands ------------------------------------------------------------------------------


class Command:
    name = ""
    arguments = ""  # what ctl takes after the command's name, as its help shows it
    help = ""
    fields: dict[str, tuple] = {}  # the body: field -> types (protocol/schema.check)
    takes: tuple[str, ...] = ()  # the ctl arguments it accepts: dest, incremental, atomic...
    sizes: dict[str, str] = {}  # ctl arguments that are byte sizes (10M) -> their name in help
    hints: dict[str, str] = {}  # what to do, after an error reply of that name

    def body(self, args: argparse.Namespace) -> dict:
        """The request body from ctl's parsed arguments (``dest``, the flags), the
        ``sizes`` among them already turned into bytes."""
        return {}

    def execute(self, server: ControlServer, via: Via, body: dict, request: Request):
        """The reply, or DEFERRED for a command that answers later through the outbox."""
        raise NotImplementedError

    def document(self, result, body: dict):
        """The reply as ``ctl --json`` prints it (ctl adds the text forms of LSNs and times)."""
        return result

    def describe(self, result, body: dict) -> str:
        """The reply as ``ctl`` prints it for a person."""
        return "ok"


class Ping(Command):
    name, help = "ping", "is the instance there: its path and protocol version"

    def execute(self, server, via, body, request):
        return {"pong": True, "protocol": codec.PROTOCOL_VERSION, "path": server.instance.path}

    def describe(self, result, body):
        return f"pong: {result['path']} answers (protocol {result['protocol']})"


class Status(Command):
    name, help = "status", "actors, log generations, cache, commits/s, backups"

    def execute(self, server, via, body, request):
        return server.status()

    def describe(self, result, body):
        lines = [f"instance {result['path']}"]
        for name, actor in result["actors"].items():
            rss, cpu = actor.get("rss_bytes"), actor.get("cpu_seconds")
            lines.append(
                f"  {name:16s} pid {actor['pid']:<7d} {'alive' if actor['alive'] else 'DEAD':5s}  "
                f"up {duration(actor.get('uptime_s')):>12s}  "
                f"rss {megabytes(rss) if rss is not None else '-':>9s}  "
                f"cpu {f'{cpu:.2f} s' if cpu is not None else '-':>8s}  "
                f"restarts {actor.get('restarts', 0)}"
            )
        if "failure" in result:
            lines.append(f"  FAILED: {result['failure']}")
            return "\n".join(lines)
        bm, lw = result["buffer_manager"], result.get("log_writer", {})
        lines += [
            f"  {'generations':16s} {lw.get('oldest_generation', '-')} .. "
            f"{lw.get('current_generation', '-')}, durable up to {lsn_text(lw.get('durable_lsn'))}",
            f"  {'checkpoint':16s} {bm['checkpoint_seq']} at {lsn_text(bm['checkpoint_lsn'])}",
            f"  {'cache':16s} {bm['cache_pages']} pages, {bm['dirty_pages']} dirty; "
            f"{result.get('commits_per_s', 0):,.1f} commits/s",
        ]
        if bm.get("service_stopped"):
            lines.append(f"  {'service':16s} STOPPED (stop-service): new work is refused")
        backups = result.get("backups") or {}
        for kind, label in (("last_full", "last full"), ("last_incremental", "last incremental")):
            record = backups.get(kind)
            lines.append(
                f"  {label:16s} generations {record['gen_low']}..{record['gen_high']} "
                f"at {iso_time(record['time_ns'], timespec='seconds')}"
                if record
                else f"  {label:16s} none"
            )
        worker = result.get("backup_worker") or {}
        if "rate" in worker:
            rate = byte_rate(worker["rate"]) if worker["rate"] else "unlimited"
            floor = byte_rate(worker["min_rate"]) if worker.get("min_rate") else "none"
            lines.append(f"  {'backup rate':16s} {rate}; floor {floor}")
        if worker.get("backup_in_progress"):
            progress = worker.get("progress") or {}
            lines.append(
                f"  {'backup running':16s} {worker['kind']} {progress.get('phase', '')} "
                f"{megabytes(progress.get('done'))} of {megabytes(progress.get('total'))}"
            )
        lines += archive_lines(result.get("archive"))
        return "\n".join(lines)


def archive_lines(archive: dict | None) -> list[str]:
    """The archiver's report (engine/archiving.py Archiver.status), for people."""
    if archive is None:
        return [f"  {'archive':16s} off"]
    if archive.get("given_up"):
        return [
            f"  {'archive':16s} OFF: the archiver died too often and was given up "
            "(events.jsonl says why); the log keeps every unarchived generation until "
            "the instance is reopened"
        ]
    if not archive.get("alive"):
        return [f"  {'archive':16s} archiver restarting"]
    if "error" in archive:
        return [f"  {'archive':16s} archiver not answering ({archive['error']['message']})"]
    lines = [
        f"  {'archive':16s} {archive['archive_dir']}: up to generation "
        f"{archive['archived_through']}; lag {archive['lag_generations']} generation(s), "
        f"{megabytes(archive['lag_bytes'])}, {archive['lag_seconds']:.1f} s"
    ]
    failure = archive.get("last_failure")
    if failure:
        state = "FAILING" if archive["failing"] else "last failure"
        when = iso_time(failure["time_ns"], timespec="seconds")
        lines.append(
            f"  {'archive ' + state:16s} {when} {failure['name']} "
            f"({failure['err']}): {failure['message']}; attempt {failure['attempts']}"
        )
    return lines


class Backup(Command):
    name, arguments = "backup", "DEST [--incremental] [--atomic]"
    help = "an online backup into the existing directory DEST, with progress"
    fields = {"dest": (str,), "incremental": (bool, OPTIONAL), "atomic": (bool, OPTIONAL)}
    takes = ("dest", "incremental", "atomic")
    # (JET_errBackupDirectoryNotEmpty says itself: an empty directory, --incremental, --atomic)
    hints = {
        "JET_errInvalidBackupSequence": "an incremental backup continues the last full "
        "backup of this instance, in the same DEST: take a full backup there first",
    }

    def body(self, args):
        if not args.dest:
            raise UsageError("backup needs a destination directory (DEST)")
        if args.incremental and args.atomic:
            raise UsageError("backup takes --incremental or --atomic, not both")
        # The instance is on this machine (ipc, or tcp on 127.0.0.1): say what to do here
        # rather than have the instance refuse a path it will not create.
        dest = os.path.abspath(args.dest)
        if not os.path.exists(dest):
            raise UsageError(
                f"backup destination {dest} does not exist: create it first (mkdir -p {dest})"
            )
        if not os.path.isdir(dest):
            raise UsageError(f"backup destination {dest} is not a directory")
        return {"dest": dest, "incremental": args.incremental, "atomic": args.atomic}

    def execute(self, server, via, body, request):
        dest = server.destination(body["dest"], via.over_tcp)

        def progress(event) -> None:
            server.outbox.put(via.sock, request, codec.REPLY_PROGRESS, vars(event))

        return server.background(
            via,
            request,
            lambda: server.instance.backup(
                dest,
                incremental=bool(body.get("incremental")),
                atomic=bool(body.get("atomic")),
                status=progress,
            ),
        )

    def describe(self, result, body):
        kind = "incremental" if body.get("incremental") else "full"
        if body.get("atomic"):
            kind += " atomic"
        seconds = result.get("seconds") or 0
        speed = f", {result['bytes'] / seconds / 1e6:,.1f} MB/s" if seconds > 0 else ""
        return "\n".join(
            [
                f"{kind} backup into {body['dest']}: complete",
                f"  {'copied':12s} {megabytes(result['bytes'])} in {duration(seconds)}{speed}",
                f"  {'generations':12s} {result['gen_low']}..{result['gen_high']}, "
                f"rolled at {lsn_text(result.get('roll_lsn'))}",
                f"  {'truncated':12s} {generations(result.get('truncated') or [])}",
                f"  {'backup id':12s} {result.get('backup_id', '-')}",
            ]
        )


class AbortBackup(Command):
    name, help = "abort-backup", "stop the running backup; its files are removed"

    def execute(self, server, via, body, request):
        return server.instance._backup_control(to_backup.abort_backup())

    def describe(self, result, body):
        if result.get("aborted"):
            return "aborted the running backup; its files are removed"
        return "no backup was running"


class SetBackupRate(Command):
    name, arguments = "set-backup-rate", "RATE [--min-rate FLOOR]"
    help = "bytes/s (10M, 512K, 1G) for this and later backups (0 = unlimited, FLOOR 0 = no floor)"
    fields = {"rate": (int,), "min_rate": (int, OPTIONAL)}
    takes = ("dest", "min_rate")
    sizes = {"dest": "RATE", "min_rate": "--min-rate"}

    def body(self, args):
        if args.dest is None:
            raise UsageError("set-backup-rate needs a RATE in bytes per second (e.g. 50M)")
        body = {"rate": args.dest}
        if args.min_rate is not None:
            body["min_rate"] = args.min_rate
        for key, value in body.items():
            if value > MAX_RATE:
                raise UsageError(f"set-backup-rate: {key} {value:,} bytes/s is too large")
        return body

    def execute(self, server, via, body, request):
        rates = {key: body[key] for key in ("rate", "min_rate") if key in body}
        return server.instance._backup_control(to_backup.set_backup_rate(**rates))

    def describe(self, result, body):
        rate = byte_rate(result["rate"]) if result["rate"] else "unlimited"
        floor = byte_rate(result["min_rate"]) if result.get("min_rate") else "none"
        return f"backup rate {rate}; floor {floor}"


class Truncate(Command):
    name, help = "truncate", "checkpoint, roll and delete the generations no one needs"
    hints = {"JET_errBackupInProgress": "the backup truncates the log itself when it ends"}

    def execute(self, server, via, body, request):
        return server.background(via, request, lambda: server.instance.backup(None))

    def describe(self, result, body):
        removed = result.get("truncated") or []
        where = f"the log is at generation {result.get('generation', '-')}"
        if not removed:
            return f"nothing to truncate ({where})"
        return f"truncated {generations(removed)} in {duration(result.get('seconds'))} ({where})"


class Checkpoint(Command):
    name, help = "checkpoint", "take a checkpoint now"

    def execute(self, server, via, body, request):
        checkpoint = lambda: server.instance._control_call(to_buffer_manager.checkpoint())  # noqa: E731
        return server.background(via, request, checkpoint)

    def describe(self, result, body):
        return f"checkpoint {result['seq']} at {lsn_text(result['checkpoint_lsn'])}"


class StopService(Command):
    name, help = "stop-service", "refuse new work, finish what runs (JetStopService)"

    def execute(self, server, via, body, request):
        return server.instance.stop_service()

    def document(self, result, body):
        return {"service_stopped": True}  # the reply itself carries nothing

    def describe(self, result, body):
        return "service stopped: new work is refused; `ctl TARGET shutdown` closes the instance"


class Shutdown(Command):
    name, help = "shutdown", "close the instance cleanly"

    def execute(self, server, via, body, request):
        threading.Thread(
            target=server.instance.close, name="jetstore-shutdown", daemon=True
        ).start()
        return {"shutting_down": True}

    def describe(self, result, body):
        return "shutting down: a final checkpoint, then the instance's processes exit"


COMMANDS: dict[str, Command] = {
    command.name: command
    for command in (
        Ping(),
        Status(),
        Backup(),
        AbortBackup(),
        SetBackupRate(),
        Truncate(),
        Checkpoint(),
        StopService(),
        Shutdown(),
    )
}
SCHEMA: dict[str, dict[str, tuple]] = {name: command.fields for name, command in COMMANDS.items()}
to_control_server = Requests(SCHEMA)


def usage(width: int = 88) -> str:
    """The commands for ``jetstore ctl --help``: each name and its arguments, then its help
    (on a line of its own below a long name), wrapped to ``width``."""
    lines = []
    for command in COMMANDS.values():
        head = f"{command.name} {command.arguments}".strip()
        text = textwrap.wrap(command.help, width - 25)
        if len(head) > 20:
            lines.append(f"  {head}")
        else:
            lines.append(f"  {head:20s}   {text.pop(0)}")
        lines += [f"{'':25s}{line}" for line in text]
    return "\n".join(lines)

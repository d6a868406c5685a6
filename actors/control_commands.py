"""The control socket's commands, each defined once (circus's manner): the schema of
its body, the ``jetstore ctl`` arguments that build that body, its help line, and
what the control server does with it.

The control server (control.py) serves exactly ``COMMANDS`` and checks every body
against ``SCHEMA``; ``jetstore ctl`` offers exactly ``COMMANDS`` and lists their
help.  A new command is one class here.
"""

from __future__ import annotations

import argparse
import os
import threading
from typing import TYPE_CHECKING

from jetstore.protocol import codec
from jetstore.protocol.schema import OPTIONAL, Requests, to_backup, to_buffer_manager

from .runtime import Request

if TYPE_CHECKING:
    from .control import ControlServer, Via


class UsageError(ValueError):
    """``jetstore ctl`` was given arguments this command cannot take."""


class Command:
    name = ""
    arguments = ""  # what ctl takes after the command's name, as its help shows it
    help = ""
    fields: dict[str, tuple] = {}  # the body: field -> types (protocol/schema.check)

    def body(self, args: argparse.Namespace) -> dict:
        """The request body from ctl's parsed arguments (``dest``, the flags)."""
        return {}

    def execute(self, server: ControlServer, via: Via, body: dict, request: Request):
        """The reply, or DEFERRED for a command that answers later through the outbox."""
        raise NotImplementedError


class Ping(Command):
    name, help = "ping", "is the instance there: its path and protocol version"

    def execute(self, server, via, body, request):
        return {"pong": True, "protocol": codec.PROTOCOL_VERSION, "path": server.instance.path}


class Status(Command):
    name, help = "status", "actors, log generations, cache, commits/s, backups"

    def execute(self, server, via, body, request):
        return server.status()


class Backup(Command):
    name, arguments = "backup", "DEST [--incremental] [--atomic]"
    help = "an online backup into DEST, with a progress line"
    fields = {"dest": (str,), "incremental": (bool, OPTIONAL), "atomic": (bool, OPTIONAL)}

    def body(self, args):
        if not args.dest:
            raise UsageError("backup needs a destination")
        return {
            "dest": os.path.abspath(args.dest),
            "incremental": args.incremental,
            "atomic": args.atomic,
        }

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


class AbortBackup(Command):
    name, help = "abort-backup", "stop the running backup; its files are removed"

    def execute(self, server, via, body, request):
        return server.instance._backup_control(to_backup.abort_backup())


class SetBackupRate(Command):
    name, arguments = "set-backup-rate", "RATE [--min-rate FLOOR]"
    help = "bytes/s for this and later backups (RATE 0 = unlimited, FLOOR 0 = no floor)"
    fields = {"rate": (int,), "min_rate": (int, OPTIONAL)}

    def body(self, args):
        if args.dest is None or not args.dest.isdigit():
            raise UsageError("set-backup-rate needs a rate in bytes per second")
        body = {"rate": int(args.dest)}
        if args.min_rate is not None:
            body["min_rate"] = args.min_rate
        return body

    def execute(self, server, via, body, request):
        rates = {key: body[key] for key in ("rate", "min_rate") if key in body}
        return server.instance._backup_control(to_backup.set_backup_rate(**rates))


class Truncate(Command):
    name, help = "truncate", "checkpoint, roll and delete the generations no one needs"

    def execute(self, server, via, body, request):
        return server.background(via, request, lambda: server.instance.backup(None))


class Checkpoint(Command):
    name, help = "checkpoint", "take a checkpoint now"

    def execute(self, server, via, body, request):
        checkpoint = lambda: server.instance._control_call(to_buffer_manager.checkpoint())  # noqa: E731
        return server.background(via, request, checkpoint)


class StopService(Command):
    name, help = "stop-service", "refuse new work, finish what runs (JetStopService)"

    def execute(self, server, via, body, request):
        return server.instance.stop_service()


class Shutdown(Command):
    name, help = "shutdown", "close the instance cleanly"

    def execute(self, server, via, body, request):
        threading.Thread(
            target=server.instance.close, name="jetstore-shutdown", daemon=True
        ).start()
        return {"shutting_down": True}


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


def usage() -> str:
    """One line per command, for ``jetstore ctl --help``."""
    return "\n".join(
        f"  {f'{c.name} {c.arguments}'.strip():40s} {c.help}" for c in COMMANDS.values()
    )

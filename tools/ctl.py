"""``jetstore ctl TARGET COMMAND``: drive a running instance over its control socket.

TARGET is an instance directory (ctl finds the control endpoint its instance
published) or the endpoint itself: ``ipc://DIR/run/control``, or
``tcp://127.0.0.1:PORT`` with CURVE keys (``jetstore keygen`` makes a client's).

Human text by default (a progress display for a backup, a readable status);
``--json`` prints one JSON document to stdout, with every LSN as its decimal
value and, beside it, ``<name>_text`` as ``jetstore inspect`` prints it
(``(0xGEN,0xOFFSET)``), every ``time_ns`` with an ISO-8601 ``time`` beside it,
and floats rounded to 0.01.  Exit codes (``tools/exit_codes.py``) tell operators
what happened, unlike a bare "timed out":

    0  OK           success
    1  FAILED       the instance answered with an error (its ESE name is printed)
    2  USAGE        bad arguments or paths: nothing was sent
    4  NO_INSTANCE  no instance at this directory or endpoint
    5  TIMED_OUT    the instance exists but did not answer in --timeout
    6  BUSY         a backup is already running
    7  REFUSED      the tcp server did not accept this client's CURVE key
    130             interrupted (a running backup goes on)
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap

import zmq
from zmq.utils.monitor import recv_monitor_message

from jetstore.actors.control import load_curve_key
from jetstore.actors.control_commands import (
    COMMANDS,
    Command,
    UsageError,
    to_control_server,
    usage,
)
from jetstore.engine.errors import JetError
from jetstore.engine.run_dir_format import instance_running, read_endpoints
from jetstore.protocol.channel import Channel, ReplyTimeout
from jetstore.protocol.schema import Request
from jetstore.tools import exit_codes
from jetstore.tools.arguments import epilog
from jetstore.tools.output import print_data
from jetstore.tools.progress import ProgressDisplay, is_terminal
from jetstore.tools.sizes import SizeError, parse_size

# The ctl arguments a command may take beyond the common ones, as messages name them.
OPTIONAL_ARGUMENTS = {
    "dest": "argument",
    "incremental": "--incremental",
    "atomic": "--atomic",
    "min_rate": "--min-rate",
}
EXAMPLES = (
    "jetstore ctl db status",
    "jetstore ctl db status --json",
    "mkdir -p /backups/db && jetstore ctl db backup /backups/db",
    "jetstore ctl db backup /backups/db --incremental",
    "jetstore ctl db backup /backups/db-latest --atomic",
    "jetstore ctl db set-backup-rate 50M --min-rate 10M",
    "jetstore ctl ipc:///srv/db/run/control checkpoint",
    "jetstore ctl tcp://127.0.0.1:7000 ping --curve-server-key db/run/curve/server.key \\\n"
    "      --curve-client-key ~/.jetstore/client.key_secret",
)
EXIT_CODES = textwrap.fill(
    f"Exit codes: {exit_codes.OK} ok, {exit_codes.FAILED} the operation failed (the ESE "
    f"error is printed), {exit_codes.USAGE} usage, {exit_codes.NO_INSTANCE} no instance at "
    f"TARGET, {exit_codes.TIMED_OUT} timed out, {exit_codes.BUSY} busy (a backup is "
    f"running), {exit_codes.REFUSED} CURVE key refused, {exit_codes.INTERRUPTED} interrupted.",
    88,
)


class CtlFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def resolve_endpoint(target: str) -> str:
    """An instance directory's published control endpoint, or the endpoint itself."""
    if target.startswith(("ipc://", "tcp://")):
        if target.startswith("ipc://") and not os.path.exists(target[len("ipc://") :]):
            raise CtlFailure(exit_codes.NO_INSTANCE, f"no instance at {target}: no such socket")
        return target
    start = f"start one with `jetstore serve {target}`"
    published = read_endpoints(target) if instance_running(target) else None
    if published is None or "control" not in published.get("endpoints", {}):
        raise CtlFailure(exit_codes.NO_INSTANCE, f"no instance is running at {target}; {start}")
    endpoint = published["endpoints"]["control"]
    if not os.path.exists(endpoint[len("ipc://") :]):
        raise CtlFailure(
            exit_codes.NO_INSTANCE,
            f"no instance is running at {target} (stale endpoints); {start}",
        )
    return endpoint


class ControlClient:
    """``jetstore ctl``'s side of the control socket: the protocol's Channel, with
    CURVE over tcp and the failed handshake of a refused key noticed."""

    def __init__(
        self,
        endpoint: str,
        timeout: float,
        server_key: str | None = None,
        client_key: str | None = None,
    ) -> None:
        curve = None
        if endpoint.startswith("tcp://"):
            curve = curve_keys(server_key, client_key)
        self.endpoint, self.timeout = endpoint, timeout
        self.context = zmq.Context()
        self.dropped_handshakes = 0
        refusals = (
            zmq.EVENT_HANDSHAKE_FAILED_AUTH
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
        )
        self.channel = Channel(
            self.context, endpoint, self._refused, curve=curve, monitor=refusals if curve else 0
        )

    def _refused(self) -> None:
        """The Channel's health check: a CURVE handshake the server failed means no reply.

        A server that refuses the client's key says so (FAILED_AUTH); one that cannot
        read the client's HELLO - sealed to another server key - drops the connection
        without a word (FAILED_NO_DETAIL), which a server going down mid-handshake can
        do once too, so only the second drop counts."""
        monitor = self.channel.monitor
        while monitor is not None and monitor.poll(0):
            event = recv_monitor_message(monitor)["event"]
            if event != zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                raise CtlFailure(
                    exit_codes.REFUSED,
                    f"refused: {self.endpoint} does not accept this client's CURVE key; its "
                    "public key (the .key beside the .key_secret) goes into "
                    "DIR/run/curve/clients/ on the server",
                )
            self.dropped_handshakes += 1
            if self.dropped_handshakes >= 2:
                raise CtlFailure(
                    exit_codes.REFUSED,
                    f"refused: {self.endpoint} dropped the CURVE handshake "
                    f"{self.dropped_handshakes} times: is --curve-server-key that server's "
                    "public key (DIR/run/curve/server.key)? A socket that is not a jetstore "
                    "control socket does this too",
                )

    def call(self, request: Request, on_progress=None):
        try:
            return self.channel.call(
                request, timeout=self.timeout, on_progress=on_progress, acks=False
            )
        except ReplyTimeout:
            raise CtlFailure(
                exit_codes.TIMED_OUT,
                f"timed out: {self.endpoint} did not answer {request.kind} in "
                f"{self.timeout:g} s (a stopped or overloaded instance? --timeout waits longer)",
            ) from None

    def close(self) -> None:
        self.channel.close()
        self.context.term()


def curve_keys(server_key: str | None, client_key: str | None) -> tuple:
    """(server public, client public, client secret) from the key files named on the
    command line; a missing or damaged file is a usage error naming it."""
    if not (server_key and client_key):
        raise CtlFailure(
            exit_codes.USAGE,
            "tcp needs --curve-server-key and --curve-client-key "
            "(`jetstore keygen DIR` makes a client key pair)",
        )
    try:
        return (
            load_curve_key(server_key, "--curve-server-key")[0],
            *load_curve_key(client_key, "--curve-client-key", secret=True),
        )
    except JetError as exc:
        raise CtlFailure(exit_codes.USAGE, str(exc)) from exc


class BackupProgress:
    """The backup's progress messages on the one progress display (tools/progress.py): a
    bar on a terminal, a few plain lines anywhere else."""

    def __init__(self, stream=None) -> None:
        self.display = ProgressDisplay("backup", stream)

    def __call__(self, event: dict) -> None:
        self.display.update(
            str(event.get("phase") or "backup"),
            int(event.get("done") or 0),
            int(event.get("total") or 0),
            event.get("file"),
        )
        if event.get("snt") in ("complete", "fail"):
            self.display.close("complete" if event["snt"] == "complete" else "failed")

    def close(self, outcome: str) -> None:
        self.display.close(outcome)  # nothing more if a "complete" event closed it


# -- output ------------------------------------------------------------------------------------


# -- the command -------------------------------------------------------------------------------


def request_body(command: Command, args: argparse.Namespace) -> dict:
    """The request body, or CtlFailure(USAGE): arguments the command does not take,
    sizes (10M) that are not sizes, and what the command itself checks."""
    for name, shown in OPTIONAL_ARGUMENTS.items():
        given = getattr(args, name)
        if given not in (None, False) and name not in command.takes:
            what = f"argument {given!r}" if name == "dest" else shown
            raise CtlFailure(exit_codes.USAGE, f"{command.name} takes no {what}")
    for name, shown in command.sizes.items():
        text = getattr(args, name)
        if text is not None:
            try:
                setattr(args, name, parse_size(text))
            except SizeError as exc:
                raise CtlFailure(exit_codes.USAGE, f"{command.name} {shown}: {exc}") from None
    try:
        return command.body(args)
    except UsageError as exc:
        raise CtlFailure(exit_codes.USAGE, str(exc)) from None


def error_line(command: Command, exc: JetError, target: str) -> tuple[int, str]:
    """The exit code and the one line for an error reply: the ESE error, then what to do."""
    line = f"{exc.name} ({exc.err}): {exc.message}"
    hint = command.hints.get(exc.name)
    if exc.name == "JET_errBackupInProgress":
        code = exit_codes.BUSY
        hint = hint or "wait for it to end"
        hint += f", or stop it with `jetstore ctl {target} abort-backup`"
    else:
        code = exit_codes.FAILED
    return code, f"{line}; {hint}" if hint else line


def run_ctl(args: argparse.Namespace) -> int:
    command = COMMANDS[args.command]
    progress = None
    try:
        body = request_body(command, args)
        if not args.timeout > 0:  # nan too
            raise CtlFailure(exit_codes.USAGE, f"--timeout {args.timeout:g}: must be above 0 s")
        client = ControlClient(
            resolve_endpoint(args.target),
            args.timeout,
            args.curve_server_key,
            args.curve_client_key,
        )
        try:
            request = to_control_server.build(command.name, body)
            if command.name == "backup" and (not args.json or is_terminal(sys.stderr)):
                progress = BackupProgress()
            result = client.call(request, on_progress=progress)
        finally:
            client.close()
    except CtlFailure as failure:
        if progress is not None:
            progress.close("failed")
        print(f"jetstore ctl: {failure}", file=sys.stderr)
        return failure.code
    except JetError as exc:
        if progress is not None:
            progress.close("failed")
        code, line = error_line(command, exc, args.target)
        print(f"jetstore ctl: {line}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        if progress is not None:
            progress.close("detached")
        print(
            "\njetstore ctl: detached; a running backup goes on (see `ctl status`)", file=sys.stderr
        )
        return exit_codes.INTERRUPTED
    if progress is not None:
        progress.close("complete")
    if args.json:
        print_data(command.document(result, body), as_json=True)
    else:
        print(command.describe(result, body))
    return exit_codes.OK


def add_parser(sub) -> argparse.ArgumentParser:
    ctl = sub.add_parser(
        "ctl",
        help="drive a running instance over its control socket",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Send one command to a running instance (started by `jetstore serve DIR` "
        "or by any\nprocess that opened it) and print its answer.\n\n"
        "TARGET is the instance directory, or its control endpoint: ipc://DIR/run/control, "
        "or\ntcp://127.0.0.1:PORT for an instance served with --control (then with "
        "--curve-server-key\nand --curve-client-key; `jetstore keygen` makes a client key "
        "pair).\n\ncommands:\n" + usage(),
        epilog=epilog(*EXAMPLES, codes=EXIT_CODES),
    )
    ctl.add_argument(
        "target",
        metavar="TARGET",
        help="instance directory, or ipc://... / tcp://127.0.0.1:PORT control endpoint",
    )
    ctl.add_argument("command", metavar="COMMAND", choices=list(COMMANDS), help="see commands")
    ctl.add_argument(
        "dest",
        nargs="?",
        metavar="ARG",
        help="backup: DEST, an existing directory; set-backup-rate: RATE in bytes/s "
        "(10M, 512K, 1G; 0 = unlimited)",
    )
    ctl.add_argument(
        "--incremental",
        action="store_true",
        help="backup: copy only the log generations written since the last backup, into "
        "the DEST holding that full backup's chain",
    )
    ctl.add_argument(
        "--atomic",
        action="store_true",
        help="backup: a full backup that replaces the one in DEST only once it is complete "
        "(DEST need not be empty)",
    )
    ctl.add_argument(
        "--min-rate",
        metavar="FLOOR",
        help="set-backup-rate: the rate in bytes/s (10M...) a backup keeps however busy the "
        "machine (0 = no floor; a floor above RATE is RATE: the cap wins)",
    )
    ctl.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document to stdout instead of text (a backup's progress still "
        "shows on stderr if it is a terminal)",
    )
    ctl.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds to wait for an answer (a backup resets it with each progress; default 10)",
    )
    ctl.add_argument(
        "--curve-server-key",
        metavar="FILE",
        help="tcp: the server's public key file (DIR/run/curve/server.key on its machine)",
    )
    ctl.add_argument(
        "--curve-client-key",
        metavar="FILE",
        help="tcp: this client's secret key file (NAME.key_secret from `jetstore keygen`)",
    )
    ctl.set_defaults(func=run_ctl)
    return ctl

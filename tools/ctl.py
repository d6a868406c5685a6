"""``jetstore ctl DIR|ENDPOINT COMMAND``: drive a running instance over its control socket.

Human output by default (a live progress line for backups, a readable status),
``--json`` for scripts.  Exit codes tell operators what happened, unlike a
bare "timed out":

    0  success
    1  the instance answered with an error (its ESE name is printed)
    2  bad usage
    3  no instance at this directory or endpoint
    4  timed out: the instance exists but did not answer in --timeout
    5  instance busy: a backup is already running
    6  refused: the tcp server did not accept this client's CURVE key
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from jetstore.actors.control import load_curve_key
from jetstore.actors.control_commands import COMMANDS, UsageError, to_control_server, usage
from jetstore.engine.errors import JetError
from jetstore.engine.run_dir_format import instance_running, read_endpoints
from jetstore.protocol.channel import Channel, ReplyTimeout
from jetstore.protocol.schema import Request

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NO_INSTANCE, EXIT_TIMEOUT, EXIT_BUSY, EXIT_REFUSED = range(7)


class CtlFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def resolve_endpoint(target: str) -> str:
    """An instance directory's published control endpoint, or the endpoint itself."""
    if target.startswith(("ipc://", "tcp://")):
        if target.startswith("ipc://") and not os.path.exists(target[len("ipc://") :]):
            raise CtlFailure(EXIT_NO_INSTANCE, f"no instance at {target}: no such socket")
        return target
    published = read_endpoints(target) if instance_running(target) else None
    if published is None or "control" not in published.get("endpoints", {}):
        raise CtlFailure(EXIT_NO_INSTANCE, f"no instance is running at {target}")
    endpoint = published["endpoints"]["control"]
    if not os.path.exists(endpoint[len("ipc://") :]):
        raise CtlFailure(EXIT_NO_INSTANCE, f"no instance is running at {target} (stale endpoints)")
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
            if not (server_key and client_key):
                raise CtlFailure(EXIT_USAGE, "tcp needs --curve-server-key and --curve-client-key")
            try:
                curve = (
                    load_curve_key(server_key, "--curve-server-key")[0],
                    *load_curve_key(client_key, "--curve-client-key", secret=True),
                )
            except JetError as exc:  # a key file given on the command line: bad usage
                raise CtlFailure(EXIT_USAGE, str(exc)) from exc
        self.endpoint, self.timeout = endpoint, timeout
        self.context = zmq.Context()
        refusals = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        self.channel = Channel(
            self.context, endpoint, self._refused, curve=curve, monitor=refusals if curve else 0
        )

    def _refused(self) -> None:
        """The Channel's health check: a CURVE handshake the server failed means no reply."""
        monitor = self.channel.monitor
        if monitor is not None and monitor.poll(0):
            recv_monitor_message(monitor)
            raise CtlFailure(
                EXIT_REFUSED, f"refused: {self.endpoint} does not accept this client's CURVE key"
            )

    def call(self, request: Request, on_progress=None):
        try:
            return self.channel.call(
                request, timeout=self.timeout, on_progress=on_progress, acks=False
            )
        except ReplyTimeout:
            raise CtlFailure(
                EXIT_TIMEOUT,
                f"timed out: {self.endpoint} did not answer {request.kind} in {self.timeout:g} s",
            ) from None

    def close(self) -> None:
        self.channel.close()
        self.context.term()


class ProgressLine:
    """One stderr line: phase, bytes done/total, rate, ETA."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, event: dict) -> None:
        done, total = event["done"], event["total"]
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = done / elapsed
        eta = (total - done) / rate if rate and total else 0
        bar_width = 30
        filled = int(bar_width * done / total) if total else 0
        print(
            f"\r{event['phase']:8s} [{'#' * filled}{'.' * (bar_width - filled)}] "
            f"{done / 1e6:9.1f}/{total / 1e6:.1f} MB {rate / 1e6:7.1f} MB/s ETA {eta:5.1f} s",
            end="",
            file=sys.stderr,
            flush=True,
        )

    def finish(self) -> None:
        print(file=sys.stderr)


def print_status(status: dict) -> None:
    print(f"instance {status['path']}")
    for name, actor in status["actors"].items():
        rss = actor.get("rss_bytes")
        print(
            f"  {name:15s} pid {actor['pid']:<7d} {'alive' if actor['alive'] else 'DEAD':5s} "
            f"up {actor.get('uptime_s', 0):8.1f} s  rss {(rss or 0) / 1e6:6.1f} MB  "
            f"cpu {actor.get('cpu_seconds') or 0:7.2f} s  restarts {actor.get('restarts', 0)}"
        )
    if "failure" in status:
        print(f"  FAILED: {status['failure']}")
        return
    bm, lw = status["buffer_manager"], status.get("log_writer", {})
    print(
        f"  generations     {lw.get('oldest_generation', '-')} .. "
        f"{lw.get('current_generation', '-')}   checkpoint seq {bm['checkpoint_seq']} "
        f"lsn {bm['checkpoint_lsn']:#x}"
    )
    print(
        f"  cache           {bm['cache_pages']} pages, {bm['dirty_pages']} dirty; "
        f"{status.get('commits_per_s', 0):.1f} commits/s"
    )
    for kind in ("last_full", "last_incremental"):
        record = status.get("backups", {}).get(kind)
        if record:
            print(
                f"  {kind:15s} generations {record['gen_low']}..{record['gen_high']} at "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(record['time_ns'] / 1e9))}"
            )
    worker = status.get("backup_worker", {})
    if worker.get("backup_in_progress"):
        progress = worker.get("progress") or {}
        print(
            f"  backup running  {worker['kind']} {progress.get('phase', '')} "
            f"{progress.get('done', 0):,}/{progress.get('total', 0):,} bytes"
        )


def run_ctl(args) -> int:
    try:
        endpoint = resolve_endpoint(args.target)
        client = ControlClient(endpoint, args.timeout, args.curve_server_key, args.curve_client_key)
        try:
            kind = args.command
            try:
                request = to_control_server.build(kind, COMMANDS[kind].body(args))
            except UsageError as exc:
                raise CtlFailure(EXIT_USAGE, str(exc)) from None
            progress = ProgressLine() if kind == "backup" and not args.json else None
            try:
                result = client.call(request, on_progress=progress)
            finally:
                if progress is not None:
                    progress.finish()
        finally:
            client.close()
    except CtlFailure as failure:
        print(f"jetstore ctl: {failure}", file=sys.stderr)
        return failure.code
    except JetError as exc:
        print(f"jetstore ctl: {exc.name} ({exc.err}): {exc.message}", file=sys.stderr)
        return EXIT_BUSY if exc.name == "JET_errBackupInProgress" else EXIT_ERROR
    except KeyboardInterrupt:
        print(
            "\njetstore ctl: detached; a running backup goes on (see `ctl status`)", file=sys.stderr
        )
        return 130
    if args.json:
        print(json.dumps(result, default=lambda b: b.hex() if isinstance(b, bytes) else str(b)))
    elif kind == "status":
        print_status(result)
    else:
        print(
            json.dumps(
                result, default=lambda b: b.hex() if isinstance(b, bytes) else str(b), indent=1
            )
            if result is not None
            else "ok"
        )
    return EXIT_OK


def add_parser(sub) -> None:
    ctl = sub.add_parser(
        "ctl",
        help="drive a running instance over its control socket",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="TARGET is an instance directory or a control endpoint (ipc:// or "
        "tcp://127.0.0.1:PORT with --curve-*).  Commands:\n"
        + usage()
        + "\n\nExit codes: 0 ok, 1 error reply, 2 usage, 3 no instance, "
        "4 timed out, 5 busy (a backup is running), 6 CURVE key refused.\n\n"
        "Examples:\n"
        "  jetstore ctl db status\n"
        "  jetstore ctl db backup /backups/db --atomic\n"
        "  jetstore ctl db backup /backups/db-chain --incremental\n"
        "  jetstore ctl db set-backup-rate 50000000 --min-rate 10000000",
    )
    ctl.add_argument("target")
    ctl.add_argument("command", choices=list(COMMANDS))
    ctl.add_argument("dest", nargs="?", help="backup destination, or the rate for set-backup-rate")
    ctl.add_argument("--incremental", action="store_true")
    ctl.add_argument("--atomic", action="store_true")
    ctl.add_argument(
        "--min-rate",
        type=int,
        metavar="FLOOR",
        help="with set-backup-rate: the rate in bytes/s a backup keeps however busy the machine",
    )
    ctl.add_argument("--json", action="store_true", help="machine-readable output")
    ctl.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for an answer (a backup resets it with each progress)",
    )
    ctl.add_argument("--curve-server-key", help="the server's public key file (tcp)")
    ctl.add_argument("--curve-client-key", help="this client's secret key file (tcp)")
    ctl.set_defaults(func=run_ctl)

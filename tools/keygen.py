"""``jetstore keygen DIR``: a CURVE key pair for ``jetstore ctl`` over tcp.

An instance served with ``--control tcp://127.0.0.1:PORT`` accepts only the clients
whose public key file is in ``INSTANCE/run/curve/clients/`` (any ``*.key``, read at
every connection: adding or removing one takes effect without a restart), and proves
itself with its own pair, ``INSTANCE/run/curve/server.key`` and ``server.key_secret``
(``actors/control.py``; made the first time if missing).  This writes such files in
the zmq certificate format ``load_curve_key`` reads: ``DIR/NAME.key`` (public, 0644)
and ``DIR/NAME.key_secret`` (secret, 0600); ``--allow INSTANCE`` also puts the public
key into that instance's allow-list, ``--server`` makes the instance's own pair.

It never overwrites a key file: a key already given out would stop working
(exit 2, one line, nothing written).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile

import zmq
import zmq.auth

from jetstore.actors.control import (
    CLIENT_KEYS_DIR,
    SERVER_KEY_NAME,
    curve_paths,
    load_curve_key,
)
from jetstore.engine.errors import JetError
from jetstore.tools import exit_codes
from jetstore.tools.arguments import epilog
from jetstore.tools.output import print_data

DEFAULT_NAME = "client"
NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
PUBLIC_MODE, SECRET_MODE, DIRECTORY_MODE = 0o644, 0o600, 0o700
EXAMPLES = (
    "jetstore keygen --server db",
    "jetstore keygen ~/.jetstore",
    "cp ~/.jetstore/client.key db/run/curve/clients/",
    "jetstore keygen ~/.jetstore --name alice --allow db",
    "jetstore serve db --control tcp://127.0.0.1:7000",
    "jetstore ctl tcp://127.0.0.1:7000 status --curve-server-key db/run/curve/server.key \\\n"
    "      --curve-client-key ~/.jetstore/alice.key_secret",
)
EXIT_CODES = (
    f"Exit codes: {exit_codes.OK} written, {exit_codes.FAILED} failed (a file could not be "
    f"written, or this libzmq has no CURVE),\n{exit_codes.USAGE} usage (a key file exists "
    "already, a bad directory or NAME): nothing was written."
)


class KeygenFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def usage_error(message: str) -> KeygenFailure:
    return KeygenFailure(exit_codes.USAGE, message)


def key_files(directory: str, name: str) -> tuple[str, str]:
    """(public, secret): where ``zmq.auth.create_certificates(directory, name)`` writes."""
    base = os.path.join(directory, name)
    return base + ".key", base + ".key_secret"


def refuse_existing(*paths: str, server: bool = False) -> None:
    remedy = (
        "remove both server.key files first (clients then need the new server.key)"
        if server
        else "remove it first, or choose another --name"
    )
    for path in paths:
        if os.path.lexists(path):
            raise usage_error(
                f"{path} exists already: keygen never overwrites a key (one given out would "
                f"stop working); {remedy}"
            )


def make_directory(path: str, what: str) -> None:
    """``path`` as a directory, created (0700) only if its parent exists: a typo must not
    build a tree."""
    if os.path.isdir(path):
        return
    if os.path.lexists(path):
        raise usage_error(f"{what} {path} is not a directory")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise usage_error(f"{what} {path}: its parent {parent} does not exist (create it first)")
    try:
        os.mkdir(path, DIRECTORY_MODE)
    except OSError as exc:
        raise KeygenFailure(exit_codes.FAILED, f"cannot create {path}: {exc.strerror}") from None


def write_new(path: str, data: bytes, mode: int, server: bool = False) -> None:
    """A file that did not exist (O_EXCL: never over one that appeared meanwhile)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        refuse_existing(path, server=server)
        raise
    try:
        os.fchmod(fd, mode)  # the umask had its say in os.open
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(files: list[tuple[str, bytes, int]], server: bool = False) -> None:
    """Each file new, or none of them: what was written before a failure is removed."""
    written: list[str] = []
    try:
        for path, data, mode in files:
            write_new(path, data, mode, server)
            written.append(path)
    except BaseException:
        for path in written:
            os.unlink(path)
        raise


def new_pair(scratch_in: str, name: str) -> tuple[bytes, bytes, bytes]:
    """(public file text, secret file text, z85 public key) of a fresh key pair, made by
    ``zmq.auth`` in a scratch directory (0700) inside ``scratch_in``."""
    if not zmq.has("curve"):
        raise KeygenFailure(exit_codes.FAILED, "this libzmq has no CURVE: no key can be made")
    with tempfile.TemporaryDirectory(dir=scratch_in, prefix=".keygen-") as scratch:
        public_file, secret_file = zmq.auth.create_certificates(scratch, name)
        public_key, _ = load_curve_key(secret_file, "new key", secret=True)
        with open(public_file, "rb") as public, open(secret_file, "rb") as secret:
            return public.read(), secret.read(), public_key


def keygen(
    directory: str, *, name: str | None = None, server: bool = False, allow: str | None = None
) -> dict:
    """Write a key pair (see the module's docstring); what was written, or KeygenFailure."""
    if server and (name is not None or allow is not None):
        raise usage_error("--server makes the instance's own pair: no --name or --allow")
    name = DEFAULT_NAME if name is None else name
    if not NAME.fullmatch(name):
        raise usage_error(f"--name {name!r}: letters, digits, '.', '_' and '-' only")
    if server:
        if not os.path.isdir(directory):
            raise usage_error(
                f"{directory} is not an instance directory (create it, or serve it once)"
            )
        keys, clients = curve_paths(directory)
        target, name = keys, SERVER_KEY_NAME
    else:
        target, clients = directory, None
    public_path, secret_path = key_files(target, name)
    allowed_path = None
    if allow is not None:
        if not os.path.isdir(allow):
            raise usage_error(f"--allow {allow}: no such instance directory")
        clients = curve_paths(allow)[1]
        allowed_path = os.path.join(clients, name + ".key")
    refuse_existing(*(p for p in (public_path, secret_path, allowed_path) if p), server=server)
    directories = []
    if clients is not None:  # the instance's run/, run/curve/, run/curve/clients/
        keys_dir = os.path.dirname(clients)
        directories += [os.path.dirname(keys_dir), keys_dir, clients]
    for path in [*directories, target]:
        make_directory(path, "directory")
    public, secret, public_key = new_pair(target, name)
    files = [(public_path, public, PUBLIC_MODE), (secret_path, secret, SECRET_MODE)]
    if allowed_path is not None:
        files.append((allowed_path, public, PUBLIC_MODE))
    try:
        write_all(files, server)
    except OSError as exc:
        where = exc.filename or target
        raise KeygenFailure(exit_codes.FAILED, f"cannot write {where}: {exc.strerror}") from None
    return {
        "kind": "server" if server else "client",
        "public_file": public_path,
        "secret_file": secret_path,
        "public_key": public_key.decode(),
        "allowed_file": allowed_path,
    }


def describe(result: dict, directory: str, allow: str | None = None) -> str:
    public, secret = result["public_file"], result["secret_file"]
    if result["kind"] == "server":
        return "\n".join(
            [
                f"wrote the CURVE server key pair of the instance in {directory}:",
                f"  public key  {public}  (clients pass it: --curve-server-key)",
                f"  secret key  {secret}  (mode 0600: keep it private)",
                "next:",
                f"  jetstore serve {directory} --control tcp://127.0.0.1:PORT",
            ]
        )
    name = os.path.basename(public)
    lines = [
        "wrote a CURVE key pair for jetstore ctl:",
        f"  public key  {public}",
        f"  secret key  {secret}  (mode 0600: keep it private)",
        "next:",
    ]
    if result["allowed_file"]:
        instance = allow or "INSTANCE"
        lines.append(f"  allowed:  {result['allowed_file']} (from the next connection on)")
    else:
        instance = "INSTANCE"
        lines.append(
            "  allow it: copy the public key into the server's allow-list, on its machine:\n"
            f"    cp {public} {os.path.join(instance, 'run', 'curve', CLIENT_KEYS_DIR, name)}"
        )
    server_key = os.path.join(instance, "run", "curve", SERVER_KEY_NAME + ".key")
    lines.append(
        f"  connect:  jetstore ctl tcp://127.0.0.1:PORT status --curve-server-key {server_key} "
        f"--curve-client-key {secret}"
    )
    return "\n".join(lines)


def run_keygen(args: argparse.Namespace) -> int:
    try:
        result = keygen(args.dir, name=args.name, server=args.server, allow=args.allow)
    except KeygenFailure as failure:
        print(f"jetstore keygen: {failure}", file=sys.stderr)
        return failure.code
    except JetError as exc:  # the pair zmq.auth wrote does not load back
        print(f"jetstore keygen: {exc}", file=sys.stderr)
        return exit_codes.FAILED
    if args.json:
        print_data(result, as_json=True)
    else:
        print(describe(result, args.dir, args.allow))
    return exit_codes.OK


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "keygen",
        help="make a CURVE key pair for `jetstore ctl` over tcp",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Make a CURVE key pair for `jetstore ctl` over tcp: DIR/NAME.key (the "
        "public key)\nand DIR/NAME.key_secret (the secret key, mode 0600).  An instance "
        "served with\n--control tcp://127.0.0.1:PORT accepts a client whose public key file "
        "is in\nINSTANCE/run/curve/clients/ (read at every connection: no restart needed) - "
        "copy it\nthere on the server's machine, or pass --allow INSTANCE.  The client then "
        "passes its\nsecret key file with --curve-client-key and the server's public key,\n"
        "INSTANCE/run/curve/server.key, with --curve-server-key.  --server makes that server "
        "pair\n(serve makes one the first time if there is none).  An existing key file is "
        "never\noverwritten.",
        epilog=epilog(*EXAMPLES, codes=EXIT_CODES),
    )
    parser.add_argument(
        "dir",
        metavar="DIR",
        help="where to write the pair (created if its parent exists); with --server, the "
        "instance directory",
    )
    parser.add_argument(
        "--name",
        help=f"the files' name: NAME.key and NAME.key_secret (default {DEFAULT_NAME})",
    )
    parser.add_argument(
        "--allow",
        metavar="INSTANCE",
        help="also copy the public key into INSTANCE/run/curve/clients/ (this machine's "
        "instance directory), so that its server accepts it",
    )
    parser.add_argument(
        "--server",
        action="store_true",
        help="make the server's pair of the instance in DIR: DIR/run/curve/server.key(_secret)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print what was written as one JSON document"
    )
    parser.set_defaults(func=run_keygen)
    return parser

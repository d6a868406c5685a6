"""A backup destination's claim: one owner at a time (DESIGN.md section 6, "The edges").

    DEST/.jetstore-backup-claim     held with flock(LOCK_EX) by the backup writing DEST

A backup takes the claim before it writes anything into DEST and drops it when it
ends; a second backup - of this instance or any other, in any process - fails at
once on the lock and touches nothing.  The lock belongs to the open file, so the
kernel releases it when its process dies: a claim file that can be locked but is
not empty was left by a killed backup (stale).

Layout: one JSON object per line, each appended and fsynced (never renamed: the
lock is on the inode, and a rename would let a second owner lock a new one; never
rewritten in place: a kill between truncating and writing would lose the state):

    {"format": 1, "token": "<hex>", "pid": int, "state": {...}, "crc32c": int}\n

The last line that decodes is the claim.  ``state`` is what the owner has written,
or is about to write, into DEST (the paths it creates, the atomic swap's progress,
the manifest it replaces): each is recorded before the work it describes, so a torn
last line leaves the line before it, which still covers everything done.  The next
owner undoes a stale claim's leftovers from it, and ``token`` lets a replacement
backup worker tell its dead predecessor's claim from one another backup has taken
since.  ``crc32c`` covers the JSON of the other fields; a torn or foreign line reads
as no state.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets

import crc32c

from .errors import JetError
from .fileio import io_error

CLAIM_FILE = ".jetstore-backup-claim"
FORMAT = 1


def _encode(token: str, state: dict) -> bytes:
    body = {"format": FORMAT, "token": token, "pid": os.getpid(), "state": state}
    crc = crc32c.crc32c(json.dumps(body, sort_keys=True).encode())
    return json.dumps({**body, "crc32c": crc}, sort_keys=True).encode() + b"\n"


def _decode_line(raw: bytes) -> dict | None:
    """One line's fields, or None for a torn or foreign line."""
    try:
        claim = json.loads(raw)
        crc = claim.pop("crc32c")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if claim.get("format") != FORMAT or crc != crc32c.crc32c(
        json.dumps(claim, sort_keys=True).encode()
    ):
        return None
    return claim


def _read(fd: int) -> dict | None:
    """The claim's fields: its last line that decodes; None for an empty or foreign file."""
    raw = os.pread(fd, os.fstat(fd).st_size, 0)
    for line in reversed(raw.split(b"\n")):
        claim = _decode_line(line)
        if claim is not None:
            return claim
    return None


def new_token() -> str:
    return secrets.token_hex(8)


class DestinationClaim:
    """The exclusive claim on one backup destination, held while a backup runs."""

    def __init__(self, dest: str, fd: int, token: str, left: dict | None) -> None:
        self.dest = dest
        self.path = os.path.join(dest, CLAIM_FILE)
        self.fd = fd
        self.token = token
        self.left = left  # a stale claim's fields: what a killed backup left in DEST

    @classmethod
    def take(cls, dest: str, token: str | None = None) -> DestinationClaim:
        """Claim ``dest`` (an existing directory), or fail with -505 touching nothing.

        ``token`` names this claim; an owner that must be undoable if it dies records it
        elsewhere before taking the claim (see ``new_token``)."""
        path = os.path.join(dest, CLAIM_FILE)
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise JetError(
                    "JET_errInvalidPath", f"cannot claim backup destination {path}: {exc.strerror}"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd) or {}
                os.close(fd)
                raise JetError(
                    "JET_errBackupInProgress",
                    f"{dest} is the destination of another running backup "
                    f"(pid {holder.get('pid', '?')}, claim {path})",
                ) from None
            # A releasing owner unlinks the file before it unlocks: the inode we locked
            # must still be the one at ``path``, or we locked a file nobody can see.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return cls(dest, fd, token or new_token(), _read(fd))
            os.close(fd)

    def record(self, state: dict) -> None:
        """What this backup has written into DEST so far; durable before it writes more."""
        data = _encode(self.token, state)
        try:
            os.pwrite(self.fd, data, os.fstat(self.fd).st_size)
            os.fsync(self.fd)
        except OSError as exc:
            raise io_error(exc, f"writing the backup claim {self.path}") from None

    def holds(self, token: str) -> dict | None:
        """The state recorded under ``token``, if the claim file was left by that backup."""
        if self.left is not None and self.left.get("token") == token:
            return self.left.get("state") or {}
        return None

    def release(self) -> None:
        """Drop the claim: the file goes first, then the lock (see ``take``)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        finally:
            os.close(self.fd)

"""What the public calls return, typed: plain dicts at run time (they travel as
msgpack between the actors and print as JSON), described here for readers and
type checkers alike.
"""

from __future__ import annotations

from typing import Any, TypedDict


class _BackupOutcome(TypedDict):
    truncated: list[int]  # the log generations deleted after the backup
    seconds: float


class BackupResult(_BackupOutcome, total=False):
    """What ``backup()`` returns.  A full or incremental backup has every key but
    ``generation``; log truncation alone (``path`` None) has ``truncated``,
    ``generation`` and ``seconds``."""

    backup_id: str  # hex: the chain's full backup, which an incremental continues
    bytes: int  # copied by this backup
    gen_low: int  # the log generations the backup holds (an incremental: those it added)
    gen_high: int
    roll_lsn: int  # where the backup ends: every commit before it is in the backup
    generation: int  # truncation alone: the generation the log rolled to


class ActorStatus(TypedDict, total=False):
    """One actor process in ``status()["actors"]``; a connected process (``connect``)
    sees ``pid`` and ``alive`` only."""

    pid: int
    alive: bool
    uptime_s: float
    restarts: int
    busy_s: float
    info: dict[str, Any]  # what the actor reported when it became ready, and since


class _StatusCommon(TypedDict):
    path: str
    actors: dict[str, ActorStatus]  # by name: "buffer_manager", "log_writer", ...


class InstanceStatus(_StatusCommon, total=False):
    """What ``status()`` returns.  ``buffer_manager``: the engine's figures (pages,
    checkpoint, log, transactions...); ``log_writer``: the log writer's own (an
    ``Instance`` only); ``failure``: why the instance failed, in place of both."""

    buffer_manager: dict[str, Any]
    log_writer: dict[str, Any]
    failure: str


class BackupVerification(TypedDict):
    """What ``verify_backup()`` returns: what the backup holds, every byte checked."""

    directory: str  # where the backup was found: the path given, or its new/ or old/
    backup_id: str
    files: int
    bytes: int
    page_bytes: int  # of the pages the backup's checkpoint uses
    gen_low: int
    gen_high: int
    chain: list[dict[str, Any]]  # the full backup, then each incremental, in order


class RestoreResult(TypedDict):
    """What ``restore()`` returns."""

    directory: str  # the backup restored
    dest: str
    replayed: int  # log records replayed
    replay_seconds: float
    rolled_forward: list[int]  # generations of ``log_dir`` rolled forward through
    seconds: float

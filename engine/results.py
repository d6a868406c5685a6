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
    given_up: bool  # died too often to be restarted again (not an essential actor)
    busy_s: float
    info: dict[str, Any]  # what the actor reported when it became ready, and since


class _StatusCommon(TypedDict):
    path: str
    actors: dict[str, ActorStatus]  # by name: "buffer_manager", "log_writer", ...


class InstanceStatus(_StatusCommon, total=False):
    """What ``status()`` returns.  ``buffer_manager``: the engine's figures (pages,
    checkpoint, log, transactions...); ``log_writer``: the log writer's own (an
    ``Instance`` only); ``failure``: why the instance failed, in place of both;
    ``archive``: None without archiving, else ``ArchiveStatus``."""

    buffer_manager: dict[str, Any]
    log_writer: dict[str, Any]
    archive: ArchiveStatus | None
    failure: str


class ArchiveStatus(TypedDict, total=False):
    """Continuous archiving as ``status()["archive"]`` shows it (engine/archiving.py);
    an archiver being restarted shows ``alive`` False and its ``pid`` only."""

    alive: bool
    pid: int
    given_up: bool | None  # not alive: died MAX_RESTARTS times and is not restarted
    archive_dir: str
    stream: str  # the log signature (hex) of the stream archived: ARCHIVE/<stream>/
    archived_through: int  # every generation of the stream up to it is in the archive
    archived_at_ns: int  # when the last one was archived (0: none yet by this archiver)
    lag_generations: int  # closed local generations not archived yet
    lag_bytes: int
    lag_seconds: float  # since the oldest of them was closed
    failing: bool  # the last attempt failed; retried with backoff
    failures: int  # attempts failed in a row
    last_failure: dict[str, Any] | None  # err, name, message, generation, time_ns, ...
    error: dict[str, Any]  # the archiver did not answer the status request


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
    """What ``restore()`` returns: where the replay stopped, the range of points this
    backup and log could have reached, and the replay's rates."""

    directory: str  # the backup restored
    dest: str
    replayed: int  # log records replayed
    replay_seconds: float
    rolled_forward: list[int]  # generations of ``log_dir`` rolled forward through
    seconds: float
    stopped_at_lsn: int  # every commit whose LSN is at or before it is in, none after
    last_commit_time_ns: int | None  # the time of the last commit replayed
    commits: int  # commits replayed
    replay_bytes: int  # redo bytes replayed
    replay_mb_per_s: float  # replay_bytes / replay_seconds, in MB (10**6 bytes)
    replay_commits_per_s: float
    earliest_lsn: int  # reachable targets: the end of the last record before the roll
    earliest_time_ns: int  # the latest commit time before the roll (or the backup's time)
    latest_lsn: int  # the end of the log at hand
    latest_time_ns: int | None  # the latest commit time in it (None: no commit)
    log_signature: str  # hex: the new log stream the restored database writes
    generation: int  # the new stream's first generation


class CatalogBackup(TypedDict):
    """One backup of a chain in ``backup_info()``: the full backup or an incremental."""

    id: str
    type: str  # "full" or "incremental"
    time_ns: int  # when it completed (wall clock)
    time: str  # the same, ISO-8601 UTC
    gen_low: int  # the log generations it added
    gen_high: int
    roll_lsn: int  # where it ends: a restore of the chain up to it stops here
    roll_lsn_text: str


class CatalogChain(TypedDict):
    """A backup chain in ``backup_info()``.  Every LSN ``x_lsn`` has its ``x_lsn_text``,
    every ``x_time_ns`` its ISO-8601 ``x_time``; None where the MANIFEST did not read,
    and the times also where the log holds no commit or the checks failed."""

    directory: str
    backup_id: str | None
    db_signature: str | None
    log_signature: str | None
    backups: list[CatalogBackup]
    gen_low: int | None
    gen_high: int | None
    start_lsn: int | None  # the checkpoint replay starts from
    start_lsn_text: str | None
    end_lsn: int | None  # the last backup's roll
    end_lsn_text: str | None
    bytes: int | None
    # The targets a restore accepts, measured as it measures them (recovery.Replay);
    # None while the chain is damaged:
    earliest_lsn: int | None  # the end of the last record before the full backup's roll
    earliest_lsn_text: str | None
    latest_lsn: int | None  # the end of the backups' log, or of an archive continuing it
    latest_lsn_text: str | None
    earliest_time_ns: int | None  # the latest commit before the roll (none: backup time)
    earliest_time: str | None  # rounded up to the microsecond: a target it accepts
    latest_time_ns: int | None  # the latest commit in that log (None: no commit)
    latest_time: str | None
    latest_through: str | None  # the archive stream directory that extends the chain
    verified: bool
    error: dict[str, Any] | None  # what the checks found wrong (err, name, message)


class CatalogRange(TypedDict):
    """Contiguous generations of an archive stream."""

    gen_low: int
    gen_high: int
    end_lsn: int | None  # the end of their last record (None: none, or not read)
    end_lsn_text: str | None
    last_commit_time_ns: int | None
    last_commit_time: str | None


class CatalogStream(TypedDict):
    """One log stream of an archive in ``backup_info()``."""

    directory: str
    log_signature: str
    gen_low: int | None  # None: no generation archived yet
    gen_high: int | None
    ranges: list[CatalogRange]
    gaps: list[dict[str, int]]  # gen_low, gen_high of each run of missing generations
    start_lsn: int | None  # where the first generation's records begin
    start_lsn_text: str | None
    end_lsn: int | None  # the end of the last record
    end_lsn_text: str | None
    created_time_ns: int | None  # the first generation's creation: no commit is older
    created_time: str | None
    first_commit_time_ns: int | None  # read with verify=True only
    first_commit_time: str | None
    last_commit_time_ns: int | None
    last_commit_time: str | None
    bytes: int
    verified: bool
    error: dict[str, Any] | None


class CatalogArchive(TypedDict):
    """A log archive in ``backup_info()``."""

    directory: str
    db_signature: str | None
    created_time_ns: int | None
    created_time: str | None
    streams: list[CatalogStream]
    verified: bool
    error: dict[str, Any] | None  # its identity file does not read


class BackupCatalog(TypedDict):
    """What ``backup_info()`` returns."""

    path: str
    verify: bool  # every byte was read (else manifests and headers)
    verified: bool  # every chain and archive passed
    chains: list[CatalogChain]
    archives: list[CatalogArchive]
    ignored: list[str]  # entries of a directory of directories that are neither

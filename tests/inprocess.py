"""A backup's peers in one process: the Storage and a LogKeeper over its log stream,
as the buffer manager and the log writer hold them in their actors
(engine/backup_run.py ``Peers``)."""

from __future__ import annotations

from jetstore.engine.backup import Progress, Throttle
from jetstore.engine.backup_run import BackupRun, RunState, claim_destination
from jetstore.engine.events_format import EventLog
from jetstore.engine.fileio import DEFAULT_ENV
from jetstore.engine.logkeeper import LogKeeper
from jetstore.engine.meta_format import BackupRecord
from jetstore.engine.run_marker_format import RunMarker
from jetstore.engine.storage import Storage


class StoragePeers:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.keeper = LogKeeper(storage.log, storage.meta.checkpoint_lsn)

    def checkpoint(self) -> dict:
        meta = self.storage.checkpoint()
        self.keeper.checkpointed(meta.checkpoint_lsn)
        return {"seq": meta.seq, "checkpoint_lsn": meta.checkpoint_lsn}

    def pin_checkpoint(self) -> dict:
        pin = self.storage.pin_checkpoint()
        return {"seq": pin.seq, "meta_page": pin.meta_page}

    def unpin_checkpoint(self, seq: int) -> None:
        self.storage.unpin_checkpoint(seq)

    def backup_info(self) -> dict:
        return self.storage.backup_info()

    def pin_log(self, generation: int) -> None:
        self.keeper.pin(generation)

    def unpin_log(self, generation: int) -> None:
        self.keeper.unpin(generation)

    def roll(self) -> int:
        return self.keeper.roll()

    def record_backup(self, incremental: bool, record: BackupRecord) -> dict:
        self.storage.record_backup(incremental, record)
        return self.checkpoint()

    def truncate(self, below: int, checkpoint_lsn: int) -> list[int]:
        return self.keeper.truncate(below, checkpoint_lsn)


class RecordingHooks:
    """Keeps every event; ``stop_at`` (a phase) makes the run fail there, as an abort."""

    def __init__(self, stop_at: str | None = None, error: Exception | None = None) -> None:
        self.events: list[Progress] = []
        self.stop_at, self.error = stop_at, error

    def report(self, progress: Progress) -> None:
        self.events.append(progress)
        if progress.phase == self.stop_at and progress.snt == "progress":
            raise self.error

    def check(self) -> None:
        pass

    def complete(self, progress: Progress) -> None:
        self.events.append(progress)


def run_backup(
    storage: Storage,
    dest: str | None,
    *,
    incremental: bool = False,
    atomic: bool = False,
    peers: StoragePeers | None = None,
    hooks: RecordingHooks | None = None,
    run_dir: str,
) -> dict:
    """One backup of ``storage``, every step in this process; its result."""
    kind = "truncate" if dest is None else ("incremental" if incremental else "full")
    events, marker = EventLog(storage.path), RunMarker(f"{run_dir}/backup-in-progress.json")
    claim = None
    if dest is not None:
        claim = claim_destination(
            dest, kind, atomic, True, marker=marker, env=DEFAULT_ENV, events=events
        )
    backup = BackupRun(
        RunState(kind, claim),
        storage.path,
        peers or StoragePeers(storage),
        hooks or RecordingHooks(),
        env=DEFAULT_ENV,
        events=events,
        marker=marker,
        throttle=Throttle(min_rate=0),
    )
    return backup.execute(dest, atomic)

"""Online backups during a run: the scheduler thread that asks for one every S seconds of
the measured window and records each one's window, bytes and MB/s, and the two ways
of taking one - jetstore's control socket, SQLite's online backup API."""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import threading
import time

from .shared import BACKUP


class BackupScheduler(threading.Thread):
    """Asks for a backup every ``every`` seconds of the measured window (the next one starts
    ``every`` seconds after the previous one started, or at once if it ran longer)."""

    def __init__(
        self,
        backup,
        config: dict,
        root: str,
        shared,
        measure_at: float,
        end_at: float,
        progress,
    ) -> None:
        super().__init__(name="jetstore-load-backups", daemon=True)
        self.backup, self.config, self.root = backup, config, root
        self.shared, self.measure_at, self.end_at = shared, measure_at, end_at
        self.progress = progress
        self.finished = threading.Event()
        self.records: list[dict] = []
        self.previous_full: str | None = None

    def run(self) -> None:
        every, mode = self.config["backup_every"], self.config["backup_mode"]
        next_at = self.measure_at + every
        while next_at < self.end_at and not self.finished.wait(
            max(0.0, next_at - time.monotonic())
        ):
            have_full = any(r["ok"] and r["type"] == "full" for r in self.records)
            incremental = mode == "incremental" and getattr(self.backup, "incremental", True)
            kind = "incremental" if incremental and have_full else "full"
            number = len(self.records) + 1
            if mode == "incremental":
                dest = os.path.join(self.root, "chain")
            elif self.config["backup_atomic"]:
                dest = os.path.join(self.root, "full")
            else:
                dest = os.path.join(self.root, f"full-{number:04d}")
            os.makedirs(dest, exist_ok=True)
            started = time.monotonic()
            self.shared[BACKUP] = 1
            record = {"n": number, "type": kind, "dest": dest, "ok": False, "error": None}
            try:
                result = self.backup(
                    dest,
                    kind == "incremental",
                    self.config["backup_atomic"],
                    functools.partial(self.progress.backup_update, f"#{number} {kind}"),
                )
            except Exception as exc:  # noqa: BLE001 - a failed backup is a result
                result = None
                record["error"] = getattr(exc, "name", None) or type(exc).__name__
                record["message"] = str(getattr(exc, "message", None) or exc)[:300]
            finally:
                ended = time.monotonic()
                self.shared[BACKUP] = 0
            seconds = ended - started
            record.update(
                start_s=started - self.measure_at, end_s=ended - self.measure_at, seconds=seconds
            )
            if result is not None:
                record.update(
                    ok=True,
                    bytes=result.get("bytes", 0),
                    mb_per_s=result.get("bytes", 0) / 1e6 / seconds if seconds else None,
                    roll_lsn=result.get("roll_lsn"),
                    gen_low=result.get("gen_low"),
                    gen_high=result.get("gen_high"),
                    truncated=result.get("truncated"),
                    backup_id=result.get("backup_id"),
                )
                if result.get("engine_note"):
                    record["note"] = result["engine_note"]
            self.records.append(record)
            self.progress.backup_end(record["ok"])
            if record["ok"] and kind == "full" and mode == "full":
                previous, self.previous_full = self.previous_full, dest
                if previous and previous != dest and not self.config["keep_backups"]:
                    shutil.rmtree(previous, ignore_errors=True)
            elif not record["ok"] and not os.listdir(dest):
                os.rmdir(dest)
            next_at = started + every


def jetstore_backup(directory: str, timeout: float):
    """A backup over the instance's control socket (what `jetstore ctl backup` does)."""

    def backup(dest: str, incremental: bool, atomic: bool, on_progress) -> dict:
        from jetstore.actors.control_commands import to_control_server
        from jetstore.tools.ctl import ControlClient, resolve_endpoint

        client = ControlClient(resolve_endpoint(directory), timeout)
        try:
            request = to_control_server.backup(
                dest=os.path.abspath(dest), incremental=incremental, atomic=atomic
            )
            return client.call(request, on_progress=on_progress)
        finally:
            client.close()

    return backup


def sqlite_backup(database: str):
    """SQLite's online backup API (``Connection.backup``: every page, in one step)."""

    def backup(dest: str, incremental: bool, atomic: bool, on_progress) -> dict:
        target = os.path.join(dest, "backup.db")
        partial = target + ".tmp"
        source = sqlite3.connect(database, timeout=60)
        try:
            page = source.execute("PRAGMA page_size").fetchone()[0]
            copy = sqlite3.connect(partial)
            try:

                def progress(status, remaining, total):
                    done = (total - remaining) * page
                    on_progress({"phase": "pages", "done": done, "total": total * page})

                source.backup(copy, progress=progress)
            finally:
                copy.close()
        finally:
            source.close()
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, target)
        return {
            "bytes": os.path.getsize(target),
            "engine_note": "SQLite online backup API (no incrementals: always full)",
        }

    backup.incremental = False
    return backup

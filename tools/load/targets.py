"""What the clients run against: the jetstore instance in DIR (opened for the run, or
attached to when one is running there) and a SQLite database for --compare sqlite,
each with its table created and its key space populated before the driver starts."""

from __future__ import annotations

import os
import sqlite3

from .backups import jetstore_backup, sqlite_backup
from .driver import drive
from .workload import populate


def run_jetstore(config: dict, backup_root: str | None) -> tuple[dict, dict]:
    """Open the instance in DIR (or attach to the running one), load the keys, drive."""
    from jetstore.engine import Instance, JetError, connect
    from jetstore.tools.ctl import CtlFailure, resolve_endpoint

    directory = os.path.abspath(config["dir"])
    handle, mode = None, "opened"
    try:
        resolve_endpoint(directory)
        handle, mode = connect(directory), "attached"
    except (CtlFailure, JetError):
        handle = None
    if handle is None:
        handle = Instance.open(
            directory,
            page_size=config["page_size"],
            cache_size=config["cache_mb"] << 20,
            log_file_size=config["log_file_mb"] << 20,
        )
    try:
        session = handle.session()
        table = config["table"]
        try:
            session.create_table(table)
            created = True
        except JetError as exc:
            if exc.name != "JET_errTableDuplicate":
                raise
            created = False
        info = {"path": directory, "mode": mode, "table_created": created}
        if config["populate"] == "always" or (config["populate"] == "auto" and created):

            def put_batch(batch, last: bool) -> None:
                session.begin()
                for key, value in batch:
                    session.put(table, key, value)
                session.commit(lazy=not last)

            info["populated_keys"] = config["keys"]
            info["populate_seconds"] = populate(put_batch, config, config["keys"])
        else:
            info["populated_keys"] = 0
        session.close()
        backup = jetstore_backup(directory, config["backup_timeout"])
        result = drive("jetstore", directory, config, backup, backup_root)
    finally:
        handle.close()
    return info, result


def run_sqlite(config: dict, scratch: str, backup_root: str | None) -> tuple[dict, dict]:
    database = os.path.join(scratch, "load.sqlite")
    db = sqlite3.connect(database, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    table = config["table"]
    db.execute(f'CREATE TABLE "{table}" (k BLOB PRIMARY KEY, v BLOB)')

    def put_batch(batch, last: bool) -> None:
        db.execute("BEGIN")
        db.executemany(f'INSERT OR REPLACE INTO "{table}" (k, v) VALUES (?, ?)', batch)
        db.execute("COMMIT")

    info = {
        "path": database,
        "journal_mode": "WAL",
        "synchronous": "NORMAL" if config["lazy"] else "FULL",
        "busy_timeout_ms": 60000,
        "sqlite_version": sqlite3.sqlite_version,
        "backup": "sqlite3 online backup API (full) for every backup",
    }
    if config["populate"] != "never":
        info["populated_keys"] = config["keys"]
        info["populate_seconds"] = populate(put_batch, config, config["keys"])
    db.close()
    result = drive("sqlite", database, config, sqlite_backup(database), backup_root)
    return info, result

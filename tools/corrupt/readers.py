"""Reading a tree as recovery and restore do: open an instance, scan every table, check the
checkpoint, commit, crash and recover again; read a log directory; restore a backup and read it."""

from __future__ import annotations

from jetstore.engine.backup_restore import restore
from jetstore.engine.errors import JetError
from jetstore.engine.fileio import DEFAULT_ENV
from jetstore.engine.integrity import check_checkpoint
from jetstore.engine.log_reader import LogReader
from jetstore.engine.storage import Storage
from jetstore.tools.corrupt.catalogue import OPTIONS
from jetstore.tools.corrupt.model import State, diff_states

MARKER = (b"\xffcorrupt-campaign", b"written after recovery")


def read_everything(path: str) -> tuple[State, dict, str | None]:
    """Open (recover) the instance, scan every table, check the checkpoint's structure; then
    commit one row, "crash" and recover again: recovery must leave a usable instance.

    Returns (data, integrity counts, what went wrong after recovery or None).  A JetError
    from the integrity check carries the data the scan returned before it (``scanned``):
    wrong data that only the offline check notices was still served.
    """
    storage = Storage.open(path, create=False, **OPTIONS)
    try:
        state = {table: dict(storage.scan(table)) for table in storage.list_tables()}
        try:
            checked = check_checkpoint(storage.pager, storage.durable_meta)
        except JetError as exc:
            exc.scanned = state
            raise
        table = min(state, default=None)
        if table is not None:
            storage.commit({table: dict([MARKER])}, None)
    finally:
        storage.close_files()  # the process dies: what recovery made must be recoverable
    storage = Storage.open(path, create=False, **OPTIONS)
    try:
        again = {table: dict(storage.scan(table)) for table in storage.list_tables()}
        check_checkpoint(storage.pager, storage.durable_meta)
    except BaseException:
        storage.close_files()
        raise
    storage.close()
    want = {name: dict(rows) for name, rows in state.items()}
    if table is not None:
        want[table][MARKER[0]] = MARKER[1]
    problem = None
    if again != want:
        problem = f"after recovery, commit and crash: {diff_states(again, want)}"
    return state, checked, problem


def read_log(logs: str, context: str) -> int:
    reader = LogReader(DEFAULT_ENV, logs)
    return sum(1 for _record in reader.records(0, context=context))


def restore_and_read(backup: str, dest: str) -> tuple[State, dict, str | None]:
    restore(backup, dest)
    return read_everything(dest)

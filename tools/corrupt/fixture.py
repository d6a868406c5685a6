"""The fixture of a campaign: the pristine trees built once, checked by every detector, and
described (layout, expected data) for the trials that copy them."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass

from jetstore.engine.backup import read_manifest
from jetstore.engine.backup_restore import restore, verify_backup
from jetstore.engine.inspectors import verify_database
from jetstore.engine.log_format import lsn_gen, make_lsn
from jetstore.engine.log_reader import dump_log
from jetstore.engine.storage import DB_FILE, LOG_DIR
from jetstore.tools.corrupt.build import build_backup, build_instance, build_quiet_instance
from jetstore.tools.corrupt.layout import DatabaseLayout, Generation, database_layout, scan_logs
from jetstore.tools.corrupt.model import Model, State, diff_states
from jetstore.tools.corrupt.readers import read_everything


@dataclass
class InstanceFixture:
    """One pristine instance directory, what it holds and where everything is in it."""

    name: str
    path: str
    model: Model
    state: State  # what recovery of the pristine instance returns
    db: DatabaseLayout
    logs: list[Generation]

    @property
    def log_end(self) -> int:
        """End LSN of the valid records of the last generation."""
        return make_lsn(self.logs[-1].generation, self.logs[-1].end)

    @property
    def checkpoint_gen(self) -> int:
        return lsn_gen(self.db.meta.checkpoint_lsn)

    @property
    def last_gen(self) -> int:
        return self.logs[-1].generation


@dataclass
class Fixture:
    root: str
    instances: dict[str, InstanceFixture]
    backup: str
    backup_state: State  # what a restore of the pristine backup holds
    backup_db: DatabaseLayout
    backup_logs: list[Generation]
    backup_manifest: dict
    seconds: float = 0.0

    @property
    def main(self) -> InstanceFixture:
        return self.instances["main"]


def check_instance(root: str, name: str, path: str, model: Model) -> InstanceFixture:
    """The layout of a pristine instance, after checking that every detector accepts it."""
    scratch = os.path.join(root, f"pristine-check-{name}")
    shutil.copytree(path, scratch)
    try:
        problems = []
        checked_db = verify_database(scratch)
        if checked_db["integrity"] != "ok":
            problems.append(f"verify_database: {checked_db['bad_pages']}")
        checked_log = dump_log(os.path.join(scratch, LOG_DIR))
        if checked_log["integrity"] != "ok" or checked_log["torn"]:
            problems.append(f"dump_log: {checked_log['error']} torn={checked_log['torn']}")
        state, _checked, problem = read_everything(scratch)
        if problem:
            problems.append(problem)
        if state != model.state():
            problems.append(f"recovery differs from the model: {diff_states(state, model.state())}")
    finally:
        shutil.rmtree(scratch)
    db = database_layout(os.path.join(path, DB_FILE))
    logs = scan_logs(path)
    if db.older is None:
        problems.append("want two valid meta slots")
    if problems:
        raise RuntimeError(f"the pristine {name} instance fails its own checks: {problems}")
    return InstanceFixture(name, path, model, state, db, logs)


def build_fixture(root: str) -> Fixture:
    """Build and check the pristine instances and the backup under ``root``."""
    started = time.monotonic()
    instances = {}
    for name, build in (("main", build_instance), ("quiet", build_quiet_instance)):
        path = os.path.join(root, "pristine", name)
        instances[name] = check_instance(root, name, path, build(path))
    backup = os.path.join(root, "pristine", "backup")
    build_backup(os.path.join(root, "backup-source"), backup)
    shutil.rmtree(os.path.join(root, "backup-source"), ignore_errors=True)
    verify_backup(backup)
    restored = os.path.join(root, "pristine-restore")
    restore(backup, restored)
    backup_state = read_everything(restored)[0]
    shutil.rmtree(restored)
    main = instances["main"]
    backup_logs = scan_logs(backup)
    if len(main.logs) < 4 or not any(
        g.closed and g.generation >= main.checkpoint_gen for g in main.logs
    ):
        raise RuntimeError(
            "the pristine main instance wants closed generations after its "
            f"checkpoint: {len(main.logs)} generations"
        )
    if not main.db.free or not main.db.beyond or len(backup_logs) < 2:
        raise RuntimeError(
            "the pristine fixture wants free pages, pages past the high-water "
            "mark and several backup generations"
        )
    return Fixture(
        root=root,
        instances=instances,
        backup=backup,
        backup_state=backup_state,
        backup_db=database_layout(os.path.join(backup, DB_FILE)),
        backup_logs=backup_logs,
        backup_manifest=read_manifest(backup),
        seconds=time.monotonic() - started,
    )

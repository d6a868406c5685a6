"""Judging a flip in a backup: the MANIFEST, jet.edb or a log generation, checked by
``verify_backup`` and ``restore`` as they are, then again after the MANIFEST is re-signed to
match the damaged file (the deep pass)."""

from __future__ import annotations

import os

from jetstore.engine import manifest_format
from jetstore.engine.backup_restore import _file_checksum, verify_backup
from jetstore.engine.log_format import RECORDS_START
from jetstore.engine.storage import DB_FILE
from jetstore.tools.corrupt.catalogue import (
    DB_CORRUPTED,
    DETECTED,
    HEADER_FIELDS_END,
    INVALID_BACKUP,
    LOG_CORRUPT,
    READ_VERIFY,
    RESTORE_LOG_CORRUPT,
    header_expectation,
    offset_place,
    page_place,
)
from jetstore.tools.corrupt.detectors import Judged, Verdict, conclude, describe_seen, run
from jetstore.tools.corrupt.fixture import Fixture
from jetstore.tools.corrupt.flips import Flip
from jetstore.tools.corrupt.readers import restore_and_read


def _resign_manifest(directory: str, manifest: dict, name: str) -> None:
    """Make the MANIFEST agree with the (damaged) file ``name``: the deep pass.  The checksum
    is the one ``verify_backup`` computes."""
    size, crc = _file_checksum(os.path.join(directory, name))
    files = {**manifest["files"], name: {"size": size, "crc32c": crc}}
    with open(os.path.join(directory, manifest_format.MANIFEST), "wb") as f:
        f.write(manifest_format.encode({**manifest, "files": files}))


def judge_backup(fx: Fixture, flip: Flip, work: str) -> Judged:
    backup = os.path.join(work, "backup")
    verified = run("verify_backup", lambda: verify_backup(backup))
    restored = run("restore", lambda: restore_and_read(backup, os.path.join(work, "r1")))
    seen = [verified, restored]
    verdict = Verdict()
    what = os.path.basename(flip.file)
    verdict.expect_error(verified, {INVALID_BACKUP}, flip.file, None, flip.area)
    verdict.expect_error(restored, {INVALID_BACKUP}, flip.file, None, flip.area)
    if restored.result == "error" and os.path.exists(os.path.join(work, "r1", DB_FILE)):
        verdict.failures.append("the failed restore left its database file behind")
    if flip.target == "manifest":
        return conclude(verdict, DETECTED, "-526 naming the MANIFEST", seen)
    outer = f"-526: {what} does not match its manifest checksum"
    _resign_manifest(backup, fx.backup_manifest, flip.file)
    deep_verified = run("verify_backup (deep)", lambda: verify_backup(backup))
    deep_restored = run(
        "restore (deep)", lambda: restore_and_read(backup, os.path.join(work, "r2"))
    )
    seen += [deep_verified, deep_restored]
    size = fx.backup_db.meta.page_size
    expected: tuple[set[int], str, str] | None = None  # None: the deep pass must accept it
    if flip.target == "backup_db":
        pgno = flip.offset // size
        if pgno == fx.backup_db.meta.slot:
            expected = ({DB_CORRUPTED}, r"\bslot\b", "the slot")
        elif pgno in fx.backup_db.page_types:
            expected = ({READ_VERIFY}, page_place(pgno), f"page {pgno}")
    else:
        gen = next(g for g in fx.backup_logs if g.name == flip.file)
        if flip.offset < HEADER_FIELDS_END:
            replay_err, _b, named = header_expectation(flip.offset)
            err = RESTORE_LOG_CORRUPT if replay_err == LOG_CORRUPT else replay_err
            expected = ({err}, offset_place(named), f"offset {named}")
        elif RECORDS_START <= flip.offset < gen.end:
            start = gen.fragment_at(flip.offset)[0]
            expected = ({RESTORE_LOG_CORRUPT}, offset_place(start), f"offset {start}")
    if expected is None:
        verdict.crashed(deep_verified)
        if deep_verified.result == "error":
            verdict.failures.append(f"deep: false alarm: {describe_seen(deep_verified)}")
        verdict.expect_data(deep_restored, fx.backup_state, flip.area)
        deep = f"deep: {flip.area} is read by nothing; restore returns the pristine data"
    else:
        errs, place, label = expected
        what = "deep: " + flip.area
        verdict.expect_error(deep_verified, errs, flip.file, place, what)
        verdict.expect_error(deep_restored, errs, flip.file, place, what, fx.backup_state)
        deep = f"deep: {sorted(errs)} naming {label}"
    return conclude(verdict, DETECTED, f"{outer}; {deep}", seen)

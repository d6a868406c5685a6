"""Judging a flip in a log generation: its header, the records of a closed generation, or the
last generation, where damage to the final batch is a torn tail (see the package docstring)."""

from __future__ import annotations

import os

from jetstore.engine.log_format import RECORDS_START, format_lsn, make_lsn
from jetstore.engine.log_reader import dump_log
from jetstore.engine.storage import LOG_DIR
from jetstore.tools.corrupt.catalogue import (
    DETECTED,
    HARMLESS,
    HEADER_FIELDS_END,
    LOG_CORRUPT,
    LOG_READ_VERIFY,
    header_expectation,
    offset_place,
)
from jetstore.tools.corrupt.detectors import Judged, Seen, Verdict, conclude, describe_seen, run
from jetstore.tools.corrupt.fixture import Fixture
from jetstore.tools.corrupt.flips import Flip
from jetstore.tools.corrupt.readers import read_everything, read_log


def judge_log(fx: Fixture, flip: Flip, work: str) -> Judged:
    inst = fx.instances[flip.tree]
    logs = os.path.join(work, LOG_DIR)
    gen = next(g for g in inst.logs if g.name == flip.file)
    is_last = gen.generation == inst.last_gen
    dumped = run("dump_log", lambda: dump_log(logs))
    backup_read = run("log read (backup context)", lambda: read_log(logs, "backup"))
    opened = run("open+scan+integrity", lambda: read_everything(work))
    verdict = Verdict()
    verdict.crashed(dumped)
    report = dumped.value if dumped.result == "ok" else None
    # dump_log reports rather than raises: make its verdict look like a detector's.
    dump_seen = dumped
    if report is not None:
        error = report["error"]
        dump_seen = (
            Seen("dump_log", "error", error["err"], error["name"], error["message"])
            if error
            else Seen(
                "dump_log",
                "ok",
                message=f"torn={report['torn']} end_lsn={format_lsn(report['end_lsn'] or 0)}",
            )
        )
    seen = [dump_seen, backup_read, opened]
    offset = flip.offset
    needed = gen.generation >= inst.checkpoint_gen
    lost = 0
    if offset < HEADER_FIELDS_END or (offset >= RECORDS_START and offset < gen.end and not is_last):
        if offset < HEADER_FIELDS_END:
            replay_err, backup_err, named = header_expectation(offset)
        else:
            replay_err, backup_err, named = LOG_CORRUPT, LOG_READ_VERIFY, gen.fragment_at(offset)[0]
        place = offset_place(named)
        verdict.expect_error(dump_seen, {replay_err}, gen.name, place, flip.area)
        verdict.expect_error(backup_read, {backup_err}, gen.name, place, flip.area)
        if needed:
            verdict.expect_error(opened, {replay_err}, gen.name, place, flip.area, inst.state)
            how = "recovery fails the same way"
        else:
            verdict.expect_data(opened, inst.state, "generation older than the checkpoint's")
            how = (
                f"recovery does not need generation {gen.generation} (its checkpoint is in "
                f"{inst.checkpoint_gen}) and returns the pristine data"
            )
        reason = f"{replay_err} naming offset {named} (backup: {backup_err}); {how}"
        return conclude(verdict, DETECTED, reason, seen)
    if offset < RECORDS_START or offset >= gen.end:
        # Header padding, or zeros after the records: nothing reads them.
        if report is not None:
            if report["integrity"] != "ok":
                verdict.failures.append(f"false alarm: {describe_seen(dump_seen)}")
            elif report["end_lsn"] != inst.log_end:
                verdict.failures.append(
                    f"dump_log ends at {format_lsn(report['end_lsn'])}, pristine "
                    f"{format_lsn(inst.log_end)}"
                )
        if backup_read.result == "error":
            verdict.failures.append(f"false alarm: {describe_seen(backup_read)}")
        verdict.expect_data(opened, inst.state, flip.area)
        if offset < RECORDS_START:
            why = "header block padding: outside the header checksum (bytes 0..79), read by nothing"
        elif is_last:
            why = (
                f"beyond the valid end {gen.end} of the last generation: a torn tail by "
                "definition, which recovery zero-fills"
            )
        else:
            why = (
                f"after END_OF_GENERATION (records end at {gen.end}): the reader stops at "
                "the closed generation's end"
            )
        return conclude(verdict, HARMLESS, why, seen)
    # A durable record of the last generation: torn-tail semantics (package docstring).
    start = gen.fragment_at(offset)[0]
    torn_at = make_lsn(gen.generation, start)
    upto = max(torn_at, inst.db.meta.checkpoint_lsn)
    lost = inst.model.lost(upto)
    if report is not None and report["integrity"] != "ok":
        # An engine that tells damage followed by valid records from a torn write reports
        # it as corruption: that is detection too, if recovery agrees.
        place = offset_place(start)
        verdict.expect_error(dump_seen, {LOG_CORRUPT}, gen.name, place, flip.area)
        verdict.expect_error(opened, {LOG_CORRUPT}, gen.name, place, flip.area, inst.state)
        return conclude(verdict, DETECTED, f"-501 naming offset {start}", seen)
    if report is not None:
        if not report["torn"] or report["end_lsn"] != torn_at:
            verdict.failures.append(
                f"dump_log reports torn={report['torn']} end_lsn="
                f"{format_lsn(report['end_lsn'] or 0)}; expected torn at {format_lsn(torn_at)}"
            )
    if backup_read.result != "ok":
        verdict.crashed(backup_read)
    verdict.expect_data(opened, inst.model.state(upto), "the commits before the torn record")
    reason = (
        f"torn tail: dump_log reports torn, end_lsn {format_lsn(torn_at)}; recovery kept "
        f"exactly the commits before it and dropped {lost} acknowledged commit(s) silently"
    )
    return conclude(verdict, DETECTED, reason, seen, lost)

"""Judging a flip in a database file: a used page, a free page or a meta slot."""

from __future__ import annotations

import re

from jetstore.engine.inspectors import dump_header, verify_database
from jetstore.engine.storage import DB_FILE
from jetstore.tools.corrupt.catalogue import (
    DETECTED,
    HARMLESS,
    META_ERRORS,
    READ_VERIFY,
    page_place,
)
from jetstore.tools.corrupt.detectors import Judged, Verdict, conclude, run
from jetstore.tools.corrupt.fixture import Fixture
from jetstore.tools.corrupt.flips import Flip
from jetstore.tools.corrupt.readers import read_everything


def judge_database(fx: Fixture, flip: Flip, work: str) -> Judged:
    inst = fx.instances[flip.tree]
    size = inst.db.meta.page_size
    pgno = flip.offset // size
    verified = run("verify_database", lambda: verify_database(work))
    header = run("dump_header", lambda: dump_header(work))
    opened = run("open+scan+integrity", lambda: read_everything(work))
    seen = [verified, header, opened]
    verdict = Verdict()
    verdict.crashed(verified, header)
    listed = verified.result == "ok" and any(
        bad["page"] == pgno for bad in verified.value["bad_pages"]
    )
    if flip.target == "db_used_page":
        if not listed:
            verdict.failures.append(f"verify_database does not list page {pgno}")
        verdict.expect_error(
            opened, {READ_VERIFY}, DB_FILE, page_place(pgno), flip.area, inst.state
        )
        return conclude(verdict, DETECTED, f"-1018 naming page {pgno}; /k lists it", seen)
    if flip.target == "db_free_page":
        verdict.expect_data(opened, inst.state, flip.area)
        listed_note = (
            "verify_database (which checks every page) lists it"
            if listed
            else "verify_database does not list it"
        )
        return conclude(
            verdict,
            HARMLESS,
            f"{flip.area}: never read, rewritten before reuse; recovery and the integrity "
            f"check pass with the pristine data; {listed_note}",
            seen,
        )
    # meta_slot
    slot = pgno
    newest = slot == inst.db.meta.slot
    slot_error = None
    if header.result == "ok":
        slot_error = next(
            (s.get("error") for s in header.value["slots"] if s["slot"] == slot), None
        )
    if not slot_error or not re.search(page_place(slot), slot_error):
        verdict.failures.append(f"dump_header does not report meta slot {slot} as damaged")
    if not listed:
        verdict.failures.append(f"verify_database does not list page {slot}")
    if opened.result == "error":
        verdict.expect_error(
            opened, META_ERRORS, DB_FILE, r"\b(page|slot) \d+", flip.area, inst.state
        )
        how = f"opening fails: {opened.name} ({opened.err})"
    else:
        verdict.expect_data(opened, inst.state, flip.area)
        how = (
            f"opening fell back to the older checkpoint seq {inst.db.older.seq} and replayed the "
            "log to the pristine data"
            if newest
            else f"opening used the newest checkpoint seq {inst.db.meta.seq}"
        )
    return conclude(verdict, DETECTED, f"dump_header names slot {slot}; {how}", seen)

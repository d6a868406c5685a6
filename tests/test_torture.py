"""A short seeded torture campaign (the long ones run from `jetstore torture`):
kills and planned faults at random instants, every invariant checked, zero violations."""

from __future__ import annotations

import random

from jetstore.tools.torture import Trial, run_campaign


def test_short_seeded_campaign_has_no_violations(tmp_path):
    report = run_campaign(str(tmp_path), trials=4, seconds=None, seed=7, clients=2)
    assert report["counts"]["trials"] == 4
    assert report["counts"]["acknowledged transactions"] > 0
    assert report["counts"].get("backups restored", 0) > 0
    assert report["violations"] == []
    assert report["counts"].get("generations archived", 0) > 0  # every trial archives
    # The edges of DESIGN section 6 ran too (which ones, a trial's timing decides).
    edges = ("backups whose caller was killed", "shared destination", "roll-forward")
    assert any(key.startswith(edges) for key in report["counts"]), report["counts"]


def test_a_reader_report_cut_by_its_kill_is_not_read_as_a_snapshot_that_saw_nothing(tmp_path):
    # With PYTHONUNBUFFERED set, print() writes each argument on its own; a kill -9
    # between two of them left "snapshot 4294980797" - a snapshot that saw no commits.
    acked = {("c0", 0): 0x1000010B2, ("c1", 0): 0x100001326}
    cut = "snapshot 4294980797 c0:3 c1:2\nsnapshot 4294980797"
    trial = Trial(str(tmp_path), random.Random(0), clients=2)
    trial.acked = acked
    trial.snapshots_read = [line.split() for line in trial.whole_lines(cut, "reader")]
    trial.check_snapshots()
    assert trial.violations == []
    assert trial.counts["reader snapshots checked"] == 1
    assert trial.counts["reader lines cut short by a kill"] == 1

    whole = Trial(str(tmp_path), random.Random(0), clients=2)  # the same line, ended
    whole.acked = acked
    whole.snapshots_read = [line.split() for line in whole.whole_lines(cut + "\n", "reader")]
    whole.check_snapshots()
    assert sorted(v.split(",")[0] for v in whole.violations) == [
        "snapshot 0x1000034bd missed c0/0",
        "snapshot 0x1000034bd missed c1/0",
    ]

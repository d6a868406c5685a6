"""A short seeded torture campaign (the long ones run from `jetstore torture`):
kills and planned faults at random instants, every invariant checked, zero violations."""

from __future__ import annotations

from jetstore.tools.torture import run_campaign


def test_short_seeded_campaign_has_no_violations(tmp_path):
    report = run_campaign(str(tmp_path), trials=4, seconds=None, seed=7, clients=2)
    assert report["counts"]["trials"] == 4
    assert report["counts"]["acknowledged transactions"] > 0
    assert report["counts"].get("backups restored", 0) > 0
    assert report["violations"] == []
    # The edges of DESIGN section 6 ran too (which ones, a trial's timing decides).
    edges = ("backups whose caller was killed", "shared destination", "roll-forward")
    assert any(key.startswith(edges) for key in report["counts"]), report["counts"]

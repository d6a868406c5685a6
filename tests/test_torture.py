"""A short seeded torture campaign (the long ones run from `jetstore torture`):
kills and planned faults at random instants, every invariant checked, zero violations."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import psutil

from jetstore.tools import exit_codes
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


def test_ctrl_c_reports_the_trials_before_it_and_leaves_no_process(tmp_path):
    """A Ctrl-C at the terminal (SIGINT to the whole foreground process group) lands in
    the second trial while its clients run: the first trial is reported and written, no
    child prints a traceback, and nothing the campaign started runs on."""
    report_file, out_file, err_file = (tmp_path / name for name in ("report.json", "out", "err"))
    with open(out_file, "w") as out, open(err_file, "w") as err:
        campaign = subprocess.Popen(
            [sys.executable, "-m", "jetstore.tools.cli", "torture", str(tmp_path / "t")]
            + ["--trials", "50", "--seed", "7", "--json-file", str(report_file)],
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
    try:
        deadline = time.monotonic() + 120
        while not processes_naming(tmp_path / "t" / "trial1"):  # its clients run
            assert campaign.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(campaign.pid, signal.SIGINT)
        campaign.wait(timeout=120)
    finally:
        if campaign.poll() is None:
            os.killpg(campaign.pid, signal.SIGKILL)
    out, err = out_file.read_text(), err_file.read_text()
    assert campaign.returncode == exit_codes.INTERRUPTED, (campaign.returncode, err[-2000:])
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-2000:]
    assert "trial 1: interrupted, not checked" in out
    report = json.loads(report_file.read_text())
    assert report["interrupted"] is True and report["counts"]["trials"] == 1
    assert report["violations"] == []
    assert processes_naming(tmp_path) == []


def processes_naming(path) -> list[tuple[int, str, list[str]]]:
    """The live processes with ``path`` (or a path under it) in their command line."""
    return [
        (process.pid, process.info["status"], process.info["cmdline"])
        for process in psutil.process_iter(["cmdline", "status"])
        if any(str(path) in arg for arg in process.info["cmdline"] or [])
        and process.info["status"] != psutil.STATUS_ZOMBIE
    ]

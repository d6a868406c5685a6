"""`jetstore demo` end to end (short phases): both restores verified, exit code 0."""

import os
import signal
import subprocess
import sys


def test_demo_verifies_both_backups(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jetstore.tools.cli",
            "demo",
            str(tmp_path / "d"),
            "--seconds",
            "0.6",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MISMATCH" not in result.stdout
    verified = next(line for line in result.stdout.splitlines() if line.startswith("verified:"))
    assert "keys at the full backup's roll" in verified and "correctly absent" in verified
    moment = next(line for line in result.stdout.splitlines() if line.startswith("point in time:"))
    assert "verified" in moment and "correctly absent" in moment


def test_the_point_in_time_check_catches_a_commit_left_out_or_replayed_too_far(tmp_path):
    from jetstore.engine import Instance
    from jetstore.tools.demo import check_point_in_time, value_for

    with Instance.open(str(tmp_path / "db")) as inst:
        session = inst.session()
        session.create_table("demo")
        for key in (b"a", b"b"):
            session.put("demo", key, value_for(key))
    # (key, lsn, began, acknowledged): a and b replayed up to LSN 20, the moment is 5.0
    commits = [(b"a", 10, 1.0, 2.0), (b"b", 20, 3.0, 4.0)]
    assert check_point_in_time(str(tmp_path / "db"), commits, {"stopped_at_lsn": 20}, 5.0)[1] == []
    left_out = [*commits, (b"c", 15, 3.5, 4.5)]  # at or before the stop, missing
    assert check_point_in_time(str(tmp_path / "db"), left_out, {"stopped_at_lsn": 20}, 5.0)[1]
    too_far = [(b"a", 10, 1.0, 2.0), (b"b", 20, 6.0, 7.0)]  # begun after the moment
    assert check_point_in_time(str(tmp_path / "db"), too_far, {"stopped_at_lsn": 20}, 5.0)[1]
    early = [(b"a", 10, 1.0, 2.0), (b"b", 20, 3.0, 4.0), (b"z", 30, 3.0, 4.0)]
    assert check_point_in_time(str(tmp_path / "db"), early, {"stopped_at_lsn": 20}, 5.0)[1]


def start_demo(tmp_path) -> subprocess.Popen:
    """A demo in its own temporary directory under tmp_path, in its own process group
    (as a terminal's Ctrl-C reaches every process of a job)."""
    return subprocess.Popen(
        [sys.executable, "-m", "jetstore.tools", "demo", "--seconds", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )


def test_ctrl_c_ends_the_demo_quietly_and_removes_its_temporary_directory(tmp_path):
    demo = start_demo(tmp_path)
    assert demo.stdout.readline().startswith("instance ")  # the clients are starting
    os.killpg(demo.pid, signal.SIGINT)
    _out, err = demo.communicate(timeout=60)
    assert demo.returncode == 130 and "Traceback" not in err, err
    assert not any(name.startswith("jetstore-demo-") for name in os.listdir(tmp_path))


def test_a_closed_stdout_ends_the_demo_quietly_and_removes_its_temporary_directory(tmp_path):
    demo = start_demo(tmp_path)
    assert demo.stdout.readline().startswith("instance ")
    demo.stdout.close()  # as `| head -1` does: the next line finds the pipe closed
    err = demo.stderr.read()
    assert demo.wait(timeout=60) == 1 and "Traceback" not in err, err
    assert not any(name.startswith("jetstore-demo-") for name in os.listdir(tmp_path))

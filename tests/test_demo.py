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

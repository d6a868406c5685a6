"""`jetstore demo` end to end (short phases): both restores verified, exit code 0."""

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

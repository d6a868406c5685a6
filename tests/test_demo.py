"""`jetstore demo` end to end (small): it must verify every key it loaded."""

import subprocess
import sys


def test_demo_verifies_everything(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "jetstore.tools.cli", "demo", str(tmp_path / "d"), "--keys", "3000"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "verified:       3000 keys, 0 mismatches" in result.stdout

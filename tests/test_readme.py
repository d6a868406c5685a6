"""The README's code, run exactly as printed: a user copies it, so it must work."""

from __future__ import annotations

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")


def blocks(language: str) -> list[str]:
    with open(README) as f:
        text = f.read()
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.M | re.S)


def test_every_python_block_of_the_readme_runs_as_printed(tmp_path):
    python = blocks("python")
    assert python, "the README shows no Python"
    for number, code in enumerate(python):
        script = tmp_path / f"block{number}.py"
        script.write_text(code)
        done = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"README python block {number}:\n{done.stderr}"


def test_the_quick_start_is_two_commands_and_ci_runs_its_test_command():
    (quick_start,) = blocks("sh")
    commands = [line.split("#")[0].strip() for line in quick_start.splitlines()]
    assert len(commands) == 2 and "jetstore demo" in commands[0]
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci = f.read()
    assert commands[1] in ci.splitlines()

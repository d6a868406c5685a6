"""`jetstore inspect header|log|verify`: the esentutl /mh, /ml and /k equivalents."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from jetstore.engine.storage import DB_FILE, Storage


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jetstore.tools.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def make_instance(path) -> None:
    with Storage.open(path, page_size=4096, log_file_size=64 << 10) as s:
        s.create_table("t")
        for i in range(300):
            s.commit({"t": {b"%04d" % i: b"v" * 400}}, None)


def test_inspect_header_json(tmp_path):
    make_instance(tmp_path)
    result = run_cli("inspect", "header", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    current = report["current"]
    assert current["state"] == "clean shutdown" and current["page_size"] == 4096
    assert {s["slot"] for s in report["slots"]} == {0, 1}
    assert all("seq" in s for s in report["slots"])
    assert current["last_full_backup"] is None


def test_inspect_log_reports_every_generation(tmp_path):
    make_instance(tmp_path)
    result = run_cli("inspect", "log", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["integrity"] == "ok" and len(report["generations"]) >= 2


def test_inspect_verify_counts_and_finds_damage(tmp_path):
    make_instance(tmp_path)
    clean = json.loads(run_cli("inspect", "verify", str(tmp_path), "--json").stdout)
    assert clean["integrity"] == "ok" and clean["bad_checksums"] == 0
    assert clean["pages_seen"] == os.path.getsize(tmp_path / DB_FILE) // 4096
    with open(tmp_path / DB_FILE, "r+b") as f:
        f.seek(3 * 4096 + 77)
        f.write(b"\xaa")
    result = run_cli("inspect", "verify", str(tmp_path))
    assert result.returncode == 3  # damage found
    assert "bad_checksums: 1" in result.stdout and "page: 3" in result.stdout


def test_inspect_missing_path_is_a_usage_error(tmp_path):
    result = run_cli("inspect", "header", str(tmp_path / "nope"))
    assert result.returncode == 2 and "nope: no such file or directory" in result.stderr


def test_every_command_has_help():
    for command in ([], ["demo"], ["inspect"]):
        result = run_cli(*command, "--help")
        assert result.returncode == 0 and "usage:" in result.stdout

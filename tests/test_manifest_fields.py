"""A MANIFEST whose checksum holds but whose fields are wrong (manifest_format): made by
hand or by a buggy tool, re-encoded with a good checksum.  Each case is refused with
-526 naming the field - by restore, verify_backup and the catalog alike - and a file
name pointing outside the backup is never followed.  One named case per field.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from inprocess import run_backup

from jetstore.engine import JetError, backup_info, manifest_format, restore, verify_backup
from jetstore.engine.storage import Storage
from jetstore.tools import exit_codes
from jetstore.tools.cli import main


@pytest.fixture(scope="module")
def backup(tmp_path_factory) -> str:
    base = tmp_path_factory.mktemp("manifest")
    (base / "run").mkdir()
    with Storage.open(base / "db", log_file_size=64 << 10) as storage:
        storage.create_table("t")
        storage.commit({"t": {b"k": b"v"}}, None)
        run_backup(storage, str(base / "bk"), run_dir=str(base / "run"))
    return str(base / "bk")


def with_fields(backup: str, tmp_path, change) -> str:
    """A copy of ``backup`` whose MANIFEST ``change`` edited, with a good checksum."""
    copy = str(tmp_path / "edited")
    shutil.copytree(backup, copy)
    path = os.path.join(copy, manifest_format.MANIFEST)
    with open(path) as f:
        manifest = json.load(f)
    change(manifest)
    with open(path, "wb") as f:
        f.write(manifest_format.encode(manifest))
    return copy


def escape(manifest: dict) -> None:
    manifest["files"]["logs/../../escape.bin"] = manifest["files"]["jet.edb"]


def absolute(manifest: dict) -> None:
    manifest["files"]["/tmp/jetstore-absolute.bin"] = manifest["files"]["jet.edb"]


CASES = {
    "empty chain": (lambda m: m.update(chain=[]), "chain"),
    "chain starting with an incremental": (
        lambda m: m["chain"][0].update(type="incremental"),
        "chain entry 0",
    ),
    "generation not a number": (lambda m: m.update(gen_high="x"), "gen_high"),
    "generations reversed": (lambda m: m.update(gen_low=m["gen_high"] + 1), "gen_low"),
    "files a list": (lambda m: m.update(files=[]), "files"),
    "signature not hex": (lambda m: m.update(log_signature="zz"), "log_signature"),
    "page size": (lambda m: m.update(page_size=1000), "page_size"),
    "file size missing": (lambda m: m["files"]["jet.edb"].pop("size"), "size"),
    "file outside the backup": (escape, "logs/../../escape.bin"),
    "absolute file name": (absolute, "/tmp/jetstore-absolute.bin"),
}


@pytest.mark.parametrize("change, field", CASES.values(), ids=CASES.keys())
def test_a_well_sealed_manifest_with_a_wrong_field_is_refused_naming_it(
    backup, tmp_path, change, field
):
    edited = with_fields(backup, tmp_path, change)
    for check in (
        lambda: restore(edited, tmp_path / "out"),
        lambda: verify_backup(edited),
    ):
        with pytest.raises(JetError) as refused:
            check()
        assert refused.value.err == -526 and field in refused.value.message
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "escape.bin").exists()
    assert not os.path.exists("/tmp/jetstore-absolute.bin")
    (chain,) = backup_info(edited)["chains"]
    assert not chain["verified"] and chain["error"]["err"] == -526


def test_info_lists_a_wrong_manifest_as_damage_without_a_traceback(backup, tmp_path, capsys):
    edited = with_fields(backup, tmp_path, CASES["empty chain"][0])
    assert main(["info", edited, "--verify"]) == exit_codes.DAMAGED
    out, err = capsys.readouterr()
    assert "chain" in out + err and "Traceback" not in out + err

"""The backup catalog (``backup_info``, ``jetstore info``) over real backups made by a
real instance: a full backup and two incrementals, an atomic destination caught with
both new/ and old/, and a log archive of the generations after the chain.

The archive is built here as the archiver lays one out (archive_format.py): claimed for
the database, then the instance's closed generations copied into their stream's
directory.  One module-scoped scene is made once; a test that damages it works on a
copy.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import time

import pytest

from jetstore.engine import Instance, JetError, archive_format, backup_info, restore
from jetstore.engine.backup import read_manifest
from jetstore.engine.fileio import DEFAULT_ENV
from jetstore.engine.log_format import (
    RECORD_FULL,
    RECORD_HEADER_SIZE,
    RECORDS_START,
    format_lsn,
    lsn_gen,
    make_lsn,
)
from jetstore.engine.log_reader import LogReader, generation_path, list_generations
from jetstore.tools import exit_codes
from jetstore.tools.cli import main

VALUE = b"v" * 1000  # 64 KiB generations: about 60 commits each


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("catalog")
    bk, at, archive = base / "bk", base / "at", base / "archive"
    bk.mkdir()
    at.mkdir()
    inst = Instance.open(base / "src", log_file_size=64 << 10)
    session = inst.session()
    session.create_table("t")

    def commit(count: int, tag: bytes) -> None:
        for i in range(count):
            session.put("t", b"%s-%04d" % (tag, i), VALUE)

    commit(20, b"a")
    results = [inst.backup(bk)]
    commit(150, b"b")
    results.append(inst.backup(bk, incremental=True))
    commit(149, b"c")
    before_last = time.time_ns()
    commit(1, b"last")
    results.append(inst.backup(bk, incremental=True))
    commit(260, b"d")  # the generations the archive continues the chain with
    manifest = read_manifest(str(bk))
    archive_format.claim(DEFAULT_ENV, str(archive), bytes.fromhex(manifest["db_signature"]))
    stream = archive_format.stream_dir(str(archive), bytes.fromhex(manifest["log_signature"]))
    os.mkdir(stream)
    logs = str(base / "src" / "logs")
    for generation in list_generations(DEFAULT_ENV, logs)[:-1]:  # the highest is open
        shutil.copy(generation_path(logs, generation), stream)
    inst.backup(at, atomic=True)  # (this truncates the log: the archive is made already)
    first_atomic = base / "first-atomic"
    shutil.copytree(at / "new", first_atomic)
    commit(20, b"e")
    inst.backup(at, atomic=True)
    inst.close()
    # What a swap leaves until the new backup is recorded (backup.swap_atomic): the
    # previous backup kept as old/ beside new/.
    os.rename(first_atomic, at / "old")
    (base / "notes.txt").write_text("not a backup")
    archived = list_generations(DEFAULT_ENV, stream)
    # The tests below damage generations that the cheap checks must not read: they read
    # only the last two generations of a run.
    assert results[1]["gen_low"] <= results[2]["gen_high"] - 2
    assert archived[0] == results[2]["gen_high"] + 1 and len(archived) >= 3
    return {
        "base": base,
        "results": results,
        "before_last": before_last,
        "stream": stream,
        "archived": archived,
    }


def copy_of(scene: dict, tmp_path, *names: str):
    """The named parts of the scene, copied into a fresh directory of directories."""
    scan = tmp_path / "scan"
    scan.mkdir()
    for name in names:
        shutil.copytree(scene["base"] / name, scan / name)
    return scan


def time_ns(iso: str) -> int:
    """An ISO-8601 time as a restore target reads it (a datetime: microseconds)."""
    moment = datetime.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (moment - epoch) // datetime.timedelta(microseconds=1) * 1000


def flip_payload_byte(logs_dir: str, generation: int) -> str:
    """Flip one bit in the payload of a record in the middle of a generation: its header
    and size stay right, only reading the records finds it."""
    fragments, _end, _closed = LogReader(DEFAULT_ENV, logs_dir).fragments(generation)
    full = [(start, end) for start, end, kind in fragments if kind == RECORD_FULL]
    start, end = full[len(full) // 2]
    path = generation_path(logs_dir, generation)
    with open(path, "r+b") as f:
        offset = (start + RECORD_HEADER_SIZE + end) // 2
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x10]))
    return path


def test_a_full_backup_and_two_incrementals(scene):
    results = scene["results"]
    catalog = backup_info(scene["base"] / "bk")
    assert catalog["verified"] and not catalog["verify"] and catalog["archives"] == []
    (chain,) = catalog["chains"]
    assert chain["directory"] == str(scene["base"] / "bk") and chain["verified"]
    assert chain["error"] is None
    assert chain["backup_id"] == results[0]["backup_id"] == chain["backups"][0]["id"]
    backups = chain["backups"]
    assert [b["type"] for b in backups] == ["full", "incremental", "incremental"]
    assert len({b["id"] for b in backups}) == 3
    for backup, result in zip(backups, results, strict=True):
        assert (backup["gen_low"], backup["gen_high"]) == (result["gen_low"], result["gen_high"])
        assert backup["roll_lsn"] == result["roll_lsn"]
        assert backup["roll_lsn"] == make_lsn(result["gen_high"] + 1, RECORDS_START)
        assert 0 <= backup["time_ns"] - time_ns(backup["time"]) < 1000
    assert [b["time_ns"] for b in backups] == sorted(b["time_ns"] for b in backups)
    assert (chain["gen_low"], chain["gen_high"]) == (results[0]["gen_low"], results[2]["gen_high"])
    assert chain["end_lsn"] == results[2]["roll_lsn"]
    assert chain["start_lsn"] <= results[0]["roll_lsn"]
    assert chain["bytes"] == sum(
        os.path.getsize(os.path.join(root, name))
        for root, _dirs, names in os.walk(scene["base"] / "bk")
        for name in names
        if name != "MANIFEST"
    )
    # Alone, the chain reaches from the full backup's roll to the last incremental's;
    # the latest commit is the one made just before that roll.
    assert chain["start_lsn"] <= chain["earliest_lsn"] <= results[0]["roll_lsn"]
    assert results[1]["roll_lsn"] < chain["latest_lsn"] <= results[2]["roll_lsn"]
    assert chain["latest_through"] is None
    assert scene["before_last"] <= chain["latest_time_ns"] <= backups[2]["time_ns"]
    assert chain["earliest_time_ns"] < scene["before_last"]


def test_an_atomic_destination_lists_new_then_old(scene):
    catalog = backup_info(scene["base"] / "at")
    new, old = catalog["chains"]
    assert new["directory"] == str(scene["base"] / "at" / "new")
    assert old["directory"] == str(scene["base"] / "at" / "old")
    assert new["backup_id"] != old["backup_id"] and new["verified"] and old["verified"]
    assert new["backups"][0]["time_ns"] > old["backups"][0]["time_ns"]
    assert new["gen_low"] > old["gen_high"] and [b["type"] for b in new["backups"]] == ["full"]


def test_a_directory_of_directories_lets_an_archive_extend_a_chain(scene):
    catalog = backup_info(scene["base"])
    assert catalog["verified"]
    assert catalog["ignored"] == ["notes.txt", "src"]  # a file, and the instance itself
    directories = [chain["directory"] for chain in catalog["chains"]]
    base = scene["base"]
    assert directories == [str(base / "at" / "new"), str(base / "at" / "old"), str(base / "bk")]
    (archive,) = catalog["archives"]
    (stream,) = archive["streams"]
    archived = scene["archived"]
    assert stream["directory"] == scene["stream"] and stream["verified"] and stream["gaps"] == []
    assert [(r["gen_low"], r["gen_high"]) for r in stream["ranges"]] == [
        (archived[0], archived[-1])
    ]
    assert lsn_gen(stream["end_lsn"]) == archived[-1]  # the end of its last record
    assert stream["bytes"] == len(archived) * (64 << 10)
    assert stream["first_commit_time_ns"] is None  # only a full read knows it
    bk = catalog["chains"][2]
    assert archive["db_signature"] == bk["db_signature"]
    assert stream["log_signature"] == bk["log_signature"]
    assert stream["created_time_ns"] < stream["last_commit_time_ns"]
    # The archive takes up where the chain's log ends: the chain reaches its end.
    assert bk["latest_lsn"] == stream["end_lsn"] and bk["latest_through"] == scene["stream"]
    assert bk["latest_time_ns"] == stream["last_commit_time_ns"] > scene["before_last"]
    assert bk["earliest_lsn"] == backup_info(scene["base"] / "bk")["chains"][0]["earliest_lsn"]
    # The atomic backups come after the archive's generations: nothing extends them.
    assert all(chain["latest_through"] is None for chain in catalog["chains"][:2])
    verified = backup_info(scene["base"], verify=True)
    assert verified["verified"] and verified["verify"]
    (stream,) = verified["archives"][0]["streams"]
    assert stream["created_time_ns"] <= stream["first_commit_time_ns"]
    assert stream["first_commit_time_ns"] < stream["last_commit_time_ns"]


def test_the_range_given_is_the_one_a_restore_measures(scene, tmp_path):
    """What info says a chain reaches, a restore of it accepts as a target: its range is
    measured as the restore measures its own, alone and rolled forward through the
    archive."""
    catalog = backup_info(scene["base"])
    bk = catalog["chains"][2]
    bk_alone = backup_info(scene["base"] / "bk")["chains"][0]
    keys = ("earliest_lsn", "latest_lsn", "earliest_time_ns", "latest_time_ns")
    for chain, log_dir in ((bk_alone, None), (bk, scene["stream"])):
        restored = restore(scene["base"] / "bk", tmp_path / f"out-{bool(log_dir)}", log_dir=log_dir)
        assert {key: chain[key] for key in keys} == {key: restored[key] for key in keys}
    assert bk["latest_lsn"] > bk_alone["latest_lsn"]
    # The times as text, cut to the microsecond, are targets a restore accepts; the
    # latest one takes in the last commit.
    for key in ("earliest_time", "latest_time"):
        assert time_ns(bk[key]) <= bk[f"{key}_ns"] < time_ns(bk[key]) + 1000
        until = datetime.datetime.fromisoformat(bk[key].replace("Z", "+00:00"))
        out = tmp_path / f"to-{key}"
        restored = restore(scene["base"] / "bk", out, log_dir=scene["stream"], until=until)
        if key == "latest_time":
            assert restored["stopped_at_lsn"] == bk["latest_lsn"]


def test_a_gap_in_the_archive_stops_the_latest_point_before_it(scene, tmp_path):
    scan = copy_of(scene, tmp_path, "bk", "archive")
    archived = scene["archived"]
    stream_dir = scan / "archive" / os.path.basename(scene["stream"])
    os.unlink(generation_path(str(stream_dir), archived[1]))
    catalog = backup_info(scan)
    (stream,) = catalog["archives"][0]["streams"]
    assert stream["verified"]
    assert stream["gaps"] == [{"gen_low": archived[1], "gen_high": archived[1]}]
    assert [(r["gen_low"], r["gen_high"]) for r in stream["ranges"]] == [
        (archived[0], archived[0]),
        (archived[2], archived[-1]),
    ]
    (chain,) = catalog["chains"]
    assert lsn_gen(chain["latest_lsn"]) == archived[0]
    assert chain["latest_lsn"] == stream["ranges"][0]["end_lsn"] < stream["end_lsn"]
    assert chain["latest_time_ns"] == stream["ranges"][0]["last_commit_time_ns"]


def test_verify_finds_a_flipped_byte_in_a_backup_log_and_in_an_archive(scene, tmp_path, capsys):
    scan = copy_of(scene, tmp_path, "bk", "at", "archive")
    results = scene["results"]
    damaged_log = flip_payload_byte(str(scan / "bk" / "logs"), results[1]["gen_low"])
    stream_dir = str(scan / "archive" / os.path.basename(scene["stream"]))
    damaged_generation = flip_payload_byte(stream_dir, scene["archived"][0])
    # Manifests and headers only: neither flip is read.
    assert backup_info(scan)["verified"]
    assert main(["info", str(scan)]) == exit_codes.OK
    capsys.readouterr()
    catalog = backup_info(scan, verify=True)
    assert not catalog["verified"]
    new, old, bk = catalog["chains"]
    assert new["verified"] and old["verified"]  # one bad chain hides no other
    assert not bk["verified"] and damaged_log in bk["error"]["message"]
    assert bk["latest_lsn"] is None and bk["latest_through"] is None  # nothing is sure
    (stream,) = catalog["archives"][0]["streams"]
    assert not stream["verified"] and damaged_generation in stream["error"]["message"]
    assert stream["error"]["name"] == "JET_errLogFileCorrupt"
    assert main(["info", str(scan), "--verify"]) == exit_codes.DAMAGED
    out = capsys.readouterr().out
    assert out.count("DAMAGED") == 3 and damaged_log in out and damaged_generation in out
    archive_line = out.split("archive ", 1)[1].splitlines()[1]
    assert archive_line.strip() == "status:   DAMAGED (a stream below)"  # not "ok" above it


def test_a_missing_file_or_a_damaged_manifest_shows_without_verify(scene, tmp_path):
    scan = copy_of(scene, tmp_path, "bk", "at")
    gone = generation_path(str(scan / "bk" / "logs"), scene["results"][1]["gen_low"])
    os.unlink(gone)
    manifest = scan / "at" / "old" / "MANIFEST"
    manifest.write_text(manifest.read_text().replace('"full"', '"fu11"'))
    catalog = backup_info(scan)
    new, old, bk = catalog["chains"]
    assert new["verified"]
    assert not old["verified"] and old["error"]["name"] == "JET_errInvalidBackup"
    assert old["backup_id"] is None and "checksum" in old["error"]["message"]
    assert not bk["verified"] and bk["error"]["name"] == "JET_errMissingRestoreLogFiles"
    assert gone in bk["error"]["message"]


def test_cli_prints_json_and_a_table(scene, capsys):
    assert main(["info", str(scene["base"] / "bk"), "--json"]) == exit_codes.OK
    document = json.loads(capsys.readouterr().out)
    (chain,) = document["chains"]
    assert chain["backup_id"] == scene["results"][0]["backup_id"]
    assert chain["latest_lsn_text"] == format_lsn(chain["latest_lsn"])
    assert (
        chain["backups"][0]["time"]
        == backup_info(scene["base"] / "bk")["chains"][0]["backups"][0]["time"]
    )
    assert main(["info", str(scene["base"])]) == exit_codes.OK
    text = capsys.readouterr().out
    assert text.count("backup chain ") == 3 and "archive " in text
    assert "incremental" in text and "restore:  from (0x" in text
    assert f"(through {scene['stream']})" in text


def test_info_help_has_examples_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as done:
        main(["info", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "Exit codes:" in text and "--verify" in text


def test_a_missing_path_or_a_directory_with_nothing_known_is_an_error(tmp_path, capsys):
    with pytest.raises(JetError) as missing:
        backup_info(tmp_path / "nowhere")
    assert missing.value.err == -1023 and str(tmp_path / "nowhere") in missing.value.message
    (tmp_path / "file").write_text("x")
    with pytest.raises(JetError) as file:
        backup_info(tmp_path / "file")
    assert file.value.err == -1023
    (tmp_path / "empty" / "unrelated").mkdir(parents=True)
    with pytest.raises(JetError) as empty:
        backup_info(tmp_path / "empty")
    assert empty.value.name == "JET_errNoBackup" and "holds no backup" in empty.value.message
    assert main(["info", str(tmp_path / "empty")]) == exit_codes.FAILED
    assert "JET_errNoBackup" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["info", str(tmp_path / "nowhere")])
    assert usage.value.code == exit_codes.USAGE

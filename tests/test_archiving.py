"""Continuous archiving, in one process: the archive's steps (engine/archiving.py) over a
real log stream and real files, and the log writer's side of it (engine/logkeeper.py:
the archive's pin, archive_timeout's roll, the local-log limit).

Each failure case is one named test that checks the ESE number, that the message names
the file, and that nothing is lost: the generation stays in the local log and is
archived once the cause is gone.  The end-to-end cases, with the actors and kill -9,
are in test_archiving_processes.py.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from jetstore.engine import archive_format
from jetstore.engine.archiving import BACKOFF, Archiver, ArchiveStream, file_crc
from jetstore.engine.errors import JetError
from jetstore.engine.events_format import EVENTS_FILE, EventLog
from jetstore.engine.fileio import DEFAULT_ENV
from jetstore.engine.log_format import RECORDS_START, generation_file_name, make_lsn
from jetstore.engine.log_reader import LogReader, generation_path, list_generations
from jetstore.engine.log_stream import LogStream
from jetstore.engine.logkeeper import ArchivePolicy, LogKeeper

SIZE = 8192  # the smallest generation: a few records fill it
DB = bytes(range(16))
SIGNATURE = bytes(range(16, 32))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log(tmp_path):
    logs = str(tmp_path / "logs")
    stream = LogStream.create(DEFAULT_ENV, logs, log_file_size=SIZE, signature=SIGNATURE)
    yield stream
    stream.close()


def fill(stream: LogStream, generations: int) -> None:
    """Append records until ``generations`` more generations are closed."""
    target = stream.current_generation + generations
    number = 0
    while stream.current_generation < target:
        stream.append(b"record %d " % number + bytes(300))
        number += 1
    stream.sync()


def make_archiver(
    stream: LogStream, tmp_path, clock=None, archive=None, claimed=True, **kw
) -> Archiver:
    """An archiver of an archive the open claimed, as the supervisor does (``claimed``)."""
    archive = archive or str(tmp_path / "archive")
    if claimed:
        archive_format.claim(DEFAULT_ENV, archive, DB)
    return Archiver(
        DEFAULT_ENV,
        stream_logs(stream),
        archive,
        db_signature=DB,
        log_signature=SIGNATURE,
        events=EventLog(str(tmp_path)),
        clock=clock or Clock(),
        **kw,
    )


def claimed_stream(tmp_path) -> ArchiveStream:
    archive_format.claim(DEFAULT_ENV, str(tmp_path / "archive"), DB)
    return ArchiveStream(DEFAULT_ENV, str(tmp_path / "archive"), DB, SIGNATURE)


def stream_logs(stream: LogStream) -> str:
    return stream._logs_dir


def events(tmp_path, name: str) -> list[dict]:
    path = tmp_path / EVENTS_FILE
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [e for e in lines if e["event"] == name]


def archived_dir(tmp_path) -> str:
    return archive_format.stream_dir(str(tmp_path / "archive"), SIGNATURE)


# -- the archive's steps -----------------------------------------------------------------


def test_every_closed_generation_is_archived_byte_for_byte_and_chains(log, tmp_path):
    fill(log, 3)
    archiver = make_archiver(log, tmp_path)
    assert archiver.step() is True
    assert archiver.archived_through == log.current_generation - 1
    stream_dir = archived_dir(tmp_path)
    assert list_generations(DEFAULT_ENV, stream_dir) == [1, 2, 3]
    for generation in (1, 2, 3):
        local = generation_path(stream_logs(log), generation)
        assert file_crc(DEFAULT_ENV, local) == file_crc(
            DEFAULT_ENV, generation_path(stream_dir, generation)
        )
    # The archive alone reads as one verified stream: headers, records and chain.
    records = list(LogReader(DEFAULT_ENV, stream_dir).records(0, all_closed=True))
    assert records
    assert [e["generation"] for e in events(tmp_path, "log-archived")] == [1, 2, 3]
    assert os.listdir(archive_format.incoming_dir(str(tmp_path / "archive"), SIGNATURE)) == []


def test_a_backlog_goes_one_generation_a_step_when_limited(log, tmp_path):
    fill(log, 3)
    archiver = make_archiver(log, tmp_path)
    for expected in (1, 2, 3):
        assert archiver.step(limit=1) is True
        assert archiver.archived_through == expected
        assert archiver.behind is (expected < 3)
    assert archiver.step(limit=1) is False and archiver.behind is False


def test_the_open_generation_waits_until_it_is_closed(log, tmp_path):
    log.append(b"only record")
    log.sync()
    archiver = make_archiver(log, tmp_path)
    assert archiver.step() is False
    assert archiver.archived_through == 0
    log.roll()
    assert archiver.step() is True
    assert archiver.archived_through == 1


def test_a_new_archiver_resumes_after_what_the_archive_holds(log, tmp_path):
    fill(log, 2)
    make_archiver(log, tmp_path).step()
    fill(log, 1)
    successor = make_archiver(log, tmp_path)
    successor.open()
    assert successor.archived_through == 2
    successor.step()
    assert successor.archived_through == 3
    assert [e["generation"] for e in events(tmp_path, "log-archived")] == [1, 2, 3]


def test_a_copy_already_archived_before_a_kill_is_adopted_when_identical(log, tmp_path):
    fill(log, 1)
    stream = claimed_stream(tmp_path)
    stream.add(stream_logs(log), 1, None)  # archived; the kill came before it was reported
    archiver = make_archiver(log, tmp_path)
    archiver.archived_through = 0  # as the log writer still believes
    archiver.stream = stream
    assert archiver.step() is True
    assert archiver.archived_through == 1 and archiver.failures == 0


def test_an_archived_copy_that_differs_is_refused_and_left_alone(log, tmp_path):
    fill(log, 1)
    stream = claimed_stream(tmp_path)
    stream.add(stream_logs(log), 1, None)
    final = generation_path(stream.path, 1)
    with open(final, "r+b") as f:
        f.seek(RECORDS_START + 40)
        f.write(b"\xff")
    before = file_crc(DEFAULT_ENV, final)
    with pytest.raises(JetError) as caught:
        stream.add(stream_logs(log), 1, None)
    assert caught.value.err == -590
    assert final in caught.value.message
    assert file_crc(DEFAULT_ENV, final) == before


def test_a_generation_damaged_in_the_local_log_is_not_archived(log, tmp_path):
    fill(log, 2)
    damaged = generation_path(stream_logs(log), 2)
    with open(damaged, "r+b") as f:
        f.seek(RECORDS_START + 100)
        f.write(b"\x55\xaa")
    clock = Clock()
    archiver = make_archiver(log, tmp_path, clock)
    assert archiver.step() is True  # generation 1 went
    assert archiver.archived_through == 1
    failure = archiver.last_failure
    assert failure["err"] == -612 and damaged in failure["message"]
    assert failure["generation"] == 2
    assert not os.path.exists(generation_path(archived_dir(tmp_path), 2))
    assert [e["error"]["err"] for e in events(tmp_path, "archive-failed")] == [-612]


def test_a_failing_archive_is_retried_with_backoff_and_loud_every_time(log, tmp_path):
    fill(log, 1)
    clock = Clock()
    archiver = make_archiver(log, tmp_path, clock)
    archiver.open()
    stream_dir = archived_dir(tmp_path)
    os.rename(stream_dir, stream_dir + ".away")  # copies fail: no such directory
    for attempt, delay in enumerate(BACKOFF[:3], start=1):
        archiver.step()
        assert archiver.failures == attempt
        assert archiver.last_failure["retry_in_s"] == delay
        clock.now += delay / 2
        assert archiver.step() is False  # not before its time
        assert archiver.failures == attempt
        clock.now += delay / 2
    assert len(events(tmp_path, "archive-failed")) == 3
    assert archiver.status()["failing"] is True
    assert archiver.status()["lag_generations"] == 1
    os.rename(stream_dir + ".away", stream_dir)
    assert archiver.step() is True
    assert archiver.archived_through == 1
    status = archiver.status()
    assert status["failing"] is False and status["lag_generations"] == 0
    assert status["last_failure"]["attempts"] == 3  # what went wrong stays visible
    assert events(tmp_path, "archive-recovered")


def test_a_vanished_archive_is_not_recreated(log, tmp_path):
    fill(log, 1)
    archiver = make_archiver(log, tmp_path)
    archiver.step()
    archive = str(tmp_path / "archive")
    subprocess.run(["rm", "-rf", archive], check=True)
    fill(log, 1)
    assert archiver.step() is False
    assert archiver.last_failure["err"] == -1811
    assert archive in archiver.last_failure["message"]
    assert not os.path.exists(archive)


def test_a_restarted_archiver_does_not_recreate_a_vanished_archive(log, tmp_path):
    fill(log, 1)
    make_archiver(log, tmp_path).step()
    archive = str(tmp_path / "archive")
    os.rename(archive, archive + ".unmounted")
    successor = make_archiver(log, tmp_path, claimed=False)  # after a kill -9
    assert successor.step() is False
    assert successor.last_failure["err"] == -1811 and archive in successor.last_failure["message"]
    assert not os.path.exists(archive)


def test_another_copy_of_the_database_archiving_into_the_stream_is_refused(log, tmp_path):
    """A copied instance directory (or a VM snapshot rolled back) writes the same stream
    on: its generations carry the same numbers and differ."""
    fill(log, 3)
    make_archiver(log, tmp_path).step()
    copy = LogStream.create(
        DEFAULT_ENV, str(tmp_path / "copy"), log_file_size=SIZE, signature=SIGNATURE
    )
    fill(copy, 3)
    other = Archiver(
        DEFAULT_ENV,
        str(tmp_path / "copy"),
        str(tmp_path / "archive"),
        db_signature=DB,
        log_signature=SIGNATURE,
        events=EventLog(str(tmp_path)),
        clock=Clock(),
    )
    assert other.step() is False
    assert other.archived_through == 0  # nothing of its log counts as archived
    assert other.last_failure["err"] == -590
    assert "another copy of this database" in other.last_failure["message"]
    copy.close()


def test_an_archive_identity_is_never_replaced_by_a_second_claim(tmp_path):
    archive = str(tmp_path / "archive")
    archive_format.claim(DEFAULT_ENV, archive, DB)
    archive_format._publish_identity(DEFAULT_ENV, archive, bytes(16))  # a claim that lost
    assert archive_format.read_identity(archive)["db_signature"] == DB.hex()
    assert os.listdir(archive) == [archive_format.IDENTITY_FILE]


def test_the_instance_remembers_its_archive_and_moves_with_it(tmp_path):
    instance, first, second = (str(tmp_path / name) for name in ("db", "first", "second"))
    os.mkdir(instance)
    identity = archive_format.claim(DEFAULT_ENV, first, DB, instance=instance)
    remembered = archive_format.read_archived_to(instance)
    assert remembered["archive"] == os.path.realpath(first)
    assert remembered["created_ns"] == identity["created_ns"]
    archive_format.claim(DEFAULT_ENV, second, DB, instance=instance)  # another path: new
    assert archive_format.read_archived_to(instance)["archive"] == os.path.realpath(second)


def test_a_damaged_archive_record_is_no_record(tmp_path):
    instance, archive = tmp_path / "db", str(tmp_path / "archive")
    instance.mkdir()
    (instance / archive_format.ARCHIVED_TO).write_text(
        json.dumps({"format": 1, "archive": os.path.realpath(archive), "crc32c": 0})
    )
    archive_format.claim(DEFAULT_ENV, archive, DB, instance=str(instance))
    assert archive_format.read_identity(archive)["db_signature"] == DB.hex()


def test_an_archive_of_another_database_is_refused(log, tmp_path):
    archive = str(tmp_path / "archive")
    archive_format.claim(DEFAULT_ENV, archive, bytes(16))
    fill(log, 1)
    archiver = make_archiver(log, tmp_path, claimed=False)
    with pytest.raises(JetError) as caught:
        archiver.open()
    assert caught.value.err == -555
    assert archive_format.IDENTITY_FILE in caught.value.message
    assert archive_format.streams(archive) == []


def test_a_damaged_archive_identity_is_refused(tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / archive_format.IDENTITY_FILE).write_text('{"format": 1}')
    with pytest.raises(JetError) as caught:
        archive_format.claim(DEFAULT_ENV, str(archive), DB)
    assert caught.value.err == -555


def test_an_archive_whose_parent_is_missing_is_refused(tmp_path):
    with pytest.raises(JetError) as caught:
        archive_format.claim(DEFAULT_ENV, str(tmp_path / "no" / "archive"), DB)
    assert caught.value.err == -1023


def test_generations_gone_before_they_were_archived_are_a_recorded_gap(log, tmp_path):
    fill(log, 1)
    archiver = make_archiver(log, tmp_path)
    archiver.step()  # generation 1
    fill(log, 3)
    log.truncate_below(4)  # 2 and 3 went unarchived (the local-log limit let go)
    assert archiver.step() is True
    assert list_generations(DEFAULT_ENV, archived_dir(tmp_path)) == [1, 4]
    (gap,) = events(tmp_path, "archive-gap")
    assert gap["missing"] == [2, 3]


def test_a_generation_that_does_not_chain_on_is_refused(log, tmp_path):
    fill(log, 2)
    archiver = make_archiver(log, tmp_path)
    archiver.step()
    previous = dict(archiver.previous, final_checksum=archiver.previous["final_checksum"] ^ 1)
    fill(log, 1)
    with pytest.raises(JetError) as caught:
        archiver.stream.add(stream_logs(log), 3, previous)
    assert caught.value.err == -590
    assert generation_file_name(3) in caught.value.message


def test_older_generations_of_another_stream_are_left_to_it(tmp_path):
    logs = str(tmp_path / "logs")
    old = LogStream.create(DEFAULT_ENV, logs, log_file_size=SIZE, signature=bytes(16))
    fill(old, 2)
    first = old.current_generation + 1
    old.close()
    new = LogStream.create(
        DEFAULT_ENV, logs, log_file_size=SIZE, signature=SIGNATURE, first_generation=first
    )
    fill(new, 1)
    archiver = make_archiver(new, tmp_path)
    archiver.step()
    assert list_generations(DEFAULT_ENV, archived_dir(tmp_path)) == [first]
    new.close()


# -- a full disk under the archive ---------------------------------------------------------


def test_a_full_archive_disk_fails_loudly_and_loses_nothing(log, tmp_path, small_disk):
    fill(log, 2)
    archive = str(small_disk / "archive")
    archiver = make_archiver(log, tmp_path, archive=archive)
    archiver.open()
    filler = small_disk / "filler"
    with open(filler, "wb") as f:  # leave less than one generation free
        while os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize > SIZE // 2:
            f.write(bytes(4096))
    archiver.step()
    assert archiver.last_failure["err"] in (-1808, -1811) or "space" in str(archiver.last_failure)
    assert archiver.archived_through == 0
    assert list_generations(DEFAULT_ENV, stream_logs(log))[:2] == [1, 2]  # still local
    assert list_generations(DEFAULT_ENV, archive_format.stream_dir(archive, SIGNATURE)) == []
    filler.unlink()
    archiver.retry_at = 0.0
    assert archiver.step() is True
    assert archiver.archived_through == 2


def test_a_read_only_archive_fails_loudly_and_loses_nothing(log, tmp_path, small_disk):
    fill(log, 1)
    archive = str(small_disk / "archive")
    archiver = make_archiver(log, tmp_path, archive=archive)
    archiver.open()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        archiver.step()
        failure = archiver.last_failure
        assert failure is not None and failure["generation"] == 1
        assert archive in failure["message"]
        assert archiver.archived_through == 0
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    archiver.retry_at = 0.0
    assert archiver.step() is True


# -- the log writer's side -------------------------------------------------------------------


def test_unarchived_generations_are_a_pin_in_circular_logging_too(tmp_path):
    logs = str(tmp_path / "logs")
    stream = LogStream.create(
        DEFAULT_ENV, logs, log_file_size=SIZE, signature=SIGNATURE, circular=True
    )
    keeper = LogKeeper(stream, 0, archiving=ArchivePolicy())
    fill(stream, 3)
    keeper.checkpointed(make_lsn(stream.current_generation, RECORDS_START))
    assert list_generations(DEFAULT_ENV, logs)[0] == 1  # nothing archived: all kept
    keeper.archived(2)
    assert list_generations(DEFAULT_ENV, logs)[0] == 3
    # A backup's truncation may not take what the archive has not taken either.
    assert keeper.truncate(stream.current_generation) == []
    stream.close()


@pytest.mark.parametrize("holder", ["archive", "backup pin"])
def test_a_circular_roll_keeps_what_the_archive_or_a_pin_still_needs(tmp_path, holder):
    logs = str(tmp_path / "logs")
    stream = LogStream.create(
        DEFAULT_ENV, logs, log_file_size=SIZE, signature=SIGNATURE, circular=True
    )
    archiving = ArchivePolicy() if holder == "archive" else None
    keeper = LogKeeper(stream, 0, archiving=archiving)
    if holder == "backup pin":
        keeper.pin(1)
    fill(stream, 2)
    keeper.checkpoint_lsn = make_lsn(stream.current_generation, RECORDS_START)
    keeper.roll()  # a backup's or archive_timeout's
    assert list_generations(DEFAULT_ENV, logs)[0] == 1
    stream.close()


def test_truncation_after_a_backup_stops_at_the_archive(log):
    keeper = LogKeeper(log, 0, archiving=ArchivePolicy())
    fill(log, 4)
    checkpoint = make_lsn(log.current_generation, RECORDS_START)
    keeper.archived(2)
    assert keeper.truncate(log.current_generation, checkpoint) == [1, 2]
    keeper.archived(4)
    assert keeper.truncate(log.current_generation, checkpoint) == [3, 4]


def test_past_the_local_log_limit_the_archive_lets_go_and_says_so(log, tmp_path):
    events_log = EventLog(str(tmp_path))
    keeper = LogKeeper(log, 0, archiving=ArchivePolicy(max_lag_bytes=2 * SIZE), events=events_log)
    fill(log, 2)
    checkpoint = make_lsn(log.current_generation, RECORDS_START)
    assert keeper.truncate(log.current_generation, checkpoint) == []  # within the limit
    fill(log, 2)
    checkpoint = make_lsn(log.current_generation, RECORDS_START)
    assert keeper.truncate(log.current_generation, checkpoint) == [1, 2, 3, 4]
    (released,) = events(tmp_path, "archive-lag-limit")
    assert released["unarchived_from"] == 1 and released["max_lag_bytes"] == 2 * SIZE
    # What is left is within the limit again: the pin holds from the oldest generation on.
    assert keeper.status()["archive_pin_released"] is False
    (restored,) = events(tmp_path, "archive-pin-restored")
    assert restored["unarchived_from"] == 5
    fill(log, 1)
    checkpoint = make_lsn(log.current_generation, RECORDS_START)
    assert keeper.truncate(log.current_generation, checkpoint) == []


def test_archive_timeout_rolls_a_generation_holding_records_once_it_is_due(log):
    clock = Clock()
    keeper = LogKeeper(log, 0, archiving=ArchivePolicy(timeout=5.0), clock=clock)
    assert keeper.seconds_to_roll() == 5.0
    clock.now += 5.0
    assert keeper.roll_if_due() is None  # nothing committed: an idle log stays
    log.append(b"a commit")
    log.sync()
    clock.now += 0.5
    assert keeper.roll_if_due() == 2
    assert keeper.seconds_to_roll() == 5.0  # the new generation's own timer
    clock.now += 4.9
    log.append(b"another")
    log.sync()
    assert keeper.roll_if_due() is None
    clock.now += 0.1
    assert keeper.roll_if_due() == 3


def test_without_archive_timeout_nothing_is_rolled(log):
    keeper = LogKeeper(log, 0, archiving=ArchivePolicy())
    log.append(b"a commit")
    assert keeper.seconds_to_roll() is None and keeper.roll_if_due() is None

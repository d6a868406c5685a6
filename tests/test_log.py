"""Log generations: format, writer, verifying reader, crash behaviour and dump_log.

One named test per corruption case (LevelDB log_test.cc style); each checks the ESE error
number and that the message names the file and the offset.  The crash tests follow SQLite's
crash loop: run a workload that crashes at the Nth write (or sync) for every N, then check
what a reader recovers.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import random
import shutil
import struct
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jetstore.engine.errors import JetError
from jetstore.engine.faults import FaultEnv, SimulatedCrash
from jetstore.engine.fileio import DEFAULT_ENV, Env, io_error
from jetstore.engine.log_format import (
    EOG_RECORD_SIZE,
    FLAG_CIRCULAR_EVER,
    FLAG_CIRCULAR_NOW,
    FORMAT_VERSION,
    HEADER_SIZE,
    MAGIC,
    RECORD_HEADER_SIZE,
    RECORDS_START,
    SYNCED_PAYLOAD,
    LogHeader,
    format_lsn,
    generation_file_name,
    lsn_gen,
    lsn_offset,
    make_lsn,
    parse_generation_file_name,
    unpack_header,
)
from jetstore.engine.log_reader import LogReader, dump_log
from jetstore.engine.log_stream import LogStream

SIGNATURE = bytes(range(16))
SIZE = 16 * 1024  # small generations: a few dozen records each, many generations per test

SYNCED_RECORD_SIZE = RECORD_HEADER_SIZE + SYNCED_PAYLOAD.size


def payload(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def gen_path(logs_dir: str, generation: int) -> str:
    return os.path.join(logs_dir, generation_file_name(generation))


def write_log(
    logs_dir: str, payloads: list[bytes], *, env: Env = DEFAULT_ENV, size: int = SIZE, **kw
) -> list[int]:
    """A closed-and-synced stream holding ``payloads``; the LSN of each."""
    stream = LogStream.create(env, logs_dir, log_file_size=size, signature=SIGNATURE, **kw)
    lsns = [stream.append(p).lsn for p in payloads]
    stream.sync()
    stream.close()
    return lsns


def read_all(logs_dir: str, **kw) -> list[bytes]:
    return [record.payload for record in LogReader(DEFAULT_ENV, logs_dir).records(0, **kw)]


@pytest.fixture
def four_generations(tmp_path) -> tuple[str, list[bytes]]:
    """A log of small records over at least four generations, all synced."""
    logs_dir = str(tmp_path / "logs")
    payloads = [payload(i, 300 + 37 * i % 1200) for i in range(60)]
    write_log(logs_dir, payloads)
    assert LogReader(DEFAULT_ENV, logs_dir).generations()[-1] >= 4
    return logs_dir, payloads


def flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x10]))


def rewrite_header(path: str, **changes) -> None:
    """Change header fields and rewrite the header with a valid crc: only the chain is broken."""
    with open(path, "r+b") as f:
        header = unpack_header(f.read(HEADER_SIZE), path)
        f.seek(0)
        f.write(dataclasses.replace(header, **changes).pack())


def assert_error(excinfo: pytest.ExceptionInfo, err: int, path: str, offset: int) -> None:
    exc = excinfo.value
    assert exc.err == err, exc
    assert path in exc.message, exc
    assert f"offset {offset}" in exc.message, exc


def records_within(logs_dir: str, generation: int) -> list:
    """The records that begin and end in ``generation``."""
    return [
        r
        for r in LogReader(DEFAULT_ENV, logs_dir).records(0)
        if lsn_gen(r.lsn) == lsn_gen(r.end_lsn) == generation
    ]


# -- format ------------------------------------------------------------------------------------


def test_lsn_packing_and_file_names():
    lsn = make_lsn(0x1234, 0x5678)
    assert lsn == (0x1234 << 32) | 0x5678
    assert (lsn_gen(lsn), lsn_offset(lsn)) == (0x1234, 0x5678)
    assert format_lsn(lsn) == "(0x1234,0x5678)"
    assert make_lsn(1, SIZE) < make_lsn(2, RECORDS_START)
    assert generation_file_name(0xAB) == "jet000000AB.log"
    assert parse_generation_file_name("jet000000AB.log") == 0xAB
    for other in ("jettmp.log", "jet000000ab.log", "jet00000000.log", "jet0000000A.logx"):
        assert parse_generation_file_name(other) is None


def test_header_fields_sit_at_documented_offsets():
    header = LogHeader(1, 6, 7, SIGNATURE, 11, 12, 13, SIZE, 0xDEADBEEF)
    block = header.pack()
    assert len(block) == HEADER_SIZE and block[:8] == MAGIC
    assert struct.unpack_from("<IIQ", block, 8) == (1, 6, 7)
    assert block[24:40] == SIGNATURE
    assert struct.unpack_from("<QQQQI", block, 40) == (11, 12, 13, SIZE, 0xDEADBEEF)
    assert block[80:] == bytes(HEADER_SIZE - 80)
    assert unpack_header(block, "p") == dataclasses.replace(header, path="p")


# -- writing and reading -------------------------------------------------------------------------


def test_roundtrip_random_sizes_with_fragmentation_across_generations(tmp_path):
    logs_dir = str(tmp_path / "logs")
    rng = random.Random(7)
    size = 64 * 1024
    sizes = [rng.choice([0, 1, rng.randrange(4000), rng.randrange(3 * size)]) for _ in range(120)]
    payloads = [payload(i, n) for i, n in enumerate(sizes)]
    lsns = write_log(logs_dir, payloads, size=size)
    reader = LogReader(DEFAULT_ENV, logs_dir)
    records = list(reader.records(0))
    assert [r.payload for r in records] == payloads
    assert [r.lsn for r in records] == lsns
    assert all(a.end_lsn <= b.lsn for a, b in zip(records, records[1:], strict=False))
    assert any(lsn_gen(r.end_lsn) - lsn_gen(r.lsn) >= 2 for r in records)  # spans generations
    assert reader.end_lsn == records[-1].end_lsn and not reader.torn
    for generation in reader.generations():
        assert os.path.getsize(gen_path(logs_dir, generation)) == size
    # Starting in the middle yields the records from that LSN on, whole.
    middle = records[len(records) // 2].lsn
    assert read_all_from(logs_dir, middle) == payloads[len(payloads) // 2 :]


def read_all_from(logs_dir: str, start_lsn: int) -> list[bytes]:
    return [r.payload for r in LogReader(DEFAULT_ENV, logs_dir).records(start_lsn)]


def test_append_fills_generation_exactly_and_keeps_room_for_end_of_generation(tmp_path):
    logs_dir = str(tmp_path / "logs")
    stream = LogStream.create(DEFAULT_ENV, logs_dir, log_file_size=SIZE, signature=SIGNATURE)
    room = SIZE - EOG_RECORD_SIZE - RECORDS_START - RECORD_HEADER_SIZE
    assert stream.append(payload(1, room - RECORD_HEADER_SIZE)).lsn == make_lsn(1, RECORDS_START)
    assert stream.append(b"").lsn == make_lsn(1, SIZE - EOG_RECORD_SIZE - RECORD_HEADER_SIZE)
    assert stream.end_lsn == make_lsn(1, SIZE - EOG_RECORD_SIZE)
    assert stream.append(b"x").lsn == make_lsn(2, RECORDS_START)  # no room left: rolled first
    assert stream.sync() == stream.end_lsn == stream.durable_lsn
    stream.close()
    assert read_all(logs_dir) == [payload(1, room - RECORD_HEADER_SIZE), b"", b"x"]
    assert LogReader(DEFAULT_ENV, logs_dir).verify_generation(1)["closed"]


def test_sync_reports_durable_lsn(tmp_path):
    stream = LogStream.create(
        DEFAULT_ENV, str(tmp_path / "logs"), log_file_size=SIZE, signature=SIGNATURE
    )
    before = stream.durable_lsn
    stream.append(b"abc")
    assert stream.durable_lsn == before and stream.end_lsn > before
    assert stream.sync() == stream.end_lsn == stream.durable_lsn
    stream.close()


def test_roll_chains_generation_headers(tmp_path):
    logs_dir = str(tmp_path / "logs")
    stream = LogStream.create(
        DEFAULT_ENV, logs_dir, log_file_size=SIZE, signature=SIGNATURE, checkpoint_lsn=5
    )
    stream.append(b"one")
    checkpoint = make_lsn(1, RECORDS_START)
    assert stream.roll(checkpoint_lsn=checkpoint) == 2 == stream.current_generation
    assert stream.end_lsn == stream.durable_lsn == make_lsn(2, RECORDS_START)
    stream.append(b"two")
    assert stream.roll() == 3
    stream.close()
    reader = LogReader(DEFAULT_ENV, logs_dir)
    first, second, third = (reader.read_header(g) for g in (1, 2, 3))
    assert first.prev_create_time_ns == 0 and first.prev_final_checksum == 0
    assert first.checkpoint_lsn == 5 and second.checkpoint_lsn == third.checkpoint_lsn == checkpoint
    assert second.prev_create_time_ns == first.create_time_ns < second.create_time_ns
    assert third.prev_create_time_ns == second.create_time_ns
    closed = reader.verify_generation(1)
    assert closed["closed"] and closed["records"] == closed["fragments"] == 1
    assert second.prev_final_checksum == closed["final_checksum"]
    assert third.prev_final_checksum == reader.verify_generation(2)["final_checksum"]
    assert {h.signature for h in (first, second, third)} == {SIGNATURE}
    assert not first.circular_now and not first.circular_ever
    assert read_all(logs_dir) == [b"one", b"two"]


def test_create_refuses_a_directory_that_holds_a_stream(four_generations):
    logs_dir, _ = four_generations
    with pytest.raises(JetError) as excinfo:
        LogStream.create(DEFAULT_ENV, logs_dir, log_file_size=SIZE, signature=SIGNATURE)
    assert excinfo.value.name == "JET_errInvalidLogDirectory"


@pytest.mark.parametrize(
    "size, signature", [(SIZE + 1, SIGNATURE), (4096, SIGNATURE), (SIZE, b"short")]
)
def test_bad_stream_parameters(tmp_path, size, signature):
    with pytest.raises(JetError) as excinfo:
        LogStream.create(DEFAULT_ENV, str(tmp_path), log_file_size=size, signature=signature)
    assert excinfo.value.name == "JET_errInvalidParameter"


def test_open_continues_the_stream(four_generations):
    logs_dir, payloads = four_generations
    reader = LogReader(DEFAULT_ENV, logs_dir, signature=SIGNATURE)
    list(reader.records(0))
    stream = LogStream.open(
        DEFAULT_ENV,
        logs_dir,
        log_file_size=SIZE,
        signature=SIGNATURE,
        circular=True,
        end_lsn=reader.end_lsn,
    )
    # After the reopen's fdatasync, the first append is preceded by a SYNCED record.
    assert stream.append(b"more").lsn == reader.end_lsn + SYNCED_RECORD_SIZE
    stream.roll()
    stream.close()
    assert read_all(logs_dir) == [*payloads, b"more"]
    newest = LogReader(DEFAULT_ENV, logs_dir).read_header(stream.current_generation)
    assert newest.flags == FLAG_CIRCULAR_NOW | FLAG_CIRCULAR_EVER


def test_open_checks_its_arguments_against_the_log(four_generations):
    logs_dir, _ = four_generations
    reader = LogReader(DEFAULT_ENV, logs_dir)
    list(reader.records(0))
    end = reader.end_lsn
    cases = [
        (dict(end_lsn=end - 1), "JET_errInvalidParameter"),
        (dict(end_lsn=make_lsn(1, RECORDS_START)), "JET_errInvalidParameter"),
        (dict(end_lsn=end, signature=bytes(16)), "JET_errBadLogSignature"),
        (dict(end_lsn=end, log_file_size=2 * SIZE), "JET_errLogFileSizeMismatch"),
    ]
    for changes, name in cases:
        arguments = dict(log_file_size=SIZE, signature=SIGNATURE, circular=False) | changes
        with pytest.raises(JetError) as excinfo:
            LogStream.open(DEFAULT_ENV, logs_dir, **arguments)
        assert excinfo.value.name == name


def test_open_after_a_crash_during_roll_starts_the_next_generation(four_generations):
    logs_dir, payloads = four_generations
    stream_end = LogReader(DEFAULT_ENV, logs_dir).generations()[-1]
    # The state a crash leaves between END_OF_GENERATION + fdatasync and the new file's rename:
    # the last generation is closed, and a half-built jettmp.log lies around.
    reader = LogReader(DEFAULT_ENV, logs_dir)
    list(reader.records(0))
    stream = LogStream.open(
        DEFAULT_ENV,
        logs_dir,
        log_file_size=SIZE,
        signature=SIGNATURE,
        circular=False,
        end_lsn=reader.end_lsn,
    )
    stream.roll()
    stream.close()
    os.remove(gen_path(logs_dir, stream_end + 1))
    with open(os.path.join(logs_dir, "jettmp.log"), "wb") as f:
        f.write(b"half")
    reader = LogReader(DEFAULT_ENV, logs_dir)
    list(reader.records(0))
    assert reader.verified[-1]["closed"]
    stream = LogStream.open(
        DEFAULT_ENV,
        logs_dir,
        log_file_size=SIZE,
        signature=SIGNATURE,
        circular=False,
        end_lsn=reader.end_lsn,
    )
    assert stream.current_generation == stream_end + 1
    assert not os.path.exists(os.path.join(logs_dir, "jettmp.log"))
    stream.append(b"after")
    stream.sync()
    stream.close()
    assert read_all(logs_dir) == [*payloads, b"after"]


# -- truncation and circular logging -------------------------------------------------------------


def rolled_stream(logs_dir: str, generations: int, *, env: Env = DEFAULT_ENV, **kw) -> LogStream:
    stream = LogStream.create(env, logs_dir, log_file_size=SIZE, signature=SIGNATURE, **kw)
    while stream.current_generation < generations:
        stream.append(b"record in %d" % stream.current_generation)
        stream.roll()
    return stream


def test_truncate_below_deletes_oldest_first_and_never_the_current(tmp_path):
    logs_dir = str(tmp_path / "logs")
    stream = rolled_stream(logs_dir, 6)
    assert stream.truncate_below(4) == [1, 2, 3]
    assert stream.oldest_generation == 4
    assert stream.truncate_below(100) == [4, 5]
    assert stream.truncate_below(100) == []
    assert LogReader(DEFAULT_ENV, logs_dir).generations() == [6]
    stream.append(b"still writing")
    stream.sync()
    stream.close()
    assert read_all(logs_dir) == [b"still writing"]


class FailingRemoveEnv(Env):
    """Deleting generation 2 fails with ``errno_code``; ENOENT: someone else deleted it first."""

    def __init__(self, errno_code: int) -> None:
        self.errno_code = errno_code

    def remove(self, path: str) -> None:
        if path.endswith(generation_file_name(2)):
            if self.errno_code == errno.ENOENT:
                os.remove(path)
            raise io_error(OSError(self.errno_code, os.strerror(self.errno_code)), path)
        super().remove(path)


def test_truncate_below_stops_at_the_first_failure_so_the_log_stays_contiguous(tmp_path):
    logs_dir = str(tmp_path / "logs")
    env = FailingRemoveEnv(errno.EACCES)
    stream = rolled_stream(logs_dir, 5, env=env)
    with pytest.raises(JetError) as excinfo:
        stream.truncate_below(5)
    assert excinfo.value.name == "JET_errFileAccessDenied"
    assert gen_path(logs_dir, 2) in excinfo.value.message
    assert LogReader(DEFAULT_ENV, logs_dir).generations() == [2, 3, 4, 5]
    stream.close()


def test_truncate_below_skips_a_file_already_gone(tmp_path):
    logs_dir = str(tmp_path / "logs")
    stream = rolled_stream(logs_dir, 5, env=FailingRemoveEnv(errno.ENOENT))
    assert stream.truncate_below(5) == [1, 3, 4]
    stream.close()


def test_circular_roll_deletes_below_the_checkpoint_generation(tmp_path):
    logs_dir = str(tmp_path / "logs")
    stream = rolled_stream(logs_dir, 5, circular=True)  # rolls without a checkpoint keep all
    assert stream.oldest_generation == 1
    assert stream.roll(checkpoint_lsn=make_lsn(4, RECORDS_START)) == 6
    assert LogReader(DEFAULT_ENV, logs_dir).generations() == [4, 5, 6]
    flags = LogReader(DEFAULT_ENV, logs_dir).read_header(6).flags
    assert flags == FLAG_CIRCULAR_NOW | FLAG_CIRCULAR_EVER
    # A backup's pin (floor_gen) holds generations the checkpoint no longer needs.
    stream.roll(checkpoint_lsn=make_lsn(7, RECORDS_START), floor_gen=5)
    assert stream.oldest_generation == 5
    stream.roll(checkpoint_lsn=make_lsn(8, RECORDS_START))
    assert LogReader(DEFAULT_ENV, logs_dir).generations() == [8]
    stream.close()
    assert read_all(logs_dir) == []


def test_non_circular_roll_deletes_nothing(tmp_path):
    logs_dir = str(tmp_path / "logs")
    stream = rolled_stream(logs_dir, 3)
    stream.roll(checkpoint_lsn=make_lsn(3, RECORDS_START))
    assert stream.oldest_generation == 1
    stream.close()


# -- corruption, one named test per case ---------------------------------------------------------


def test_flipped_bit_in_closed_generation_is_corruption(four_generations):
    logs_dir, _ = four_generations
    record = records_within(logs_dir, 2)[1]
    path, offset = gen_path(logs_dir, 2), lsn_offset(record.lsn)
    flip_byte(path, offset + RECORD_HEADER_SIZE + 3)
    for context, err in (("replay", -501), ("backup", -612)):
        with pytest.raises(JetError) as excinfo:
            list(LogReader(DEFAULT_ENV, logs_dir).records(0, context=context))
        assert_error(excinfo, err, path, offset)
        assert "checksum" in excinfo.value.message


def test_flipped_bit_in_header_is_corruption(four_generations):
    logs_dir, _ = four_generations
    path = gen_path(logs_dir, 3)
    flip_byte(path, 44)  # inside create_time_ns
    with pytest.raises(JetError) as excinfo:
        LogReader(DEFAULT_ENV, logs_dir).read_header(3)
    assert_error(excinfo, -501, path, 76)
    with pytest.raises(JetError) as excinfo:
        list(LogReader(DEFAULT_ENV, logs_dir).records(0, context="backup"))
    assert_error(excinfo, -612, path, 76)


def test_unknown_format_version(four_generations):
    logs_dir, _ = four_generations
    path = gen_path(logs_dir, 2)
    rewrite_header(path, version=FORMAT_VERSION + 1)
    with pytest.raises(JetError) as excinfo:
        list(LogReader(DEFAULT_ENV, logs_dir).records(0))
    assert_error(excinfo, -514, path, 8)


def test_a_log_of_the_previous_format_is_refused_with_what_to_do(four_generations):
    logs_dir, _ = four_generations
    path = gen_path(logs_dir, 1)
    rewrite_header(path, version=FORMAT_VERSION - 1)
    with pytest.raises(JetError) as excinfo:
        list(LogReader(DEFAULT_ENV, logs_dir).records(0))
    assert_error(excinfo, -514, path, 8)
    assert "an older jetstore wrote it" in excinfo.value.message


def test_file_size_differs_from_header(four_generations):
    logs_dir, _ = four_generations
    path = gen_path(logs_dir, 2)
    with open(path, "r+b") as f:
        f.truncate(SIZE - 4096)
    with pytest.raises(JetError) as excinfo:
        list(LogReader(DEFAULT_ENV, logs_dir).records(0))
    assert_error(excinfo, -541, path, 64)


def test_closed_generation_without_end_of_generation_is_corruption(four_generations):
    logs_dir, _ = four_generations
    path = gen_path(logs_dir, 2)
    eog_offset = lsn_offset(LogReader(DEFAULT_ENV, logs_dir).verify_generation(2)["end_lsn"])
    eog_offset -= EOG_RECORD_SIZE
    with open(path, "r+b") as f:
        f.seek(eog_offset)
        f.write(bytes(EOG_RECORD_SIZE))
    with pytest.raises(JetError) as excinfo:
        list(LogReader(DEFAULT_ENV, logs_dir).records(0))
    assert_error(excinfo, -501, path, eog_offset)
    assert "END_OF_GENERATION" in excinfo.value.message


def test_torn_tail_in_last_generation_ends_replay(four_generations):
    logs_dir, payloads = four_generations
    last = LogReader(DEFAULT_ENV, logs_dir).generations()[-1]
    tail = records_within(logs_dir, last)
    assert len(tail) >= 2
    path, torn_at = gen_path(logs_dir, last), tail[-1].lsn
    # A torn write: the end of the last record never reached the disk, garbage did.
    with open(path, "r+b") as f:
        f.seek(lsn_offset(tail[-1].end_lsn) - 5)
        f.write(b"\xff" * 5)
    reader = LogReader(DEFAULT_ENV, logs_dir)
    assert [r.payload for r in reader.records(0)] == payloads[:-1]
    assert reader.end_lsn == torn_at and reader.torn
    # Reopening zero-fills the tail: the new record replaces the torn one, no garbage stays.
    stream = LogStream.open(
        DEFAULT_ENV,
        logs_dir,
        log_file_size=SIZE,
        signature=SIGNATURE,
        circular=False,
        end_lsn=reader.end_lsn,
    )
    assert stream.append(b"new").lsn == torn_at + SYNCED_RECORD_SIZE
    stream.sync()
    stream.close()
    reader = LogReader(DEFAULT_ENV, logs_dir)
    assert [r.payload for r in reader.records(0)] == [*payloads[:-1], b"new"]
    assert not reader.torn
    with open(path, "rb") as f:
        f.seek(lsn_offset(reader.end_lsn))
        assert f.read() == bytes(SIZE - lsn_offset(reader.end_lsn))


def test_foreign_log_signature(four_generations, tmp_path):
    logs_dir, _ = four_generations
    foreign_dir = str(tmp_path / "foreign")
    stream = LogStream.create(DEFAULT_ENV, foreign_dir, log_file_size=SIZE, signature=b"F" * 16)
    stream.roll()
    stream.close()
    path = gen_path(logs_dir, 2)
    shutil.copyfile(gen_path(foreign_dir, 2), path)
    with pytest.raises(JetError) as excinfo:
        list(LogReader(DEFAULT_ENV, logs_dir).records(0))
    assert_error(excinfo, -530, path, 24)
    with pytest.raises(JetError) as excinfo:
        LogReader(DEFAULT_ENV, logs_dir, signature=b"F" * 16).read_header(1)
    assert_error(excinfo, -530, gen_path(logs_dir, 1), 24)


def test_missing_middle_generation(four_generations):
    logs_dir, _ = four_generations
    path = gen_path(logs_dir, 3)
    os.remove(path)
    with pytest.raises(JetError) as excinfo:
        list(LogReader(DEFAULT_ENV, logs_dir).records(0))
    assert_error(excinfo, -528, path, 0)


def test_missing_start_generation(four_generations):
    logs_dir, payloads = four_generations
    later = [r.payload for r in LogReader(DEFAULT_ENV, logs_dir).records(make_lsn(2, 0))]
    path = gen_path(logs_dir, 1)
    os.remove(path)
    with pytest.raises(JetError) as excinfo:
        list(LogReader(DEFAULT_ENV, logs_dir).records(make_lsn(1, 5000)))
    assert_error(excinfo, -509, path, 5000)
    # From the oldest generation present: what starts there (a continuation is skipped).
    assert read_all(logs_dir) == later and later == payloads[-len(later) :]


def test_generation_number_mismatch(four_generations):
    logs_dir, _ = four_generations
    path = gen_path(logs_dir, 3)
    shutil.copyfile(gen_path(logs_dir, 2), path)
    with pytest.raises(JetError) as excinfo:
        list(LogReader(DEFAULT_ENV, logs_dir).records(0))
    assert_error(excinfo, -513, path, 16)


def test_broken_chain_prev_creation_time(four_generations):
    logs_dir, _ = four_generations
    path = gen_path(logs_dir, 3)
    header = LogReader(DEFAULT_ENV, logs_dir).read_header(3)
    rewrite_header(path, prev_create_time_ns=header.prev_create_time_ns + 1)
    with pytest.raises(JetError) as excinfo:
        list(LogReader(DEFAULT_ENV, logs_dir).records(0))
    assert_error(excinfo, -515, path, 48)


def test_broken_chain_checksum(four_generations):
    logs_dir, _ = four_generations
    path = gen_path(logs_dir, 3)
    header = LogReader(DEFAULT_ENV, logs_dir).read_header(3)
    rewrite_header(path, prev_final_checksum=header.prev_final_checksum ^ 1)
    with pytest.raises(JetError) as excinfo:
        list(LogReader(DEFAULT_ENV, logs_dir).records(0, context="backup"))
    assert_error(excinfo, -590, path, 72)


def test_stale_record_from_recycled_file_is_not_replayed(four_generations):
    logs_dir, payloads = four_generations
    reader = LogReader(DEFAULT_ENV, logs_dir)
    last = reader.generations()[-1]
    closed_before = [r.payload for r in reader.records(0) if lsn_gen(r.end_lsn) < last]
    # The last generation reuses the file of generation 1: its own header, then generation 1's
    # records (valid crcs, generation 1's LSNs) where its own records would follow.
    path = gen_path(logs_dir, last)
    with open(gen_path(logs_dir, 1), "rb") as old:
        stale = old.read()
    with open(path, "r+b") as f:
        f.seek(RECORDS_START)
        f.write(stale[RECORDS_START:])
    reader = LogReader(DEFAULT_ENV, logs_dir)
    replayed = [r.payload for r in reader.records(0)]
    assert replayed == closed_before == payloads[: len(closed_before)]
    assert reader.end_lsn == make_lsn(last, RECORDS_START) and reader.torn
    # In a closed generation the same stale bytes are corruption, reported at the record.
    with open(gen_path(logs_dir, 2), "r+b") as f:
        f.seek(RECORDS_START)
        f.write(stale[RECORDS_START : RECORDS_START + 2000])
    with pytest.raises(JetError) as excinfo:
        list(LogReader(DEFAULT_ENV, logs_dir).records(0))
    assert_error(excinfo, -501, gen_path(logs_dir, 2), RECORDS_START)
    assert format_lsn(make_lsn(1, RECORDS_START)) in excinfo.value.message


def test_unfinished_record_cut_by_a_crash_is_dropped(tmp_path):
    logs_dir = str(tmp_path / "logs")
    env = FaultEnv()
    stream = LogStream.create(env, logs_dir, log_file_size=SIZE, signature=SIGNATURE)
    stream.append(b"kept")
    stream.sync()
    stream.append(payload(1, 3 * SIZE))  # FIRST and MIDDLEs made durable by the rolls
    env.crash()  # its LAST, never synced, is lost
    stream.close()
    reader = LogReader(env, logs_dir)
    assert [r.payload for r in reader.records(0)] == [b"kept"]
    stream = LogStream.open(
        env,
        logs_dir,
        log_file_size=SIZE,
        signature=SIGNATURE,
        circular=False,
        end_lsn=reader.end_lsn,
    )
    stream.append(b"next")
    stream.sync()
    stream.close()
    assert read_all(logs_dir) == [b"kept", b"next"]


def test_unknown_context_is_refused(four_generations):
    logs_dir, _ = four_generations
    with pytest.raises(JetError) as excinfo:
        list(LogReader(DEFAULT_ENV, logs_dir).records(0, context="restore"))
    assert excinfo.value.name == "JET_errInvalidParameter"


# -- dump_log ------------------------------------------------------------------------------------


def test_dump_log_of_a_directory(four_generations):
    logs_dir, payloads = four_generations
    report = dump_log(logs_dir)
    assert report["integrity"] == "ok" and report["error"] is None and report["torn"] is False
    generations = report["generations"]
    assert [g["generation"] for g in generations] == list(range(1, len(generations) + 1))
    assert sum(g["records"] for g in generations) == len(payloads)
    assert all(g["verified"] and g["signature"] == SIGNATURE.hex() for g in generations)
    assert all(g["closed"] for g in generations[:-1]) and not generations[-1]["closed"]
    assert generations[1]["prev_final_checksum"] == generations[0]["final_checksum"]
    assert generations[1]["prev_create_time_ns"] == generations[0]["create_time_ns"]
    assert report["end_lsn"] == generations[-1]["end_lsn"]
    assert {"checkpoint_lsn", "circular_now", "circular_ever", "first_lsn", "last_lsn"} <= set(
        generations[0]
    )


def test_dump_log_of_one_file(four_generations):
    logs_dir, _ = four_generations
    report = dump_log(gen_path(logs_dir, 2))
    assert report["integrity"] == "ok"
    assert [g["generation"] for g in report["generations"]] == [2]


def test_dump_log_reports_corruption_instead_of_raising(four_generations):
    logs_dir, _ = four_generations
    record = records_within(logs_dir, 2)[0]
    flip_byte(gen_path(logs_dir, 2), lsn_offset(record.lsn) + RECORD_HEADER_SIZE)
    report = dump_log(logs_dir)
    assert report["integrity"] == "error"
    assert report["error"]["err"] == -501
    assert report["error"]["name"] == "JET_errLogFileCorrupt"
    assert gen_path(logs_dir, 2) in report["error"]["message"]
    first, second, *rest = report["generations"]
    assert first["verified"] and not second["verified"] and not rest[0]["verified"]
    assert second["create_time_ns"] > 0  # the header alone is still described


def test_dump_log_of_a_path_holding_no_log_raises_rather_than_reporting_damage(
    four_generations, tmp_path
):
    logs_dir, _records = four_generations
    with pytest.raises(JetError) as not_a_log:
        dump_log(os.path.join(logs_dir, "notalog.log"))
    assert not_a_log.value.name == "JET_errInvalidParameter"
    (tmp_path / "empty").mkdir()
    with pytest.raises(JetError) as empty:
        dump_log(str(tmp_path / "empty"))
    assert empty.value.name == "JET_errFileNotFound" and "empty" in empty.value.message


# -- crashes -------------------------------------------------------------------------------------

CRASH_SIZES = [10, 700, 0, 3000, 2 * SIZE, 50, 9000, 1, 400, 5000, 120, 30, 7000, 64, 2500]


class Workload:
    """Appends CRASH_SIZES, syncing every third record and rolling every fifth."""

    def __init__(self) -> None:
        self.appended: list[bytes] = []
        self.acknowledged = 0  # records appended before the last sync() that returned

    def run(self, env: Env, logs_dir: str) -> None:
        stream = None
        try:
            stream = LogStream.create(env, logs_dir, log_file_size=SIZE, signature=SIGNATURE)
            for i, size in enumerate(CRASH_SIZES):
                record = payload(i, size)
                stream.append(record)
                self.appended.append(record)
                if i % 3 == 2:
                    stream.sync()
                    self.acknowledged = len(self.appended)
                if i % 5 == 4:
                    stream.roll()
        finally:
            if stream is not None:
                stream.close()


def check_recovery(env: Env, logs_dir: str, workload: Workload) -> None:
    """A prefix of what was appended, every acknowledged record in it; then appends go on."""
    reader = LogReader(env, logs_dir, signature=SIGNATURE)
    if not reader.generations():
        assert workload.acknowledged == 0
        return
    recovered = [r.payload for r in reader.records(0)]
    assert recovered == workload.appended[: len(recovered)]
    assert len(recovered) >= workload.acknowledged
    stream = LogStream.open(
        env,
        logs_dir,
        log_file_size=SIZE,
        signature=SIGNATURE,
        circular=False,
        end_lsn=reader.end_lsn,
    )
    stream.append(b"after recovery")
    stream.sync()
    stream.close()
    assert read_all(logs_dir) == [*recovered, b"after recovery"]


@pytest.mark.parametrize(
    "mode, seed", [("write", 0), ("sync", 0), ("torn", 1), ("torn", 2), ("torn", 3)]
)
def test_crash_at_every_write_and_sync_recovers_a_prefix(tmp_path, mode, seed):
    """``torn``: the crashing write may be half done, and any unsynced write may survive."""
    crashes = 0
    for n in range(1, 200):
        logs_dir = str(tmp_path / f"{mode}{n}")
        rng = random.Random(n * 1000 + seed) if mode == "torn" else None
        env = FaultEnv(
            crash_at_write=None if mode == "sync" else n,
            crash_at_sync=n if mode == "sync" else None,
            torn_rng=rng,
        )
        workload = Workload()
        try:
            workload.run(env, logs_dir)
        except SimulatedCrash:
            crashes += 1
            env.crash(rng)
            check_recovery(env, logs_dir, workload)
        else:
            break  # n is past the last write (or sync) of the workload
    assert crashes >= 10 and n < 199


# -- model-based ---------------------------------------------------------------------------------

SMALL = 8192  # the smallest generation: 4071 bytes of records, many rolls
operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 200) | st.integers(0, 3 * SMALL)),
        st.sampled_from([("sync",), ("roll",), ("reopen",)]),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_random_operations_match_a_list_model(ops):
    with tempfile.TemporaryDirectory() as tmp:
        logs_dir = os.path.join(tmp, "logs")
        stream = LogStream.create(DEFAULT_ENV, logs_dir, log_file_size=SMALL, signature=SIGNATURE)
        model: list[tuple[int, bytes]] = []
        for i, (op, *args) in enumerate(ops):
            if op == "append":
                record = payload(i, args[0])
                model.append((stream.append(record).lsn, record))
            elif op == "sync":
                assert stream.sync() == stream.end_lsn
            elif op == "roll":
                generation = stream.current_generation
                assert stream.roll() == generation + 1 == stream.current_generation
            else:
                end = stream.sync()  # a clean close: close drops appends not yet synced
                stream.close()
                reader = LogReader(DEFAULT_ENV, logs_dir)
                list(reader.records(0))
                assert reader.end_lsn == end
                stream = LogStream.open(
                    DEFAULT_ENV,
                    logs_dir,
                    log_file_size=SMALL,
                    signature=SIGNATURE,
                    circular=False,
                    end_lsn=end,
                )
        end = stream.sync()
        stream.close()
        reader = LogReader(DEFAULT_ENV, logs_dir)
        assert [(r.lsn, r.payload) for r in reader.records(0)] == model
        assert reader.end_lsn == end and not reader.torn
        assert reader.generations() == list(range(1, lsn_gen(end) + 1))


def test_damage_to_durable_records_of_the_last_generation_is_corruption(tmp_path):
    """A torn write only hurts what was never synced; a flipped bit in a synced record
    followed by the SYNCED record of a later batch is damage, reported, not a short log."""
    logs_dir = str(tmp_path / "logs")
    stream = LogStream.create(DEFAULT_ENV, logs_dir, log_file_size=SIZE, signature=SIGNATURE)
    first = stream.append(b"a" * 100).lsn
    stream.sync()
    stream.append(b"b" * 100)  # after the sync: a SYNCED record precedes it
    stream.sync()
    stream.close()
    path = gen_path(logs_dir, 1)
    damaged = lsn_offset(first) + RECORD_HEADER_SIZE + 10
    with open(path, "r+b") as f:
        f.seek(damaged)
        byte = f.read(1)[0]
        f.seek(damaged)
        f.write(bytes([byte ^ 0x01]))
    with pytest.raises(JetError) as excinfo:
        list(LogReader(DEFAULT_ENV, logs_dir).records(0))
    assert_error(excinfo, -501, path, lsn_offset(first))
    assert "fdatasynced" in excinfo.value.message


def test_a_group_of_appends_is_one_write_and_close_drops_what_was_not_synced(tmp_path):
    logs_dir = str(tmp_path / "logs")
    env = FaultEnv()
    stream = LogStream.create(env, logs_dir, log_file_size=SIZE, signature=SIGNATURE)
    writes_before = env.writes
    for n in range(5):
        stream.append(b"record %d" % n)
    assert env.writes == writes_before  # nothing written until the sync
    stream.sync()
    assert env.writes == writes_before + 1
    stream.append(b"never synced")
    stream.close()
    assert read_all(logs_dir) == [b"record %d" % n for n in range(5)]

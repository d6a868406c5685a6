"""Recovery through the engine: what each kind of log damage does to Storage.open.

The log module's own tests pin the reader's verdicts; these check that the
engine surfaces them (a closed generation is never silently skipped) and that
what recovery does accept - a torn tail - loses only unacknowledged work.
"""

from __future__ import annotations

import os

import pytest

from jetstore.engine.errors import JetError
from jetstore.engine.log_format import generation_file_name
from jetstore.engine.log_reader import list_generations
from jetstore.engine.storage import LOG_DIR, Storage

OPTIONS = {"page_size": 4096, "log_file_size": 64 << 10, "cache_size": 1 << 20}


def crashed_instance(path, commits: int = 400) -> dict[bytes, bytes]:
    """Commits spread over several generations, then a 'crash' (files closed, no checkpoint)."""
    storage = Storage.open(path, auto_checkpoint=False, **OPTIONS)
    storage.create_table("t")
    expected = {}
    for i in range(commits):
        expected[b"%05d" % i] = b"v" * 300
        storage.commit({"t": {b"%05d" % i: b"v" * 300}}, None)
    storage.close_files()
    return expected


def generation_path(path, generation: int) -> str:
    return os.path.join(path, LOG_DIR, generation_file_name(generation))


def generations(path) -> list[int]:
    from jetstore.engine.fileio import DEFAULT_ENV

    return list_generations(DEFAULT_ENV, os.path.join(path, LOG_DIR))


def test_recovery_replays_across_generations(tmp_path):
    expected = crashed_instance(tmp_path)
    assert len(generations(tmp_path)) >= 3
    with Storage.open(tmp_path, **OPTIONS) as s:
        assert dict(s.scan("t")) == expected


def test_flipped_bit_in_closed_generation_fails_recovery(tmp_path):
    crashed_instance(tmp_path)
    victim = generation_path(tmp_path, generations(tmp_path)[1])
    with open(victim, "r+b") as f:
        f.seek(4096 + 200)
        byte = f.read(1)[0]
        f.seek(4096 + 200)
        f.write(bytes([byte ^ 0x10]))
    with pytest.raises(JetError) as e:
        Storage.open(tmp_path, **OPTIONS)
    assert e.value.err == -501 and os.path.basename(victim) in str(e.value)


def test_torn_tail_in_last_generation_loses_only_the_torn_record(tmp_path):
    expected = crashed_instance(tmp_path)
    last = generation_path(tmp_path, generations(tmp_path)[-1])
    with open(last, "r+b") as f:
        data = f.read()
        end = len(data.rstrip(b"\0"))
        f.seek(end - 50)  # garble the tail of the final record
        f.write(b"\xff" * 50)
    with Storage.open(tmp_path, **OPTIONS) as s:
        recovered = dict(s.scan("t"))
        del expected[max(expected)]
        assert recovered == expected
        events = (tmp_path / "events.jsonl").read_text()
        assert '"event": "recovery-torn-tail"' in events  # never shortened silently
        s.commit({"t": {b"after": b"torn"}}, None)
    with Storage.open(tmp_path, **OPTIONS) as s:
        assert s.get("t", b"after") == b"torn"


def test_missing_middle_generation_fails_recovery(tmp_path):
    crashed_instance(tmp_path)
    middle = generations(tmp_path)[1]
    os.remove(generation_path(tmp_path, middle))
    with pytest.raises(JetError) as e:
        Storage.open(tmp_path, **OPTIONS)
    assert e.value.err == -528 and generation_file_name(middle) in str(e.value)


def test_foreign_log_signature_fails_recovery(tmp_path):
    crashed_instance(tmp_path / "a")
    crashed_instance(tmp_path / "b")
    for generation in generations(tmp_path / "a"):
        os.replace(
            generation_path(tmp_path / "b", generation), generation_path(tmp_path / "a", generation)
        )
    with pytest.raises(JetError) as e:
        Storage.open(tmp_path / "a", **OPTIONS)
    assert e.value.err == -530


def test_dirty_database_without_logs_is_an_error(tmp_path):
    crashed_instance(tmp_path)
    for generation in generations(tmp_path):
        os.remove(generation_path(tmp_path, generation))
    with pytest.raises(JetError) as e:
        Storage.open(tmp_path, **OPTIONS)
    assert e.value.err == -543


def test_circular_logging_keeps_only_what_recovery_needs(tmp_path):
    with Storage.open(tmp_path, circular_logging=True, **OPTIONS) as s:
        s.create_table("t")
        for i in range(2000):
            s.commit({"t": {b"%05d" % i: b"v" * 300}}, None)
            if i % 200 == 199:
                s.checkpoint()
                assert generations(tmp_path)[0] == s.log_floor()
        pin = s.pin_checkpoint()
        pinned_floor = s.log_floor()
        for i in range(600):
            s.commit({"t": {b"x%05d" % i: b"v" * 300}}, None)
        s.checkpoint()
        assert generations(tmp_path)[0] == pinned_floor  # the pin holds the old generations
        s.unpin_checkpoint(pin.seq)
        s.checkpoint()
        assert generations(tmp_path)[0] > pinned_floor
    with Storage.open(tmp_path, circular_logging=True, **OPTIONS) as s:
        assert len(dict(s.scan("t"))) == 2600

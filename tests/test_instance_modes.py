"""Instance modes through the actors: circular logging, logging disabled, checkpoints."""

from __future__ import annotations

import os

from jetstore.engine import Instance
from jetstore.engine.storage import LOG_DIR
from jetstore.protocol.schema import to_buffer_manager


def generations(path) -> list[str]:
    return sorted(os.listdir(os.path.join(path, LOG_DIR)))


def test_circular_logging_bounds_the_log(tmp_path):
    options = {"circular_logging": True, "log_file_size": 64 << 10}
    with Instance.open(tmp_path, **options) as inst:
        session = inst.session()
        session.create_table("t")
        peak = 0
        for round_ in range(8):
            for i in range(300):
                session.put("t", b"%d-%05d" % (round_, i), b"v" * 1000)
            inst._control_call(to_buffer_manager.checkpoint())
            peak = max(peak, len(generations(tmp_path)))
        written = 8 * 300 * 1000 / (64 << 10)  # ~37 generations of redo
        assert peak <= 8, f"{peak} generations kept for ~{written:.0f} written"
    with Instance.open(tmp_path, **options) as inst:
        assert len(list(inst.session().scan("t"))) == 2400


def test_logging_disabled_keeps_data_across_a_clean_close(tmp_path):
    with Instance.open(tmp_path, logging=False) as inst:
        session = inst.session()
        session.create_table("t")
        session.put("t", b"k", b"v")
        assert "log_writer" not in inst.status()["actors"]  # nothing to write
    assert not os.path.exists(os.path.join(tmp_path, LOG_DIR))
    with Instance.open(tmp_path, logging=False) as inst:
        assert inst.session().get("t", b"k") == b"v"


def test_requested_checkpoint_becomes_durable(tmp_path):
    with Instance.open(tmp_path) as inst:
        session = inst.session()
        session.create_table("t")
        for i in range(100):
            session.put("t", b"%03d" % i, b"x")
        before = inst.status()["buffer_manager"]["checkpoint_seq"]
        done = inst._control_call(to_buffer_manager.checkpoint())
        assert done["seq"] == before + 1
        assert inst.status()["buffer_manager"]["checkpoint_lsn"] == done["checkpoint_lsn"]

"""The one progress display (tools/progress.py): plain lines when the output is not a
terminal, a bar redrawn in place when it is, and the last state always on a line of
its own."""

from __future__ import annotations

import io

from jetstore.engine import Instance
from jetstore.tools.progress import ProgressDisplay, status_callback


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_redirected_output_gets_a_line_per_interval_and_per_phase_never_a_frame():
    out, clock = io.StringIO(), FakeClock()
    display = ProgressDisplay("backup", out, interval=5.0, clock=clock)
    for now, phase, done in [(0, "pages", 0), (1, "pages", 10), (5, "pages", 20), (6, "logs", 0)]:
        clock.now = now
        display.update(phase, done * 1_000_000, 40_000_000)
    display.close("complete")
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines == [
        "backup pages: 0.0 MB of 40.0 MB (0%)",
        "backup pages: 20.0 MB of 40.0 MB (50%)",
        "backup logs: 0.0 MB of 40.0 MB (0%)",
        "backup logs: 0.0 MB of 40.0 MB (0%) - complete",
    ]


def test_a_first_frame_with_nothing_known_says_starting_not_zero_of_zero():
    out = io.StringIO()
    display = ProgressDisplay("verify", out)
    display.update("verify", 0, 0)
    assert out.getvalue() == "verify: starting\n"


def test_a_terminal_gets_a_bar_redrawn_in_place_and_a_final_line():
    out = Terminal()
    display = ProgressDisplay("restore", out)
    for done in range(0, 11):
        display.update("logs", done * 100_000, 1_000_000, "logs/jet00000001.log")
    display.close("complete")
    text = out.getvalue()
    assert "\r" in text  # frames overwrite each other
    assert text.endswith("restore logs: 1.0 MB of 1.0 MB (100%) - complete\n")
    assert text.count("\n") == 1  # the bar left no line behind, only the final state


def test_a_real_backup_redirected_prints_a_few_whole_lines(tmp_path):
    out = io.StringIO()
    (tmp_path / "bk").mkdir()
    with Instance.open(tmp_path / "db") as inst:
        session = inst.session()
        session.create_table("t")
        for n in range(200):
            session.put("t", b"%06d" % n, b"v" * 1000)
        inst.backup(tmp_path / "bk", status=status_callback("backup", out))
    lines = out.getvalue().splitlines()
    assert lines and lines[-1].startswith("backup ") and lines[-1].endswith(" - complete")
    assert "\r" not in out.getvalue() and len(lines) < 10


def test_redirected_output_shows_how_a_short_phase_ended_before_the_next_begins():
    out, clock = io.StringIO(), FakeClock()
    display = ProgressDisplay("backup", out, interval=5.0, clock=clock)
    display.update("pages", 0, 0)
    clock.now = 1
    display.update("pages", 3_000_000, 3_000_000)  # within the interval: not printed yet
    display.update("logs", 0, 1_000_000)
    assert out.getvalue().splitlines() == [
        "backup pages: starting",
        "backup pages: 3.0 MB of 3.0 MB (100%)",
        "backup logs: 0.0 MB of 1.0 MB (0%)",
    ]

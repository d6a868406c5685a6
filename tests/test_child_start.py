"""Starting an actor (actors/child_start.py): a Ctrl-C that lands while a child is
being started waits until the child is whole, then reaches the application as it
would have; the application's ``__main__`` is never re-run in the child."""

from __future__ import annotations

import os
import signal

import pytest

from jetstore.actors.child_start import interrupts_held


def test_a_ctrl_c_mid_start_is_delivered_once_the_start_is_done():
    reached_the_end_of_the_start = False
    with pytest.raises(KeyboardInterrupt):
        with interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)  # as the terminal sends it, mid-start
            signal.getsignal(signal.SIGINT)  # a bytecode boundary: a pending one would raise
            reached_the_end_of_the_start = True
    assert reached_the_end_of_the_start
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_application_handler_gets_the_held_ctrl_c(monkeypatch):
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: received.append(signum))
    try:
        with interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)
            assert received == []  # held
        assert received == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_without_a_ctrl_c_nothing_is_delivered():
    with interrupts_held():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

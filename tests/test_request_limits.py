"""Requests and replies bigger than one message (codec.MAX_FRAME, the sockets' MAXMSGSIZE).

ZeroMQ drops a frame past MAXMSGSIZE together with the connection, unanswered:
without a check before sending, a transaction bigger than a frame waited in
``commit`` forever.  A write set may grow only as far as one commit can carry
it (-1069 at the put past that), any other request is measured before it is
sent, and scan replies are chunked by bytes - so every call returns in bounded
time with its result or an error, and the session stays usable.
"""

# The fixtures of test_api are imported, and pytest passes them as arguments of the same name.
# ruff: noqa: F811

from __future__ import annotations

import pytest
from test_api import MiB, assert_usable, inst, raises_jet, s, table  # noqa: F401

from jetstore.engine.client import MAX_WRITE_SET
from jetstore.protocol import codec

VERSION_STORE_OUT_OF_MEMORY = -1069


def _key(i: int) -> bytes:
    return b"k%05d" % i


def _fill_until_refused(session, name: str, value_size: int, count: int) -> int:
    """Put ``count`` values in the open transaction until one is refused with -1069;
    returns how many went in."""
    with raises_jet(VERSION_STORE_OUT_OF_MEMORY):
        for i in range(count):
            session.put(name, _key(i), bytes([i % 256]) * value_size)
    return i


@pytest.mark.timeout(60)
def test_transaction_larger_than_a_message_fails_with_1069_and_the_session_goes_on(s, table):
    """70 x 1 MiB is more than one 64 MiB frame: the put past the limit fails at once,
    the transaction still rolls back, and the session commits a small one after it."""
    s.begin()
    accepted = _fill_until_refused(s, table, MiB, 70)
    assert accepted * MiB <= MAX_WRITE_SET < (accepted + 1) * MiB
    assert s.get(table, _key(0)) == bytes([0]) * MiB  # the earlier writes are still there
    assert s.get(table, _key(accepted)) is None  # the refused one is not
    s.rollback()
    assert s.get(table, _key(0)) is None
    with s.transaction() as tx:
        tx.put(table, b"small", b"v")
    assert s.get(table, b"small") == b"v"
    assert_usable(s, table)


@pytest.mark.timeout(120)
def test_write_set_filled_to_the_limit_still_commits(s, table):
    """The limit is an upper bound of the encoded commit: a transaction filled right up
    to it fits in one frame, and its redo record in one log batch."""
    s.begin()
    accepted = _fill_until_refused(s, table, MiB, 70)
    s.commit()
    keys = [k for k, _ in s.scan(table)]
    assert keys == [_key(i) for i in range(accepted)]
    assert s.get(table, _key(accepted - 1)) == bytes([(accepted - 1) % 256]) * MiB


@pytest.mark.timeout(120)
def test_8mib_values_round_trip_up_to_the_limit(inst, s, table):
    """Seven 8 MiB values (56 MiB) commit in one transaction; the eighth would not fit."""
    values = {_key(i): bytes([i]) * (8 * MiB) for i in range(7)}
    with s.transaction() as tx:
        for key, value in values.items():
            tx.put(table, key, value)
        with raises_jet(VERSION_STORE_OUT_OF_MEMORY):
            tx.put(table, _key(7), b"\xff" * (8 * MiB))
    other = inst.session()
    try:
        for key, value in values.items():
            assert other.get(table, key) == value
        assert list(other.scan(table)) == sorted(values.items())
    finally:
        other.close()


@pytest.mark.timeout(120)
def test_scan_of_many_big_values_returns_everything(s, table):
    """70 MiB of 1 MiB values and a few 8 MiB ones come back whole, in key order, in
    replies that each stay within a frame."""
    expected = {}
    for first in range(0, 70, 10):
        with s.transaction() as tx:
            for i in range(first, first + 10):
                expected[_key(i)] = bytes([i]) * MiB
                tx.put(table, _key(i), expected[_key(i)])
    for i in range(70, 73):
        expected[_key(i)] = bytes([i]) * (8 * MiB)
        s.put(table, _key(i), expected[_key(i)])
    result = list(s.scan(table))
    assert [k for k, _ in result] == sorted(expected)
    assert result == sorted(expected.items())


def test_oversized_request_is_refused_before_sending():
    with raises_jet(-1003, "JET_errInvalidParameter") as info:
        codec.encode_request(1, "get", {"table": "t", "key": b"x" * codec.MAX_FRAME})
    assert str(codec.MAX_FRAME) in info.value.message
    small = codec.encode_request(2, "ping", {})
    assert codec.decode(small) == codec.Message(2, "ping", {})


def test_oversized_reply_becomes_an_error_reply():
    frame = codec.encode(3, codec.REPLY_OK, b"x" * codec.MAX_FRAME)
    assert len(frame) <= codec.MAX_FRAME
    message = codec.decode(frame)
    assert message.request_id == 3
    with raises_jet(-1011, "JET_errOutOfMemory"):
        codec.result_of(message)

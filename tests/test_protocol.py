"""The wire protocol: codec limits, schemas, and a conformance suite per socket.

``RequestSocketConformance`` is run against every actor's request socket (the
ZODB "conformance mixin" idea): whatever arrives - garbage, a wrong version,
an unknown kind, a missing field, extra frames - gets an error reply carrying
an ESE number, name and message and no traceback, and the actor keeps
serving.  The push/pull links between actors must survive garbage too.
"""

from __future__ import annotations

import random

import msgpack
import pytest
import zmq

from jetstore.actors.archiver import request_handlers as archiver_handlers
from jetstore.actors.backup_worker import BackupWorker
from jetstore.actors.buffer_manager import BufferManager
from jetstore.actors.control import ControlServer
from jetstore.actors.control_commands import SCHEMA as CONTROL_SCHEMA
from jetstore.actors.log_writer import control_handlers
from jetstore.actors.runtime import ActorConfig
from jetstore.engine import Instance, JetError
from jetstore.engine.backup import Progress
from jetstore.engine.storage import Storage
from jetstore.protocol import codec, schema
from jetstore.protocol.channel import Channel


def test_codec_roundtrip_and_reply_errors():
    frame = codec.encode(7, "get", {"table": "t", "key": b"k"})
    assert codec.decode(frame) == (7, "get", {"table": "t", "key": b"k"})
    error = codec.decode(codec.encode_error(7, JetError("JET_errWriteConflict", "boom")))
    with pytest.raises(JetError) as e:
        codec.result_of(error)
    assert (e.value.err, e.value.message) == (-1102, "boom")


@pytest.mark.parametrize(
    "frame, fragment",
    [
        (b"\xc1", "not msgpack"),
        (msgpack.packb({"a": 1}), "expected [version"),
        (msgpack.packb([1, 2, 3]), "expected [version"),
        (msgpack.packb([99, 1, "ping", {}]), "protocol version 99"),
        (msgpack.packb([1, "x", "ping", {}]), "request_id must be an int"),
        (msgpack.packb([1, 1, 5, {}]), "kind a str"),
        (msgpack.packb([[[[[[[]]]]]]] * 3 + [1]), "protocol version list"),
    ],
)
def test_malformed_frames_are_jet_errors(frame, fragment):
    with pytest.raises(JetError) as e:
        codec.decode(frame)
    assert e.value.err == -1003 and fragment in e.value.message


def test_deeply_nested_frame_is_rejected_not_crashing():
    deep = b"\x91" * 5000 + b"\xc0"  # 5000 nested one-element arrays
    with pytest.raises(JetError):
        codec.decode(deep)


@pytest.mark.parametrize(
    "kind, body, fragment",
    [
        ("nope", {}, "unknown message kind"),
        ("get", [], "body must be a map"),
        ("get", {"table": "t"}, "missing field 'key'"),
        ("get", {"table": "t", "key": b"k", "x": 1}, "unexpected field"),
        ("get", {"table": "t", "key": "k"}, "must be bytes"),
        ("commit", {"writes": {}, "lazy": 1}, "must be bool"),
        ("end", {"txn": True}, "must be int"),
    ],
)
def test_schema_rejects_bad_bodies(kind, body, fragment):
    with pytest.raises(JetError) as e:
        schema.check(schema.BUFFER_MANAGER, kind, body)
    assert e.value.err == -1003 and fragment in e.value.message


def test_a_request_builder_checks_its_kind_and_fields_where_it_is_built():
    request = schema.to_log_control.truncate(below=5)
    assert request == schema.Request("truncate", {"below": 5})
    with pytest.raises(AttributeError, match="trunacte"):
        schema.to_log_control.trunacte(below=5)
    with pytest.raises(JetError, match="unexpected field 'bellow'") as e:
        schema.to_log_control.truncate(bellow=5)
    assert e.value.err == -1003
    with pytest.raises(JetError, match="field 'below' must be int"):
        schema.to_log_control.truncate(below="5")
    with pytest.raises(JetError, match="missing field 'below'"):
        schema.to_log_control.truncate()


def test_every_schema_accepts_its_minimal_body():
    for table in (
        schema.BUFFER_MANAGER,
        schema.LOG_APPEND,
        schema.LOG_EVENTS,
        schema.LOG_CONTROL,
        schema.BACKUP,
        schema.SUPERVISOR,
    ):
        for kind, fields in table.items():
            body = {
                name: _sample(types)
                for name, types in fields.items()
                if schema.OPTIONAL not in types
            }
            assert schema.check(table, kind, body) is body


def _sample(types):
    return {str: "s", bytes: b"b", int: 1, bool: True, dict: {}, list: [], float: 1.0}[types[0]]


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    inst = Instance.open(tmp_path_factory.mktemp("protocol"))
    inst.session().create_table("t")
    yield inst
    inst.close()


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def _dealer(context, endpoint):
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def _ask(sock, frames) -> codec.Message:
    sock.send_multipart(frames)
    assert sock.poll(5000), "no reply: the actor hung or dropped the request"
    return codec.decode(sock.recv())


class RequestSocketConformance:
    endpoint_name: str

    @pytest.fixture
    def sock(self, instance, context):
        return _dealer(context, instance.endpoints[self.endpoint_name])

    def assert_error_reply(self, sock, frames, err=-1003) -> None:
        reply = _ask(sock, frames)
        assert reply.kind == codec.REPLY_ERROR
        assert set(reply.body) == {"err", "name", "message"}
        assert reply.body["err"] == err and reply.body["name"].startswith("JET_err")
        assert "Traceback" not in reply.body["message"]
        self.assert_still_serving(sock)

    def assert_still_serving(self, sock) -> None:
        assert codec.result_of(_ask(sock, [codec.encode(1, "ping", {})])) == "pong"

    def test_garbage(self, sock):
        self.assert_error_reply(sock, [b"\x00\xffgarbage"])

    def test_wrong_version(self, sock):
        self.assert_error_reply(sock, [msgpack.packb([2, 5, "ping", {}])])

    def test_unknown_kind(self, sock):
        self.assert_error_reply(sock, [codec.encode(3, "format-disk", {})])

    def test_missing_and_extra_fields(self, sock):
        self.assert_error_reply(sock, [codec.encode(4, "ping", {"extra": 1})])

    def test_two_frames(self, sock):
        self.assert_error_reply(sock, [codec.encode(5, "ping", {}), b"more"])

    def test_reply_carries_the_request_id(self, sock):
        assert _ask(sock, [codec.encode(424242, "ping", {})]).request_id == 424242

    def test_random_frames(self, sock):
        rng = random.Random(11)
        for _ in range(300):
            sock.send(rng.randbytes(rng.randrange(0, 64)))
            assert sock.poll(5000)
            assert codec.decode(sock.recv()).kind == codec.REPLY_ERROR
        self.assert_still_serving(sock)


class TestBufferManagerSocket(RequestSocketConformance):
    endpoint_name = "buffer_manager"

    def test_bad_write_set_shapes(self, sock):
        for writes in ({"t": [1, 2]}, {"t": {"str-key": b"v"}}, {"t": {b"k": 5}}, {7: {}}):
            self.assert_error_reply(sock, [codec.encode(9, "commit", {"writes": writes})])

    def test_unknown_table_and_bad_names(self, sock):
        self.assert_error_reply(sock, [codec.encode(9, "get", {"table": "zz", "key": b"k"})], -1305)
        self.assert_error_reply(sock, [codec.encode(9, "create_table", {"table": ""})], -1002)


class TestLogControlSocket(RequestSocketConformance):
    endpoint_name = "log_control"

    def test_truncating_what_recovery_needs_is_refused(self, sock):
        self.assert_error_reply(sock, [codec.encode(9, "truncate", {"below": 10**6})])


class TestBackupSocket(RequestSocketConformance):
    endpoint_name = "backup"


def test_internal_links_survive_garbage(instance, context):
    for name in ("log_append", "log_events", "supervisor"):
        push = context.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(instance.endpoints[name])
        for frame in (
            b"junk",
            codec.encode(0, "append", {"batch": 1, "records": [5]}),
            codec.encode(0, "durable", {"batch": 999, "ends": [], "generation": 1}),
            codec.encode(0, "heartbeat", {"actor": "x"}),
        ):
            push.send(frame)
        push.close()
    session = instance.session()
    session.put("t", b"after-garbage", b"ok")
    assert session.get("t", b"after-garbage") == b"ok"
    assert all(a["alive"] for a in instance.status()["actors"].values())


def test_each_actor_serves_exactly_the_kinds_of_its_schema(tmp_path):
    """A kind in a schema with no handler would surface as JET_errInternalError; a
    handler with no schema entry could never be reached."""
    assert set(control_handlers(keeper=None, stop=[])) == set(schema.LOG_CONTROL)
    assert set(archiver_handlers(archiver=None, stop=[])) == set(schema.ARCHIVER)
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    try:
        with Storage.open(str(tmp_path / "db")) as storage:
            manager = BufferManager(storage, router, to_log=None)
            manager.writer.shutdown()
            assert set(manager.handlers) == set(schema.BUFFER_MANAGER)
        endpoints = {"buffer_manager": "inproc://bm", "log_control": "inproc://lw"}
        worker = BackupWorker(
            ActorConfig("backup_worker", str(tmp_path), endpoints), context, router
        )
        worker.peers.close()
        assert set(worker.handlers) == set(schema.BACKUP)
        server = ControlServer(instance=None, ipc_endpoint="inproc://control")
        assert set(server._handlers(router, over_tcp=False)) == set(CONTROL_SCHEMA)
    finally:
        router.close(0)
        context.term()


def test_progress_events_match_their_schema():
    """What a backup streams before its reply has a schema too (codec.REPLY_PROGRESS)."""
    for event in (Progress("begin", "pages", 0, 0), Progress("progress", "logs", 5, 9, "logs/x")):
        assert schema.check(schema.PROGRESS, codec.REPLY_PROGRESS, vars(event))


def test_every_reply_matches_its_schema(tmp_path):
    """Each kind a real instance answers, immediate or deferred, against its reply table."""
    for requests, replies in (
        (schema.BUFFER_MANAGER, schema.BUFFER_MANAGER_REPLIES),
        (schema.LOG_CONTROL, schema.LOG_CONTROL_REPLIES),
        (schema.BACKUP, schema.BACKUP_REPLIES),
        (schema.ARCHIVER, schema.ARCHIVER_REPLIES),
    ):
        assert set(replies) == set(requests)
    context = zmq.Context()
    checked: dict[str, set] = {}
    with Instance.open(str(tmp_path / "db"), archive_dir=str(tmp_path / "archive")) as inst:
        channels = {
            name: Channel(context, inst.endpoints[name], lambda: None)
            for name in ("buffer_manager", "log_control", "backup", "archiver")
        }
        tables = {
            "buffer_manager": schema.BUFFER_MANAGER_REPLIES,
            "log_control": schema.LOG_CONTROL_REPLIES,
            "backup": schema.BACKUP_REPLIES,
            "archiver": schema.ARCHIVER_REPLIES,
        }

        def call(actor: str, request: schema.Request):
            result = channels[actor].call(request, timeout=30)
            schema.check_reply(tables[actor], request.kind, result)
            checked.setdefault(actor, set()).add(request.kind)
            return result

        bm, lw, bw = schema.to_buffer_manager, schema.to_log_control, schema.to_backup
        ar = schema.to_archiver
        try:
            for actor, requests in zip(channels, (bm, lw, bw, ar), strict=True):
                call(actor, requests.ping())
                call(actor, requests.status())
            call("buffer_manager", bm.create_table(table="t"))
            txn = call("buffer_manager", bm.begin())["txn"]
            call("buffer_manager", bm.commit(writes={"t": {b"k": b"v"}}, txn=txn))
            call("buffer_manager", bm.end(txn=call("buffer_manager", bm.begin())["txn"]))
            call("buffer_manager", bm.get(table="t", key=b"k"))
            call("buffer_manager", bm.scan(table="t"))
            call("buffer_manager", bm.list_tables())
            call("buffer_manager", bm.checkpoint())
            seq = call("buffer_manager", bm.pin_checkpoint())["seq"]
            call("buffer_manager", bm.unpin_checkpoint(seq=seq))
            info = call("buffer_manager", bm.backup_info())
            generation = call("log_control", lw.roll())["generation"]
            call("buffer_manager", bm.log_rolled(generation=generation))
            call("log_control", lw.pin(generation=generation))
            call("log_control", lw.unpin(generation=generation))
            call("log_control", lw.truncate(below=1))
            call("log_control", lw.archived(generation=0))
            record = {"incremental": False, "time_ns": 1, "gen_low": 1, "gen_high": 1}
            record.update(lsn_mark=0, backup_id=bytes(16))
            call("buffer_manager", bm.record_backup(**record))
            call("backup", bw.set_backup_rate(rate=0))
            call("backup", bw.abort_backup())
            call("backup", bw.backup(dest=None, incremental=False, atomic=False))
            call("buffer_manager", bm.drop_table(table="t"))
            call("buffer_manager", bm.stop_service())
        finally:
            for channel in channels.values():
                channel.close()
            context.term()
    assert info["last_full"] is None
    unexercised = {"shutdown", "ack"}  # shutdown: by close(); ack: never answered
    for actor, table in tables.items():
        assert checked[actor] == set(table) - unexercised, actor

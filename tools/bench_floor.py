"""The floor under jetstore's commit path: the same process pipeline with no engine in it.

Three processes and the four ZeroMQ hops of a durable commit - client (DEALER) ->
buffer manager (ROUTER), buffer manager -> log writer (PUSH/PULL), log writer ->
buffer manager (PUSH/PULL), buffer manager -> client - where the buffer manager
only forwards and the log writer appends one small record to a preallocated file
and fdatasyncs once per batch of whatever arrived (group commit).  No storage,
no checks, no encoding: whatever this reaches is the most any engine built on
this architecture can reach on the machine, measured in the same run.
"""

from __future__ import annotations

import os

import multiprocess
import zmq

from jetstore.tools.benchmark import commit_loop

RECORD = b"r" * 150  # about the size of a one-put redo record
LOG_BYTES = 64 << 20  # preallocated: appends never grow the file
STOP = b"stop"


def _endpoints(directory: str) -> dict[str, str]:
    return {name: f"ipc://{directory}/{name}" for name in ("requests", "appends", "durable")}


def _buffer_manager(directory: str) -> None:
    ends = _endpoints(directory)
    context = zmq.Context()
    requests = context.socket(zmq.ROUTER)
    requests.bind(ends["requests"])
    appends = context.socket(zmq.PUSH)
    appends.connect(ends["appends"])
    durable = context.socket(zmq.PULL)
    durable.bind(ends["durable"])
    poller = zmq.Poller()
    poller.register(requests, zmq.POLLIN)
    poller.register(durable, zmq.POLLIN)
    in_flight: dict[int, list[bytes]] = {}
    batch = 0
    while True:
        ready = dict(poller.poll())
        if requests in ready:
            waiting = []
            while requests.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                identity, frame = requests.recv_multipart()
                if frame == STOP:
                    appends.send(STOP)
                    return
                waiting.append(identity)
            batch += 1
            in_flight[batch] = waiting
            appends.send(b"%d" % batch)
        if durable in ready:
            while durable.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                for identity in in_flight.pop(int(durable.recv())):
                    requests.send_multipart([identity, b"ok"])


def _log_writer(directory: str) -> None:
    ends = _endpoints(directory)
    context = zmq.Context()
    appends = context.socket(zmq.PULL)
    appends.bind(ends["appends"])
    durable = context.socket(zmq.PUSH)
    durable.connect(ends["durable"])
    fd = os.open(os.path.join(directory, "log"), os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(fd, bytes(LOG_BYTES), 0)
    os.fsync(fd)
    offset = 0
    while True:
        batches = [appends.recv()]
        while appends.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            batches.append(appends.recv())
        if STOP in batches:
            os.close(fd)
            return
        os.pwrite(fd, RECORD * len(batches), offset)
        offset = (offset + len(RECORD) * len(batches)) % (LOG_BYTES - (1 << 20))
        os.fdatasync(fd)
        for batch in batches:
            durable.send(batch)


def client(directory: str, index: int, seconds: float, start_at: float, results) -> None:
    """A bench_commit client: one request and its reply per commit."""
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.connect(_endpoints(directory)["requests"])

    def commit(key: bytes) -> None:
        sock.send(key)
        sock.recv()

    results.put(commit_loop(commit, index, seconds, start_at))
    sock.close(0)
    context.term()


class Pipeline:
    """The buffer manager and log writer processes, started and stopped."""

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        context = multiprocess.get_context("spawn")
        self.processes = [
            context.Process(target=target, args=(directory,), daemon=True)
            for target in (_log_writer, _buffer_manager)
        ]

    def __enter__(self) -> Pipeline:
        for process in self.processes:
            process.start()
        return self

    def __exit__(self, *exc_info) -> None:
        context = zmq.Context()
        sock = context.socket(zmq.DEALER)
        sock.connect(_endpoints(self.directory)["requests"])
        sock.send(STOP)
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.kill()
        sock.close(0)
        context.term()

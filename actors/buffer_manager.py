"""Buffer manager actor: hosts the storage engine, ships redo, acknowledges durable commits.

Loop: take every waiting client request (ROUTER) and execute it against the
in-process ``Storage``; a commit is applied at once and its redo record queued;
then the queue goes to the log writer as ONE batch message (PUSH, at most
MAX_INFLIGHT_BATCHES outstanding, so a slow disk pushes back).  When the log
writer reports a batch durable, every commit in it is answered.  Lazy commits
and reads are answered immediately.

The checkpointer runs here too, in three steps: seal (in the loop: a short,
bounded pause), write the sealed pages (a worker thread, beside new commits)
and publish the meta once the log is durable through the seal (write-ahead).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import zmq

from jetstore.engine.errors import JetError
from jetstore.engine.fileio import DEFAULT_ENV
from jetstore.engine.log_format import RECORDS_START, make_lsn
from jetstore.engine.meta_format import DB_CLEAN, BackupRecord, Meta
from jetstore.engine.published_format import STOPPED
from jetstore.engine.redo_sink import Ticket
from jetstore.engine.run_dir_format import RUN_DIR
from jetstore.engine.storage import Storage
from jetstore.engine.transactions import PendingConflict
from jetstore.engine.writeset import (
    entry_size,
    write_set_size,
)
from jetstore.protocol import codec, schema

from . import fault_plan
from .fault_plan import env_for
from .runtime import (
    DEFERRED,
    ActorHost,
    Request,
    actor_setup,
    drain,
    reply,
    report_startup_failure,
    serve_requests,
)

NAME = "buffer_manager"
SUPERVISOR_IDENTITY = b"supervisor"
MAX_INFLIGHT_BATCHES = 16
MAX_REQUESTS_PER_TURN = 1000
MAX_EVENTS_PER_TURN = 1000
SCAN_CHUNK_ITEMS = 1000
SCAN_CHUNK_BYTES = 1 << 20
CHECKPOINT_INTERVAL_S = 60.0  # checkpoint at least this often when anything changed
ANSWERED_AFTER_STOP = (
    "ping",
    "status",
    "backup_info",
)  # what an operator reads after JetStopService
TXN_TTL_S = 3600.0  # a registered transaction silent this long is presumed abandoned


class ShippingLog:
    """The Storage's redo sink while the log writer owns the files (redo_sink.py).

    ``append`` only queues the record; the record of ticket n (counting from 0 since
    the actor started) becomes durable when the log writer says so.  Pages are
    stamped with the newest durable LSN known when they change: at or before the
    change's own record.
    """

    def __init__(self, end_lsn: int, generation: int) -> None:
        self.queue: list[bytes] = []
        self.queued_bytes = 0  # of the records in queue: the next batch's size
        self.appended = 0  # records handed to append() so far
        self.durable = 0  # records the log writer reported durable
        self.end_lsn = end_lsn  # position after the last durable record
        self.current_generation = generation
        self.oldest_generation = 0  # the log writer knows; status merges it

    def append(self, payload: bytes) -> Ticket:
        self.queue.append(payload)
        self.queued_bytes += len(payload)
        self.appended += 1
        return Ticket(self.appended - 1, self.end_lsn)

    def take(self) -> list[bytes]:
        """The queued records, for one batch to the log writer; the queue starts over."""
        records, self.queue, self.queued_bytes = self.queue, [], 0
        return records

    def close(self) -> None:
        pass


@dataclass
class CheckpointRun:
    meta: Meta
    target: int  # records before this one are in the sealed trees
    pages: Future
    lsn: int | None = None
    waiters: list[Request] = field(default_factory=list)


class BufferManager:
    def __init__(
        self,
        storage: Storage,
        router: zmq.Socket,
        to_log: zmq.Socket | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        self.clock = clock
        self.router = router
        self.to_log = to_log
        self.log: ShippingLog | None = storage.log if to_log is not None else None
        # record number -> the writes it acknowledges once durable, with their tickets
        self.waiting: dict[int, list[tuple[Request, Ticket]]] = {}
        # record number -> commits whose conflict check waits for its end LSN
        self.parked: dict[int, list[tuple[dict, Request]]] = {}
        self.batches: dict[int, int] = {}  # batch id -> first record number
        self.next_batch = 1
        self.service_stopped = False
        self.checkpoint: CheckpointRun | None = None
        self.checkpoint_requests: list[Request] = []  # for the next checkpoint sealed
        self.last_checkpoint = self.clock()
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="checkpoint")
        self.write_buffer = storage.new_write_buffer()
        self.shutdown_request: Request | None = None
        handlers = {
            "ping": lambda body, request: "pong",
            "status": lambda body, request: self.status(),
            "shutdown": self.shutdown,
            "begin": self.begin,
            "end": self.end,
            "get": lambda body, request: self.storage.get(
                body["table"], body["key"], self._snapshot_of(body)
            ),
            "scan": self.scan,
            "commit": self.commit,
            "create_table": lambda body, request: self.logged(
                request, self.storage.create_table, body["table"]
            ),
            "drop_table": lambda body, request: self.logged(
                request, self.storage.drop_table, body["table"]
            ),
            "list_tables": lambda body, request: self.storage.list_tables(),
            "checkpoint": self.request_checkpoint,
            "stop_service": self.stop_service,
            "pin_checkpoint": self.pin_checkpoint,
            "backup_info": lambda body, request: self.storage.backup_info(),
            "log_rolled": self.log_rolled,
            "record_backup": self.record_backup,
            "unpin_checkpoint": self.unpin_checkpoint,
        }
        self.handlers = {kind: self._guarded(kind, fn) for kind, fn in handlers.items()}

    # -- client requests -------------------------------------------------------
    def serve(self) -> None:
        serve_requests(
            self.router,
            schema.BUFFER_MANAGER,
            self.handlers,
            NAME,
            MAX_REQUESTS_PER_TURN,
            replies=schema.BUFFER_MANAGER_REPLIES,
        )

    def _guarded(self, kind: str, handler):
        """Refuse work once shutdown began or the service was stopped (ESE's ErrAPIEnter)."""

        def guarded(body: dict, request: Request):
            if self.shutdown_request is not None:
                raise JetError("JET_errTermInProgress", "the instance is shutting down")
            from_supervisor = request.identity == SUPERVISOR_IDENTITY
            if self.service_stopped and not from_supervisor and kind not in ANSWERED_AFTER_STOP:
                raise JetError(
                    "JET_errClientRequestToStopJetService",
                    "the service was stopped (JetStopService)",
                )
            return handler(body, request)

        return guarded

    def logged(self, request: Request, operation, *args, **options):
        """Run an operation that writes a redo record; answer once the record is durable."""
        ticket = operation(*args, **options)
        if ticket is None or options.get("lazy"):
            return self._written(request, ticket.lsn if ticket else 0, ticket)
        self.waiting.setdefault(ticket.number, []).append((request, ticket))
        return DEFERRED

    @staticmethod
    def _written(request: Request, lsn: int, ticket: Ticket | None) -> dict:
        """The reply to a write: its LSN, and for a commit its record's number, by which
        a lazy committer knows when the log holds it (published_format.py)."""
        if request.kind == "commit":
            return {"lsn": lsn, "record": ticket.number if ticket else -1}
        return {"lsn": lsn}

    def begin(self, body: dict, request: Request) -> dict:
        txn, begin_seq = self.storage.begin_transaction(self.clock() + TXN_TTL_S)
        return {"txn": txn, "begin_seq": begin_seq}

    def end(self, body: dict, request: Request) -> None:
        self._end_txn(body["txn"])

    def _end_txn(self, txn: int | None) -> None:
        if txn is not None:
            self.storage.end_transaction(txn)

    def commit(self, body: dict, request: Request):
        writes = body["writes"]
        if not all(isinstance(kv, dict) for kv in writes.values()):
            raise JetError(
                "JET_errInvalidParameter", "commit: writes must map table -> {key: value}"
            )
        txn = body.get("txn")
        own_records = body.get("own_records") or ()
        if not all(type(record) is int for record in own_records):
            raise JetError("JET_errInvalidParameter", "commit: own_records must be ints")
        try:
            self._make_room_in_batch(writes)
            return self.logged(
                request,
                self.storage.commit,
                writes,
                body.get("begin_seq"),
                lazy=bool(body.get("lazy")),
                snapshot_lsn=body.get("snapshot_lsn"),
                own_records=frozenset(own_records),
            )
        except PendingConflict as pending:
            # A record that last wrote one of these keys is in flight: whether it is in
            # the snapshot depends on its end LSN, which the log writer is about to report.
            self.parked.setdefault(pending.record, []).append((body, request))
            txn = None  # (a registered transaction stays open for the retry)
            return DEFERRED
        finally:
            self._end_txn(txn)

    def _make_room_in_batch(self, writes: dict) -> None:
        """Ship the queued redo first if this commit's record would take the next batch
        past one frame: the log writer's MAXMSGSIZE would drop that batch unanswered,
        and every commit in it would wait forever.

        A client keeps each write set within its own frame (so one record always
        fits) - the only defence against an oversized commit request, which ZeroMQ
        drops with the connection before this actor could answer it.
        """
        if self.log is None or not self.log.queue:
            return
        if self.log.queued_bytes + write_set_size(writes) <= codec.MAX_FRAME - codec.FRAME_HEADROOM:
            return
        self.ship()
        if self.log.queue:
            raise JetError(
                "JET_errVersionStoreOutOfMemory",
                f"commit: {MAX_INFLIGHT_BATCHES} log batches are in flight and the next"
                " is full; retry once they are durable",
            )

    def scan(self, body: dict, request: Request) -> dict:
        """One chunk of a scan: at most ``limit`` entries and SCAN_CHUNK_BYTES of keys and
        values - or one entry, if that alone is bigger - so a reply stays far below
        MAX_FRAME however big the values are."""
        limit = min(body.get("limit") or SCAN_CHUNK_ITEMS, SCAN_CHUNK_ITEMS)
        after = body.get("after")
        start = after if after is not None else body.get("start")
        items, size = [], 0
        rows = self.storage.scan(body["table"], start, body.get("end"), self._snapshot_of(body))
        for key, value in rows:
            if key == after:
                continue
            size += entry_size(key, value)
            if items and size > SCAN_CHUNK_BYTES:
                return {"items": items, "more": True}
            items.append([key, value])
            if len(items) >= limit:
                return {"items": items, "more": True}
        return {"items": items, "more": False}

    def _snapshot_of(self, body: dict) -> int | None:
        """The snapshot of the registered transaction a read names (version_store.py)."""
        txn = body.get("txn")
        if txn is None:
            return None
        begin_seq = self.storage.transactions.active.get(txn)
        if begin_seq is None:
            raise JetError(
                "JET_errNotInTransaction",
                f"transaction {txn} is not open (ended, or silent for {TXN_TTL_S:g} s)",
            )
        return begin_seq

    def stop_service(self, body: dict, request: Request) -> None:
        self.service_stopped = True
        if self.storage.published is not None:
            self.storage.published.publish_state(STOPPED)  # read views refuse reads too

    def pin_checkpoint(self, body: dict, request: Request) -> dict:
        pin = self.storage.pin_checkpoint()
        return {"seq": pin.seq, "meta_page": pin.meta_page}

    def unpin_checkpoint(self, body: dict, request: Request) -> None:
        self.storage.unpin_checkpoint(body["seq"])

    def status(self) -> dict:
        stats = self.storage.stats()
        stats.update(
            waiting_commits=sum(len(v) for v in self.waiting.values()),
            inflight_batches=len(self.batches),
            open_transactions=len(self.storage.transactions.active),
            parked_commits=sum(len(v) for v in self.parked.values()),
            checkpoint_running=self.checkpoint is not None,
            service_stopped=self.service_stopped,
        )
        return stats

    # -- shipping and durability -------------------------------------------
    def ship(self) -> None:
        if self.log is None or not self.log.queue or len(self.batches) >= MAX_INFLIGHT_BATCHES:
            return
        batch = self.next_batch
        self.next_batch += 1
        first = self.log.appended - len(self.log.queue)
        self.batches[batch] = first
        records = self.log.take()
        self.to_log.send(codec.encode(0, *schema.to_log.append(batch=batch, records=records)))

    def on_log_event(self, frame: bytes) -> None:
        try:
            message = codec.decode(frame)
            body = schema.check(schema.LOG_EVENTS, message.kind, message.body)
        except JetError:
            return  # only the log writer writes here
        first = self.batches.pop(body["batch"], None)
        if first is None:
            return
        if message.kind == "failed":
            failure = JetError(body["err"], body["message"])
            self.storage.fail(failure)
            for record in sorted(self.waiting):
                for request, _ticket in self.waiting.pop(record):
                    reply(self.router, request, error=failure)
            for record in sorted(self.parked):
                for _body, request in self.parked.pop(record):
                    reply(self.router, request, error=failure)
            self.abandon_checkpoint(failure)
            return
        self.log.current_generation = body["generation"]
        for offset, end_lsn in enumerate(body["ends"]):
            record = first + offset
            self.log.durable = record + 1
            self.log.end_lsn = end_lsn
            self.storage.transactions.durable(record, end_lsn)
            if self.checkpoint is not None and record == self.checkpoint.target - 1:
                self.checkpoint.lsn = end_lsn
            for request, ticket in self.waiting.pop(record, ()):
                reply(self.router, request, self._written(request, end_lsn, ticket))
            for parked_body, request in self.parked.pop(record, ()):
                self._retry_commit(parked_body, request)

    def _retry_commit(self, body: dict, request: Request) -> None:
        """A parked commit, now that the record it waited for is durable: the reply is
        what serving it at once would have sent."""
        try:
            result = self.handlers["commit"](body, request)
        except JetError as exc:
            reply(self.router, request, error=exc)
            return
        if result is not DEFERRED:
            reply(self.router, request, result)

    # -- checkpoints -------------------------------------------------------
    def request_checkpoint(self, body: dict, request: Request):
        """Answer once a checkpoint sealed after this request is durable."""
        self.storage.check_usable()
        self.checkpoint_requests.append(request)
        return DEFERRED

    def log_rolled(self, body: dict, request: Request) -> None:
        """The log writer started generation ``generation`` on request (a backup's roll).

        With nothing in flight, the next record can only go there: redo may
        start at its beginning, so the next checkpoint lets go of the old ones.
        """
        log = self.log
        if log is not None and not log.queue and not self.batches and log.durable == log.appended:
            log.end_lsn = max(log.end_lsn, make_lsn(body["generation"], RECORDS_START))
            log.current_generation = max(log.current_generation, body["generation"])

    def record_backup(self, body: dict, request: Request):
        """Remember a completed backup in the meta; answered once that is durable."""
        record = BackupRecord(**{name: body[name] for name in BackupRecord.__dataclass_fields__})
        self.storage.record_backup(body["incremental"], record)
        return self.request_checkpoint(body, request)

    def start_checkpoint(self, state: int | None = None) -> None:
        images, meta = self.storage.seal_checkpoint(state, self.storage.meta.checkpoint_lsn)
        target = self.log.appended if self.log else 0
        pages = self.writer.submit(self.storage.write_checkpoint_pages, images, self.write_buffer)
        if self.log is None:
            lsn = 0
        elif target == self.log.durable:
            lsn = self.log.end_lsn  # nothing is in flight: redo starts at the durable end
        else:
            lsn = None  # known when the log writer reports record target - 1
        self.checkpoint = CheckpointRun(meta, target, pages, lsn)

    def advance_checkpoint(self) -> None:
        """Publish the running checkpoint once its pages and the log before it are durable."""
        run = self.checkpoint
        if run is None or not run.pages.done() or run.lsn is None:
            return
        self.checkpoint = None
        try:
            run.pages.result()
            meta = run.meta.evolve(checkpoint_lsn=run.lsn)
            self.storage.write_meta(meta)
            self.storage.finish_checkpoint(meta)
        except JetError as exc:
            self.storage.fail(exc)
            for request in run.waiters:
                reply(self.router, request, error=exc)
            return
        self.last_checkpoint = self.clock()
        if self.to_log is not None:
            self.to_log.send(codec.encode(0, *schema.to_log.checkpointed(lsn=run.lsn)))
        for request in run.waiters:
            reply(self.router, request, {"seq": meta.seq, "checkpoint_lsn": meta.checkpoint_lsn})

    def abandon_checkpoint(self, failure: JetError) -> None:
        """The log failed: a checkpoint still waiting for its LSN will never publish (and
        shutdown must not wait for it); its waiters get the failure."""
        run = self.checkpoint
        if run is None or run.lsn is not None:
            return  # a checkpoint whose log is durable still publishes
        self.checkpoint = None
        for request in run.waiters:
            reply(self.router, request, error=failure)

    def maybe_checkpoint(self) -> None:
        if self.checkpoint is not None or self.storage.failure is not None:
            return
        if self.checkpoint_requests:
            self.start_checkpoint()
            self.checkpoint.waiters, self.checkpoint_requests = self.checkpoint_requests, []
            return
        overdue = self.clock() - self.last_checkpoint > CHECKPOINT_INTERVAL_S
        if self.storage.checkpoint_due() or (self.storage.changed_since_checkpoint and overdue):
            self.start_checkpoint()

    # -- shutdown ------------------------------------------------------------
    def shutdown(self, body: dict, request: Request):
        fault_plan.step("shutdown")
        self.shutdown_request = request
        return DEFERRED

    def finish_shutdown(self) -> bool:
        """Once every batch is durable: a last checkpoint in the clean state.  True when done."""
        if self.batches or (self.log and self.log.queue):
            return False
        if self.checkpoint is not None:
            return False  # let the running one complete first
        if self.storage.failure is None:
            self.start_checkpoint(DB_CLEAN)
            self.checkpoint.pages.result()
            self.advance_checkpoint()
        reply(self.router, self.shutdown_request, {"clean": self.storage.failure is None})
        return True


def main(config: dict) -> None:
    cfg = actor_setup(config)
    options = cfg.options
    try:
        storage = Storage.open(
            cfg.path,
            auto_checkpoint=False,
            env=env_for(DEFAULT_ENV),
            ship_redo=ShippingLog,
            run_dir=os.path.join(cfg.path, RUN_DIR),
            **options["storage"],
        )
    except JetError as exc:
        report_startup_failure(cfg.endpoints["supervisor"], NAME, exc)
        return
    host = ActorHost(cfg)
    to_log = events = None
    recovered = {
        "end_lsn": 0,
        "generation": 0,
        "signature": storage.meta.log_signature,
        "db_signature": storage.meta.db_signature,
        "checkpoint_lsn": storage.meta.checkpoint_lsn,
        "log_file_size": storage.log_file_size,
    }
    if storage.log is not None:
        recovered.update(end_lsn=storage.log.end_lsn, generation=storage.log.current_generation)
        to_log = host.socket(zmq.PUSH, connect=cfg.endpoints["log_append"], watch=False)
        events = host.socket(zmq.PULL, bind=cfg.endpoints["log_events"], watch=True)
    router = host.socket(zmq.ROUTER, bind=cfg.endpoints["buffer_manager"], watch=True)
    manager = BufferManager(storage, router, to_log)
    host.start(lambda: {"commits": storage.commit_seq}, recovered)
    try:
        while (ready := host.wait(5 if manager.checkpoint is not None else 200)) is not None:
            host.heartbeat.busy()
            if events is not None and events in ready:
                for frame in drain(events, MAX_EVENTS_PER_TURN):
                    manager.on_log_event(frame)
            if router in ready:
                manager.serve()
            manager.ship()
            manager.advance_checkpoint()
            if manager.shutdown_request is not None:
                if manager.finish_shutdown():
                    break
            else:
                manager.maybe_checkpoint()
                manager.storage.expire_transactions(manager.clock())
                storage.evict()
            host.heartbeat.idle()
    finally:
        manager.writer.shutdown(wait=True)
        storage.close_files()
        host.close()

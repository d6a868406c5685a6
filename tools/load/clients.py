"""The client processes: a runner per engine (jetstore through ``connect``, SQLite
through one connection in WAL mode) and the loop each process runs - warm up, then
issue the seeded transactions, time them, and stream one record per second to the
driver."""

from __future__ import annotations

import math
import signal
import sqlite3
import time

from .shared import BACKUP, READY_TIMEOUT_S, START, STOP, new_second, wire_second
from .workload import Workload

# Errors after which a client cannot do anything useful: it stops and reports.
FATAL_ERRORS = frozenset(
    {
        "JET_errInstanceUnavailable",
        "JET_errNotInitialized",
        "JET_errTermInProgress",
        "JET_errClientRequestToStopJetService",
    }
)


class JetRunner:
    engine = "jetstore"

    def __init__(self, target: str, config: dict) -> None:
        from jetstore.engine import JetError, connect

        self.error_type = JetError
        self.client = connect(target)
        self.session = self.client.session()
        self.table, self.lazy = config["table"], config["lazy"]

    def run(self, ops) -> None:
        s, table = self.session, self.table
        if len(ops) == 1 and (ops[0][1] is None or not self.lazy):
            key, value = ops[0]
            if value is None:
                s.get(table, key)
            else:
                s.put(table, key, value)  # a one-operation durable transaction
            return
        s.begin()
        try:
            for key, value in ops:
                if value is None:
                    s.get(table, key)
                else:
                    s.put(table, key, value)
        except BaseException:
            try:
                s.rollback()
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass
            raise
        s.commit(lazy=self.lazy)

    def error_name(self, exc: BaseException) -> str:
        if isinstance(exc, self.error_type):
            return exc.name
        return f"python:{type(exc).__name__}"

    def close(self) -> None:
        self.client.close()


class SqliteRunner:
    engine = "sqlite"

    def __init__(self, target: str, config: dict) -> None:
        self.db = sqlite3.connect(target, isolation_level=None, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'NORMAL' if config['lazy'] else 'FULL'}")
        self.db.execute("PRAGMA busy_timeout=60000")
        table = config["table"]
        self.select = f'SELECT v FROM "{table}" WHERE k = ?'
        self.upsert = f'INSERT OR REPLACE INTO "{table}" (k, v) VALUES (?, ?)'

    def run(self, ops) -> None:
        db = self.db
        if len(ops) == 1:
            key, value = ops[0]
            if value is None:
                db.execute(self.select, (key,)).fetchone()
            else:
                db.execute(self.upsert, (key, value))
            return
        writes = any(value is not None for _key, value in ops)
        db.execute("BEGIN IMMEDIATE" if writes else "BEGIN")
        try:
            for key, value in ops:
                if value is None:
                    db.execute(self.select, (key,)).fetchone()
                else:
                    db.execute(self.upsert, (key, value))
            db.execute("COMMIT")
        except BaseException:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise

    def error_name(self, exc: BaseException) -> str:
        if isinstance(exc, sqlite3.Error):
            return getattr(exc, "sqlite_errorname", None) or f"sqlite:{type(exc).__name__}"
        return f"python:{type(exc).__name__}"

    def close(self) -> None:
        self.db.close()


RUNNERS = {"jetstore": JetRunner, "sqlite": SqliteRunner}


def client_main(engine: str, target: str, index: int, config: dict, shared, started, queue):
    """One client process: connect, report ready, wait for the start, run, stream seconds.

    A transaction belongs to the second it starts in.  A second's record goes to the
    driver as soon as a transaction starts in a later second, with that later second:
    every earlier second of this client is then complete (and with the last record,
    before "done", every second is)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver stops us through ``shared``
    try:
        runner = RUNNERS[engine](target, config)
        warm = Workload(config, f"client{index}/warmup")
        work = Workload(config, f"client{index}/run")
    except BaseException as exc:  # noqa: BLE001 - reported to the driver, which goes on
        name = getattr(exc, "name", None) or f"python:{type(exc).__name__}"
        queue.put(("done", index, {"aborted": f"{name}: {exc}"[:300]}))
        return
    queue.put(("ready", index, None))
    started.wait(READY_TIMEOUT_S + 60)
    start_at = shared[START]
    measure_at = start_at + config["warmup"]
    end_at = measure_at + config["duration"] if config["duration"] else math.inf
    quota = config["transactions_per_client"][index] if config["transactions"] else math.inf
    errors: dict[str, int] = {}
    warmup_tx = warmup_errors = measured = 0
    aborted = None
    current, second = None, -1
    while time.monotonic() < start_at:
        time.sleep(0.0005)
    while not shared[STOP]:
        now = time.monotonic()
        if now >= end_at or measured >= quota:
            break
        warming, sec = now < measure_at, int(now - measure_at)
        if not warming and sec != second:
            if current is not None:
                queue.put(("second", index, (second, wire_second(current), sec)))
            current, second = new_second(), sec
        ops = (warm if warming else work).transaction()
        writes = any(value is not None for _key, value in ops)
        phase = 1 if shared[BACKUP] else 0
        began = time.perf_counter()
        failure = None
        try:
            runner.run(ops)
        except Exception as exc:  # noqa: BLE001 - counted by ESE name, the run goes on
            failure = runner.error_name(exc)
        micros = int((time.perf_counter() - began) * 1e6 + 0.5)
        if warming:
            warmup_tx += failure is None
            warmup_errors += failure is not None
        else:
            bucket = current[phase]
            if failure is None:
                bucket[0].record(micros)
                bucket[2 if writes else 1] += 1
                measured += 1
            else:
                bucket[3] += 1
                errors[failure] = errors.get(failure, 0) + 1
        if failure in FATAL_ERRORS:
            aborted = failure
            break
    finish = time.monotonic()
    if current is not None:
        queue.put(("second", index, (second, wire_second(current), second + 1)))
    try:
        runner.close()
    except Exception:  # noqa: BLE001 - the figures are what matter now
        pass
    queue.put(
        (
            "done",
            index,
            {
                "finish": finish,
                "measured_tx": measured,
                "warmup_tx": warmup_tx,
                "warmup_errors": warmup_errors,
                "errors": errors,
                "aborted": aborted,
            },
        )
    )

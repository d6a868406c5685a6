"""``jetstore load DIR``: a seeded, reproducible load generator with online backups.

    python -m jetstore.tools.load DIR [--clients 4] [--duration 10 | --transactions N]
        [--read-ratio 0.5] [--value-size 100|uniform:MIN-MAX|lognormal:MEDIAN,SIGMA]
        [--keys 100000] [--key-dist uniform|zipfian] [--zipf-s 0.99] [--keys-per-tx 1]
        [--lazy] [--backup-every S] [--backup-mode full|incremental]
        [--json FILE] [--plot FILE.png] [--compare sqlite]

Starts an instance in DIR (or attaches to the one already running there), loads
the key space, and runs CLIENTS client processes (multiprocess, spawn) that each
issue transactions drawn from a seeded workload: KEYS_PER_TX operations, each a
read with probability READ_RATIO, keys uniform or zipfian (scrambled), values
from a size distribution; lazy or durable commits.  The first WARMUP seconds are
run but not measured.  A latency is a whole transaction's, from its first call
to the return of its commit (a durable commit includes the log flush); tx/s and
latencies count successful transactions, errors are counted apart.

Every client keeps HDR-style latency histograms (log-linear buckets, 2
significant digits: every reported percentile is within 1/128 of the exact
nearest-rank value) per second of the run, split by whether a backup was
running when the transaction started.  Clients send bucket counts, never raw
samples; the driver merges them into the per-second timeline and into three
windows: overall, during backup, no backup.  With --backup-every S the driver
asks the instance's control socket for a backup every S seconds (full ones, or
one full then incrementals) and records each backup's window, bytes and MB/s.

Errors are counted by their ESE name (JET_errWriteConflict...) and never stop
the run, except those that mean the instance is gone (JET_errInstanceUnavailable
and friends), which end that client.  --compare sqlite runs the same workload -
same seed, clients, mix, and backups through SQLite's online backup API -
against SQLite (one connection per process, WAL, synchronous=FULL, or NORMAL with
--lazy, busy_timeout) on the same filesystem, and prints the ratios.

Exit codes: 0 success; 1 the run finished but something failed (a backup, a
client process, no transaction at all); 2 bad usage (including --plot without
matplotlib); 130 interrupted (the partial report is still printed and written).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from fractions import Fraction

import multiprocess

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
PERCENTILES = (("p50", 50), ("p90", 90), ("p99", 99), ("p99_9", 99.9))
# Errors after which a client cannot do anything useful: it stops and reports.
FATAL_ERRORS = frozenset(
    {
        "JET_errInstanceUnavailable",
        "JET_errNotInitialized",
        "JET_errTermInProgress",
        "JET_errClientRequestToStopJetService",
    }
)
MAX_VALUE = 16 << 20  # engine.writeset.MAX_VALUE_SIZE
READY_TIMEOUT_S = 120.0
START, BACKUP, STOP = 0, 1, 2  # slots of the shared array every client reads


# -- HDR-style histogram -------------------------------------------------------------------------
class Histogram:
    """Counts of non-negative integers (microseconds here) in log-linear buckets.

    Values below ``2**sub_bits`` have a bucket each; above, every power-of-two
    range is cut into ``2**(sub_bits-1)`` equal buckets, so a bucket is never
    wider than 1/2**(sub_bits-1) of its lowest value.  ``sub_bits`` follows
    HdrHistogram: 2 significant decimal digits -> 8 bits -> relative error
    <= 1/128.  Percentiles are nearest-rank and report the bucket's highest
    value (clamped to the exact max), so they are never below the exact value
    and exceed it by less than that bound.  Sparse: only used buckets are kept,
    and ``to_wire``/``merge`` move bucket counts, never samples.
    """

    __slots__ = ("sub_bits", "half", "counts", "count", "min", "max", "sum")

    def __init__(self, significant_digits: int = 2) -> None:
        self.sub_bits = max(2, math.ceil(math.log2(2 * 10**significant_digits)))
        self.half = 1 << (self.sub_bits - 1)
        self.counts: dict[int, int] = {}
        self.count = 0
        self.min: int | None = None
        self.max: int | None = None
        self.sum = 0

    @property
    def relative_error(self) -> float:
        return 1 / self.half

    def index(self, value: int) -> int:
        shift = value.bit_length() - self.sub_bits
        if shift <= 0:
            return value
        return shift * self.half + (value >> shift)

    def bucket_range(self, index: int) -> tuple[int, int]:
        """(lowest, highest) value that lands in bucket ``index``."""
        if index < 2 * self.half:
            return index, index
        shift = index // self.half - 1
        top = index - shift * self.half
        return top << shift, ((top + 1) << shift) - 1

    def record(self, value: int, n: int = 1) -> None:
        if value < 0:
            raise ValueError(f"negative value {value}")
        index = self.index(value)
        self.counts[index] = self.counts.get(index, 0) + n
        self.count += n
        self.sum += value * n
        if self.min is None or value < self.min:
            self.min = value
        if self.max is None or value > self.max:
            self.max = value

    def merge(self, other: Histogram) -> Histogram:
        if other.sub_bits != self.sub_bits:
            raise ValueError("histograms of different precision")
        for index, n in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + n
        self.count += other.count
        self.sum += other.sum
        if other.min is not None and (self.min is None or other.min < self.min):
            self.min = other.min
        if other.max is not None and (self.max is None or other.max > self.max):
            self.max = other.max
        return self

    def to_wire(self) -> tuple:
        return (self.sub_bits, self.counts, self.count, self.min, self.max, self.sum)

    @classmethod
    def from_wire(cls, wire) -> Histogram:
        hist = cls.__new__(cls)
        sub_bits, counts, hist.count, hist.min, hist.max, hist.sum = wire
        hist.sub_bits, hist.half = sub_bits, 1 << (sub_bits - 1)
        hist.counts = {int(k): v for k, v in counts.items()}
        return hist

    def percentile(self, percent: float) -> int | None:
        """Nearest-rank percentile: the smallest recorded value with at least
        ``percent``% of the values at or below it (to the histogram's precision)."""
        if not self.count:
            return None
        rank = max(1, math.ceil(Fraction(str(percent)) * self.count / 100))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return max(self.min, min(self.bucket_range(index)[1], self.max))
        return self.max

    def buckets(self) -> list[list[int]]:
        """[lowest, highest, count] of every used bucket, ascending."""
        return [[*self.bucket_range(i), self.counts[i]] for i in sorted(self.counts)]


def exact_percentile(samples: list[int], percent: float) -> int:
    """The nearest-rank percentile of raw samples (what ``Histogram.percentile`` bounds)."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(Fraction(str(percent)) * len(ordered) / 100))
    return ordered[rank - 1]


# -- workload ----------------------------------------------------------------------------------
def parse_size(text: str) -> int:
    """Bytes: 100, 4K, 1M (powers of 1024)."""
    text = text.strip().upper().removesuffix("B")
    scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
    digits = text[:-1] if scale != 1 else text
    try:
        value = int(float(digits) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 100, 4K, 1M)") from None
    if not 0 <= value <= MAX_VALUE:
        raise argparse.ArgumentTypeError(f"size {value} outside 0..{MAX_VALUE}")
    return value


class ValueSize:
    """A value size distribution: ``N`` / ``fixed:N``, ``uniform:MIN-MAX``,
    ``lognormal:MEDIAN,SIGMA`` (clamped to 1 byte..16 MiB)."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        kind, _, rest = spec.partition(":") if ":" in spec else ("fixed", "", spec)
        try:
            if kind == "fixed":
                self.kind, self.low = "fixed", parse_size(rest)
                self.high = self.low
            elif kind == "uniform":
                low, high = rest.split("-")
                self.kind, self.low, self.high = "uniform", parse_size(low), parse_size(high)
                if self.low > self.high:
                    raise argparse.ArgumentTypeError(f"{spec}: MIN > MAX")
            elif kind == "lognormal":
                median, sigma = rest.split(",")
                self.kind, self.median, self.sigma = "lognormal", parse_size(median), float(sigma)
                if self.median < 1 or self.sigma < 0:
                    raise argparse.ArgumentTypeError(f"{spec}: MEDIAN >= 1 and SIGMA >= 0")
                self.low, self.high = 1, MAX_VALUE
            else:
                raise argparse.ArgumentTypeError(
                    f"{spec}: expected N, fixed:N, uniform:MIN-MAX or lognormal:MEDIAN,SIGMA"
                )
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{spec}: expected N, fixed:N, uniform:MIN-MAX or lognormal:MEDIAN,SIGMA"
            ) from None

    def draw(self, rng: random.Random) -> int:
        if self.kind == "fixed":
            return self.low
        if self.kind == "uniform":
            return rng.randint(self.low, self.high)
        size = round(self.median * math.exp(self.sigma * rng.gauss(0.0, 1.0)))
        return min(max(size, 1), MAX_VALUE)

    def describe(self) -> str:
        if self.kind == "fixed":
            return f"{self.low} B"
        if self.kind == "uniform":
            return f"uniform {self.low}-{self.high} B"
        return f"lognormal median {self.median} B sigma {self.sigma:g}"

    def __repr__(self) -> str:  # argparse prints it in errors; JSON gets ``spec``
        return self.spec


class Zipf:
    """Ranks 1..n with P(k) ~ 1/k**s, by rejection-inversion (Hoermann & Derflinger
    1996, as in Apache Commons RNG): O(1) per draw, no table, any s > 0."""

    def __init__(self, n: int, s: float) -> None:
        if n < 1 or s <= 0:
            raise ValueError("zipf needs n >= 1 and s > 0")
        self.n, self.s = n, s
        self.h_x1 = self._h_integral(1.5) - 1.0
        self.h_n = self._h_integral(n + 0.5)
        self.squeeze = 2.0 - self._h_integral_inverse(self._h_integral(2.5) - self._h(2.0))

    def _h(self, x: float) -> float:
        return math.exp(-self.s * math.log(x))

    def _h_integral(self, x: float) -> float:
        log_x = math.log(x)
        return _expm1_over_x((1.0 - self.s) * log_x) * log_x

    def _h_integral_inverse(self, x: float) -> float:
        t = max(x * (1.0 - self.s), -1.0)
        return math.exp(_log1p_over_x(t) * x)

    def draw(self, rng: random.Random) -> int:
        while True:
            u = self.h_n + rng.random() * (self.h_x1 - self.h_n)
            x = self._h_integral_inverse(u)
            k = min(max(int(x + 0.5), 1), self.n)
            if k - x <= self.squeeze or u >= self._h_integral(k + 0.5) - self._h(k):
                return k


def _expm1_over_x(x: float) -> float:
    return math.expm1(x) / x if abs(x) > 1e-8 else 1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + x / 4))


def _log1p_over_x(x: float) -> float:
    return math.log1p(x) / x if abs(x) > 1e-8 else 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))


def key_bytes(index: int) -> bytes:
    return b"key%012d" % index


class Workload:
    """The operations of one client's stream: deterministic in (seed, stream name).

    A transaction is KEYS_PER_TX operations, each (key, None) for a read or
    (key, value) for a write.  Zipfian ranks are scattered over the key space by
    one affine permutation shared by every client (the same keys are hot for
    all of them, as in YCSB's scrambled zipfian)."""

    def __init__(self, config: dict, stream: str) -> None:
        seed = config["seed"]
        self.rng = random.Random(f"{seed}/{stream}")
        self.keys = config["keys"]
        self.read_ratio = config["read_ratio"]
        self.per_tx = config["keys_per_tx"]
        self.sizes = ValueSize(config["value_size"])
        self.zipf = Zipf(self.keys, config["zipf_s"]) if config["key_dist"] == "zipfian" else None
        perm = random.Random(f"{seed}/permutation")
        self.mul = perm.randrange(1, self.keys) if self.keys > 1 else 1
        while math.gcd(self.mul, self.keys) != 1:
            self.mul += 1
        self.add = perm.randrange(self.keys)
        self.buffer = value_buffer(seed, self.sizes.high)

    def key_index(self) -> int:
        if self.zipf is None:
            return self.rng.randrange(self.keys)
        return (self.mul * (self.zipf.draw(self.rng) - 1) + self.add) % self.keys

    def value(self) -> bytes:
        size = self.sizes.draw(self.rng)
        offset = self.rng.randrange(len(self.buffer) - size + 1)
        return self.buffer[offset : offset + size]

    def transaction(self) -> list[tuple[bytes, bytes | None]]:
        ops = []
        for _ in range(self.per_tx):
            key = key_bytes(self.key_index())
            ops.append((key, None if self.rng.random() < self.read_ratio else self.value()))
        return ops


def value_buffer(seed: int, largest: int) -> bytes:
    """Random bytes values are sliced from (incompressible; the same in every process)."""
    return random.Random(f"{seed}/values").randbytes(largest + 4096)


# -- engines: what one client process runs -------------------------------------------------------
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


def _new_second() -> list[list]:
    """Per phase (0: no backup running, 1: backup running): histogram, read tx, write tx,
    errors."""
    return [[Histogram(), 0, 0, 0], [Histogram(), 0, 0, 0]]


def _wire_second(second: list[list]) -> list[list]:
    return [[hist.to_wire(), reads, writes, errors] for hist, reads, writes, errors in second]


def client_main(engine: str, target: str, index: int, config: dict, shared, started, queue):
    """One client process: connect, report ready, wait for the start, run, stream seconds."""
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
        warming = now < measure_at
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
            sec = int(now - measure_at)
            if sec != second:
                if current is not None:
                    queue.put(("second", index, (second, _wire_second(current))))
                current, second = _new_second(), sec
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
        queue.put(("second", index, (second, _wire_second(current))))
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


# -- backups -----------------------------------------------------------------------------------
class BackupScheduler(threading.Thread):
    """Asks for a backup every ``every`` seconds of the measured window (the next one starts
    ``every`` seconds after the previous one started, or at once if it ran longer)."""

    def __init__(
        self, backup, config: dict, root: str, shared, measure_at: float, end_at: float
    ) -> None:
        super().__init__(name="jetstore-load-backups", daemon=True)
        self.backup, self.config, self.root = backup, config, root
        self.shared, self.measure_at, self.end_at = shared, measure_at, end_at
        self.finished = threading.Event()
        self.records: list[dict] = []
        self.state = "idle"
        self.kind = ""
        self.previous_full: str | None = None

    def run(self) -> None:
        every, mode = self.config["backup_every"], self.config["backup_mode"]
        next_at = self.measure_at + every
        while next_at < self.end_at and not self.finished.wait(
            max(0.0, next_at - time.monotonic())
        ):
            have_full = any(r["ok"] and r["type"] == "full" for r in self.records)
            incremental = mode == "incremental" and getattr(self.backup, "incremental", True)
            kind = "incremental" if incremental and have_full else "full"
            number = len(self.records) + 1
            if mode == "incremental":
                dest = os.path.join(self.root, "chain")
            elif self.config["backup_atomic"]:
                dest = os.path.join(self.root, "full")
            else:
                dest = os.path.join(self.root, f"full-{number:04d}")
            os.makedirs(dest, exist_ok=True)
            self.kind, self.state = kind, "starting"
            started = time.monotonic()
            self.shared[BACKUP] = 1
            record = {"n": number, "type": kind, "dest": dest, "ok": False, "error": None}
            try:
                result = self.backup(
                    dest, kind == "incremental", self.config["backup_atomic"], self._progress
                )
            except Exception as exc:  # noqa: BLE001 - a failed backup is a result
                result = None
                record["error"] = getattr(exc, "name", None) or type(exc).__name__
                record["message"] = str(getattr(exc, "message", None) or exc)[:300]
            finally:
                ended = time.monotonic()
                self.shared[BACKUP] = 0
            seconds = ended - started
            record.update(
                start_s=started - self.measure_at, end_s=ended - self.measure_at, seconds=seconds
            )
            if result is not None:
                record.update(
                    ok=True,
                    bytes=result.get("bytes", 0),
                    mb_per_s=result.get("bytes", 0) / 1e6 / seconds if seconds else None,
                    roll_lsn=result.get("roll_lsn"),
                    gen_low=result.get("gen_low"),
                    gen_high=result.get("gen_high"),
                    truncated=result.get("truncated"),
                    backup_id=result.get("backup_id"),
                )
                if result.get("engine_note"):
                    record["note"] = result["engine_note"]
            self.records.append(record)
            self.state = "idle"
            if record["ok"] and kind == "full" and mode == "full":
                previous, self.previous_full = self.previous_full, dest
                if previous and previous != dest and not self.config["keep_backups"]:
                    shutil.rmtree(previous, ignore_errors=True)
            elif not record["ok"] and not os.listdir(dest):
                os.rmdir(dest)
            next_at = started + every

    def _progress(self, event: dict) -> None:
        total = event.get("total") or 0
        percent = f" {100 * event.get('done', 0) / total:3.0f}%" if total else ""
        self.state = f"{event.get('phase', '')}{percent}"

    def describe(self) -> str:
        done = len(self.records)
        failed = sum(not r["ok"] for r in self.records)
        if self.shared[BACKUP]:
            return f"backup #{done + 1} {self.kind} {self.state}"
        if not done:
            return "no backup yet"
        plural = "s" if done > 1 else ""
        return f"{done} backup{plural}" + (f" ({failed} FAILED)" if failed else "")


def jetstore_backup(directory: str, timeout: float):
    """A backup over the instance's control socket (what `jetstore ctl backup` does)."""

    def backup(dest: str, incremental: bool, atomic: bool, on_progress) -> dict:
        from jetstore.actors.control_commands import to_control_server
        from jetstore.tools.ctl import ControlClient, resolve_endpoint

        client = ControlClient(resolve_endpoint(directory), timeout)
        try:
            request = to_control_server.backup(
                dest=os.path.abspath(dest), incremental=incremental, atomic=atomic
            )
            return client.call(request, on_progress=on_progress)
        finally:
            client.close()

    return backup


def sqlite_backup(database: str):
    """SQLite's online backup API (``Connection.backup``: every page, in one step)."""

    def backup(dest: str, incremental: bool, atomic: bool, on_progress) -> dict:
        target = os.path.join(dest, "backup.db")
        partial = target + ".tmp"
        source = sqlite3.connect(database, timeout=60)
        try:
            copy = sqlite3.connect(partial)
            try:

                def progress(status, remaining, total):
                    on_progress({"phase": "pages", "done": total - remaining, "total": total})

                source.backup(copy, progress=progress)
            finally:
                copy.close()
        finally:
            source.close()
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, target)
        return {
            "bytes": os.path.getsize(target),
            "engine_note": "SQLite online backup API (no incrementals: always full)",
        }

    backup.incremental = False
    return backup


# -- the driver --------------------------------------------------------------------------------
class Collector:
    """What the clients streamed: per-second, per-phase histograms and counts."""

    def __init__(self, clients: int) -> None:
        self.seconds: dict[int, list[list]] = {}
        self.done: dict[int, dict] = {}
        self.ready: set[int] = set()
        self.exited: dict[int, float] = {}  # client -> when its process was seen gone
        self.clients = clients

    def take(self, message) -> None:
        kind, index, body = message
        if kind == "ready":
            self.ready.add(index)
        elif kind == "done":
            self.done[index] = body
        elif kind == "second":
            sec, phases = body
            slot = self.seconds.setdefault(sec, _new_second())
            for mine, (wire, reads, writes, errors) in zip(slot, phases, strict=True):
                mine[0].merge(Histogram.from_wire(wire))
                mine[1] += reads
                mine[2] += writes
                mine[3] += errors

    def last_second(self, sec: int) -> tuple[int, int | None, int]:
        """(tx, p99 µs, errors) of second ``sec`` as far as it has arrived."""
        slot = self.seconds.get(sec)
        if slot is None:
            return 0, None, 0
        hist = Histogram().merge(slot[0][0]).merge(slot[1][0])
        return hist.count, hist.percentile(99), slot[0][3] + slot[1][3]


def drive(engine: str, target: str, config: dict, backup, backup_root: str | None) -> dict:
    """Run the clients against ``target``; returns the summary of section "result"."""
    context = multiprocess.get_context("spawn")
    queue = context.Queue()
    shared = context.RawArray("d", 3)
    started = context.Event()
    collector = Collector(config["clients"])
    from jetstore.tools import load as this  # the importable name of client_main, even as -m

    processes = [
        context.Process(
            target=this.client_main,
            args=(engine, target, n, config, shared, started, queue),
            name=f"jetstore-load-client-{n}",
            daemon=True,
        )
        for n in range(config["clients"])
    ]
    live = LiveLine(engine, config)
    scheduler = None
    interrupted = False
    measure_at = None
    try:
        for process in processes:
            process.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        live.show("starting clients")
        while len(collector.ready | set(collector.done)) < len(processes):
            _drain(queue, collector, 0.1)
            _reap_dead(processes, collector)
            if time.monotonic() > deadline:
                raise RuntimeError(f"clients not ready after {READY_TIMEOUT_S:g} s")
        start_at = time.monotonic() + 0.05
        measure_at = start_at + config["warmup"]
        shared[START] = start_at
        started.set()
        end_at = measure_at + config["duration"] if config["duration"] else math.inf
        if config["backup_every"]:
            scheduler = BackupScheduler(backup, config, backup_root, shared, measure_at, end_at)
            scheduler.start()
        while len(collector.done) < len(processes):
            try:
                _drain(queue, collector, 0.2)
                _reap_dead(processes, collector)
                now = time.monotonic()
                if scheduler is not None and now >= end_at:
                    scheduler.finished.set()
                live.update(now, start_at, measure_at, collector, scheduler)
            except KeyboardInterrupt:
                interrupted = True
                shared[STOP] = 1
                live.show("interrupted: stopping the clients")
    finally:
        shared[STOP] = 1
        started.set()
        live.finish()
        if scheduler is not None:
            scheduler.finished.set()
            if scheduler.shared[BACKUP]:
                live.show("waiting for the running backup to finish")
            scheduler.join()
            live.finish()
        # Keep reading while the clients exit: a process cannot exit before the queue's
        # feeder has written everything it put into the pipe.
        deadline = time.monotonic() + 15
        while any(p.is_alive() for p in processes) and time.monotonic() < deadline:
            _drain(queue, collector, 0.1)
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join()
        _drain(queue, collector, 0.05)
    finishes = [d["finish"] for d in collector.done.values() if "finish" in d]
    # The measured window ends at the last client's last transaction, and in duration mode
    # at the duration (transactions started before it count whole).  Clients that stopped
    # early (interrupted, instance gone) shorten it.
    measured = max(0.0, (max(finishes) if finishes else measure_at) - measure_at)
    if config["duration"]:
        measured = min(measured, config["duration"])
    result = summarize(collector, measured, scheduler.records if scheduler else [])
    result["interrupted"] = interrupted
    return result


def _drain(queue, collector: Collector, wait: float) -> None:
    import queue as queue_module

    try:
        collector.take(queue.get(timeout=wait))
        while True:
            collector.take(queue.get_nowait())
    except queue_module.Empty:
        pass


def _reap_dead(processes, collector: Collector) -> None:
    """Clients that exited without saying "done" (a clean exit gets 2 s for its last
    messages to come through the pipe; a later real "done" replaces this verdict)."""
    now = time.monotonic()
    for n, process in enumerate(processes):
        if n in collector.done or process.exitcode is None:
            continue
        seen = collector.exited.setdefault(n, now)
        if process.exitcode != 0 or now - seen > 2.0:
            collector.done[n] = {"aborted": f"client process died (exit code {process.exitcode})"}


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _ms(micros: int | None) -> float | None:
    return None if micros is None else micros / 1000


def window_summary(slots: list[list], seconds: float) -> dict:
    """tx/s, latency percentiles (ms) and the histogram of some (second, phase) slots."""
    hist = Histogram()
    reads = writes = errors = 0
    for slot in slots:
        hist.merge(slot[0])
        reads += slot[1]
        writes += slot[2]
        errors += slot[3]
    summary = {
        "seconds": round(seconds, 6),
        "transactions": hist.count,
        "read_tx": reads,
        "write_tx": writes,
        "errors": errors,
        "tx_per_s": hist.count / seconds if seconds > 0 else None,
    }
    for name, percent in PERCENTILES:
        summary[f"{name}_ms"] = _ms(hist.percentile(percent))
    summary.update(
        max_ms=_ms(hist.max),
        min_ms=_ms(hist.min),
        mean_ms=hist.sum / hist.count / 1000 if hist.count else None,
        histogram_us=hist.buckets(),
    )
    return summary


def summarize(collector: Collector, measured: float, backups: list[dict]) -> dict:
    windows = [(b["start_s"], b["end_s"]) for b in backups]
    during = sum(_overlap(s, e, 0.0, measured) for s, e in windows)
    seconds = collector.seconds
    last = max([math.ceil(measured) - 1, *seconds]) if seconds or measured else -1
    timeline = []
    for sec in range(0, last + 1):
        slot = seconds.get(sec, _new_second())
        width = max(min(1.0, measured - sec), 0.0) or 1.0
        hist = Histogram().merge(slot[0][0]).merge(slot[1][0])
        p = {name: hist.percentile(pct) for name, pct in PERCENTILES}
        timeline.append(
            {
                "t": sec,
                "seconds": width,
                "tx": hist.count,
                "tx_per_s": hist.count / width,
                "read_tx": slot[0][1] + slot[1][1],
                "write_tx": slot[0][2] + slot[1][2],
                "errors": slot[0][3] + slot[1][3],
                **{f"{name}_ms": _ms(v) for name, v in p.items()},
                "max_ms": _ms(hist.max),
                "backup_fraction": round(
                    sum(_overlap(s, e, sec, sec + width) for s, e in windows) / width, 4
                ),
            }
        )
    errors: dict[str, int] = {}
    for done in collector.done.values():
        for name, n in done.get("errors", {}).items():
            errors[name] = errors.get(name, 0) + n
    ok = [b for b in backups if b["ok"]]
    return {
        "measured_seconds": measured,
        "overall": window_summary([p for s in seconds.values() for p in s], measured),
        "no_backup": window_summary([s[0] for s in seconds.values()], measured - during),
        "during_backup": window_summary([s[1] for s in seconds.values()], during),
        "timeline": timeline,
        "backups": backups,
        "backup_summary": {
            "count": len(backups),
            "succeeded": len(ok),
            "failed": len(backups) - len(ok),
            "seconds_total": sum(b["seconds"] for b in backups),
            "bytes_total": sum(b["bytes"] for b in ok),
            "mean_seconds": sum(b["seconds"] for b in ok) / len(ok) if ok else None,
            "mean_mb_per_s": (
                sum(b["bytes"] for b in ok) / 1e6 / sum(b["seconds"] for b in ok)
                if ok and sum(b["seconds"] for b in ok) > 0
                else None
            ),
        },
        "errors": dict(sorted(errors.items(), key=lambda item: -item[1])),
        "warmup_transactions": sum(d.get("warmup_tx", 0) for d in collector.done.values()),
        "warmup_errors": sum(d.get("warmup_errors", 0) for d in collector.done.values()),
        "clients": [
            {
                "client": n,
                "transactions": d.get("measured_tx", 0),
                "aborted": d.get("aborted"),
            }
            for n, d in sorted(collector.done.items())
        ],
    }


class LiveLine:
    """One updating stderr line: tx/s and p99 of the last second, errors, backup state."""

    def __init__(self, engine: str, config: dict) -> None:
        self.engine = engine
        self.duration = config["duration"]
        self.quiet = config["quiet"]
        self.tty = sys.stderr.isatty()
        self.last_print = 0.0
        self.errors = 0
        self.counted: set[int] = set()
        self.dirty = False

    def show(self, text: str) -> None:
        if self.quiet:
            return
        if self.tty:
            print(f"\r{text}\x1b[K", end="", file=sys.stderr, flush=True)
            self.dirty = True
        else:
            print(text, file=sys.stderr, flush=True)

    def update(self, now, start_at, measure_at, collector: Collector, scheduler) -> None:
        interval = 0.5 if self.tty else 5.0
        if self.quiet or now - self.last_print < interval:
            return
        self.last_print = now
        if now < measure_at:
            self.show(f"{self.engine}: warm-up {now - start_at:4.1f} s")
            return
        sec = int(now - measure_at)
        of = f"/{self.duration:g}" if self.duration else ""
        if sec < 1:
            self.show(f"{self.engine}: {now - measure_at:3.1f}{of} s measuring")
            return
        tx, p99, errors = collector.last_second(sec - 1)
        total_errors = sum(
            slot[0][3] + slot[1][3] for s, slot in collector.seconds.items() if s < sec
        )
        backup = f"  {scheduler.describe()}" if scheduler is not None else ""
        p99_text = f"{p99 / 1000:7.2f} ms" if p99 is not None else "      - ms"
        self.show(
            f"{self.engine}: {sec:d}{of} s  {tx:8,d} tx/s  p99 {p99_text}  "
            f"errors {total_errors:,d}{backup}"
        )

    def finish(self) -> None:
        if self.dirty and not self.quiet:
            print(file=sys.stderr, flush=True)
        self.dirty = False


# -- targets: what the clients run against -------------------------------------------------------
def populate(put_batch, workload_config: dict, keys: int) -> float:
    """Write every key once (values from the size distribution, seeded); seconds taken."""
    began = time.perf_counter()
    rng = random.Random(f"{workload_config['seed']}/populate")
    sizes = ValueSize(workload_config["value_size"])
    buffer = value_buffer(workload_config["seed"], sizes.high)
    batch, batch_bytes = [], 0
    for index in range(keys):
        size = sizes.draw(rng)
        offset = rng.randrange(len(buffer) - size + 1)
        batch.append((key_bytes(index), buffer[offset : offset + size]))
        batch_bytes += size
        if len(batch) >= 1000 or batch_bytes >= 4 << 20 or index == keys - 1:
            put_batch(batch, index == keys - 1)
            batch, batch_bytes = [], 0
    return time.perf_counter() - began


def run_jetstore(config: dict, backup_root: str | None) -> tuple[dict, dict]:
    """Open the instance in DIR (or attach to the running one), load the keys, drive."""
    from jetstore.engine import Instance, JetError, connect
    from jetstore.tools.ctl import CtlFailure, resolve_endpoint

    directory = os.path.abspath(config["dir"])
    handle, mode = None, "opened"
    try:
        resolve_endpoint(directory)
        handle, mode = connect(directory), "attached"
    except (CtlFailure, JetError):
        handle = None
    if handle is None:
        handle = Instance.open(
            directory,
            page_size=config["page_size"],
            cache_size=config["cache_mb"] << 20,
            log_file_size=config["log_file_mb"] << 20,
        )
    try:
        session = handle.session()
        table = config["table"]
        try:
            session.create_table(table)
            created = True
        except JetError as exc:
            if exc.name != "JET_errTableDuplicate":
                raise
            created = False
        info = {"path": directory, "mode": mode, "table_created": created}
        if config["populate"] == "always" or (config["populate"] == "auto" and created):

            def put_batch(batch, last: bool) -> None:
                session.begin()
                for key, value in batch:
                    session.put(table, key, value)
                session.commit(lazy=not last)

            info["populated_keys"] = config["keys"]
            info["populate_seconds"] = populate(put_batch, config, config["keys"])
        else:
            info["populated_keys"] = 0
        session.close()
        backup = jetstore_backup(directory, config["backup_timeout"])
        result = drive("jetstore", directory, config, backup, backup_root)
    finally:
        handle.close()
    return info, result


def run_sqlite(config: dict, scratch: str, backup_root: str | None) -> tuple[dict, dict]:
    database = os.path.join(scratch, "load.sqlite")
    db = sqlite3.connect(database, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    table = config["table"]
    db.execute(f'CREATE TABLE "{table}" (k BLOB PRIMARY KEY, v BLOB)')

    def put_batch(batch, last: bool) -> None:
        db.execute("BEGIN")
        db.executemany(f'INSERT OR REPLACE INTO "{table}" (k, v) VALUES (?, ?)', batch)
        db.execute("COMMIT")

    info = {
        "path": database,
        "journal_mode": "WAL",
        "synchronous": "NORMAL" if config["lazy"] else "FULL",
        "busy_timeout_ms": 60000,
        "sqlite_version": sqlite3.sqlite_version,
        "backup": "sqlite3 online backup API (full) for every backup",
    }
    if config["populate"] != "never":
        info["populated_keys"] = config["keys"]
        info["populate_seconds"] = populate(put_batch, config, config["keys"])
    db.close()
    result = drive("sqlite", database, config, sqlite_backup(database), backup_root)
    return info, result


# -- report ------------------------------------------------------------------------------------
def _fmt(value, width: int, digits: int = 2) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width},.{digits}f}"


def print_result(title: str, result: dict) -> None:
    print(f"\n{title}")
    print(
        f"  {'window':14s} {'seconds':>8s} {'tx':>10s} {'tx/s':>10s} {'p50 ms':>8s} "
        f"{'p90 ms':>8s} {'p99 ms':>8s} {'p99.9 ms':>9s} {'max ms':>8s} {'errors':>7s}"
    )
    for label, key in (
        ("overall", "overall"),
        ("no backup", "no_backup"),
        ("during backup", "during_backup"),
    ):
        w = result[key]
        print(
            f"  {label:14s} {w['seconds']:8.2f} {w['transactions']:10,d} "
            f"{_fmt(w['tx_per_s'], 10, 1)} {_fmt(w['p50_ms'], 8)} {_fmt(w['p90_ms'], 8)} "
            f"{_fmt(w['p99_ms'], 8)} {_fmt(w['p99_9_ms'], 9)} {_fmt(w['max_ms'], 8)} "
            f"{w['errors']:7,d}"
        )
    summary = result["backup_summary"]
    if summary["count"]:
        mean = summary["mean_mb_per_s"]
        print(
            f"  backups: {summary['succeeded']} ok, {summary['failed']} failed, "
            f"{summary['bytes_total'] / 1e6:,.1f} MB in {summary['seconds_total']:.2f} s"
            + (f", {mean:,.1f} MB/s" if mean is not None else "")
        )
        for b in result["backups"]:
            if b["ok"]:
                lsn = f"  roll_lsn {b['roll_lsn']:#x}" if b.get("roll_lsn") is not None else ""
                print(
                    f"    #{b['n']:<3d} {b['type']:11s} at {b['start_s']:7.2f} s "
                    f"{b['seconds']:7.3f} s {b['bytes'] / 1e6:9.2f} MB "
                    f"{_fmt(b['mb_per_s'], 8, 1)} MB/s{lsn}"
                )
            else:
                print(
                    f"    #{b['n']:<3d} {b['type']:11s} at {b['start_s']:7.2f} s FAILED "
                    f"{b['error']}: {b.get('message', '')}"
                )
    if result["errors"]:
        print("  errors: " + ", ".join(f"{n} {c:,d}" for n, c in result["errors"].items()))
    aborted = [c for c in result["clients"] if c["aborted"]]
    for client in aborted:
        print(f"  client {client['client']} stopped: {client['aborted']}")


def comparison(jet: dict, sql: dict) -> dict:
    def ratio(a, b):
        return a / b if a is not None and b else None

    out = {}
    for window in ("overall", "no_backup", "during_backup"):
        j, s = jet[window], sql[window]
        out[window] = {
            "tx_per_s_ratio": ratio(j["tx_per_s"], s["tx_per_s"]),
            **{
                f"{name}_ms_ratio": ratio(j[f"{name}_ms"], s[f"{name}_ms"])
                for name in ("p50", "p90", "p99", "p99_9", "max")
            },
        }
    out["meaning"] = "jetstore / sqlite: tx/s above 1 = jetstore faster; latency below 1 = better"
    return out


def plot(path: str, report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [("jetstore", report, "tab:blue", "-", "tab:orange")]
    if "sqlite" in report:
        runs.append(("sqlite", report["sqlite"], "tab:gray", "--", "tab:green"))
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(11, 6.5))
    for name, result, color, style, shade in runs:
        rows = result["timeline"]
        if rows:  # steps over each second, closed at the end of the last one
            x = [row["t"] for row in rows] + [rows[-1]["t"] + rows[-1]["seconds"]]
            rate = [row["tx_per_s"] for row in rows]
            p99 = [math.nan if row["p99_ms"] is None else row["p99_ms"] for row in rows]
            top.step(
                x,
                [*rate, rate[-1]],
                where="post",
                color=color,
                linestyle=style,
                label=f"{name} tx/s",
            )
            bottom.step(
                x, [*p99, p99[-1]], where="post", color=color, linestyle=style, label=f"{name} p99"
            )
        for n, b in enumerate(result["backups"]):
            for axis in (top, bottom):
                axis.axvspan(
                    b["start_s"],
                    b["end_s"],
                    color=shade,
                    alpha=0.25 if name == "jetstore" else 0.15,
                    label=f"{name} backup" if n == 0 and axis is top else None,
                )
    config = report["config"]
    top.set_title(
        f"jetstore load: {config['clients']} clients, read {config['read_ratio']:.0%}, "
        f"{config['keys_per_tx']} key/tx, {ValueSize(config['value_size']).describe()}, "
        f"{config['keys']:,} keys {config['key_dist']}, "
        f"{'lazy' if config['lazy'] else 'durable'} commits"
    )
    top.set_ylabel("transactions / s")
    top.set_ylim(bottom=0)
    bottom.set_ylabel("p99 latency (ms)")
    bottom.set_xlabel("seconds since the end of warm-up")
    bottom.set_ylim(bottom=0)
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
        axis.legend(loc="best", fontsize="small", framealpha=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- command line --------------------------------------------------------------------------------
def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be >= 1")
    return value


def _ratio(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} must be between 0 and 1")
    return value


def _value_size(text: str) -> str:
    ValueSize(text)  # raises ArgumentTypeError with the reason
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dir",
        metavar="DIR",
        help="instance directory: attached to if an instance is running there, else opened "
        "(created if missing) for the run and closed at the end",
    )
    group = parser.add_argument_group("run length")
    length = group.add_mutually_exclusive_group()
    length.add_argument(
        "--duration",
        type=_positive_float,
        metavar="S",
        help="measured seconds after the warm-up (default 10)",
    )
    length.add_argument(
        "--transactions",
        type=_positive_int,
        metavar="N",
        help="measured transactions in total, split evenly over the clients (instead of "
        "--duration); errors do not count",
    )
    group.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds run before measuring, excluded from every figure (default 1)",
    )
    group.add_argument(
        "--clients",
        type=_positive_int,
        default=4,
        metavar="N",
        help="client processes, each with its own connection (default 4)",
    )
    work = parser.add_argument_group("workload (seeded: the same options give the same stream)")
    work.add_argument(
        "--read-ratio",
        type=_ratio,
        default=0.5,
        metavar="R",
        help="probability that an operation is a read, else a write (default 0.5); a "
        "transaction without writes is read-only",
    )
    work.add_argument(
        "--keys-per-tx",
        type=_positive_int,
        default=1,
        metavar="N",
        help="operations per transaction (default 1: single-operation calls; more: "
        "begin, operations, commit)",
    )
    work.add_argument(
        "--keys",
        type=_positive_int,
        default=100_000,
        metavar="K",
        help="key space: keys key000000000000..K-1 (default 100000)",
    )
    work.add_argument(
        "--key-dist",
        choices=("uniform", "zipfian"),
        default="uniform",
        help="key choice: uniform, or zipfian with exponent --zipf-s over scrambled ranks "
        "(the same keys are hot for every client) (default uniform)",
    )
    work.add_argument(
        "--zipf-s",
        type=_positive_float,
        default=0.99,
        metavar="S",
        help="zipfian exponent (default 0.99, as YCSB)",
    )
    work.add_argument(
        "--value-size",
        type=_value_size,
        default="100",
        metavar="SPEC",
        help="value sizes: N (fixed), uniform:MIN-MAX, lognormal:MEDIAN,SIGMA; K/M suffixes "
        "(default 100)",
    )
    work.add_argument(
        "--lazy",
        action="store_true",
        help="lazy commits (commit(lazy=True): not waiting for the log flush); SQLite then "
        "uses synchronous=NORMAL",
    )
    work.add_argument("--seed", type=int, default=42, help="workload seed (default 42)")
    work.add_argument("--table", default="load", help="table to use (default 'load')")
    work.add_argument(
        "--populate",
        choices=("auto", "always", "never"),
        default="auto",
        help="write every key once before the run: auto = when this run creates the table "
        "(default), always, never",
    )
    backups = parser.add_argument_group("online backups")
    backups.add_argument(
        "--backup-every",
        type=_positive_float,
        metavar="S",
        help="ask for a backup over the control socket every S seconds of the measured "
        "window (the first at S)",
    )
    backups.add_argument(
        "--backup-mode",
        choices=("full", "incremental"),
        default="full",
        help="full: every backup full; incremental: the first full, then incrementals into "
        "the same directory (default full)",
    )
    backups.add_argument(
        "--backup-atomic",
        action="store_true",
        help="atomic backups (DEST/temp, then new/old); full mode then reuses one directory",
    )
    backups.add_argument(
        "--backup-dir",
        metavar="PATH",
        help="keep backups under PATH, in a fresh load-DATE-TIME-* directory per run (default: "
        "a temporary directory beside DIR, removed at the end)",
    )
    backups.add_argument(
        "--keep-backups",
        action="store_true",
        help="keep every full backup, and the temporary backup directory (default: only the "
        "latest full backup is kept while running, and nothing after the run without "
        "--backup-dir)",
    )
    backups.add_argument(
        "--backup-timeout",
        type=_positive_float,
        default=120.0,
        metavar="S",
        help="give up on a backup that sends no progress for S seconds (default 120)",
    )
    out = parser.add_argument_group("output and comparison")
    out.add_argument("--json", metavar="FILE", help="write every figure and the configuration")
    out.add_argument(
        "--plot",
        metavar="FILE.png",
        help="draw throughput and p99 latency per second, backup windows shaded (matplotlib)",
    )
    out.add_argument(
        "--compare",
        choices=("sqlite",),
        help="also run the identical workload against SQLite (WAL, synchronous=FULL, "
        "busy_timeout, same filesystem) and print the ratios",
    )
    out.add_argument("--quiet", action="store_true", help="no live progress line on stderr")
    opening = parser.add_argument_group("instance options (only when this run opens DIR)")
    opening.add_argument(
        "--page-size", type=int, default=8192, metavar="B", help="page size (default 8192)"
    )
    opening.add_argument(
        "--cache-mb", type=_positive_int, default=64, metavar="MB", help="page cache (default 64)"
    )
    opening.add_argument(
        "--log-file-mb",
        type=_positive_int,
        default=1,
        metavar="MB",
        help="log generation size (default 1)",
    )


DESCRIPTION = "\n\n".join(
    [__doc__.split("\n\n")[0].split(": ", 1)[1], __doc__.split("\n\n", 2)[2].rsplit("\n\n", 1)[0]]
)
EPILOG = __doc__.rsplit("\n\n", 1)[1]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``load`` on the ``jetstore`` command's subparsers."""
    parser = subparsers.add_parser(
        "load",
        help="run a load (N client processes, workload mix, periodic backups) and report",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def build_config(args: argparse.Namespace) -> dict:
    duration = args.duration if args.duration or args.transactions else 10.0
    config = {
        "dir": os.path.abspath(args.dir),
        "clients": args.clients,
        "duration": None if args.transactions else duration,
        "transactions": args.transactions,
        "transactions_per_client": (
            [len(range(n, args.transactions, args.clients)) for n in range(args.clients)]
            if args.transactions
            else None
        ),
        "warmup": args.warmup,
        "read_ratio": args.read_ratio,
        "keys_per_tx": args.keys_per_tx,
        "keys": args.keys,
        "key_dist": args.key_dist,
        "zipf_s": args.zipf_s,
        "value_size": args.value_size,
        "lazy": args.lazy,
        "seed": args.seed,
        "table": args.table,
        "populate": args.populate,
        "backup_every": args.backup_every,
        "backup_mode": args.backup_mode,
        "backup_atomic": args.backup_atomic,
        "backup_dir": os.path.abspath(args.backup_dir) if args.backup_dir else None,
        "keep_backups": args.keep_backups,
        "backup_timeout": args.backup_timeout,
        "json": args.json,
        "plot": args.plot,
        "compare": args.compare,
        "quiet": args.quiet,
        "page_size": args.page_size,
        "cache_mb": args.cache_mb,
        "log_file_mb": args.log_file_mb,
        "latency_histogram": "log-linear, 2 significant digits (relative error <= 1/128), µs",
    }
    return config


def _usage_problem(config: dict) -> str | None:
    if config["warmup"] < 0:
        return "--warmup must be >= 0"
    if '"' in config["table"]:
        return "--table must not contain a double quote"
    backup_dir = config["backup_dir"]
    if backup_dir:
        inside = os.path.realpath(backup_dir) + os.sep
        if inside.startswith(os.path.realpath(config["dir"]) + os.sep):
            return "--backup-dir must not be inside the instance directory"
    if config["plot"]:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return "--plot needs matplotlib, which is not installed (pip install matplotlib)"
    return None


def _scratch_beside(directory: str, prefix: str) -> str:
    """A temporary directory on DIR's filesystem (fair fsync comparisons), else in /tmp."""
    parent = os.path.dirname(os.path.abspath(directory))
    try:
        os.makedirs(parent, exist_ok=True)
        return tempfile.mkdtemp(prefix=prefix, dir=parent)
    except OSError:
        return tempfile.mkdtemp(prefix=prefix)


def _describe(config: dict) -> str:
    length = (
        f"{config['duration']:g} s"
        if config["duration"]
        else f"{config['transactions']:,} transactions"
    )
    keys = f"{config['keys']:,} keys {config['key_dist']}"
    if config["key_dist"] == "zipfian":
        keys += f" (s={config['zipf_s']:g})"
    backups = ""
    if config["backup_every"]:
        backups = f", {config['backup_mode']} backup every {config['backup_every']:g} s"
    return (
        f"{config['clients']} clients, {length} after {config['warmup']:g} s warm-up, "
        f"{config['read_ratio']:.0%} reads, {config['keys_per_tx']} op/tx, "
        f"{ValueSize(config['value_size']).describe()} values, {keys}, "
        f"{'lazy' if config['lazy'] else 'durable'} commits, seed {config['seed']}{backups}"
    )


def run(args: argparse.Namespace) -> int:
    """The ``load`` subcommand."""
    from jetstore.engine.errors import JetError
    from jetstore.tools.benchmark import machine

    config = build_config(args)
    problem = _usage_problem(config)
    if problem:
        print(f"jetstore load: {problem}", file=sys.stderr)
        return EXIT_USAGE
    report: dict = {"tool": "jetstore load", "format": 1, "config": config, "machine": machine()}
    print("machine: " + json.dumps(report["machine"]))
    print("load:    " + _describe(config))
    own_backup_dir = config["backup_every"] and not config["backup_dir"]
    backup_root = None
    if config["backup_every"]:
        if config["backup_dir"]:  # one fresh directory per run: backups never collide
            os.makedirs(config["backup_dir"], exist_ok=True)
            backup_root = tempfile.mkdtemp(
                prefix=time.strftime("load-%Y%m%d-%H%M%S-"), dir=config["backup_dir"]
            )
        else:
            backup_root = _scratch_beside(config["dir"], ".jetstore-load-bk-")
        report["backup_root"] = backup_root
    code = EXIT_OK
    try:
        try:
            info, result = run_jetstore(
                config, os.path.join(backup_root, "jetstore") if backup_root else None
            )
        except JetError as exc:
            print(f"jetstore load: {exc.name} ({exc.err}): {exc.message}", file=sys.stderr)
            return EXIT_FAILED
        report["instance"] = info
        report.update(result)
        print_result(f"jetstore ({info['mode']} {info['path']})", result)
        if config["compare"] == "sqlite" and not result["interrupted"]:
            scratch = _scratch_beside(config["dir"], ".jetstore-load-sqlite-")
            try:
                sql_info, sql_result = run_sqlite(
                    config, scratch, os.path.join(backup_root, "sqlite") if backup_root else None
                )
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            report["sqlite"] = {"settings": sql_info, **sql_result}
            report["comparison"] = comparison(result, sql_result)
            print_result(
                f"sqlite (WAL, synchronous={sql_info['synchronous']}, same workload)", sql_result
            )
            c = report["comparison"]["overall"]
            print(
                "\njetstore / sqlite: throughput "
                + (f"{c['tx_per_s_ratio']:.2f}x" if c["tx_per_s_ratio"] else "-")
                + ", p99 latency "
                + (f"{c['p99_ms_ratio']:.2f}x" if c["p99_ms_ratio"] else "-")
                + " (throughput > 1 and latency < 1 favour jetstore)"
            )
        runs = [result] + ([report["sqlite"]] if "sqlite" in report else [])
        if any(r["interrupted"] for r in runs):
            code = EXIT_INTERRUPTED
        elif any(
            r["overall"]["transactions"] == 0
            or r["backup_summary"]["failed"]
            or any(c["aborted"] for c in r["clients"])
            for r in runs
        ):
            code = EXIT_FAILED
        report["exit_code"] = code
        if config["json"]:
            with open(config["json"], "w") as f:
                json.dump(report, f, indent=1, default=str)
        if config["plot"]:
            plot(config["plot"], report)
            print(f"plot:    {config['plot']}")
    finally:
        if own_backup_dir and backup_root and not config["keep_backups"]:
            shutil.rmtree(backup_root, ignore_errors=True)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="jetstore load",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())

"""The driver: starts the client processes (spawn), starts them together, runs the
backup scheduler, collects the seconds the clients stream, prints the progress lines,
stops everything and sums the run up."""

from __future__ import annotations

import math
import queue as queue_module
import time

import multiprocess

from .backups import BackupScheduler
from .clients import client_main
from .histogram import Histogram
from .progress_lines import ProgressLines
from .shared import BACKUP, READY_TIMEOUT_S, START, STOP, new_second
from .summary import summarize


class Collector:
    """What the clients streamed: per-second, per-phase histograms and counts."""

    def __init__(self, clients: int) -> None:
        self.seconds: dict[int, list[list]] = {}
        self.done: dict[int, dict] = {}
        self.ready: set[int] = set()
        self.exited: dict[int, float] = {}  # client -> when its process was seen gone
        self.reached: dict[int, int] = {}  # client -> the second it has moved on to
        self.clients = clients

    def take(self, message) -> None:
        kind, index, body = message
        if kind == "ready":
            self.ready.add(index)
        elif kind == "done":
            self.done[index] = body
        elif kind == "second":
            sec, phases, reached = body
            self.reached[index] = reached
            slot = self.seconds.setdefault(sec, new_second())
            for mine, (wire, reads, writes, errors) in zip(slot, phases, strict=True):
                mine[0].merge(Histogram.from_wire(wire))
                mine[1] += reads
                mine[2] += writes
                mine[3] += errors

    def complete_before(self) -> float:
        """The first second some client may still send a record of: every client has
        moved past the seconds before it, or is done."""
        return min(
            math.inf if n in self.done else self.reached.get(n, 0) for n in range(self.clients)
        )


def drive(engine: str, target: str, config: dict, backup, backup_root: str | None) -> dict:
    """Run the clients against ``target``; returns the summary of section "result"."""
    context = multiprocess.get_context("spawn")
    queue = context.Queue()
    shared = context.RawArray("d", 3)
    started = context.Event()
    collector = Collector(config["clients"])
    processes = [
        context.Process(
            target=client_main,
            args=(engine, target, n, config, shared, started, queue),
            name=f"jetstore-load-client-{n}",
            daemon=True,
        )
        for n in range(config["clients"])
    ]
    progress = ProgressLines(engine, config["progress"], config["duration"])
    scheduler = None
    interrupted = False
    measure_at = None
    try:
        for process in processes:
            process.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        progress.note(f"{engine}: starting {len(processes)} clients")
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
            scheduler = BackupScheduler(
                backup, config, backup_root, shared, measure_at, end_at, progress
            )
            scheduler.start()
        while len(collector.done) < len(processes):
            try:
                _drain(queue, collector, 0.2)
                _reap_dead(processes, collector)
                now = time.monotonic()
                if scheduler is not None and now >= end_at:
                    scheduler.finished.set()
                progress.poll(collector, now - measure_at)
            except KeyboardInterrupt:
                interrupted = True
                shared[STOP] = 1
                progress.note("interrupted: stopping the clients")
    finally:
        shared[STOP] = 1
        started.set()
        if scheduler is not None:
            scheduler.finished.set()
            if scheduler.shared[BACKUP]:
                progress.note("waiting for the running backup to finish")
            scheduler.join()
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
    progress.poll(collector, measured)
    result = summarize(collector, measured, scheduler.records if scheduler else [])
    result["interrupted"] = interrupted
    return result


def _drain(queue, collector: Collector, wait: float) -> None:
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

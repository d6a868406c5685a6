"""Archiving benchmark: durable commits with and without continuous archiving, the
archive's lag under that load, and the replay rate of a point-in-time restore against
the engine's own crash-recovery replay, measured in one invocation.

    python -m jetstore.tools.bench_archive [--clients 8] [--seconds 5] [--rounds 2]
                                           [--archive-timeout 1] [--json FILE]

Each round runs the same load (``bench_commit``'s durable one-put transactions from
client processes) on a fresh instance without archiving, then with it, so drift of
the machine hits both alike; the ratio is of the summed rates.  During the archived
runs the archive's status is sampled every 0.1 s.  The restore takes the last
archived run's full backup (taken before its load) through the archive to a time
90% into the load.  Crash recovery is bench_backup's: kill -9 the buffer manager
under the same load, time the reopen.  Targets (issue 15): archiving keeps >= 0.9x
the throughput; the lag stays under one generation plus archive_timeout; the
point-in-time replay runs >= 5x the commit rate.
"""

from __future__ import annotations

import argparse
import datetime
import os
import threading
import time

from jetstore.engine.fileio import DEFAULT_ENV
from jetstore.engine.log_reader import list_generations
from jetstore.engine.storage import LOG_DIR
from jetstore.tools.bench_backup import recovery_after_kill
from jetstore.tools.bench_commit import jetstore_client, run_clients
from jetstore.tools.benchmark import add_common_arguments, benchmark_run

SAMPLE_S = 0.1


class LagSampler:
    """The archive's lag, sampled in a thread while a load runs."""

    def __init__(self, inst) -> None:
        self.inst = inst
        self.samples: list[dict] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(SAMPLE_S):
            archive = self.inst.status()["archive"] or {}
            if "lag_generations" in archive:
                self.samples.append(archive)

    def __enter__(self) -> LagSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def worst(self) -> dict:
        return {
            "samples": len(self.samples),
            "max_lag_generations": max((s["lag_generations"] for s in self.samples), default=0),
            "max_lag_seconds": max((s["lag_seconds"] for s in self.samples), default=0.0),
            "max_lag_bytes": max((s["lag_bytes"] for s in self.samples), default=0),
            "failures": max((s["failures"] for s in self.samples), default=0),
        }


def loaded_run(scratch: str, name: str, args, archive: str | None) -> dict:
    """One load on a fresh instance; with ``archive``, also the lag and what the
    point-in-time restore needs (the backup, the archive, the load's time span)."""
    from jetstore.engine import Instance

    path = os.path.join(scratch, name)
    options = {}
    if archive is not None:
        options = {"archive_dir": archive, "archive_timeout": args.archive_timeout}
    with Instance.open(path, **options) as inst:
        inst.session().create_table("t")
        backup = os.path.join(scratch, name + "-backup")
        os.makedirs(backup)
        inst.backup(backup)
        started = time.time()
        if archive is None:
            result = run_clients(jetstore_client, path, args.clients, args.seconds)
        else:
            with LagSampler(inst) as sampler:
                result = run_clients(jetstore_client, path, args.clients, args.seconds)
            result["lag"] = sampler.worst()
            # The load's last generation, rolled by archive_timeout, is archived too.
            last = list_generations(DEFAULT_ENV, os.path.join(path, LOG_DIR))[-1]
            deadline = time.monotonic() + 60
            while inst.status()["archive"].get("archived_through", 0) < last:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"generation {last} was not archived in 60 s")
                time.sleep(SAMPLE_S)
    result.update(backup=backup, archive=archive, span=(started, time.time()))
    return result


def point_in_time_restore(scratch: str, run: dict) -> dict:
    from jetstore.engine import backup_info, restore

    # 90% of the way from the first commit to the last the archive holds.
    (stream,) = backup_info(run["archive"])["archives"][0]["streams"]  # one stream
    first, last = run["span"][0] * 1e9, stream["last_commit_time_ns"]
    until = datetime.datetime.fromtimestamp(
        (first + 0.9 * (last - first)) / 1e9, tz=datetime.timezone.utc
    )
    dest = os.path.join(scratch, "restored")
    result = restore(run["backup"], dest, log_dir=run["archive"], until=until)
    return {
        "until": until.isoformat(),
        "replay_seconds": result["replay_seconds"],
        "replay_mb_per_s": result["replay_mb_per_s"],
        "replay_commits_per_s": result["replay_commits_per_s"],
        "stopped_at_lsn": result["stopped_at_lsn"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--archive-timeout", type=float, default=1.0)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    with benchmark_run(args) as (scratch, report):
        plain, archived = [], []
        for round_number in range(args.rounds):
            plain.append(loaded_run(scratch, f"plain{round_number}", args, None))
            archive = os.path.join(scratch, f"archive{round_number}")
            archived.append(loaded_run(scratch, f"archived{round_number}", args, archive))
            print(
                f"round {round_number + 1}: {plain[-1]['tx_per_s']:8,.0f} tx/s without "
                f"archiving, {archived[-1]['tx_per_s']:8,.0f} tx/s with it; lag at most "
                f"{archived[-1]['lag']['max_lag_generations']} generation(s), "
                f"{archived[-1]['lag']['max_lag_seconds']:.2f} s"
            )
        without = sum(r["tx_per_s"] for r in plain) / len(plain)
        with_archive = sum(r["tx_per_s"] for r in archived) / len(archived)
        lags = [r["lag"] for r in archived]
        commits = {
            "clients": args.clients,
            "without_tx_per_s": without,
            "with_tx_per_s": with_archive,
            "ratio": with_archive / without,
            "max_lag_generations": max(lag["max_lag_generations"] for lag in lags),
            "max_lag_seconds": max(lag["max_lag_seconds"] for lag in lags),
            "max_lag_bytes": max(lag["max_lag_bytes"] for lag in lags),
            "archive_timeout": args.archive_timeout,
        }
        report["results"]["commits"] = commits
        print(
            f"archiving keeps {commits['ratio']:.2f}x the commit throughput "
            f"({with_archive:,.0f} / {without:,.0f} tx/s; target >= 0.9x); the lag stayed "
            f"within {commits['max_lag_generations']} generation(s) and "
            f"{commits['max_lag_seconds']:.2f} s (bound: 1 generation + "
            f"{args.archive_timeout:g} s)"
        )
        pitr = point_in_time_restore(scratch, archived[-1])
        crash = recovery_after_kill(scratch, args.clients, args.seconds)
        crash["replay_records_per_s"] = crash["replayed_records"] / crash["reopen_seconds"]
        pitr["ratio_to_commit_rate"] = pitr["replay_commits_per_s"] / with_archive
        pitr["ratio_to_crash_recovery"] = (
            pitr["replay_commits_per_s"] / crash["replay_records_per_s"]
            if crash["replay_records_per_s"]
            else None
        )
        report["results"]["point_in_time_restore"] = pitr
        report["results"]["crash_recovery"] = crash
        print(
            f"point-in-time replay: {pitr['replay_mb_per_s']:.1f} MB/s, "
            f"{pitr['replay_commits_per_s']:,.0f} commits/s = "
            f"{pitr['ratio_to_commit_rate']:.1f}x the {args.clients}-client commit rate "
            f"(target >= 5x); crash recovery replays {crash['replay_records_per_s']:,.0f} "
            f"records/s ({crash['replayed_records']} in {crash['reopen_seconds']:.2f} s, "
            "open included)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

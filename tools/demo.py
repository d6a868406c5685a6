"""``jetstore demo [DIR]``: online backup of a database that keeps committing, end to end.

1. opens an instance (a temporary directory unless DIR is given);
2. starts client processes that commit continuously and report every
   acknowledged commit with the log position after it;
3. takes a full online backup while they write, then an incremental one, with
   continuous archiving on all along (every closed log generation copied into an
   archive, and the log rolled at least every ARCHIVE_TIMEOUT seconds);
4. restores each into a fresh directory (the full one before the incremental
   extends it) and checks that every restore holds exactly the commits
   acknowledged before that backup's roll - values included - and nothing after;
5. lets the clients commit on after the incremental, then restores the backup
   through the archive to a moment between two acknowledged commits of that time
   (point-in-time restore) and checks it holds exactly the commits up to where the
   replay stopped: every one acknowledged before the moment, none begun after it;
6. prints a summary.  Exit code 3 (damage found) on any mismatch.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import signal
import tempfile
import time

import multiprocess

from jetstore.engine import Instance, restore
from jetstore.engine.log_format import lsn_gen
from jetstore.tools import exit_codes
from jetstore.tools.progress import status_callback

CLIENTS = 3
PHASE_SECONDS = 2.5
CLIENT_START_TIMEOUT_S = 60.0
CLIENT_EXIT_TIMEOUT_S = 5.0
ARCHIVE_TIMEOUT = 0.5
ARCHIVE_WAIT_S = 60.0


def value_for(key: bytes) -> bytes:
    return hashlib.blake2b(key, digest_size=32).digest() * 8  # 256 bytes, checkable


def client(path: str, name: str, stop, started, results) -> None:
    """Commit until told to stop; say so after the first commit; send back (key, lsn
    after the commit record, wall clock before the commit began, wall clock once it was
    acknowledged) for every key.  Ctrl-C is the demo's to handle, not each client's."""
    from jetstore.engine import InstanceUnavailableError, connect

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    attached = connect(path)
    session = attached.session()
    acked, i = [], 0
    try:
        while not stop.is_set():
            keys = [b"%s-%07d-%d" % (name.encode(), i, n) for n in range(4)]
            began = time.time()
            session.begin()
            for key in keys:
                session.put("demo", key, value_for(key))
            lsn = session.commit()
            done = time.time()
            acked.extend((key, lsn, began, done) for key in keys)
            if i == 0:
                started.put(name)
            i += 1
    except InstanceUnavailableError:
        return  # the demo ended early (an error, Ctrl-C) and closed the instance
    results.put(acked)
    attached.close()


def backup_with_progress(inst: Instance, destination: str, **kind) -> tuple[dict, float]:
    started = time.perf_counter()
    label = "incremental backup" if kind.get("incremental") else "full backup"
    result = inst.backup(destination, status=status_callback(label), **kind)
    return result, time.perf_counter() - started


def check(restored_dir: str, acked: dict[bytes, int], roll_lsn: int) -> tuple[int, list[str]]:
    """Compare a restored database with the commits acknowledged before ``roll_lsn``."""
    return check_keys(restored_dir, {key for key, lsn in acked.items() if lsn < roll_lsn})


def check_keys(restored_dir: str, expected: set[bytes]) -> tuple[int, list[str]]:
    """Compare a restored database with exactly the keys ``expected`` and their values."""
    problems = []
    with Instance.open(restored_dir) as inst:
        stored = dict(inst.session().scan("demo"))
    missing = expected - stored.keys()
    extra = stored.keys() - expected
    wrong = [key for key in expected & stored.keys() if stored[key] != value_for(key)]
    for label, keys in (("missing", missing), ("unexpected", extra), ("wrong value", wrong)):
        if keys:
            problems.append(f"{len(keys)} {label}, e.g. {sorted(keys)[0]!r}")
    return len(expected), problems


def moment_between_commits(commits: list[tuple], after: float) -> float:
    """A moment halfway between two acknowledgements, in the middle of the commits
    acknowledged after ``after`` (the point-in-time restore's target)."""
    acks = sorted({done for _key, _lsn, _began, done in commits if done > after})
    middle = len(acks) // 2
    return (acks[middle - 1] + acks[middle]) / 2


def check_point_in_time(restored_dir: str, commits: list[tuple], result: dict, moment: float):
    """Exactly the commits up to where the replay stopped; those acknowledged before
    the moment all among them, none of those begun after it."""
    stopped = result["stopped_at_lsn"]
    expected = {key for key, lsn, _began, _done in commits if lsn <= stopped}
    verified, problems = check_keys(restored_dir, expected)
    early = [key for key, lsn, _began, done in commits if done < moment and lsn > stopped]
    late = [key for key, lsn, began, _done in commits if began > moment and lsn <= stopped]
    for label, keys in (
        ("acknowledged before the moment but left out", early),
        ("begun after the moment but replayed", late),
    ):
        if keys:
            problems.append(f"{len(keys)} {label}, e.g. {sorted(keys)[0]!r}")
    return verified, problems


def wait_for_archive(inst: Instance, last_lsn: int) -> dict:
    """Until the generation of the last commit is archived (archive_timeout rolls it)."""
    target = lsn_gen(last_lsn)
    deadline = time.monotonic() + ARCHIVE_WAIT_S
    while True:
        archive = inst.status()["archive"]
        if archive.get("archived_through", 0) >= target:
            return archive
        if time.monotonic() > deadline:
            raise TimeoutError(f"the archive did not reach generation {target}: {archive}")
        time.sleep(0.05)


def run_demo(directory: str | None, *, seconds: float = PHASE_SECONDS) -> int:
    scratch = directory or tempfile.mkdtemp(prefix="jetstore-demo-")
    try:
        code = _run_demo(scratch, directory is None, seconds)
    except BaseException:
        if directory is None:  # ours: an interrupted or failed demo leaves nothing behind
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    if directory is None:
        shutil.rmtree(scratch, ignore_errors=True)
    return code


def _run_demo(scratch: str, temporary: bool, seconds: float) -> int:
    paths = {
        name: os.path.join(scratch, name)
        for name in (
            "instance",
            "backup",
            "archive",
            "restored-full",
            "restored-incremental",
            "restored-to-a-moment",
        )
    }
    os.makedirs(paths["backup"], exist_ok=temporary)
    context = multiprocess.get_context("spawn")
    stop, started, results = context.Event(), context.Queue(), context.Queue()
    began = time.perf_counter()
    inst = Instance.open(
        paths["instance"], archive_dir=paths["archive"], archive_timeout=ARCHIVE_TIMEOUT
    )
    clients = [
        context.Process(target=client, args=(paths["instance"], f"c{n}", stop, started, results))
        for n in range(CLIENTS)
    ]
    try:
        inst.session().create_table("demo")
        print(f"instance {paths['instance']}: {CLIENTS} client processes committing")
        for process in clients:
            process.start()
        for _ in clients:  # every client has committed: the full backup has work to show
            started.get(timeout=CLIENT_START_TIMEOUT_S)
        time.sleep(seconds)
        print("full online backup while the clients write:")
        full, full_s = backup_with_progress(inst, paths["backup"])
        restore_started = time.perf_counter()
        restore(paths["backup"], paths["restored-full"])
        full_restore_s = time.perf_counter() - restore_started
        time.sleep(seconds)
        print("incremental online backup while the clients write:")
        incremental, incremental_s = backup_with_progress(inst, paths["backup"], incremental=True)
        after_incremental = time.time()
        print("committing on, with every closed log generation archived")
        time.sleep(seconds)
        stop.set()
        every = [commit for _ in clients for commit in results.get(timeout=60)]
        acked = {key: lsn for key, lsn, _began, _done in every}
        for process in clients:
            process.join()
        commits = inst.status()["buffer_manager"]["commits"]
        archive = wait_for_archive(inst, max(acked.values()))
    finally:
        stop.set()
        inst.close()
        # After a failure nobody reads the clients' results, and a child whose queue
        # is not drained never exits: give them a moment, then end them.
        deadline = time.monotonic() + CLIENT_EXIT_TIMEOUT_S
        for process in clients:
            if process.pid is not None:
                process.join(max(0.0, deadline - time.monotonic()))
                if process.is_alive():
                    process.kill()
                    process.join()
    restore_started = time.perf_counter()
    restore(paths["backup"], paths["restored-incremental"])
    incremental_restore_s = time.perf_counter() - restore_started
    moment = moment_between_commits(every, after_incremental)
    until = datetime.datetime.fromtimestamp(moment, tz=datetime.timezone.utc)
    print(f"point-in-time restore through the archive to {until.isoformat()}:")
    pitr = restore(
        paths["backup"],
        paths["restored-to-a-moment"],
        log_dir=paths["archive"],
        until=until,
        status=status_callback("restore to a moment"),
    )
    verified_full, problems_full = check(paths["restored-full"], acked, full["roll_lsn"])
    verified_inc, problems_inc = check(
        paths["restored-incremental"], acked, incremental["roll_lsn"]
    )
    verified_pitr, problems_pitr = check_point_in_time(
        paths["restored-to-a-moment"], every, pitr, moment
    )
    print()
    print(f"commits:            {commits:,} transactions, {len(acked):,} keys acknowledged")
    print(
        f"full backup:        {full['bytes'] / 1e6:.1f} MB in {full_s:.2f} s "
        f"({full['bytes'] / 1e6 / full_s:.0f} MB/s), generations {full['gen_low']}.."
        f"{full['gen_high']}, restored in {full_restore_s:.2f} s"
    )
    print(
        f"incremental backup: {incremental['bytes'] / 1e6:.1f} MB in {incremental_s:.2f} s, "
        f"generations {incremental['gen_low']}..{incremental['gen_high']}, restored in "
        f"{incremental_restore_s:.2f} s"
    )
    print(
        f"verified:           {verified_full:,} keys at the full backup's roll, "
        f"{verified_inc:,} keys at the incremental's roll; "
        f"{len(acked) - verified_inc:,} later commits correctly absent"
    )
    print(
        f"archive:            generations up to {archive['archived_through']} archived, "
        f"lag {archive['lag_generations']} generation(s) (rolled every "
        f"{ARCHIVE_TIMEOUT:g} s while commits arrive)"
    )
    print(
        f"point in time:      {verified_pitr:,} keys up to {until.isoformat()} verified "
        f"(the replay stopped at {pitr['stopped_at_lsn']:#x}, "
        f"{pitr['replay_commits_per_s']:,.0f} commits/s); "
        f"{len(acked) - verified_pitr:,} later commits correctly absent"
    )
    failed = False
    for label, problems in (
        ("full", problems_full),
        ("incremental", problems_inc),
        ("point-in-time", problems_pitr),
    ):
        for problem in problems:
            failed = True
            print(f"MISMATCH in the {label} restore: {problem}")
    print(f"total:              {time.perf_counter() - began:.1f} s")
    return exit_codes.DAMAGED if failed else exit_codes.OK

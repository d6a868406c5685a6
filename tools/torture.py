"""``jetstore torture DIR``: a randomized reliability campaign against an oracle.

Each trial opens an instance, starts client processes that commit 4-key
transactions (printing each transaction's keys before committing and its LSN
once acknowledged), runs a random schedule of backups (full, atomic,
incremental) and truncations, and makes something fail at a random moment:
``kill -9`` of a random actor, or a planned fault (an actor dying at its Nth
write or fsync, at a named step of the backup sequence, or a write failing
with ENOSPC/EIO).  Then it reopens the instance and checks the invariants
(docs/ARCHITECTURE.md, "Where each invariant is enforced and tested"):

- every acknowledged transaction is present, values included;
- no transaction is half present (all of its keys or none);
- the log is contiguous and verifies from its oldest generation;
- every backup that reported success passes ``verify_backup`` and restores to
  exactly the acknowledged transactions before its roll (and none after);
- every backup that failed left no file of its own behind;
- every snapshot read (invariant 6): two reader processes (one
  ``kill -9``-ed) report what each snapshot held of the clients' transactions,
  and two workers of the isolation checker (tools/isolation_check.py, one
  ``kill -9``-ed) log random transactions, checked against the committed writes
  and their LSNs, outcomes left unknown by a kill settled from the log.

Beside the faults, a trial may run next to CPU-bound neighbour processes (one
or three per core), and its schedule includes the edges of backup and restore:
- a backup started by a client process that is ``kill -9``-ed while its status
  callback runs: that backup either completed (then it restores exactly) or left
  nothing behind;
- a backup racing one of a second instance into the same destination: exactly one
  wins, and what it left verifies and restores to its own instance's keys;
- restores ``kill -9``-ed at a random progress event: the destination refuses to
  open (-506) and running the restore again completes it exactly;
- a roll-forward of each good backup through the instance's live log: it holds
  every acknowledged commit, or fails naming a gap (truncations between backups
  remove the generations an older backup would need), never "succeeds" short.

It prints the seed first (``--seed`` replays a campaign), then a line per trial and
the counts, and exits 3 on any violation.  CI runs a few seeded trials;
``--seconds``/``--trials`` run long campaigns.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

from jetstore.actors.child_start import interrupts_held
from jetstore.actors.fault_plan import FAULTS_VARIABLE
from jetstore.engine import Instance, JetError, archive_format, restore, verify_backup
from jetstore.engine.archiving import ARCHIVE_STEPS, file_crc
from jetstore.engine.backup import ATOMIC_TEMP, locate_backup
from jetstore.engine.backup_run import BACKUP_STEPS
from jetstore.engine.fileio import DEFAULT_ENV
from jetstore.engine.log_reader import LogReader, generation_path, list_generations
from jetstore.engine.manifest_format import MANIFEST
from jetstore.engine.storage import LOG_DIR
from jetstore.protocol.schema import to_buffer_manager
from jetstore.tools import exit_codes, isolation_check
from jetstore.tools.arguments import (
    epilog,
    instance_directory,
    output_file,
    positive_float,
    positive_int,
)
from jetstore.tools.output import text_aside, write_report

OPTIONS = {"log_file_size": 64 << 10}
ARCHIVE_TIMEOUT = 0.3  # every trial archives; its log rolls at least this often
SPINNER = "while True: pass"
# A client process's backup, killed by the campaign while its callback runs.
DOOMED_BACKUP = """
import sys, time
from jetstore.engine import JetError, connect
def status(progress):
    print(progress.phase, flush=True)
    time.sleep(0.05)
try:
    connect(sys.argv[1]).backup(sys.argv[2], status=status)
    print("ok", flush=True)
except JetError as exc:
    print("error", exc.name, flush=True)
"""
# A restore killed by the campaign after a random number of progress events.
DOOMED_RESTORE = """
import sys
from jetstore.engine import restore
restore(sys.argv[1], sys.argv[2], status=lambda progress: print(progress.phase, flush=True))
print("done", flush=True)
"""
# What a roll-forward may fail with: a piece of the log it would need is gone.
LOG_GAP_ERRORS = {
    "JET_errMissingLogFile",
    "JET_errMissingRestoreLogFiles",
    "JET_errExistingLogFileHasBadSignature",
    "JET_errExistingLogFileIsNotContiguous",
}
NEIGHBOUR_KEYS = {b"neighbour-%03d" % i: b"n" * 100 for i in range(50)}
ACTORS = ("buffer_manager", "log_writer", "backup_worker", "archiver")

CLIENT = """
import sys
from jetstore.engine import JetError, connect
path, name = sys.argv[1], sys.argv[2]
try:
    session = connect(path).session()
except JetError as exc:  # the instance died before this client attached
    print("error", exc.name, flush=True)
    sys.exit(0)
i = 0
while True:
    keys = [b"%s-%06d-%d" % (name.encode(), i, n) for n in range(4)]
    print("intent", i, flush=True)
    try:
        session.begin()
        for key in keys:
            session.put("t", key, key[::-1])
        lsn = session.commit()
    except JetError as exc:
        print("error", exc.name, flush=True)
        break
    print("acked", i, lsn, flush=True)
    i += 1
"""


# A reader: transactions that scan the table and report, per snapshot, how many of
# each client's transactions they saw - a prefix, since a client commits in order.
READER = """
import sys
from collections import Counter
from jetstore.engine import JetError, connect
path = sys.argv[1]
try:
    session = connect(path).session()
except JetError as exc:
    print("error", exc.name, flush=True)
    sys.exit(0)
while True:
    try:
        session.begin()
        rows = dict(session.scan("t"))
        again = {k: session.get("t", k) for k in list(rows)[:50]}
        snapshot = session.snapshot_lsn
        session.rollback()
    except JetError as exc:
        print("error", exc.name, flush=True)
        break
    seen = {}
    for key in rows:
        if key.startswith(b"c"):
            name, i, _n = key.split(b"-")
            seen.setdefault(name.decode(), Counter())[int(i)] += 1
    problems = [f"{k!r} read again as {v!r}" for k, v in again.items() if rows[k] != v]
    for name, counts in seen.items():
        if sorted(counts) != list(range(len(counts))):
            problems.append(f"{name}: transactions seen are not a prefix")
        problems += [f"{name}/{i}: {c} of 4 keys" for i, c in counts.items() if c != 4]
    tally = "".join(f" {n}:{len(c)}" for n, c in sorted(seen.items()))
    report = f"snapshot {snapshot}{tally}\\n"
    report += "".join(f"anomaly {p.replace(' ', '_')}\\n" for p in problems[:5])
    sys.stdout.write(report)  # one write: a kill cannot cut it after the LSN
    sys.stdout.flush()
"""


# Isolation workers (tools/isolation_check.py): random transactions over a small key
# space, each logged with its snapshot and what it read, until the instance goes away.
ISOLATION_WORKER = """
import sys
from jetstore.tools.isolation_check import worker
worker(sys.argv[1], sys.argv[2], int(sys.argv[3]), None, sys.argv[4])
"""
ISOLATION_WORKERS = 2


def transaction_keys(name: str, i: int) -> list[bytes]:
    return [b"%s-%06d-%d" % (name.encode(), i, n) for n in range(4)]


def random_fault(rng: random.Random) -> tuple[dict | None, str]:
    """A fault plan for this trial (or None: a kill -9 instead), and its description."""
    kind = rng.choice(["kill", "kill", "crash_write", "crash_sync", "step", "enospc", "eio"])
    if kind == "kill":
        return None, "kill -9"
    if kind == "step":
        actor, step = rng.choice(
            [("backup_worker", step) for step in BACKUP_STEPS]
            + [("archiver", step) for step in ARCHIVE_STEPS]
        )
        return {actor: {"crash_at_step": step}}, f"{actor.replace('_', ' ')} dies at {step}"
    if kind in ("enospc", "eio"):
        actor = rng.choice(["backup_worker", "log_writer", "archiver"])
        n = rng.randrange(2, 40)
        plan = {actor: {"fail_write": [n, kind.upper()]}}
        return plan, f"{actor} write {n} fails with {kind.upper()}"
    actor = rng.choice(["buffer_manager", "log_writer"])
    n = rng.randrange(5, 200)
    return {actor: {kind: n}}, f"{actor} dies at {kind.split('_')[1]} {n}"


class Trial:
    def __init__(self, path: str, rng: random.Random, clients: int) -> None:
        self.path, self.rng, self.clients = path, rng, clients
        self.instance_dir = os.path.join(path, "instance")
        self.archive = os.path.join(path, "archive")
        self.options = {**OPTIONS, "archive_dir": self.archive, "archive_timeout": ARCHIVE_TIMEOUT}
        self.backups: list[dict] = []  # every backup attempted, with its outcome
        self.intents: dict = {}  # (client, transaction) -> True once it was about to commit
        self.acked: dict = {}  # (client, transaction) -> LSN after its commit record
        self.violations: list[str] = []
        self.recorded_full: str | None = None  # the meta's last full backup, after reopening
        self.counts: Counter = Counter()
        self.neighbour: Instance | None = None  # a second instance, for shared destinations
        self.snapshots_read: list[list[str]] = []  # the readers' reports
        self.shared_races = 0
        # Marker value -> end LSN of the isolation workers' commits, read from the live
        # log while a killed worker's last commit may be there and not yet truncated.
        self.logged: dict[str, int] = {}
        self.live_log_reads_left = 0
        self.children: list[subprocess.Popen] = []

    def spawn(self, script: str, *args: str, **popen) -> subprocess.Popen:
        """A child process running ``script``.  In a session of its own: a Ctrl-C at the
        terminal reaches the campaign alone, which stops its children itself
        (``stop_children``) instead of each printing a KeyboardInterrupt."""
        with interrupts_held():  # a Ctrl-C comes once stop_children knows the child
            child = subprocess.Popen(
                [sys.executable, "-c", script, *args], start_new_session=True, **popen
            )
            self.children.append(child)
        return child

    def stop_children(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
                child.wait()

    # -- the run ------------------------------------------------------------------
    def run(self) -> None:
        plan, fault = random_fault(self.rng)
        self.fault = fault
        if plan is not None:
            os.environ[FAULTS_VARIABLE] = json.dumps(plan)
        try:
            inst = Instance.open(self.instance_dir, **self.options)
        except JetError:
            if plan is None:
                raise
            self.counts["faults that fired while opening"] += 1
            return  # the checks still run: the next open must recover a consistent instance
        finally:
            os.environ.pop(FAULTS_VARIABLE, None)
        processes, readers, workers = [], [], []
        neighbours = self.rng.choice([0, 0, 1, 3]) * (os.cpu_count() or 1)
        if neighbours:
            self.counts[f"trials beside {neighbours} CPU-bound neighbours"] += 1
        spinners = [self.spawn(SPINNER) for _ in range(neighbours)]
        try:
            try:
                inst.session().create_table("t")
                inst.session().create_table(isolation_check.TABLE)
            except JetError:
                if plan is None:
                    raise
                self.counts["faults that fired before the load"] += 1
                return
            processes = [
                self.spawn(CLIENT, self.instance_dir, f"c{n}", stdout=subprocess.PIPE, text=True)
                for n in range(self.clients)
            ]
            readers = [
                self.spawn(READER, self.instance_dir, stdout=subprocess.PIPE, text=True)
                for _ in range(2)
            ]
            workers = [
                self.spawn(
                    ISOLATION_WORKER,
                    self.instance_dir,
                    f"w{n}",
                    str(self.rng.randrange(1 << 30)),
                    self.isolation_log(n),
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for n in range(ISOLATION_WORKERS)
            ]
            kill_worker_at = time.monotonic() + self.rng.uniform(0.3, 3.0)
            kill_reader_at = time.monotonic() + self.rng.uniform(0.3, 3.0)
            kill_at = time.monotonic() + self.rng.uniform(0.3, 2.0)
            deadline = time.monotonic() + 4.0
            killed = plan is not None
            while time.monotonic() < deadline and inst._health() is None:
                if readers[0].returncode is None and time.monotonic() >= kill_reader_at:
                    readers[0].kill()  # a reader dies holding a snapshot, or between two
                    readers[0].wait()
                if workers[0].returncode is None and time.monotonic() >= kill_worker_at:
                    workers[0].kill()  # mid-transaction, mid-commit or between two
                    workers[0].wait()
                    self.counts["isolation workers killed"] += 1
                    self.live_log_reads_left = 5
                if not killed and time.monotonic() >= kill_at:
                    victim = self.rng.choice(ACTORS)
                    os.kill(inst.status()["actors"][victim]["pid"], signal.SIGKILL)
                    self.counts[f"killed {victim}"] += 1
                    killed = True
                    continue
                if self.live_log_reads_left:  # before a backup may truncate it
                    self.live_log_reads_left -= 1
                    self.read_live_log()
                self.backup_step(inst)
                time.sleep(self.rng.uniform(0, 0.2))
        finally:
            for spinner in spinners:
                spinner.kill()
                spinner.wait()
            if self.neighbour is not None:
                self.neighbour.close()
            inst.close()  # after a failure: only makes sure nothing runs on
        for n, process in enumerate(processes):
            try:  # the instance is closed: each client's next call fails and it exits
                out, _ = process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                out, _ = process.communicate()
            for line in self.whole_lines(out, "client"):
                parts = line.split()
                if len(parts) == 2 and parts[0] == "intent":
                    self.intents[(f"c{n}", int(parts[1]))] = True
                elif len(parts) == 3 and parts[0] == "acked":
                    self.acked[(f"c{n}", int(parts[1]))] = int(parts[2])
        for reader in readers:
            try:
                out, _ = reader.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                reader.kill()
                out, _ = reader.communicate()
            self.snapshots_read += [line.split() for line in self.whole_lines(out, "reader")]
        for worker in workers:
            try:  # the instance is closed: its next call fails and it exits
                _out, err = worker.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                _out, err = worker.communicate()
            if worker.returncode not in (0, -signal.SIGKILL):
                self.violations.append(f"an isolation worker failed: {err.strip()[-500:]}")
        if plan is not None:
            self.counts["faults planned"] += 1

    def read_live_log(self) -> None:
        """Settle what it can of a killed isolation worker's last commit now: a later
        backup may truncate its generation.  The log is being written meanwhile, so a
        failed read only means trying at the next step; what it finds stays in the
        log (recovery keeps every whole record of it)."""
        try:
            records = self.log_records()
        except JetError:
            return
        self.logged.update(isolation_check.logged_commits(records))

    def log_records(self) -> list:
        """Every record of the instance's log, each generation verified."""
        return list(LogReader(DEFAULT_ENV, os.path.join(self.instance_dir, LOG_DIR)).records(0))

    def isolation_log(self, n: int) -> str:
        return os.path.join(self.path, f"isolation-w{n}.jsonl")

    def whole_lines(self, out: str, who: str) -> list[str]:
        """The lines of a child's output, without a last one its kill cut short.

        A kill -9 can land between two write() calls of one line - print() makes one
        per argument when PYTHONUNBUFFERED is set - and "snapshot 4294980797 c0:3"
        cut to "snapshot 4294980797" would read as a snapshot that saw nothing.
        """
        lines = out.split("\n")
        if lines[-1]:
            self.counts[f"{who} lines cut short by a kill"] += 1
        return [line for line in lines[:-1] if line]

    def backup_step(self, inst: Instance) -> None:
        """One random operation of the backup schedule, recorded with its outcome."""
        have_full = any(b["ok"] and b["kind"] in ("full", "atomic") for b in self.backups)
        kind = self.rng.choice(
            ["full", "atomic", "truncate", "killed-caller", "shared"]
            + (["incremental"] * 2 if have_full else [])
        )
        if kind == "killed-caller":
            return self.killed_caller_backup()
        if kind == "shared":
            return self.shared_destination_backup(inst)
        dest = {
            "full": os.path.join(self.path, f"full{len(self.backups)}"),
            "atomic": os.path.join(self.path, "atomic"),
            "incremental": next(
                (
                    b["dest"]
                    for b in reversed(self.backups)
                    if b["ok"] and b["kind"] in ("full", "atomic")
                ),
                None,
            ),
            "truncate": None,
        }[kind]
        if dest is not None:
            os.makedirs(dest, exist_ok=True)
        before = _snapshot(dest)
        record = {"kind": kind, "dest": dest, "before": before}
        try:
            result = inst.backup(dest, incremental=kind == "incremental", atomic=kind == "atomic")
            record.update(ok=True, roll_lsn=result.get("roll_lsn"))
            self.counts[f"backup {kind} ok"] += 1
        except JetError as exc:
            record.update(ok=False, error=exc.name)
            self.counts[f"backup {kind} failed ({exc.name})"] += 1
        self.backups.append(record)
        if kind == "incremental" and record["ok"]:
            for earlier in self.backups:  # the chain now restores to this roll
                if earlier["dest"] == dest and earlier["ok"]:
                    earlier["roll_lsn"] = record["roll_lsn"]

    def killed_caller_backup(self) -> None:
        """A full backup asked for by a client process that dies during its callback."""
        dest = os.path.join(self.path, f"killed{len(self.backups)}")
        os.makedirs(dest)
        caller = self.spawn(
            DOOMED_BACKUP, self.instance_dir, dest, stdout=subprocess.PIPE, text=True
        )
        events = self.rng.randrange(1, 6)  # killed after this many progress events
        for _ in range(events):
            if not caller.stdout.readline():
                break
        caller.kill()
        caller.wait()
        self.counts["backups whose caller was killed"] += 1
        self.backups.append({"kind": "full", "dest": dest, "before": set(), "ok": None})

    def shared_destination_backup(self, inst: Instance) -> None:
        """A full backup racing one of a second instance into the same destination."""
        if self.neighbour is None:
            self.neighbour = Instance.open(os.path.join(self.path, "neighbour"), **OPTIONS)
            session = self.neighbour.session()
            session.create_table("t")
            for key, value in NEIGHBOUR_KEYS.items():
                session.put("t", key, value)
        # Not numbered by self.backups: a race the neighbour won adds no record there.
        self.shared_races += 1
        dest = os.path.join(self.path, f"shared{self.shared_races}")
        os.makedirs(dest)
        outcomes: dict = {}

        def neighbour_backup() -> None:
            try:
                self.neighbour.backup(dest)
                outcomes["neighbour"] = "ok"
            except JetError as exc:
                outcomes["neighbour"] = exc.name

        racer = threading.Thread(target=neighbour_backup)
        racer.start()
        record = {"kind": "full", "dest": dest, "before": set()}
        try:
            record.update(ok=True, roll_lsn=inst.backup(dest)["roll_lsn"])
        except JetError as exc:
            record.update(ok=False, error=exc.name)
        racer.join()
        mine = "ok" if record["ok"] else record["error"]
        self.counts[
            f"shared destination: ours {mine}, the neighbour's {outcomes['neighbour']}"
        ] += 1
        if record["ok"] and outcomes["neighbour"] == "ok":
            self.violations.append(f"two backups into {dest} both reported success")
        if outcomes["neighbour"] == "ok":
            self.check_neighbour_backup(dest)
        else:
            self.backups.append(record)  # checked like any backup of ours

    def check_neighbour_backup(self, dest: str) -> None:
        """The winner of a race was the second instance: its backup must be exactly its own."""
        out = self.restore_dir()
        try:
            restore(dest, out)
            stored = stored_rows(out)
        except JetError as exc:
            self.violations.append(f"the neighbour's backup in {dest} does not restore: {exc}")
            return
        if stored != NEIGHBOUR_KEYS:
            self.violations.append(f"the neighbour's backup in {dest} restored other keys")

    # -- the checks -------------------------------------------------------------------
    def restore_dir(self) -> str:
        """A new directory name to restore into."""
        return os.path.join(self.path, f"restored{len(os.listdir(self.path))}")

    def check(self) -> None:
        with Instance.open(self.instance_dir, **self.options) as inst:
            session = inst.session()
            tables = session.list_tables()
            stored = dict(session.scan("t")) if "t" in tables else {}
            table = isolation_check.TABLE
            isolated = dict(session.scan(table)) if table in tables else {}
            recorded = inst._control_call(to_buffer_manager.backup_info())["last_full"]
        self.recorded_full = recorded["backup_id"].hex() if recorded else None
        self.check_contents(stored, None, "the reopened instance")
        self.check_snapshots()
        try:
            records = self.log_records()
        except JetError as exc:
            self.violations.append(f"log does not verify: {exc}")
            records = []
        log_start = records[0].lsn if records else 1 << 64
        self.logged.update(isolation_check.logged_commits(records))
        self.check_isolation(self.logged, log_start, isolated)
        self.check_archive()
        checked = set()
        for index in reversed(range(len(self.backups))):  # the latest state of each destination
            record = self.backups[index]
            if record["dest"] is None:
                continue
            if record["ok"] is None:  # its caller was killed: complete, or nothing left
                if os.path.exists(os.path.join(record["dest"], MANIFEST)):
                    self.counts["killed callers' backups that completed"] += 1
                    _directory, manifest = locate_backup(record["dest"])
                    roll_lsn = manifest["chain"][-1]["roll_lsn"]
                    self.check_backup({**record, "roll_lsn": roll_lsn}, exact=True)
                else:
                    self.check_nothing_left(record)
                continue
            if not record["ok"]:
                self.check_nothing_left(record)
                continue
            if record["dest"] in checked:
                continue
            checked.add(record["dest"])
            # An atomic backup that died after placing DEST/new (a complete backup whose
            # success was never reported) may hold a later roll than the last success.
            later_attempt = any(
                not b["ok"] and b["dest"] == record["dest"] for b in self.backups[index + 1 :]
            )
            self.check_backup(record, exact=not later_attempt)

    def check_isolation(
        self, logged: dict[str, int], log_start: int, stored: dict[bytes, bytes]
    ) -> None:
        """The isolation workers' transactions against the oracle of committed writes,
        unknown outcomes settled from the log (tools/isolation_check.py); and the
        reopened instance holds exactly the committed state of their table."""
        entries = []
        for n in range(ISOLATION_WORKERS):
            try:
                with open(self.isolation_log(n)) as log:
                    entries += isolation_check.read_entries(log.read())
            except FileNotFoundError:
                continue  # the instance died before this worker started
        problems = isolation_check.resolve(entries, logged, log_start)
        problems += isolation_check.check(entries, self.counts)
        unknown = [entry for entry in entries if "unknown" in entry]
        self.counts["isolation outcomes left unknown (truncated from the log)"] += len(unknown)
        unsettled = {op[1] for entry in unknown for op in entry["ops"] if op[0] == "put"}
        committed = isolation_check.Oracle(entries).at(1 << 64)
        found = {key.hex(): value.decode() for key, value in stored.items()}
        for key in sorted((set(committed) | set(found)) - unsettled):
            if committed.get(key) != found.get(key):
                problems.append(
                    f"the reopened instance holds {key} = {found.get(key)!r}, "
                    f"committed {committed.get(key)!r}"
                )
        self.violations += [f"isolation: {problem}" for problem in problems]

    def check_snapshots(self) -> None:
        """Each reader's snapshot held exactly the acknowledged commits at or below its
        LSN, whole, and read the same twice (invariant 6)."""
        for report in self.snapshots_read:
            if report[:1] == ["anomaly"] and len(report) == 2:
                self.violations.append(f"a reader saw {report[1].replace('_', ' ')}")
            if report[:1] != ["snapshot"]:
                continue
            try:
                snapshot = int(report[1])
                seen = {name: int(count) for name, count in (p.split(":") for p in report[2:])}
            except (IndexError, ValueError):
                self.violations.append(f"a reader's report is unreadable: {' '.join(report)!r}")
                continue
            self.counts["reader snapshots checked"] += 1
            for name in {name for name, _i in self.acked}:
                count = seen.get(name, 0)
                last_seen = self.acked.get((name, count - 1))
                if count and last_seen is not None and last_seen > snapshot:
                    self.violations.append(
                        f"snapshot {snapshot:#x} saw {name}/{count - 1}, committed at "
                        f"{last_seen:#x}, after it"
                    )
                first_unseen = self.acked.get((name, count))
                if first_unseen is not None and first_unseen <= snapshot:
                    self.violations.append(
                        f"snapshot {snapshot:#x} missed {name}/{count}, acknowledged at "
                        f"{first_unseen:#x}"
                    )

    def check_contents(
        self, stored: dict, roll_lsn: int | None, where: str, after_roll_allowed: bool = False
    ) -> None:
        for name, i in self.intents:
            keys = transaction_keys(name, i)
            found = [key for key in keys if key in stored]
            lsn = self.acked.get((name, i))
            if found and len(found) != len(keys):
                self.violations.append(f"{where}: transaction {name}/{i} half present")
            if lsn is not None and (roll_lsn is None or lsn < roll_lsn) and len(found) != len(keys):
                self.violations.append(f"{where}: acknowledged transaction {name}/{i} lost")
            after_roll = lsn is not None and roll_lsn is not None and lsn >= roll_lsn
            if after_roll and found and not after_roll_allowed:
                self.violations.append(f"{where}: transaction {name}/{i} after the roll present")
            for key in found:
                if stored[key] != key[::-1]:
                    self.violations.append(f"{where}: wrong value for {key!r}")

    def check_backup(self, record: dict, exact: bool) -> None:
        out = self.restore_dir()
        try:
            verify_backup(record["dest"])
            if self.rng.random() < 0.5:
                self.kill_restore(record["dest"], out)
            restore(record["dest"], out)
            stored = stored_rows(out)
        except JetError as exc:
            self.violations.append(
                f"backup {record['kind']} in {record['dest']} reported "
                f"success but does not restore: {exc}"
            )
            return
        self.counts["backups restored"] += 1
        self.check_contents(
            stored, record["roll_lsn"], f"restore of {record['dest']}", after_roll_allowed=not exact
        )
        self.check_roll_forward(record)

    def kill_restore(self, backup: str, out: str) -> None:
        """kill -9 a restore of ``backup`` after a random number of its progress events;
        unless it had finished, ``out`` must then refuse to open (the caller re-runs it)."""
        child = self.spawn(DOOMED_RESTORE, backup, out, stdout=subprocess.PIPE, text=True)
        finished = False
        for _ in range(self.rng.randrange(1, 8)):
            line = child.stdout.readline()
            if not line or line.strip() == "done":
                finished = bool(line)
                break
        child.kill()
        child.wait()
        if finished or not os.path.exists(out):
            return
        try:
            Instance.open(out, create=False).close()
        except JetError as exc:
            self.counts[f"killed restores refused to open ({exc.name})"] += 1
            return
        self.violations.append(f"{out}: a killed restore's destination opened as a database")

    def check_roll_forward(self, record: dict) -> None:
        """A restore rolled forward through the live log holds every acknowledged commit,
        or fails because a piece of that log is gone; it never succeeds short."""
        out = self.restore_dir()
        try:
            restore(record["dest"], out, log_dir=os.path.join(self.instance_dir, LOG_DIR))
            stored = stored_rows(out)
        except JetError as exc:
            if exc.name not in LOG_GAP_ERRORS:
                self.violations.append(f"roll-forward of {record['dest']} failed: {exc}")
            self.counts[f"roll-forwards refused ({exc.name})"] += 1
            return
        self.counts["roll-forwards through the live log"] += 1
        self.check_contents(stored, None, f"roll-forward of {record['dest']}")

    def check_archive(self) -> None:
        """The archive reads as one verified stream, equal to the local log where both
        hold a generation, and holds every generation the local log let go of since it
        began; the newest good full backup restores through it - to its end, and to a
        random LSN in between - to exactly the acknowledged commits at or before where
        the replay stopped."""
        logs = os.path.join(self.instance_dir, LOG_DIR)
        local = list_generations(DEFAULT_ENV, logs)
        signature = LogReader(DEFAULT_ENV, logs).read_header(local[-1]).signature
        stream = archive_format.stream_dir(self.archive, signature)
        archived = list_generations(DEFAULT_ENV, stream) if os.path.isdir(stream) else []
        if not archived:
            return
        self.counts["generations archived"] += len(archived)
        if archived != list(range(archived[0], archived[-1] + 1)):
            self.violations.append(f"the archive has a gap: {archived}")
        try:
            for _record in LogReader(DEFAULT_ENV, stream).records(0, all_closed=True):
                pass
        except JetError as exc:
            self.violations.append(f"the archive does not verify: {exc}")
        for generation in set(archived) & set(local):
            if file_crc(DEFAULT_ENV, generation_path(logs, generation)) != file_crc(
                DEFAULT_ENV, generation_path(stream, generation)
            ):
                self.violations.append(f"archived generation {generation} differs from the log")
        for generation in range(archived[0], local[0]):
            if generation not in archived:
                self.violations.append(f"generation {generation} deleted, never archived")
        full = next(
            (b for b in reversed(self.backups) if b["ok"] and b["kind"] in ("full", "atomic")),
            None,
        )
        if full is None:
            return
        end = self.restore_through_archive(full["dest"], None)
        if end is not None:
            until = self.rng.randint(end["earliest_lsn"], end["latest_lsn"])
            self.restore_through_archive(full["dest"], until)

    def restore_through_archive(self, backup: str, until: int | None) -> dict | None:
        """Restore ``backup`` through the archive to ``until``; check it (see above)."""
        out = self.restore_dir()
        what = "archive restore" if until is None else f"restore to {until:#x}"
        try:
            result = restore(backup, out, log_dir=self.archive, until=until)
            stored = stored_rows(out)
        except JetError as exc:
            self.violations.append(f"{what} of {backup} failed: {exc}")
            return None
        self.counts[
            "restores through the archive" if until is None else "point-in-time restores"
        ] += 1
        stopped = result["stopped_at_lsn"]
        self.check_contents(stored, stopped + 1, f"{what} of {backup}")
        if until is not None:
            skipped = [t for t, lsn in self.acked.items() if stopped < lsn <= until]
            if stopped > until or skipped:
                self.violations.append(
                    f"{what} stopped at {stopped:#x}, not after the last commit before it"
                )
        return result

    def check_nothing_left(self, record: dict) -> None:
        after = _snapshot(record["dest"])
        if record["kind"] == "atomic":
            left = {p for p in after if p.startswith(ATOMIC_TEMP)}
        elif record["kind"] == "incremental":
            # Checked at the end: later backups may have added files the chain now lists, and
            # the undo of an atomic backup whose worker died may have moved the complete
            # backup (MANIFEST included) from old/ back to new/ meanwhile.
            try:
                directory, manifest = locate_backup(record["dest"])
                prefix = os.path.relpath(directory, record["dest"])
                complete = [*manifest["files"], MANIFEST]
                listed = {os.path.normpath(os.path.join(prefix, f)) for f in complete}
            except JetError:
                listed = set()
            left = {p for p in after - record["before"] if p not in listed}
        else:
            left = after - record["before"]
        if left and record["kind"] == "full" and self.completed_unreported(record):
            return
        if left:
            self.violations.append(f"failed {record['kind']} backup left {sorted(left)[:3]}")

    def completed_unreported(self, record: dict) -> bool:
        """A backup whose reply was lost with the instance after it was recorded in the meta
        (like a commit whose acknowledgement is lost): complete, so it must restore exactly."""
        try:
            _directory, manifest = locate_backup(record["dest"])
        except JetError:
            return False
        if manifest["backup_id"] != self.recorded_full:
            return False
        self.counts["backups completed but unreported"] += 1
        self.check_backup({**record, "roll_lsn": manifest["chain"][-1]["roll_lsn"]}, exact=True)
        return True


def stored_rows(path: str) -> dict:
    """Every row of table "t" of the instance in ``path`` (none if there is no such table)."""
    with Instance.open(path) as inst:
        session = inst.session()
        return dict(session.scan("t")) if "t" in session.list_tables() else {}


def _snapshot(directory: str | None) -> set[str]:
    if directory is None or not os.path.isdir(directory):
        return set()
    return {
        os.path.relpath(os.path.join(root, name), directory)
        for root, _dirs, files in os.walk(directory)
        for name in files
    }


def run_campaign(
    directory: str, *, trials: int | None, seconds: float | None, seed: int, clients: int
) -> dict:
    rng = random.Random(seed)
    totals: Counter = Counter()
    violations: list[str] = []
    started = time.monotonic()
    trial = 0
    interrupted = False
    while (trials is None or trial < trials) and (
        seconds is None or time.monotonic() - started < seconds
    ):
        path = os.path.join(directory, f"trial{trial}")
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        run = Trial(path, random.Random(rng.randrange(1 << 30)), clients)
        run.fault = "not started"
        try:
            run.run()
            run.check()
        except KeyboardInterrupt:  # the report so far stands; this trial is not judged
            run.stop_children()
            print(f"trial {trial}: interrupted, not checked; kept in {path}", flush=True)
            interrupted = True
            break
        except Exception as exc:  # noqa: BLE001 - the campaign reports, it does not die
            run.violations.append(f"the trial itself failed: {type(exc).__name__}: {exc}")
        totals.update(run.counts)
        totals["trials"] += 1
        totals["acknowledged transactions"] += len(run.acked)
        for violation in run.violations:
            violations.append(f"trial {trial} ({run.fault}): {violation}")
            print(f"VIOLATION trial {trial}: {violation}", flush=True)
        print(
            f"trial {trial}: {run.fault}; {len(run.acked)} acknowledged, "
            f"{sum(1 for b in run.backups if b['ok'])}/{len(run.backups)} backups ok, "
            f"{len(run.violations)} violations",
            flush=True,
        )
        if not run.violations:
            shutil.rmtree(path, ignore_errors=True)
        trial += 1
    return {
        "seed": seed,
        "counts": dict(totals),
        "violations": violations,
        "interrupted": interrupted,
    }


# Memory settles after a warm-up: first-touched pages and allocator arenas grew about
# 10 KB a cycle before cycle 100 and under 0.2 KB (page jitter) after it, with Python's
# live allocations flat throughout.  Leaks are judged from there on.
WARM_UP_CYCLES = 100
RSS_SLACK_MB = 4.0  # after the warm-up: a 1 KB-per-cycle leak shows within 4,000 cycles


def open_close_cycles(directory: str, cycles: int, report_every: int = 100) -> dict:
    """Open and close an instance ``cycles`` times; resources of this process must not grow
    (file descriptors, threads, memory) and no process may be left behind."""
    import gc

    import psutil

    me = psutil.Process()
    path = os.path.join(directory, "cycles")
    warm_up = min(WARM_UP_CYCLES, max(1, cycles // 2))
    samples = []
    for n in range(cycles):
        with Instance.open(path) as inst:
            inst.session().list_tables()
        if n + 1 == warm_up or (n + 1) % report_every == 0 or n + 1 == cycles:
            gc.collect()
            children = [
                p
                for p in me.children(recursive=True)
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
            ]
            samples.append(
                {
                    "cycle": n + 1,
                    "fds": me.num_fds(),
                    "threads": me.num_threads(),
                    "rss_mb": me.memory_info().rss / 1e6,
                    "processes": len(children),
                }
            )
            print(f"cycle {n + 1}: {samples[-1]}", flush=True)
    first, last = samples[0], samples[-1]
    leaks = [
        f"{key} grew from {first[key]} to {last[key]} after cycle {first['cycle']}"
        for key, slack in (("fds", 2), ("threads", 1), ("processes", 0), ("rss_mb", RSS_SLACK_MB))
        if last[key] > first[key] + slack
    ]
    after_warm_up = max(1, last["cycle"] - first["cycle"])
    rss_kb_per_cycle = (last["rss_mb"] - first["rss_mb"]) * 1000 / after_warm_up
    return {
        "cycles": cycles,
        "samples": samples,
        "rss_kb_per_cycle_after_warm_up": rss_kb_per_cycle,
        "leaks": leaks,
    }


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "torture",
        help="randomized crash and fault campaign checked against an oracle",
        description=__doc__.split("\n\n", 1)[1].rsplit("\n\n", 1)[0],
        epilog=epilog(
            "jetstore torture /tmp/torture --trials 5",
            "jetstore torture /tmp/torture --seconds 600 --seed 214 --json-file report.json",
            "jetstore torture /tmp/torture --open-close 200",
            codes="Exit codes: 0 no violation, 1 the campaign could not run, 2 usage, "
            "3 violations found (each printed as VIOLATION), 130 interrupted (Ctrl-C: the "
            "trials before it are reported, and written to --json-file).",
        ),
    )
    parser.add_argument(
        "dir",
        type=instance_directory,
        help="scratch directory for the trials (created if missing; trialN/ inside it "
        "are replaced)",
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--trials", type=positive_int, help="number of trials (default 5)")
    length.add_argument("--seconds", type=positive_float, help="run trials for this long")
    parser.add_argument(
        "--seed",
        type=int,
        help="seed of the campaign's random choices (default: a new one, printed first)",
    )
    parser.add_argument(
        "--clients",
        type=positive_int,
        default=3,
        help="committing client processes per trial (default 3)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the report as one JSON document on stdout (the text goes to stderr)",
    )
    parser.add_argument(
        "--json-file",
        type=output_file,
        metavar="FILE",
        help="write the counts and violations to this file",
    )
    parser.add_argument(
        "--open-close",
        type=positive_int,
        metavar="N",
        help="instead: open and close an instance N times and check that "
        "nothing leaks (descriptors, threads, memory, processes)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with text_aside(args.json):
        if args.open_close:
            report = open_close_cycles(args.dir, args.open_close)
            growth = report["rss_kb_per_cycle_after_warm_up"]
            print(f"RSS after the warm-up: {growth:+.2f} KB per cycle")
            for leak in report["leaks"]:
                print(f"LEAK {leak}")
            failed = bool(report["leaks"])
        else:
            seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
            print(f"seed {seed} (replay with --seed {seed})", flush=True)
            trials = args.trials if args.trials or args.seconds else 5
            report = run_campaign(
                args.dir, trials=trials, seconds=args.seconds, seed=seed, clients=args.clients
            )
            report["seed"] = seed
            for name, count in sorted(report["counts"].items()):
                print(f"  {name:45s} {count}")
            print(f"  {'violations':45s} {len(report['violations'])}")
            failed = bool(report["violations"])
    write_report(report, args.json, args.json_file)
    if failed:
        return exit_codes.DAMAGED
    return exit_codes.INTERRUPTED if report.get("interrupted") else exit_codes.OK

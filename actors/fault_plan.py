"""Fault plans for actor processes: where an actor dies or fails, for tests and the
torture campaign (the file layer that does it is engine/faults.py's FaultEnv).

JETSTORE_FAULTS='{"log_writer": {"fail_write": [3, "EIO"]},
                  "buffer_manager": {"crash_message": 50},
                  "backup_worker": {"crash_at_step": "manifest-written"}}'

Named steps (crash_at_step): the backup worker's BACKUP_STEPS, the archiver's
ARCHIVE_STEPS (engine/archiving.py), and "shutdown" - the buffer manager receiving its
shutdown request.
An actor reads its plan once, at start (actors/runtime.actor_setup).  Unset - in
production - every actor uses the plain Env, and step() and message() cost one
dictionary lookup.
"""

from __future__ import annotations

import errno
import json
import os

from jetstore.engine.faults import FaultEnv
from jetstore.engine.fileio import Env

FAULTS_VARIABLE = "JETSTORE_FAULTS"
KILLED_EXIT_CODE = 137  # what a kill -9 looks like to the supervisor
PLAN_KEYS = ("crash_write", "crash_sync", "fail_write", "crash_message", "crash_at_step")

_plan: dict = {}
_messages = 0


def load_plan(actor: str) -> dict:
    """Read this actor's plan from the environment (JetError-free: a bad plan is a bug in
    the test that wrote it, and fails loudly)."""
    global _plan, _messages
    raw = os.environ.get(FAULTS_VARIABLE)
    _plan = json.loads(raw).get(actor, {}) if raw else {}
    unknown = set(_plan) - set(PLAN_KEYS)
    if unknown:
        raise ValueError(f"{FAULTS_VARIABLE}: unknown fault keys {sorted(unknown)}")
    _messages = 0
    return _plan


def env_for(default: Env) -> Env:
    """The actor's file layer: ``default``, or a FaultEnv that dies (os._exit, no cleanup,
    like kill -9) at the planned write or fsync, or fails the planned write with an errno."""
    if not any(k in _plan for k in ("crash_write", "crash_sync", "fail_write")):
        return default
    fail = _plan.get("fail_write")
    return FaultEnv(
        crash_at_write=_plan.get("crash_write"),
        crash_at_sync=_plan.get("crash_sync"),
        fail_at_write=(fail[0], getattr(errno, fail[1])) if fail else None,
        die=die,
    )


def die() -> None:
    """End this process at once, with no cleanup: what kill -9 does."""
    os._exit(KILLED_EXIT_CODE)


def step(name: str) -> None:
    """A named point of an actor's sequence; dies there if the plan says so."""
    if _plan and _plan.get("crash_at_step") == name:
        die()


def message() -> None:
    """An actor received a message; dies at the planned Nth."""
    global _messages
    if _plan:
        _messages += 1
        if _messages == _plan.get("crash_message"):
            die()

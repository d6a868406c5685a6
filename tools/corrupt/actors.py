"""The ``--actors`` check: a damaged instance opened by ``Instance.open`` (recovery in the buffer
manager process) must fail with the in-process ESE number or serve the same data."""

from __future__ import annotations

from jetstore.tools.corrupt.catalogue import OPTIONS
from jetstore.tools.corrupt.detectors import Seen, describe_seen
from jetstore.tools.corrupt.model import State, diff_states


def open_through_actors(path: str) -> State:
    """Open the instance with its actors (``Instance.open``: recovery in the buffer manager
    process) and scan every table through a session."""
    from jetstore.engine import Instance

    with Instance.open(path, create=False, **OPTIONS) as inst:
        session = inst.session()
        return {table: dict(session.scan(table)) for table in session.list_tables()}


def agree_with_actors(in_process: Seen, actors: Seen) -> str | None:
    """Why the actors' verdict differs from the in-process one (None: it does not)."""
    if actors.result == "crash":
        return f"crash in {describe_seen(actors)}"
    if in_process.result == "error":
        if actors.result != "error" or actors.err != in_process.err:
            return f"{describe_seen(actors)}, but in process {in_process.name} ({in_process.err})"
        return None
    if in_process.result == "ok" and actors.result == "ok" and actors.value != in_process.value[0]:
        differs = diff_states(actors.value, in_process.value[0])
        return f"{actors.detector} returned other data: {differs}"
    if in_process.result == "ok" and actors.result != "ok":
        return f"{describe_seen(actors)}, but in process the instance opened"
    return None

"""How every ``jetstore`` command prints data: text for people by default, one JSON
document on stdout with ``--json``, the same conventions in both.

An LSN reads as ``jetstore inspect`` prints it, ``(0xGEN,0xOFFSET)``; in JSON it keeps
its decimal value and gains ``<key>_text``.  A ``time_ns`` reads as ISO-8601 (in JSON:
a ``time`` beside it); floats are rounded to 0.01; bytes print as hex.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator

from jetstore.actors.control_commands import lsn_text
from jetstore.engine.wall_time import iso_time


def is_lsn(key: str) -> bool:
    """``checkpoint_lsn``, ``roll_lsn``, ``lsn_mark``... (not their ``_text``)."""
    return (key.endswith("_lsn") or key.startswith("lsn_")) and not key.endswith("_text")


def json_document(value):
    """A reply as ``--json`` prints it: LSNs keep their decimal value and gain
    ``<key>_text``; ``time_ns`` gains ``time`` (ISO-8601); floats are rounded to 0.01."""
    if isinstance(value, dict):
        document = {}
        for key, item in value.items():
            document[key] = json_document(item)
            if is_lsn(key) and (item is None or type(item) is int):
                document[f"{key}_text"] = None if item is None else lsn_text(item)
            elif key.endswith("time_ns") and (item is None or type(item) is int):
                document[key.removesuffix("_ns")] = iso_time(item)
        return document
    if isinstance(value, (list, tuple)):
        return [json_document(item) for item in value]
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, bytes):
        return value.hex()
    return value


def print_data(data, as_json: bool) -> None:
    if as_json:
        print(json.dumps(json_document(data), indent=2, default=str))
    else:
        _print_human(json_document(data), 0)


def _print_human(data, indent: int) -> None:
    pad = "  " * indent
    if isinstance(data, dict):
        for key, value in _shown(data):
            if isinstance(value, (dict, list)) and value:
                print(f"{pad}{key}:")
                _print_human(value, indent + 1)
            else:
                print(f"{pad}{key}: {'-' if value is None else value}")
    elif isinstance(data, list):
        for item in data:
            if isinstance(item, dict):
                print(f"{pad}-")
                _print_human(item, indent + 1)
            else:
                print(f"{pad}- {item}")
    else:
        print(f"{pad}{data}")


def _shown(document: dict):
    """A JSON document's entries for people: each LSN and time in its text form only."""
    for key, value in document.items():
        if is_lsn(key) and f"{key}_text" in document:
            yield key, document[f"{key}_text"]
        elif key.endswith("_text") and is_lsn(key.removesuffix("_text")):
            continue
        elif key.endswith("time_ns") and key.removesuffix("_ns") in document:
            continue
        else:
            yield key, value


@contextlib.contextmanager
def text_aside(as_json: bool) -> Iterator[None]:
    """With --json, what a long run prints for people goes to stderr, so that stdout
    holds nothing but the one JSON document printed after it."""
    if not as_json:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def write_report(report: dict, as_json: bool, json_file: str | None) -> None:
    """A long run's report: to stdout with --json, to FILE with --json-file FILE."""
    if json_file:
        with open(json_file, "w") as f:
            json.dump(report, f, indent=1, default=str)
    if as_json:
        print_data(report, as_json=True)

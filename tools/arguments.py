"""What every ``jetstore`` command line shares: the parser class, argument types that
check paths and numbers before any work starts, and the help epilog.

A bad argument is a usage error - one line naming the argument and the value, a
pointer to ``--help``, exit code 2 - never a traceback and never a run that
"succeeds" with nothing done (``--trials -1``, a missing path).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import re
from collections.abc import Callable

from jetstore.actors.control import check_tcp_endpoint
from jetstore.engine.errors import JetError
from jetstore.engine.log_format import MAX_GENERATION, make_lsn
from jetstore.tools import exit_codes


class CommandParser(argparse.ArgumentParser):
    """argparse with click's manners: a usage error is one line and a pointer to --help."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        # A subcommand's parser is run through parse_known_args: refusing what it does
        # not know here names that subcommand, not the top-level command.
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras

    def error(self, message: str):
        self.exit(exit_codes.USAGE, f"{self.prog}: error: {message}\nsee '{self.prog} --help'\n")


def epilog(*examples: str, codes: str = exit_codes.EPILOG) -> str:
    """The end of a command's --help: examples, then its exit codes."""
    lines = ["examples:", *(f"  {example}" for example in examples)]
    return "\n".join(lines) + "\n\n" + codes


def existing_directory(path: str) -> str:
    if not os.path.exists(path):
        raise argparse.ArgumentTypeError(f"{path}: no such directory")
    if not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path}: not a directory")
    return path


def existing_path(path: str) -> str:
    if not os.path.exists(path):
        raise argparse.ArgumentTypeError(f"{path}: no such file or directory")
    return path


def instance_directory(path: str) -> str:
    """A directory that exists, or that can be created in a directory that exists:
    ``serve /nonexistent/deep/dir`` must not build a whole tree from a typo."""
    if not path:
        raise argparse.ArgumentTypeError("an empty path")
    if os.path.exists(path):
        return existing_directory(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(
            f"{path}: its parent {parent} does not exist (create it first)"
        )
    return path


def new_directory(path: str) -> str:
    """A directory to be created (a restore's destination): missing or empty."""
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise argparse.ArgumentTypeError(f"{path}: exists and is not an empty directory")
    return instance_directory(path)


def output_file(path: str) -> str:
    """A file written at the end of a run, checked before the run rather than after it."""
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path}: is a directory, not a file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"{path}: no such directory {parent}")
    if not os.access(path if os.path.exists(path) else parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"{path}: not writable")
    return path


def control_endpoint(endpoint: str) -> str:
    """``serve --control``: checked as the control server checks it, before any work."""
    try:
        check_tcp_endpoint(endpoint)
    except JetError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return endpoint


def number(kind: Callable, low: float, what: str, high: float = math.inf) -> Callable[[str], float]:
    """An argument type: a ``kind`` (int or float) from ``low`` to ``high``."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int = number(int, 1, "a positive whole number")
non_negative_int = number(int, 0, "zero or more")
positive_float = number(float, 1e-9, "a positive number")
non_negative_float = number(float, 0, "zero or more")


_LSN_TEXT = re.compile(r"\(\s*(0x[0-9a-f]+)\s*,\s*(0x[0-9a-f]+)\s*\)", re.IGNORECASE)
_NUMBER_TEXT = re.compile(r"0[xX][0-9a-fA-F]+|[1-9][0-9]*|0")  # as an LSN is printed


def restore_target(text: str) -> int | datetime.datetime:
    """``restore --until``: an LSN - decimal, 0x-hex, or ``(0xGEN,0xOFFSET)`` as the
    tools print it - or an ISO-8601 time with its zone (``Z`` or ``+hh:mm``): a time
    without one would be read in whatever zone the machine is in."""
    lsn = _LSN_TEXT.fullmatch(text.strip())
    if lsn:
        generation, offset = int(lsn.group(1), 16), int(lsn.group(2), 16)
        if generation > MAX_GENERATION or offset > 0xFFFFFFFF:
            raise argparse.ArgumentTypeError(f"{text}: generation or offset past 32 bits")
        return make_lsn(generation, offset)
    if _NUMBER_TEXT.fullmatch(text.strip().removeprefix("-")) and text.strip()[:1] == "-":
        raise argparse.ArgumentTypeError(f"{text} is a negative LSN")
    number = _NUMBER_TEXT.fullmatch(text.strip())
    if number:
        value = int(number.group(0), 0)
        if value > make_lsn(MAX_GENERATION, 0xFFFFFFFF):
            raise argparse.ArgumentTypeError(f"{text}: an LSN past 64 bits")
        return value
    try:
        # Python 3.10's fromisoformat does not read a trailing Z, which the tools print.
        zoned = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
        moment = datetime.datetime.fromisoformat(zoned)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an LSN (decimal, 0x-hex or (0xGEN,0xOFFSET)) nor an ISO-8601 time"
        ) from None
    if moment.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"{text} has no time zone: end it with Z (UTC) or +hh:mm")
    return moment

"""Sizes on the command line: ``512``, ``4K``, ``10M``, ``1G`` (powers of 1024, an optional
``B`` or ``iB``, any case, decimals allowed: ``1.5M``).  One parser for every command that
takes a size (``load --value-size``, ``ctl set-backup-rate``), so that they agree.
"""

from __future__ import annotations

import argparse
import re
from decimal import Decimal

UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(?:([KMGT])(?:I?B)?|B)?", re.IGNORECASE)


class SizeError(argparse.ArgumentTypeError, ValueError):
    """Not a size: argparse prints its message as it is; code outside argparse may catch it
    as a ``ValueError``."""


def parse_size(text: str) -> int:
    """The number of bytes ``text`` names: ``100``, ``4K``, ``10M``, ``1G``, ``1.5M``."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise SizeError(f"{text!r} is not a size (e.g. 512, 64K, 10M, 1G)")
    number, unit = match.groups()
    return int(Decimal(number) * UNITS[(unit or "").upper()])


def positive_size(text: str) -> int:
    """``parse_size``, at least one byte."""
    size = parse_size(text)
    if size < 1:
        raise SizeError(f"{text!r} is not a size of at least one byte")
    return size

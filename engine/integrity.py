"""Structural check of a durable checkpoint: trees, order, and page accounting.

Every page in [2, page_count) of a checkpoint must be exactly one of: a page
of some tree (catalog included, overflow chains included), a page of the free
list, or a free page it lists.  A page counted twice is a double use (data
loss waiting to happen); a page counted never is a leak.  Within the trees,
keys must be strictly increasing and every key must lie within the bounds the
separators above it promise.
"""

from __future__ import annotations

from .errors import JetError
from .meta_format import FIRST_DATA_PAGE, Meta
from .pager import Pager


def check_checkpoint(pager: Pager, meta: Meta) -> dict:
    """Verify ``meta``'s checkpoint as the pager reads it; returns counts, raises -1206."""
    owner: dict[int, str] = {}

    def claim(pgno: int, what: str) -> None:
        if not FIRST_DATA_PAGE <= pgno < meta.page_count:
            fail(f"{what} uses page {pgno}, outside [2, {meta.page_count})")
        if pgno in owner:
            fail(f"page {pgno} is used by {owner[pgno]} and by {what}")
        owner[pgno] = what

    def fail(message: str) -> None:
        raise JetError("JET_errDatabaseCorrupted", f"{pager.path}: {message}")

    tables = {}
    for key, value in _check_tree(pager, meta.catalog_root, "catalog", claim, fail):
        tables[key.decode()] = int.from_bytes(value, "little")
    keys = 0
    for name, root in tables.items():
        keys += sum(1 for _ in _check_tree(pager, root, f"table {name!r}", claim, fail))
    holders, free = pager.read_freelist(meta.freelist_root)
    for pgno in holders:
        claim(pgno, "the free list")
    for pgno in free:
        claim(pgno, "the free pages")
    if len(free) != meta.freelist_count:
        fail(f"free list holds {len(free)} pages, meta says {meta.freelist_count}")
    leaked = [p for p in range(FIRST_DATA_PAGE, meta.page_count) if p not in owner]
    if leaked:
        fail(f"{len(leaked)} pages belong to nothing, first {leaked[:5]}")
    return {"tables": len(tables), "keys": keys, "pages": meta.page_count, "free": len(free)}


def _check_tree(pager: Pager, root: int, name: str, claim, fail):
    """Yield the tree's entries in order while checking its structure."""
    stack = [(root, None, None)]  # (pgno, low bound inclusive, high bound exclusive)
    previous = None
    while stack:
        pgno, low, high = stack.pop()
        claim(pgno, name)
        node = pager.node(pgno)
        for key in node.keys:
            if (low is not None and key < low) or (high is not None and key >= high):
                fail(f"{name}: key {key[:32]!r} in page {pgno} outside its separators")
        if any(a >= b for a, b in zip(node.keys, node.keys[1:], strict=False)):
            fail(f"{name}: keys of page {pgno} are not strictly increasing")
        if node.is_leaf:
            for key, value in zip(node.keys, node.vals, strict=True):
                if previous is not None and key <= previous:
                    fail(f"{name}: key {key[:32]!r} out of order at page {pgno}")
                previous = key
                if type(value) is not bytes:
                    for overflow in pager.overflow_pages(value):
                        claim(overflow, f"{name} overflow")
                    value = pager.read_overflow(value)
                yield key, value
        else:
            if len(node.vals) != len(node.keys) + 1:
                fail(
                    f"{name}: branch page {pgno}: {len(node.vals)} children, {len(node.keys)} keys"
                )
            bounds = [low, *node.keys, high]
            # Push right to left so children are visited in key order.
            for i in reversed(range(len(node.vals))):
                stack.append((node.vals[i], bounds[i], bounds[i + 1]))

"""Copy-on-write B+tree over the pager.

A tree is named by its root page number.  Changes descend from the root,
remember the path, change the leaf, then walk back up: a node whose page
moved (copy-on-write) or split makes its parent change too, so a change to a
tree that the last checkpoint references rewrites one path, root included,
and the caller receives the new root.  A change inside pages already fresh
stops at the leaf, which is what keeps bulk loads cheap.

Nodes split by bytes, never merge; a node left empty is removed from its
parent, and a root branch with a single child collapses into it.  Values too
large to leave room for two entries per leaf live in overflow chains.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator

from .pager import BIN_COST, CHILD_COST, Node, Pager, entry_cost, node_size


def inline_limit(pager: Pager) -> int:
    """Largest key+value (bytes) stored in the leaf itself: at least two entries fit a page."""
    return (pager.capacity - 16) // 2 - 2 * BIN_COST


def create(pager: Pager) -> int:
    return pager.new_node(True, [], []).pgno


def _descend(pager: Pager, root: int, key: bytes) -> tuple[list[tuple[Node, int]], Node]:
    path = []
    node = pager.node(root)
    while not node.is_leaf:
        index = bisect_right(node.keys, key)
        path.append((node, index))
        node = pager.node(node.vals[index])
    return path, node


def get(pager: Pager, root: int, key: bytes) -> bytes | None:
    node = pager.node(root)
    while not node.is_leaf:
        node = pager.node(node.vals[bisect_right(node.keys, key)])
    index = bisect_left(node.keys, key)
    if index < len(node.keys) and node.keys[index] == key:
        value = node.vals[index]
        return value if type(value) is bytes else pager.read_overflow(value)
    return None


def put(pager: Pager, root: int, key: bytes, value: bytes) -> int:
    """Insert or replace; returns the (possibly new) root."""
    path, leaf = _descend(pager, root, key)
    stored = value if len(key) + len(value) <= inline_limit(pager) else pager.write_overflow(value)
    index = bisect_left(leaf.keys, key)
    leaf = pager.writable(leaf)
    if index < len(leaf.keys) and leaf.keys[index] == key:
        old = leaf.vals[index]
        if type(old) is not bytes:
            pager.free_overflow(old)
        leaf.size += entry_cost(key, stored) - entry_cost(key, old)
        leaf.vals[index] = stored
        appended = False
    else:
        leaf.keys.insert(index, key)
        leaf.vals.insert(index, stored)
        leaf.size += entry_cost(key, stored)
        appended = index == len(leaf.keys) - 1
    return _propagate(pager, path, leaf, appended)


def delete(pager: Pager, root: int, key: bytes) -> tuple[int, bool]:
    """Remove ``key``; returns (root, whether it was present)."""
    path, leaf = _descend(pager, root, key)
    index = bisect_left(leaf.keys, key)
    if index == len(leaf.keys) or leaf.keys[index] != key:
        return root, False
    leaf = pager.writable(leaf)
    old = leaf.vals[index]
    if type(old) is not bytes:
        pager.free_overflow(old)
    leaf.size -= entry_cost(key, old)
    del leaf.keys[index]
    del leaf.vals[index]
    if leaf.keys or not path:
        return _propagate(pager, path, leaf, False), True
    # The leaf is empty: unlink it, and every ancestor it leaves childless.
    pager.drop_node(leaf)
    while path:
        parent, index = path.pop()
        parent = pager.writable(parent)
        del parent.vals[index]
        if parent.keys:
            del parent.keys[max(index - 1, 0)]
        parent.size = node_size(False, parent.keys, parent.vals)
        if parent.vals:
            return _collapse_root(pager, _propagate(pager, path, parent, False)), True
        pager.drop_node(parent)
    return create(pager), True


def _collapse_root(pager: Pager, root: int) -> int:
    node = pager.node(root)
    while not node.is_leaf and len(node.vals) == 1:
        child = node.vals[0]
        pager.drop_node(node)
        node = pager.node(child)
    return node.pgno


def _propagate(pager: Pager, path: list[tuple[Node, int]], node: Node, appended: bool) -> int:
    """Fix parents after ``node`` changed: new page numbers and splits go up the path."""
    split = _split(pager, node, appended) if node.size > pager.capacity else None
    while path:
        parent, index = path.pop()
        if parent.vals[index] == node.pgno and split is None:
            return _root_of(path, parent)
        parent = pager.writable(parent)
        parent.vals[index] = node.pgno
        if split is not None:
            separator, right = split
            parent.keys.insert(index, separator)
            parent.vals.insert(index + 1, right.pgno)
            parent.size += len(separator) + BIN_COST + CHILD_COST
            appended = index == len(parent.keys) - 1
        split = _split(pager, parent, appended) if parent.size > pager.capacity else None
        node = parent
    if split is None:
        return node.pgno
    separator, right = split
    return pager.new_node(False, [separator], [node.pgno, right.pgno]).pgno


def _root_of(path: list[tuple[Node, int]], node: Node) -> int:
    return path[0][0].pgno if path else node.pgno


def _split(pager: Pager, node: Node, appended: bool) -> tuple[bytes, Node]:
    """Move the upper part of an overfull node into a new right sibling.

    An append at the end of the tree (a sequential load) leaves the left node
    full, so sequential keys fill pages instead of leaving them half empty.
    """
    if node.is_leaf:
        costs = [entry_cost(k, v) for k, v in zip(node.keys, node.vals, strict=True)]
    else:
        costs = [len(k) + BIN_COST + CHILD_COST for k in node.keys]
    count = len(costs)
    if appended:
        cut = count - 1
    else:
        half, running, cut = sum(costs) / 2, 0, 0
        while cut < count - 1 and running + costs[cut] / 2 < half:
            running += costs[cut]
            cut += 1
        cut = max(cut, 1)
    if node.is_leaf:
        right = pager.new_node(True, node.keys[cut:], node.vals[cut:])
        separator = right.keys[0]
        del node.keys[cut:], node.vals[cut:]
    else:
        cut = min(max(cut, 1), count - 1)  # a branch gives its middle key to the parent
        separator = node.keys[cut]
        right = pager.new_node(False, node.keys[cut + 1 :], node.vals[cut + 1 :])
        del node.keys[cut:], node.vals[cut + 1 :]
    node.size = node_size(node.is_leaf, node.keys, node.vals)
    return separator, right


def scan(
    pager: Pager, root_of: Callable[[], int], start: bytes | None, end: bytes | None
) -> Iterator[tuple[bytes, bytes]]:
    """Entries with start <= key < end in key order.

    ``root_of()`` gives the current root.  Each leaf's entries are copied and
    the next leaf is found by a fresh descent from its separator, so the
    caller may change the tree between items: every key present throughout
    the scan is returned once, in order.
    """
    position = start if start is not None else b""
    while True:
        path, leaf = _descend(pager, root_of(), position)
        index = bisect_left(leaf.keys, position)
        for key, value in zip(leaf.keys[index:], leaf.vals[index:], strict=True):
            if end is not None and key >= end:
                return
            if type(value) is not bytes:  # re-read: the caller may have replaced it meanwhile
                value = get(pager, root_of(), key)
                if value is None:
                    continue
            yield key, value
        position = _next_separator(path)
        if position is None or (end is not None and position >= end):
            return


def _next_separator(path: list[tuple[Node, int]]) -> bytes | None:
    """Smallest key of the leaf right of the current one: the nearest right separator."""
    for node, index in reversed(path):
        if index < len(node.keys):
            return node.keys[index]
    return None


def walk_pages(pager: Pager, root: int) -> Iterator[int]:
    """Every page of the tree, overflow chains included (for verification and drop)."""
    stack = [root]
    while stack:
        node = pager.node(stack.pop())
        yield node.pgno
        if node.is_leaf:
            for value in node.vals:
                if type(value) is not bytes:
                    yield from pager.overflow_pages(value)
        else:
            stack.extend(node.vals)

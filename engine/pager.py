"""Page cache, copy-on-write page allocation and free-space management.

The rule everything here serves: **a page that a durable (or pinned)
checkpoint references is never written**.  Pages allocated since the last
checkpoint was sealed are *fresh*: no checkpoint references them, so they may
be rewritten in place any number of times, and evicting a dirty fresh page
simply writes it where it is.  Changing a page that is not fresh first moves
it to a fresh page (copy-on-write) and frees the old number.

A freed page is reusable only when no checkpoint that may reference it can
still be needed.  Each free is stamped with ``sealed_seq``, the newest
checkpoint that could reference the page; it becomes allocatable once two
checkpoints newer than that stamp are durable (so both meta slots name intact
checkpoints) and no pin holds a checkpoint at or below it.  Fresh pages freed
again are reusable at once.  After a crash the in-memory bookkeeping is gone,
and the durable checkpoint's free list is exactly right again: pages freed
since were still referenced by it.

A checkpoint is split into ``seal`` (snapshot: the dirty pages serialized, the
free list built; from here on, changes copy-on-write away from these pages),
``write`` (pure I/O, which the buffer manager may run without blocking
commits) and ``finish`` (the checkpoint is durable: release what it freed).
"""

from __future__ import annotations

import heapq
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from operator import itemgetter

import msgpack

from .errors import JetError
from .fileio import File
from .meta_format import FIRST_DATA_PAGE
from .page_format import (
    PAGE_BRANCH,
    PAGE_FREELIST,
    PAGE_LEAF,
    PAGE_OVERFLOW,
    PAGE_TYPE_NAMES,
    PageHeader,
    PageImage,
    body_capacity,
    build_page_into,
    freelist_body,
    freelist_capacity,
    overflow_body,
    overflow_capacity,
    page_body,
    unpack_freelist,
    unpack_overflow,
    verify_page,
)

# Upper bounds of the msgpack encoding used for node bodies (page_format):
# array headers, a bin header (keys <= 1000 bytes and inline values < 64 KiB
# take at most 3), an overflow reference [total_len, pgno], a child pgno.
NODE_FIXED_COST = 7
WRITE_BATCH_PAGES = 64  # pages per pwrite: large sequential writes, a bounded buffer
BIN_COST = 3
OVERFLOW_REF_COST = 11
CHILD_COST = 5


def entry_cost(key: bytes, value) -> int:
    """Bytes a leaf entry may take in the page body (an upper bound, used consistently)."""
    if type(value) is bytes:
        return len(key) + len(value) + 2 * BIN_COST
    return len(key) + BIN_COST + OVERFLOW_REF_COST


class Node:
    """A decoded B+tree page.  ``vals`` are values (leaf) or child page numbers (branch)."""

    __slots__ = ("pgno", "is_leaf", "keys", "vals", "size", "dirty", "lsn")

    def __init__(self, pgno: int, is_leaf: bool, keys: list, vals: list, lsn: int = 0) -> None:
        self.pgno = pgno
        self.is_leaf = is_leaf
        self.keys = keys
        self.vals = vals
        self.lsn = lsn
        self.dirty = False
        self.size = node_size(is_leaf, keys, vals)

    def render_into(self, buf: bytearray, offset: int, page_size: int) -> None:
        body = _node_packer.pack([self.keys, self.vals])
        page_type = PAGE_LEAF if self.is_leaf else PAGE_BRANCH
        build_page_into(buf, offset, page_size, self.pgno, self.lsn, page_type, body)

    def copy_to(self, pgno: int, lsn: int) -> Node:
        """The copy a copy-on-write change works on; this node stays as sealed."""
        copy = Node.__new__(Node)
        copy.pgno, copy.is_leaf, copy.lsn, copy.dirty = pgno, self.is_leaf, lsn, True
        copy.keys, copy.vals, copy.size = self.keys[:], self.vals[:], self.size
        return copy


_node_packer = msgpack.Packer(use_bin_type=True)


def node_size(is_leaf: bool, keys: list, vals: list) -> int:
    keys_cost = sum(map(len, keys)) + BIN_COST * len(keys)
    if not is_leaf:
        return NODE_FIXED_COST + keys_cost + CHILD_COST * len(vals)
    vals_cost = sum(len(v) + BIN_COST if type(v) is bytes else OVERFLOW_REF_COST for v in vals)
    return NODE_FIXED_COST + keys_cost + vals_cost


def decode_node_body(body: memoryview, is_leaf: bool, pgno: int, path: str) -> tuple[list, list]:
    """Keys and values of a node page; a body that passed its checksum yet is malformed
    (a bug or a forged page) is corruption, not a crash."""
    try:
        keys, vals = msgpack.unpackb(body)
        shape_ok = (
            type(keys) is list
            and type(vals) is list
            and len(vals) == len(keys) + (0 if is_leaf else 1)
            and all(type(k) is bytes for k in keys)
        )
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise JetError("JET_errDatabaseCorrupted", f"{path} page {pgno}: {exc}") from exc
    if not shape_ok:
        raise JetError("JET_errDatabaseCorrupted", f"{path} page {pgno}: malformed node body")
    return keys, vals


class PageReader:
    """Verified reads of one database file's tree pages: every page read is checked
    (checksum, its own number, its type) before it is decoded.  The pager reads
    through it, and so does every read view (read_view.py)."""

    def __init__(self, file: File, page_size: int, page_count: int) -> None:
        self.file = file
        self.path = file.path
        self.page_size = page_size
        self.page_count = page_count

    def read_page(self, pgno: int, *expected_types: int) -> tuple[PageHeader, bytes]:
        """Read and verify a page that the trees reference; any defect is a JetError."""
        if not FIRST_DATA_PAGE <= pgno < self.page_count:
            raise JetError(
                "JET_errDatabaseCorrupted",
                f"{self.path}: reference to page {pgno} outside [2, {self.page_count})",
            )
        page = self.file.pread(self.page_size, pgno * self.page_size)
        if len(page) != self.page_size:
            raise JetError(
                "JET_errFileIOBeyondEOF",
                f"{self.path} page {pgno}: file ends at {self.file.size()}",
            )
        header = verify_page(page, pgno, self.path, allow_uninitialized=False)
        if header.page_type not in expected_types:
            found = PAGE_TYPE_NAMES.get(header.page_type, header.page_type)
            wanted = "/".join(PAGE_TYPE_NAMES[t] for t in expected_types)
            raise JetError(
                "JET_errDatabaseCorrupted",
                f"{self.path} page {pgno}: a {found} page where a {wanted} page belongs",
            )
        return header, page

    def read_node(self, pgno: int) -> Node:
        header, page = self.read_page(pgno, PAGE_LEAF, PAGE_BRANCH)
        is_leaf = header.page_type == PAGE_LEAF
        keys, vals = decode_node_body(page_body(page), is_leaf, pgno, self.path)
        return Node(pgno, is_leaf, keys, vals, header.lsn)

    def _overflow_chain(self, ref: list) -> Iterable[tuple[int, memoryview]]:
        total, pgno = ref
        seen = 0
        while seen < total:
            if pgno == 0:
                raise JetError(
                    "JET_errDatabaseCorrupted",
                    f"{self.path}: overflow chain ends after {seen} of {total} bytes",
                )
            next_pgno, data = unpack_overflow(page_body(self.read_page(pgno, PAGE_OVERFLOW)[1]))
            yield pgno, data
            seen += len(data)
            pgno = next_pgno

    def read_overflow(self, ref: list) -> bytes:
        value = b"".join(bytes(data) for _pgno, data in self._overflow_chain(ref))
        if len(value) != ref[0]:
            raise JetError(
                "JET_errDatabaseCorrupted",
                f"{self.path}: overflow value is {len(value)} bytes, expected {ref[0]}",
            )
        return value

    def overflow_pages(self, ref: list) -> list[int]:
        return [pgno for pgno, _data in self._overflow_chain(ref)]


class Pager(PageReader):
    def __init__(
        self,
        file: File,
        page_size: int,
        cache_size: int,
        *,
        page_count: int,
        sealed_seq: int,
    ) -> None:
        super().__init__(file, page_size, page_count)
        self.capacity = body_capacity(page_size)
        self.cache_pages = max(64, cache_size // page_size)
        self.cache: OrderedDict[int, Node] = OrderedDict()
        self.dirty: dict[int, Node] = {}
        self.sealed: dict[int, Node] = {}  # sealed for a checkpoint whose pages are in flight
        self.fresh: set[int] = set()
        self.free_now: list[int] = []  # heap: lowest page numbers first keep the file compact
        self.pending: list[tuple[int, int]] = []  # (freed while sealed_seq was, pgno)
        self.pins: Counter[int] = Counter()
        # The oldest checkpoint a read view in another process still reads, if any
        # (reader_table_format.py): its pages are not reused either.
        self.reader_floor: Callable[[], int | None] = lambda: None
        self.sealed_seq = sealed_seq
        self.durable_seq = sealed_seq
        self.freelist_pages: list[int] = []
        self.current_lsn = 0  # stamped into pages changed by the commit being applied
        self._write_buffer = self.new_write_buffer()

    def write_pages(
        self, pages: Iterable[tuple[int, Node | PageImage]], buffer: bytearray | None = None
    ) -> None:
        """Render and write pages in page order; runs of consecutive pages go out in one
        pwrite of at most WRITE_BATCH_PAGES, through one reused buffer."""
        size = self.page_size
        if buffer is None:
            buffer = self._write_buffer
        run_start = count = 0
        for pgno, page in sorted(pages, key=itemgetter(0)):
            if count and (pgno != run_start + count or count == WRITE_BATCH_PAGES):
                self.file.pwrite(memoryview(buffer)[: count * size], run_start * size)
                count = 0
            if not count:
                run_start = pgno
            page.render_into(buffer, count * size, size)
            count += 1
        if count:
            self.file.pwrite(memoryview(buffer)[: count * size], run_start * size)

    def new_write_buffer(self) -> bytearray:
        return bytearray(WRITE_BATCH_PAGES * self.page_size)

    # -- allocation ---------------------------------------------------------
    def allocate(self) -> int:
        if self.free_now:
            pgno = heapq.heappop(self.free_now)
        else:
            pgno = self.page_count
            self.page_count += 1
        self.fresh.add(pgno)
        return pgno

    def free_page(self, pgno: int) -> None:
        if pgno in self.fresh:
            self.fresh.discard(pgno)
            heapq.heappush(self.free_now, pgno)
        else:
            self.pending.append((self.sealed_seq, pgno))

    def release_pending(self) -> None:
        """Make allocatable every freed page no durable or pinned checkpoint can need.

        "Durable" covers both meta slots: a page freed while checkpoint S was the newest
        is reused only once S + 2 is durable, when S + 2 has overwritten S's slot.  Until
        then the older slot still names a complete, untouched checkpoint - what opening
        falls back to when the newest slot is damaged.
        """
        oldest_slot = self.durable_seq - 1
        horizon = min(oldest_slot, min(self.pins, default=oldest_slot))
        reader = self.reader_floor()
        if reader is not None:
            horizon = min(horizon, reader)
        keep = []
        for freed_at, pgno in self.pending:
            if freed_at < horizon:
                heapq.heappush(self.free_now, pgno)
            else:
                keep.append((freed_at, pgno))
        self.pending = keep

    # -- nodes -------------------------------------------------------------
    def node(self, pgno: int) -> Node:
        node = self.cache.get(pgno)
        if node is not None:
            self.cache.move_to_end(pgno)
            return node
        node = self.sealed.get(pgno)
        if node is not None:  # evicted while its checkpoint is still being written
            self.cache[pgno] = node
            return node
        node = self.read_node(pgno)
        self.cache[pgno] = node
        return node

    def new_node(self, is_leaf: bool, keys: list, vals: list) -> Node:
        node = Node(self.allocate(), is_leaf, keys, vals, self.current_lsn)
        node.dirty = True
        self.cache[node.pgno] = node
        self.dirty[node.pgno] = node
        return node

    def writable(self, node: Node) -> Node:
        """The node to change: itself if its page is fresh, else a copy on a fresh page.

        The copy leaves the original object untouched, so a checkpoint sealed
        a moment ago still writes the page as it was when sealed.
        """
        if node.pgno in self.fresh:
            node.lsn = self.current_lsn
            if not node.dirty:
                node.dirty = True
                self.dirty[node.pgno] = node
            return node
        del self.cache[node.pgno]
        self.free_page(node.pgno)
        copy = node.copy_to(self.allocate(), self.current_lsn)
        self.cache[copy.pgno] = copy
        self.dirty[copy.pgno] = copy
        return copy

    def drop_node(self, node: Node) -> None:
        self.cache.pop(node.pgno, None)
        self.dirty.pop(node.pgno, None)
        self.free_page(node.pgno)

    def evict(self) -> None:
        """Bring the cache back under budget; a dirty victim is written to its fresh page."""
        victims = []
        while len(self.cache) > self.cache_pages:
            pgno, node = self.cache.popitem(last=False)
            if node.dirty:
                node.dirty = False
                del self.dirty[pgno]
                victims.append((pgno, node))
        if victims:
            self.write_pages(victims)

    # -- overflow chains -----------------------------------------------------
    def write_overflow(self, value: bytes) -> list:
        """Store a large value in a chain of fresh pages; returns the leaf's reference."""
        chunk = overflow_capacity(self.page_size)
        pgnos = [self.allocate() for _ in range(0, len(value), chunk)]
        images = []
        for i, pgno in enumerate(pgnos):
            next_pgno = pgnos[i + 1] if i + 1 < len(pgnos) else 0
            body = overflow_body(next_pgno, value[i * chunk : (i + 1) * chunk])
            images.append((pgno, PageImage(pgno, self.current_lsn, PAGE_OVERFLOW, body)))
        self.write_pages(images)
        return [len(value), pgnos[0]]

    def free_overflow(self, ref: list) -> None:
        for pgno in [pgno for pgno, _data in self._overflow_chain(ref)]:
            self.free_page(pgno)

    # -- the free list on disk ---------------------------------------------
    def load_freelist(self, root: int) -> None:
        self.freelist_pages, free = self.read_freelist(root)
        self.free_now = sorted(free)

    def read_freelist(self, root: int) -> tuple[list[int], list[int]]:
        """(the free-list pages, the free page numbers they hold) of a checkpoint."""
        pages, free = [], []
        pgno = root
        while pgno:
            if len(pages) > self.page_count:
                raise JetError("JET_errDatabaseCorrupted", f"{self.path}: free list has a cycle")
            next_pgno, held = unpack_freelist(page_body(self.read_page(pgno, PAGE_FREELIST)[1]))
            free.extend(held)
            pages.append(pgno)
            pgno = next_pgno
        return pages, free

    def _freelist_images(self, free: list[int]) -> tuple[list[tuple[int, bytes]], int]:
        per_page = freelist_capacity(self.page_size)
        needed = -(-len(free) // per_page)
        holders = [
            heapq.heappop(self.free_now) if self.free_now else self._extend() for _ in range(needed)
        ]
        holder_set = set(holders)
        free = [p for p in free if p not in holder_set]
        images = []
        for i, pgno in enumerate(holders):
            chunk = free[i * per_page : (i + 1) * per_page]
            next_pgno = holders[i + 1] if i + 1 < len(holders) else 0
            body = freelist_body(next_pgno, chunk)
            images.append((pgno, PageImage(pgno, self.current_lsn, PAGE_FREELIST, body)))
        self.freelist_pages = holders
        return images, len(free)

    def _extend(self) -> int:
        self.page_count += 1
        return self.page_count - 1

    # -- checkpoints ---------------------------------------------------------
    def seal(self, new_seq: int) -> tuple[list[tuple[int, bytes]], int, int]:
        """Snapshot the dirty pages and the free list for checkpoint ``new_seq``.

        Returns (page images to write, free-list root, free page count).  From
        here on, every page of this snapshot is protected by copy-on-write.
        """
        for pgno in self.freelist_pages:
            self.free_page(pgno)
        self.sealed = dict(self.dirty)  # until finish(): the disk may not hold them yet
        images: list[tuple[int, Node | PageImage]] = list(self.dirty.items())
        for node in self.dirty.values():
            node.dirty = False
        self.dirty.clear()
        free = sorted(set(self.free_now).union(pgno for _seq, pgno in self.pending))
        freelist_images, free_count = self._freelist_images(free)
        images.extend(freelist_images)
        self.fresh.clear()
        self.sealed_seq = new_seq
        root = self.freelist_pages[0] if self.freelist_pages else 0
        return images, root, free_count

    def finish(self, seq: int) -> None:
        self.sealed = {}
        self.durable_seq = seq
        self.release_pending()

    def pin(self) -> int:
        self.pins[self.durable_seq] += 1
        return self.durable_seq

    def unpin(self, seq: int) -> None:
        if self.pins[seq] <= 0:
            raise JetError("JET_errInvalidParameter", f"checkpoint {seq} is not pinned")
        self.pins[seq] -= 1
        if not self.pins[seq]:
            del self.pins[seq]
        self.release_pending()


def used_pages(pager: Pager, meta) -> list[int]:
    """Every page a checkpoint references (meta slots excluded), from its free list:
    what a backup copies and what a pin keeps untouched."""
    _holders, free = pager.read_freelist(meta.freelist_root)
    unused = set(free)
    return [p for p in range(FIRST_DATA_PAGE, meta.page_count) if p not in unused]

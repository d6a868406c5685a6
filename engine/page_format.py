"""On-disk format of database pages (``DIR/jet.edb``).

The file is an array of fixed-size pages; page ``n`` lives at byte offset
``n * page_size``.  Pages 0 and 1 are the two meta slots (``meta_format``);
every other page belongs to a B+tree, an overflow chain or the free list of
some checkpoint, or is free.

Every page starts with the same 24-byte header, little-endian:

    offset  size  field
         0     4  crc32c    CRC32C of bytes [4, page_size): the whole page but this field
         4     4  pgno      the page's own number, so a page written or read at the wrong
                            offset fails verification like a flipped bit does
         8     8  lsn       LSN of the last logged change written into the page (0: none)
        16     1  type      PAGE_META, PAGE_BRANCH, PAGE_LEAF, PAGE_OVERFLOW, PAGE_FREELIST
        17     1  flags     reserved, 0
        18     2  reserved  0
        20     4  body_len  bytes of body after the header; the rest of the page is zeros
        24     -  body      type specific, below

An all-zero page is legal: it was never written (preallocated or freed before
any checkpoint used it).  Verification tells the three cases apart:
bad checksum (JET_errReadVerifyFailure, -1018), right checksum but another
page's number (JET_errReadPgnoVerifyFailure, -1118), never written.

Bodies:
  PAGE_LEAF     msgpack array [keys, values]: keys a list of bin, values a list whose
                items are bin (the value itself) or [total_len, first_overflow_pgno]
                for a value stored in an overflow chain.  Keys are sorted bytewise.
  PAGE_BRANCH   msgpack array [keys, children]: len(children) == len(keys) + 1; keys in
                child i+1 are >= keys[i] and keys in child i are < keys[i].
  PAGE_OVERFLOW u32 next_pgno (0 ends the chain), then a slice of the value.
  PAGE_FREELIST u32 next_pgno (0 ends the chain), u32 count, then count u32 page numbers.
msgpack keeps node encoding and decoding in C: the tree's hot path is bisect
over decoded Python lists, and a page is (de)serialized only at I/O time.
"""

from __future__ import annotations

import struct

import crc32c

from .errors import JetError

PAGE_HEADER = struct.Struct("<IIQBBHI")
PAGE_HEADER_SIZE = 24
assert PAGE_HEADER.size == PAGE_HEADER_SIZE
CRC_OFFSET, PGNO_OFFSET, BODY_LEN_OFFSET = 0, 4, 20
CHECKSUMMED_FROM = PGNO_OFFSET  # the crc covers the page from here to its end
U32 = struct.Struct("<I")  # crc32c, pgno, body_len

CHAIN_HEADER = struct.Struct("<I")  # next_pgno of overflow and freelist pages
FREELIST_HEADER = struct.Struct("<II")  # next_pgno, count
assert CHAIN_HEADER.size == 4 and FREELIST_HEADER.size == 8

PAGE_META = 1
PAGE_BRANCH = 2
PAGE_LEAF = 3
PAGE_OVERFLOW = 4
PAGE_FREELIST = 5
PAGE_TYPE_NAMES = {
    PAGE_META: "meta",
    PAGE_BRANCH: "branch",
    PAGE_LEAF: "leaf",
    PAGE_OVERFLOW: "overflow",
    PAGE_FREELIST: "freelist",
}

MIN_PAGE_SIZE = 4096
MAX_PAGE_SIZE = 32768
PAGE_SIZES = (4096, 8192, 16384, 32768)

# Outcomes of classify_page(), counted by `jetstore inspect verify`.
PAGE_OK = "ok"
PAGE_UNINITIALIZED = "uninitialized"
PAGE_BAD_CHECKSUM = "bad_checksum"
PAGE_WRONG_PGNO = "wrong_pgno"

_zero_pages: dict[int, bytes] = {}


def zero_page(page_size: int) -> bytes:
    page = _zero_pages.get(page_size)
    if page is None:
        page = _zero_pages[page_size] = bytes(page_size)
    return page


def body_capacity(page_size: int) -> int:
    return page_size - PAGE_HEADER_SIZE


def build_page_into(
    buf: bytearray, offset: int, page_size: int, pgno: int, lsn: int, page_type: int, body
) -> None:
    """Write a complete page image (header, body, zero padding, checksum) into ``buf``.

    Checkpoints and eviction render pages straight into one reused write
    buffer: allocating a fresh image per page costs more than building it.
    """
    end = offset + page_size
    body_end = offset + PAGE_HEADER_SIZE + len(body)
    if body_end > end:
        raise ValueError(f"page {pgno}: body of {len(body)} bytes does not fit")
    PAGE_HEADER.pack_into(buf, offset, 0, pgno, lsn, page_type, 0, 0, len(body))
    buf[offset + PAGE_HEADER_SIZE : body_end] = body
    buf[body_end:end] = memoryview(zero_page(page_size))[: end - body_end]
    U32.pack_into(
        buf, offset + CRC_OFFSET, crc32c.crc32c(memoryview(buf)[offset + CHECKSUMMED_FROM : end])
    )


def build_page(page_size: int, pgno: int, lsn: int, page_type: int, body) -> bytes:
    """A complete page image as bytes."""
    page = bytearray(page_size)
    build_page_into(page, 0, page_size, pgno, lsn, page_type, body)
    return bytes(page)


class PageImage:
    """A page to be written: rendered into the write buffer when its turn comes."""

    __slots__ = ("pgno", "lsn", "page_type", "body")

    def __init__(self, pgno: int, lsn: int, page_type: int, body) -> None:
        self.pgno, self.lsn, self.page_type, self.body = pgno, lsn, page_type, body

    def render_into(self, buf: bytearray, offset: int, page_size: int) -> None:
        build_page_into(buf, offset, page_size, self.pgno, self.lsn, self.page_type, self.body)


def classify_page(page: bytes, pgno: int) -> str:
    """PAGE_OK, PAGE_UNINITIALIZED, PAGE_BAD_CHECKSUM or PAGE_WRONG_PGNO."""
    stored_crc, stored_pgno = U32.unpack_from(page, CRC_OFFSET)[0], page_pgno(page)
    if stored_crc != crc32c.crc32c(memoryview(page)[CHECKSUMMED_FROM:]):
        return PAGE_UNINITIALIZED if page == zero_page(len(page)) else PAGE_BAD_CHECKSUM
    return PAGE_OK if stored_pgno == pgno else PAGE_WRONG_PGNO


class PageHeader:
    __slots__ = ("pgno", "lsn", "page_type", "body_len")

    def __init__(self, page: bytes) -> None:
        _crc, self.pgno, self.lsn, self.page_type, _f, _r, self.body_len = PAGE_HEADER.unpack_from(
            page
        )


def page_pgno(page: bytes) -> int:
    """The page number a page says it holds (meta pages: their slot)."""
    return U32.unpack_from(page, PGNO_OFFSET)[0]


def page_body(page: bytes) -> memoryview:
    body_len = U32.unpack_from(page, BODY_LEN_OFFSET)[0]
    return memoryview(page)[PAGE_HEADER_SIZE : PAGE_HEADER_SIZE + body_len]


def verify_page(page: bytes, pgno: int, path: str, *, allow_uninitialized: bool = True):
    """Check one page read from ``path``; JetError names the file, page and offset.

    Returns the PageHeader, or None for a never-written (all-zero) page when
    ``allow_uninitialized``; a zero page where data is expected is -1019.
    """
    outcome = classify_page(page, pgno)
    where = f"{path} page {pgno} (offset {pgno * len(page)})"
    if outcome == PAGE_OK:
        return PageHeader(page)
    if outcome == PAGE_UNINITIALIZED:
        if allow_uninitialized:
            return None
        raise JetError("JET_errPageNotInitialized", f"{where} was never written")
    if outcome == PAGE_WRONG_PGNO:
        found = page_pgno(page)
        raise JetError("JET_errReadPgnoVerifyFailure", f"{where} holds page {found}")
    raise JetError("JET_errReadVerifyFailure", f"{where}: checksum mismatch")


# -- chained bodies: overflow values and the free list ------------------------------------


def overflow_body(next_pgno: int, data: bytes) -> bytes:
    return CHAIN_HEADER.pack(next_pgno) + data


def unpack_overflow(body: memoryview) -> tuple[int, memoryview]:
    """(next_pgno, the slice of the value) of an overflow page's body."""
    return CHAIN_HEADER.unpack_from(body)[0], body[CHAIN_HEADER.size :]


def overflow_capacity(page_size: int) -> int:
    return body_capacity(page_size) - CHAIN_HEADER.size


def freelist_body(next_pgno: int, free: list[int]) -> bytes:
    return FREELIST_HEADER.pack(next_pgno, len(free)) + struct.pack(f"<{len(free)}I", *free)


def unpack_freelist(body: memoryview) -> tuple[int, tuple[int, ...]]:
    """(next_pgno, the free page numbers) of a free-list page's body."""
    next_pgno, count = FREELIST_HEADER.unpack_from(body)
    return next_pgno, struct.unpack_from(f"<{count}I", body, FREELIST_HEADER.size)


def freelist_capacity(page_size: int) -> int:
    """Page numbers one free-list page holds."""
    return (body_capacity(page_size) - FREELIST_HEADER.size) // 4

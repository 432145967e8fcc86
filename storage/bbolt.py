"""Write and read bbolt database files: the on-disk format of etcd's backend.

etcd's snapshot (`etcdctl snapshot save`) is a bbolt file, and etcd's tools open
it as one: `etcdctl snapshot status` walks its buckets (after bbolt's own
consistency check) and `snapshot restore` builds an etcd data dir from it. To
pass for etcd in front of those tools, etcdlite serves its snapshots in that
format (storage/etcd_backend.py maps state.db onto etcd's buckets), and reads
it back so that an etcd snapshot can seed an etcdlite cluster.

The format, as bbolt lays it out (a B+tree of fixed-size pages, little-endian):

- every page starts with a 16-byte header: page id u64, flags u16 (branch 0x01,
  leaf 0x02, meta 0x04, freelist 0x10), element count u16, overflow u32 (how
  many extra pages a big node spans);
- pages 0 and 1 are meta pages (magic 0xED0CDAED, version 2, page size, flags,
  root bucket {root page, sequence}, freelist page, high-water page id, txid,
  FNV-1a-64 checksum of the fields before it); the newest valid one wins;
- a leaf page holds elements {flags u32, pos u32, ksize u32, vsize u32}, each
  `pos` bytes before its key, the value right after the key; flag 0x01 marks a
  sub-bucket, whose value is its header {root page u64, sequence u64}, followed
  by an inline page when root is 0;
- a branch page holds elements {pos u32, ksize u32, child page u64}, the key
  being the first key of the child.

The writer streams: leaves are written as soon as they fill, and only one key
per leaf is kept (for the branch levels), so exporting a large store needs
memory proportional to its page count, not its size. The file it makes has no
free pages, every page reachable once, keys in order: what bbolt's `Check`
(run by `etcdctl snapshot status`) demands.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

PAGE_SIZE = 4096
MAGIC = 0xED0CDAED
VERSION = 2

BRANCH_PAGE = 0x01
LEAF_PAGE = 0x02
META_PAGE = 0x04
FREELIST_PAGE = 0x10
BUCKET_LEAF = 0x01
"""Leaf element flag: the value is a sub-bucket header."""

_PAGE_HEADER = struct.Struct("<QHHI")
_LEAF_ELEMENT = struct.Struct("<IIII")
_BRANCH_ELEMENT = struct.Struct("<IIQ")
_BUCKET_HEADER = struct.Struct("<QQ")
_META = struct.Struct("<IIIIQQQQQ")
_CHECKSUM = struct.Struct("<Q")
_ELEMENT_SIZE = 16  # both element kinds are 16 bytes
_NO_FREELIST = 0xFFFFFFFFFFFFFFFF
_MAX_DEPTH = 64

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_U64 = (1 << 64) - 1


class BoltFormatError(ValueError):
    """The file is not a bbolt database, or is damaged."""


def fnv1a_64(data: bytes) -> int:
    """bbolt's meta checksum (hash/fnv New64a)."""
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & _U64
    return h


def _meta_page(page_id: int, root: int, freelist: int, high_water: int, txid: int) -> bytes:
    fields = _META.pack(MAGIC, VERSION, PAGE_SIZE, 0, root, 0, freelist, high_water, txid)
    body = fields + _CHECKSUM.pack(fnv1a_64(fields))
    return _PAGE_HEADER.pack(page_id, META_PAGE, 0, 0) + body


def _pad(page: bytes) -> bytes:
    pages = max(1, -(-len(page) // PAGE_SIZE))
    return page + bytes(pages * PAGE_SIZE - len(page))


class BoltWriter:
    """Builds a bbolt file of top-level buckets, each from items in key order.

    Usage: `add_bucket(name, items)` once per bucket (any order of names, items
    strictly ascending by key), then `finish()`, which writes the root bucket
    and the two meta pages and returns the file size. The caller owns the
    file object (open it "w+b"; fsync it if it must survive a crash).
    """

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._buckets: dict[bytes, int] = {}
        self._next_page = 3  # 0 and 1: meta pages, 2: the (empty) freelist
        self._write_page(2, _PAGE_HEADER.pack(2, FREELIST_PAGE, 0, 0))
        self._finished = False

    def _write_page(self, page_id: int, page: bytes) -> int:
        """Write one node at `page_id`; returns how many pages it took."""
        data = _pad(page)
        self._f.seek(page_id * PAGE_SIZE)
        self._f.write(data)
        return len(data) // PAGE_SIZE

    def _emit(self, flags: int, elements: list[tuple[int, bytes, bytes | int]]) -> int:
        """Write a leaf (flag, key, value) or branch (0, key, child) node; its page id."""
        page_id = self._next_page
        count = len(elements)
        headers = bytearray()
        data = bytearray()
        for i, (elem_flags, key, payload) in enumerate(elements):
            pos = (count - i) * _ELEMENT_SIZE + len(data)  # from this element to its key
            if flags == LEAF_PAGE:
                assert isinstance(payload, bytes)
                headers += _LEAF_ELEMENT.pack(elem_flags, pos, len(key), len(payload))
                data += key
                data += payload
            else:
                assert isinstance(payload, int)
                headers += _BRANCH_ELEMENT.pack(pos, len(key), payload)
                data += key
        body_len = _PAGE_HEADER.size + len(headers) + len(data)
        overflow = max(1, -(-body_len // PAGE_SIZE)) - 1
        header = _PAGE_HEADER.pack(page_id, flags, count, overflow)
        self._next_page += self._write_page(page_id, header + bytes(headers) + bytes(data))
        return page_id

    def _tree(self, leaf_elements: Iterable[tuple[int, bytes, bytes]]) -> int:
        """Write a B+tree of the elements (ascending keys); its root page id."""
        level: list[tuple[bytes, int]] = []  # (first key, page id) of each written node
        node: list[tuple[int, bytes, bytes | int]] = []
        size = _PAGE_HEADER.size
        previous: bytes | None = None
        for flags, key, value in leaf_elements:
            if previous is not None and key <= previous:
                raise ValueError(f"bbolt keys must be strictly ascending: {key!r} after "
                                 f"{previous!r}")
            previous = key
            item_size = _ELEMENT_SIZE + len(key) + len(value)
            if node and size + item_size > PAGE_SIZE:
                level.append((bytes(node[0][1]), self._emit(LEAF_PAGE, node)))
                node, size = [], _PAGE_HEADER.size
            node.append((flags, key, value))
            size += item_size
        if node or not level:
            level.append((node[0][1] if node else b"", self._emit(LEAF_PAGE, node)))
        while len(level) > 1:
            upper: list[tuple[bytes, int]] = []
            branch: list[tuple[int, bytes, bytes | int]] = []
            size = _PAGE_HEADER.size
            for key, child in level:
                item_size = _ELEMENT_SIZE + len(key)
                if branch and size + item_size > PAGE_SIZE:
                    upper.append((bytes(branch[0][1]), self._emit(BRANCH_PAGE, branch)))
                    branch, size = [], _PAGE_HEADER.size
                branch.append((0, key, child))
                size += item_size
            upper.append((bytes(branch[0][1]), self._emit(BRANCH_PAGE, branch)))
            level = upper
        return level[0][1]

    def add_bucket(self, name: bytes, items: Iterable[tuple[bytes, bytes]]) -> None:
        if self._finished:
            raise RuntimeError("bbolt writer already finished")
        if not name or name in self._buckets:
            raise ValueError(f"bucket name {name!r} empty or repeated")
        self._buckets[name] = self._tree((0, k, v) for k, v in items)

    def finish(self) -> int:
        """Write the root bucket and the meta pages; the file's size in bytes."""
        if self._finished:
            raise RuntimeError("bbolt writer already finished")
        self._finished = True
        root = self._tree(
            (BUCKET_LEAF, name, _BUCKET_HEADER.pack(page, 0))
            for name, page in sorted(self._buckets.items())
        )
        high_water = self._next_page
        for txid in (0, 1):
            self._write_page(txid, _meta_page(txid, root, 2, high_water, txid))
        self._f.truncate(high_water * PAGE_SIZE)
        self._f.flush()
        return high_water * PAGE_SIZE


def write_bolt(path: Path, buckets: Iterable[tuple[bytes, Iterable[tuple[bytes, bytes]]]]
               ) -> int:
    """Write a complete bbolt file at `path` (fsync'd); its size in bytes."""
    with open(path, "w+b") as f:
        writer = BoltWriter(f)
        for name, items in buckets:
            writer.add_bucket(name, items)
        size = writer.finish()
        os.fsync(f.fileno())
    return size


@dataclass(frozen=True, slots=True)
class BoltMeta:
    page_size: int
    root: int
    freelist: int
    high_water: int
    txid: int


def is_bolt_file(path: Path) -> bool:
    """True if `path` starts with a bbolt meta page (a cheap sniff, not a check)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_PAGE_HEADER.size + 4)
    except OSError:
        return False
    return (len(head) == _PAGE_HEADER.size + 4
            and struct.unpack_from("<I", head, _PAGE_HEADER.size)[0] == MAGIC)


class BoltReader:
    """Read-only access to a bbolt file's top-level buckets.

    Every page access is bounds-checked and every walk is depth-limited and
    cycle-checked, so a damaged or hostile file raises BoltFormatError rather
    than looping or reading outside the file. Trailing bytes after the last
    page (etcd appends a sha256 to streamed snapshots) are ignored.
    """

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        try:
            size = self._file.seek(0, 2)
            if size < 2 * _PAGE_HEADER.size + _META.size:
                raise BoltFormatError(f"{path}: too small to be a bbolt file")
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        except BaseException:
            self._file.close()
            raise
        try:
            self.meta = self._pick_meta()
            if self.meta.high_water * self.meta.page_size > len(self._map):
                raise BoltFormatError(f"{path}: truncated ({len(self._map)} bytes, meta "
                                      f"says {self.meta.high_water} pages)")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._map.close()
        self._file.close()

    def __enter__(self) -> BoltReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _read_meta(self, offset: int) -> BoltMeta | None:
        start = offset + _PAGE_HEADER.size
        if start + _META.size + _CHECKSUM.size > len(self._map):
            return None
        fields = self._map[start:start + _META.size]
        magic, version, page_size, _flags, root, _seq, freelist, high_water, txid = \
            _META.unpack(fields)
        (checksum,) = _CHECKSUM.unpack_from(self._map, start + _META.size)
        if magic != MAGIC or version != VERSION:
            return None
        if checksum != 0 and checksum != fnv1a_64(fields):
            return None
        if page_size < 512 or page_size & (page_size - 1):
            return None
        return BoltMeta(page_size, root, freelist, high_water, txid)

    def _pick_meta(self) -> BoltMeta:
        first = self._read_meta(0)
        if first is None:
            raise BoltFormatError("not a bbolt file (first meta page invalid)")
        second = self._read_meta(first.page_size)
        candidates = [m for m in (first, second) if m is not None]
        return max(candidates, key=lambda m: m.txid)

    def _page(self, page_id: int, data: bytes | mmap.mmap | None = None,
              base: int = 0) -> tuple[bytes | mmap.mmap, int, int, int]:
        """(buffer, page offset, flags, count) of a page, bounds-checked."""
        if data is None:
            if page_id < 2 or page_id >= self.meta.high_water:
                raise BoltFormatError(f"page {page_id} out of bounds "
                                      f"(high water {self.meta.high_water})")
            data, base = self._map, page_id * self.meta.page_size
        if base + _PAGE_HEADER.size > len(data):
            raise BoltFormatError(f"page {page_id} header beyond the end of the file")
        _id, flags, count, _overflow = _PAGE_HEADER.unpack_from(data, base)
        return data, base, flags, count

    def _elements(self, data: bytes | mmap.mmap, base: int, flags: int, count: int
                  ) -> Iterator[tuple[int, bytes, bytes | int]]:
        for i in range(count):
            at = base + _PAGE_HEADER.size + i * _ELEMENT_SIZE
            if at + _ELEMENT_SIZE > len(data):
                raise BoltFormatError("page element beyond the end of the file")
            if flags & LEAF_PAGE:
                elem_flags, pos, ksize, vsize = _LEAF_ELEMENT.unpack_from(data, at)
                end = at + pos + ksize + vsize
                if end > len(data):
                    raise BoltFormatError("leaf element beyond the end of the file")
                key = bytes(data[at + pos:at + pos + ksize])
                yield elem_flags, key, bytes(data[at + pos + ksize:end])
            else:
                pos, ksize, child = _BRANCH_ELEMENT.unpack_from(data, at)
                if at + pos + ksize > len(data):
                    raise BoltFormatError("branch element beyond the end of the file")
                yield 0, bytes(data[at + pos:at + pos + ksize]), child

    def _walk(self, page_id: int, inline: bytes | None, seen: set[int], depth: int
              ) -> Iterator[tuple[int, bytes, bytes]]:
        if depth > _MAX_DEPTH:
            raise BoltFormatError("bbolt tree deeper than any real database")
        if inline is None:
            if page_id in seen:
                raise BoltFormatError(f"page {page_id} referenced twice")
            seen.add(page_id)
        data, base, flags, count = self._page(page_id, inline, 0)
        if flags & LEAF_PAGE:
            for elem_flags, key, value in self._elements(data, base, flags, count):
                assert isinstance(value, bytes)
                yield elem_flags, key, value
        elif flags & BRANCH_PAGE and inline is None:
            for _f, _key, child in self._elements(data, base, flags, count):
                assert isinstance(child, int)
                yield from self._walk(child, None, seen, depth + 1)
        else:
            raise BoltFormatError(f"page {page_id}: not a leaf or branch page "
                                  f"(flags {flags:#x})")

    def _bucket_items(self, header: bytes, seen: set[int]
                      ) -> Iterator[tuple[int, bytes, bytes]]:
        if len(header) < _BUCKET_HEADER.size:
            raise BoltFormatError("bucket header too short")
        root, _seq = _BUCKET_HEADER.unpack_from(header)
        if root == 0:
            return self._walk(0, header[_BUCKET_HEADER.size:], seen, 0)
        return self._walk(root, None, seen, 0)

    def buckets(self) -> list[bytes]:
        """Names of the top-level buckets, in key order."""
        return [key for flags, key, _ in self._root_items() if flags & BUCKET_LEAF]

    def _root_items(self) -> Iterator[tuple[int, bytes, bytes]]:
        return self._walk(self.meta.root, None, set(), 0)

    def items(self, name: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The key/value pairs of top-level bucket `name` in key order (nested
        buckets skipped); nothing if there is no such bucket."""
        for flags, key, header in self._root_items():
            if key == name and flags & BUCKET_LEAF:
                for elem_flags, k, v in self._bucket_items(header, set()):
                    if not elem_flags & BUCKET_LEAF:
                        yield k, v
                return

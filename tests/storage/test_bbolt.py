"""The bbolt writer and reader: layout facts, round trips, and damaged files refused."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.bbolt import (
    BRANCH_PAGE,
    FREELIST_PAGE,
    LEAF_PAGE,
    MAGIC,
    META_PAGE,
    PAGE_SIZE,
    BoltFormatError,
    BoltReader,
    fnv1a_64,
    is_bolt_file,
    write_bolt,
)


def _page_header(data: bytes, page: int) -> tuple[int, int, int, int]:
    return struct.unpack_from("<QHHI", data, page * PAGE_SIZE)


def test_fnv1a_64_matches_the_published_test_vectors() -> None:
    assert fnv1a_64(b"") == 0xCBF29CE484222325
    assert fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a_64(b"foobar") == 0x85944171F73967E8


def test_an_empty_database_has_two_metas_a_freelist_and_an_empty_root(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    assert write_bolt(path, []) == 4 * PAGE_SIZE
    data = path.read_bytes()
    assert [_page_header(data, p)[:2] for p in range(4)] == [
        (0, META_PAGE), (1, META_PAGE), (2, FREELIST_PAGE), (3, LEAF_PAGE)]
    magic, version, page_size = struct.unpack_from("<III", data, 16)
    assert (magic, version, page_size) == (MAGIC, 2, PAGE_SIZE)
    assert is_bolt_file(path)
    with BoltReader(path) as bolt:
        assert bolt.buckets() == []
        assert (bolt.meta.root, bolt.meta.freelist, bolt.meta.high_water) == (3, 2, 4)
        assert bolt.meta.txid == 1  # the newer of the two metas wins


def test_buckets_come_back_in_name_order_with_their_items(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    write_bolt(path, [(b"zeta", [(b"a", b"1")]), (b"alpha", []),
                      (b"meta", [(b"k1", b""), (b"k2", b"v" * 10)])])
    with BoltReader(path) as bolt:
        assert bolt.buckets() == [b"alpha", b"meta", b"zeta"]
        assert list(bolt.items(b"alpha")) == []
        assert list(bolt.items(b"meta")) == [(b"k1", b""), (b"k2", b"v" * 10)]
        assert list(bolt.items(b"missing")) == []


def test_many_keys_build_branch_levels_and_read_back_in_order(tmp_path: Path) -> None:
    items = [(b"%08d" % i, b"x" * (i % 50)) for i in range(60_000)]
    path = tmp_path / "big.db"
    size = write_bolt(path, [(b"key", iter(items))])
    data = path.read_bytes()
    assert size == len(data)
    with BoltReader(path) as bolt:
        (root_name, header), = ((k, v) for k, v in _root_leaf(data, bolt.meta.root))
        assert root_name == b"key"
        (bucket_root,) = struct.unpack_from("<Q", header)
        # 60,000 items need a branch level above a branch level above the leaves.
        assert _page_header(data, bucket_root)[1] == BRANCH_PAGE
        first_child = struct.unpack_from("<IIQ", data, bucket_root * PAGE_SIZE + 16)[2]
        assert _page_header(data, first_child)[1] == BRANCH_PAGE
        assert list(bolt.items(b"key")) == items


def _root_leaf(data: bytes, root: int) -> list[tuple[bytes, bytes]]:
    _id, flags, count, _ = _page_header(data, root)
    assert flags == LEAF_PAGE
    out = []
    for i in range(count):
        at = root * PAGE_SIZE + 16 + 16 * i
        _f, pos, ksize, vsize = struct.unpack_from("<IIII", data, at)
        key_at = at + pos
        out.append((data[key_at:key_at + ksize], data[key_at + ksize:key_at + ksize + vsize]))
    return out


def test_a_value_bigger_than_a_page_spans_overflow_pages(tmp_path: Path) -> None:
    big = bytes(range(256)) * 40  # 10 KiB
    path = tmp_path / "overflow.db"
    write_bolt(path, [(b"key", [(b"a", b"small"), (b"b", big), (b"c", b"after")])])
    data = path.read_bytes()
    page, overflows = 2, []
    while page < len(data) // PAGE_SIZE:  # continuation pages carry no header: skip them
        overflow = _page_header(data, page)[3]
        overflows.append(overflow)
        page += 1 + overflow
    assert max(overflows) == 2  # 10 KiB + headers = 3 pages
    with BoltReader(path) as bolt:
        assert list(bolt.items(b"key")) == [(b"a", b"small"), (b"b", big), (b"c", b"after")]


def test_keys_out_of_order_or_repeated_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ascending"):
        write_bolt(tmp_path / "x.db", [(b"key", [(b"b", b""), (b"a", b"")])])
    with pytest.raises(ValueError, match="ascending"):
        write_bolt(tmp_path / "y.db", [(b"key", [(b"a", b""), (b"a", b"")])])
    with pytest.raises(ValueError, match="repeated"):
        write_bolt(tmp_path / "z.db", [(b"key", []), (b"key", [])])


def test_trailing_bytes_after_the_last_page_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    write_bolt(path, [(b"key", [(b"a", b"1")])])
    with open(path, "ab") as f:
        f.write(b"\x00" * 32)  # etcd's snapshot stream appends a sha256
    with BoltReader(path) as bolt:
        assert list(bolt.items(b"key")) == [(b"a", b"1")]


def test_a_corrupt_newest_meta_falls_back_to_the_other(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    write_bolt(path, [(b"key", [(b"a", b"1")])])
    data = bytearray(path.read_bytes())
    data[PAGE_SIZE + 16 + 40] ^= 0xFF  # meta 1's high-water mark: checksum now wrong
    path.write_bytes(bytes(data))
    with BoltReader(path) as bolt:
        assert bolt.meta.txid == 0
        assert list(bolt.items(b"key")) == [(b"a", b"1")]


@pytest.mark.parametrize("damage", ["magic", "truncated", "loop", "bad-page"])
def test_damaged_files_raise_a_format_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "d.db"
    write_bolt(path, [(b"key", [(b"%05d" % i, b"v" * 100) for i in range(200)])])
    data = bytearray(path.read_bytes())
    if damage == "magic":
        data[16:20] = b"\x00\x00\x00\x00"
    elif damage == "truncated":
        data = data[:len(data) - PAGE_SIZE]
    else:
        with BoltReader(path) as bolt:
            root = bolt.meta.root
        _, header = _root_leaf(bytes(data), root)[0]
        (bucket_root,) = struct.unpack_from("<Q", header)
        child_at = bucket_root * PAGE_SIZE + 16 + 8  # first branch element's page id
        struct.pack_into("<Q", data, child_at, bucket_root if damage == "loop" else 10**9)
    path.write_bytes(bytes(data))
    with pytest.raises(BoltFormatError), BoltReader(path) as bolt:
        list(bolt.items(b"key"))


def test_a_file_that_is_not_bbolt_is_not_sniffed_as_one(tmp_path: Path) -> None:
    path = tmp_path / "sqlite.db"
    path.write_bytes(b"SQLite format 3\x00" + bytes(100))
    assert not is_bolt_file(path)
    assert not is_bolt_file(tmp_path / "missing.db")


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.binary(min_size=1, max_size=40),
                       st.dictionaries(st.binary(min_size=1, max_size=64),
                                       st.binary(max_size=6000), max_size=80),
                       max_size=5))
def test_any_buckets_round_trip(tmp_path_factory: pytest.TempPathFactory,
                                buckets: dict[bytes, dict[bytes, bytes]]) -> None:
    path = tmp_path_factory.mktemp("rt") / "rt.db"
    write_bolt(path, [(name, sorted(items.items())) for name, items in buckets.items()])
    with BoltReader(path) as bolt:
        assert bolt.buckets() == sorted(buckets)
        for name, items in buckets.items():
            assert list(bolt.items(name)) == sorted(items.items())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 15), st.integers(0, 400), st.integers(0, 255)),
                min_size=1, max_size=8),
       st.one_of(st.just(0), st.integers(PAGE_SIZE, 16 * PAGE_SIZE)))
def test_a_damaged_file_reads_or_raises_a_format_error_never_anything_else(
        tmp_path_factory: pytest.TempPathFactory, flips: list[tuple[int, int]],
        cut: int) -> None:
    """What `etcdlite snapshot restore` may be handed: any bytes. Reading must end in
    data or BoltFormatError: no struct/index/recursion errors, no endless walk."""
    path = tmp_path_factory.mktemp("fz") / "f.db"
    write_bolt(path, [(b"key", [(b"%04d" % i, b"v" * (i % 300)) for i in range(120)]),
                      (b"meta", [(b"a", b"1")])])
    data = bytearray(path.read_bytes())
    for page, offset, value in flips:  # headers and element tables: where walks go wrong
        at = page * PAGE_SIZE + offset
        if at < len(data):
            data[at] = value
    path.write_bytes(bytes(data[:cut] if cut else data))
    try:
        with BoltReader(path) as bolt:
            for name in bolt.buckets():
                for _ in bolt.items(name):
                    pass
    except BoltFormatError:
        pass

"""Every RangeRequest option, against a small fixed key space."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.kv import (
    DeleteRangeRequest,
    PutRequest,
    RangeRequest,
    SortOrder,
    SortTarget,
    prefix_range_end,
)
from storage.mvcc import MvccStore
from tests.storage.mvcc_helpers import Feeder


@pytest.fixture
def feed(tmp_path: Path) -> Iterator[Feeder]:
    """Keys: a@2 (v3), ab@3, b@4 (rewritten twice: version 3), c@5, d deleted, \\xff\\xff."""
    store = MvccStore(tmp_path / "state.db")
    f = Feeder(store)
    f.batch(
        PutRequest(b"a", b"3"),  # 2
        PutRequest(b"ab", b"1"),  # 3
        PutRequest(b"b", b"0"),  # 4
        PutRequest(b"c", b"2"),  # 5
        PutRequest(b"b", b"4"),  # 6
        PutRequest(b"b", b"5"),  # 7
        PutRequest(b"d", b"x"),  # 8
        DeleteRangeRequest(b"d"),  # 9
        PutRequest(b"\xff\xff", b"9"),  # 10
    )
    yield f
    store.close()


def _keys(feed: Feeder, **kw: object) -> list[bytes]:
    return [kv.key for kv in feed.store.range(RangeRequest(**kw)).kvs]  # type: ignore[arg-type]


def test_empty_range_end_reads_one_key(feed: Feeder) -> None:
    assert _keys(feed, key=b"a") == [b"a"]
    assert _keys(feed, key=b"d") == []


def test_nul_range_end_reads_every_key_from_key(feed: Feeder) -> None:
    assert _keys(feed, key=b"b", range_end=b"\0") == [b"b", b"c", b"\xff\xff"]


def test_nul_key_and_nul_range_end_read_everything(feed: Feeder) -> None:
    assert _keys(feed, key=b"\0", range_end=b"\0") == [b"a", b"ab", b"b", b"c", b"\xff\xff"]


def test_prefix_range_end_reads_a_prefix(feed: Feeder) -> None:
    assert _keys(feed, key=b"a", range_end=prefix_range_end(b"a")) == [b"a", b"ab"]
    assert _keys(feed, key=b"\xff", range_end=prefix_range_end(b"\xff")) == [b"\xff\xff"]


def test_range_end_not_above_key_is_empty(feed: Feeder) -> None:
    assert _keys(feed, key=b"c", range_end=b"a") == []
    assert _keys(feed, key=b"c", range_end=b"c") == []


def test_limit_cuts_and_sets_more_while_count_is_the_total(feed: Feeder) -> None:
    r = feed.store.range(RangeRequest(key=b"\0", range_end=b"\0", limit=2))
    assert ([kv.key for kv in r.kvs], r.more, r.count) == ([b"a", b"ab"], True, 5)
    r = feed.store.range(RangeRequest(key=b"\0", range_end=b"\0", limit=5))
    assert (len(r.kvs), r.more, r.count) == (5, False, 5)


def test_count_only_returns_no_kvs(feed: Feeder) -> None:
    r = feed.store.range(RangeRequest(key=b"\0", range_end=b"\0", count_only=True))
    assert (r.kvs, r.more, r.count) == ((), False, 5)


def test_keys_only_returns_empty_values(feed: Feeder) -> None:
    r = feed.store.range(RangeRequest(key=b"b", keys_only=True))
    assert [(kv.key, kv.value, kv.version) for kv in r.kvs] == [(b"b", b"", 3)]


@pytest.mark.parametrize(
    ("order", "target", "expected"),
    [
        (SortOrder.NONE, SortTarget.KEY, [b"a", b"ab", b"b", b"c"]),
        (SortOrder.ASCEND, SortTarget.KEY, [b"a", b"ab", b"b", b"c"]),
        (SortOrder.DESCEND, SortTarget.KEY, [b"c", b"b", b"ab", b"a"]),
        # A target without an order sorts ascending, as etcd does.
        (SortOrder.NONE, SortTarget.VALUE, [b"ab", b"c", b"a", b"b"]),
        (SortOrder.DESCEND, SortTarget.VALUE, [b"b", b"a", b"c", b"ab"]),
        # Ties (a, ab and c have version 1) stay in key order.
        (SortOrder.ASCEND, SortTarget.VERSION, [b"a", b"ab", b"c", b"b"]),
        (SortOrder.DESCEND, SortTarget.VERSION, [b"b", b"a", b"ab", b"c"]),
        (SortOrder.DESCEND, SortTarget.CREATE, [b"c", b"b", b"ab", b"a"]),
        (SortOrder.ASCEND, SortTarget.MOD, [b"a", b"ab", b"c", b"b"]),
        (SortOrder.DESCEND, SortTarget.MOD, [b"b", b"c", b"ab", b"a"]),
    ],
)
def test_sort_order_and_target(
    feed: Feeder, order: SortOrder, target: SortTarget, expected: list[bytes]
) -> None:
    assert _keys(feed, key=b"a", range_end=b"d", sort_order=order, sort_target=target) == expected


def test_sort_then_limit_keeps_the_first_after_sorting(feed: Feeder) -> None:
    r = feed.store.range(RangeRequest(key=b"a", range_end=b"d", limit=1,
                                      sort_order=SortOrder.DESCEND, sort_target=SortTarget.MOD))
    assert ([kv.key for kv in r.kvs], r.more, r.count) == ([b"b"], True, 4)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"min_mod_revision": 5}, [b"b", b"c"]),
        ({"max_mod_revision": 5}, [b"a", b"ab", b"c"]),
        ({"min_create_revision": 3, "max_create_revision": 4}, [b"ab", b"b"]),
        ({"min_mod_revision": 3, "max_mod_revision": 5}, [b"ab", b"c"]),
    ],
)
def test_mod_and_create_revision_filters(
    feed: Feeder, filters: dict[str, int], expected: list[bytes]
) -> None:
    r = feed.store.range(RangeRequest(key=b"a", range_end=b"d", **filters))  # type: ignore[arg-type]
    assert [kv.key for kv in r.kvs] == expected
    assert r.count == 4  # etcd counts the range before filtering


def test_filters_with_limit_report_more_from_the_filtered_list(feed: Feeder) -> None:
    r = feed.store.range(RangeRequest(key=b"a", range_end=b"d", limit=1, min_mod_revision=5))
    assert ([kv.key for kv in r.kvs], r.more, r.count) == ([b"b"], True, 4)


def test_options_apply_to_historical_reads_too(feed: Feeder) -> None:
    r = feed.store.range(RangeRequest(key=b"\0", range_end=b"\0", revision=8, limit=3,
                                      sort_order=SortOrder.DESCEND, sort_target=SortTarget.KEY))
    assert ([kv.key for kv in r.kvs], r.more, r.count) == ([b"d", b"c", b"b"], True, 5)
    b_at_6 = feed.store.range(RangeRequest(key=b"b", revision=6)).kvs[0]
    assert (b_at_6.value, b_at_6.version, b_at_6.mod_revision) == (b"4", 2, 6)
    counted = feed.store.range(RangeRequest(key=b"a", range_end=b"c", revision=3,
                                            count_only=True))
    assert counted.count == 2
    assert counted.revision == 10

"""Pure rules of `watch_poll` (cluster/watch_poll.py): ranges, bounds, cuts, resume point."""

from __future__ import annotations

import pytest

from cluster import limits
from cluster.kv import KeyValue
from cluster.watch_poll import (
    WatchFilter,
    cut_by_bytes,
    cut_point,
    drop_revision,
    in_range,
    next_revision,
    parse_watch_poll,
)
from storage.mvcc import MvccEvent


def ev(rev: int, key: bytes = b"k", value: bytes = b"", delete: bool = False) -> MvccEvent:
    return MvccEvent(is_delete=delete, kv=KeyValue(key=key, value=value, mod_revision=rev))


@pytest.mark.parametrize(("key", "start", "end", "inside"), [
    (b"a", b"a", b"", True), (b"ab", b"a", b"", False),
    (b"a/x", b"a/", b"a0", True), (b"a0", b"a/", b"a0", False),
    (b"zzz", b"m", b"\0", True), (b"a", b"m", b"\0", False),
    (b"\0", b"\0", b"\0", True),
])
def test_in_range_follows_etcds_range_end_rule(key: bytes, start: bytes, end: bytes,
                                               inside: bool) -> None:
    assert in_range(key, start, end) is inside


def test_parse_clamps_limit_and_timeout_to_the_server_bounds() -> None:
    r = parse_watch_poll({"op": "watch_poll", "v": 1, "key": b"k", "limit": 10**9,
                          "timeout_ms": 10**9, "filters": ["noput"]})
    assert r.limit == limits.watch_events_max
    assert r.timeout_ms == limits.watch_timeout_ms_max
    assert r.filters == frozenset({WatchFilter.NOPUT})
    assert parse_watch_poll({"key": b"k"}).limit == limits.watch_events_max
    assert parse_watch_poll({"key": b"k", "limit": 5}).limit == 5


def test_filters_drop_puts_or_deletes() -> None:
    noput = parse_watch_poll({"key": b"k", "filters": ["noput"]})
    assert not noput.matches(b"k", is_delete=False)
    assert noput.matches(b"k", is_delete=True)
    nodelete = parse_watch_poll({"key": b"k", "filters": ["nodelete"]})
    assert nodelete.matches(b"k", is_delete=False)
    assert not nodelete.matches(b"k", is_delete=True)


def test_only_a_full_read_may_have_cut_its_last_revision() -> None:
    assert cut_point([ev(2), ev(3)], 3) is None
    assert cut_point([ev(2), ev(3), ev(3)], 3) == 3
    assert cut_point([], 3) is None
    assert [e.kv.mod_revision for e in drop_revision([ev(2), ev(3), ev(3)], 3)] == [2]


def test_byte_cut_keeps_the_first_revision_whole_and_cuts_between_revisions() -> None:
    big = b"x" * 10
    assert cut_by_bytes([ev(2, value=big), ev(2, value=big), ev(3, value=big)], 5) == 3
    assert cut_by_bytes([ev(2, value=big), ev(3, value=big)], 100) is None
    assert cut_by_bytes([], 5) is None


@pytest.mark.parametrize(("start", "current", "last_seen", "expected"), [
    (5, 9, None, 10),   # everything up to the header delivered
    (5, 9, 7, 8),       # cut short: continue after what was covered
    (12, 9, None, 12),  # a member behind the client: never move backwards
    (0, 9, None, 10),   # from now
])
def test_next_revision(start: int, current: int, last_seen: int | None, expected: int) -> None:
    assert next_revision(start, current, last_seen) == expected

"""Behaviour of the MVCC store: revisions, puts, deletes, history, compaction, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.errors import (
    BadRequestError,
    CompactedError,
    FutureRevisionError,
    KeyNotFoundError,
    LeaseNotFoundError,
)
from cluster.kv import (
    CompactionRequest,
    DeleteRangeRequest,
    DeleteRangeResult,
    KeyValue,
    LeaseKeepAliveRequest,
    PutRequest,
    PutResult,
    RangeRequest,
    StatusRequest,
)
from storage.mvcc import MvccStore
from tests.storage.mvcc_helpers import Feeder, history


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MvccStore]:
    s = MvccStore(tmp_path / "state.db")
    yield s
    s.close()


@pytest.fixture
def feed(store: MvccStore) -> Feeder:
    return Feeder(store)


def test_empty_store_is_at_revision_one(store: MvccStore) -> None:
    assert (store.revision, store.compact_revision, store.applied_index) == (1, 0, 0)
    assert store.range(RangeRequest(key=b"\0", range_end=b"\0")).revision == 1


def test_each_put_bumps_the_revision_by_one(feed: Feeder) -> None:
    results = feed.batch(PutRequest(b"a", b"1"), PutRequest(b"b", b"2"), PutRequest(b"a", b"3"))
    assert [r.revision for r in results] == [2, 3, 4]  # type: ignore[union-attr]
    assert feed.store.revision == 4


def test_put_records_create_and_mod_revision_and_version(feed: Feeder) -> None:
    feed.batch(PutRequest(b"k", b"v1"), PutRequest(b"other", b"x"), PutRequest(b"k", b"v2"))
    assert feed.get(b"k") == KeyValue(b"k", b"v2", create_revision=2, mod_revision=4, version=2)


def test_version_and_create_revision_restart_after_delete(feed: Feeder) -> None:
    feed.batch(PutRequest(b"k", b"1"), PutRequest(b"k", b"2"), DeleteRangeRequest(b"k"),
               PutRequest(b"k", b"3"))
    assert feed.get(b"k") == KeyValue(b"k", b"3", create_revision=5, mod_revision=5, version=1)


def test_delete_writes_a_tombstone_that_hides_the_key_from_then_on(feed: Feeder) -> None:
    feed.batch(PutRequest(b"k", b"1"))
    result = feed.one(DeleteRangeRequest(b"k", prev_kv=True))
    assert result == DeleteRangeResult(
        deleted=1, prev_kvs=(KeyValue(b"k", b"1", 2, 2, 1),), revision=3
    )
    assert feed.get(b"k") is None
    assert feed.get(b"k", revision=2) == KeyValue(b"k", b"1", 2, 2, 1)
    events = feed.store.events(3)
    assert [(e.is_delete, e.kv) for e in events] == [(True, KeyValue(b"k", b"", 0, 3, 0))]


def test_deleting_nothing_keeps_the_revision(feed: Feeder) -> None:
    feed.batch(PutRequest(b"a", b"1"))
    result = feed.one(DeleteRangeRequest(b"b", range_end=b"z"))
    assert result == DeleteRangeResult(deleted=0, revision=2)
    assert feed.store.revision == 2


def test_delete_range_deletes_all_keys_in_one_revision_in_key_order(feed: Feeder) -> None:
    feed.batch(*(PutRequest(k, b"v") for k in (b"c", b"a", b"b", b"d")))
    result = feed.one(DeleteRangeRequest(b"a", range_end=b"d"))
    assert result == DeleteRangeResult(deleted=3, revision=6)
    assert feed.keys() == [b"d"]
    deletes = [e.kv.key for e in feed.store.events(6) if e.is_delete]
    assert deletes == [b"a", b"b", b"c"]


def test_historical_reads_see_each_revision(feed: Feeder) -> None:
    feed.batch(PutRequest(b"a", b"1"), PutRequest(b"b", b"1"), PutRequest(b"a", b"2"),
               DeleteRangeRequest(b"b"))
    all_keys = RangeRequest(key=b"\0", range_end=b"\0")
    seen = {
        rev: [(kv.key, kv.value) for kv in feed.store.range(
            RangeRequest(key=b"\0", range_end=b"\0", revision=rev)).kvs]
        for rev in range(1, 6)
    }
    assert seen == {
        1: [], 2: [(b"a", b"1")], 3: [(b"a", b"1"), (b"b", b"1")],
        4: [(b"a", b"2"), (b"b", b"1")], 5: [(b"a", b"2")],
    }
    assert feed.store.range(all_keys).revision == 5  # header revision is the current one


def test_range_at_a_future_revision_fails(feed: Feeder) -> None:
    feed.batch(PutRequest(b"a", b"1"))
    with pytest.raises(FutureRevisionError):
        feed.store.range(RangeRequest(key=b"a", revision=3))


def test_range_below_compact_revision_fails_but_at_it_succeeds(feed: Feeder) -> None:
    feed.batch(PutRequest(b"a", b"1"), PutRequest(b"a", b"2"), PutRequest(b"a", b"3"))
    feed.one(CompactionRequest(revision=3))
    assert feed.get(b"a", revision=3) == KeyValue(b"a", b"2", 2, 3, 2)
    with pytest.raises(CompactedError):
        feed.store.range(RangeRequest(key=b"a", revision=2))
    assert feed.get(b"a") == KeyValue(b"a", b"3", 2, 4, 3)


def test_put_returns_the_previous_kv_when_asked(feed: Feeder) -> None:
    assert feed.one(PutRequest(b"k", b"1", prev_kv=True)) == PutResult(None, revision=2)
    assert feed.one(PutRequest(b"k", b"2", prev_kv=True)) == PutResult(
        KeyValue(b"k", b"1", 2, 2, 1), revision=3
    )
    assert feed.one(PutRequest(b"k", b"3")) == PutResult(None, revision=4)


def test_put_ignore_value_keeps_the_value_and_bumps_the_version(feed: Feeder) -> None:
    feed.batch(PutRequest(b"k", b"keep"))
    feed.one(PutRequest(b"k", ignore_value=True))
    assert feed.get(b"k") == KeyValue(b"k", b"keep", 2, 3, 2)


def test_put_ignore_value_or_lease_on_a_missing_key_fails(feed: Feeder) -> None:
    assert isinstance(feed.fail(PutRequest(b"k", ignore_value=True)), KeyNotFoundError)
    assert isinstance(feed.fail(PutRequest(b"k", b"v", ignore_lease=True)), KeyNotFoundError)
    assert feed.store.revision == 1


def test_put_with_an_unknown_lease_fails_and_writes_nothing(feed: Feeder) -> None:
    assert isinstance(feed.fail(PutRequest(b"k", b"v", lease=42)), LeaseNotFoundError)
    assert feed.get(b"k") is None
    assert feed.store.revision == 1


def test_a_failed_request_does_not_stop_the_batch(feed: Feeder) -> None:
    results = feed.batch(PutRequest(b"a", b"1"), PutRequest(b"b", b"1", lease=9),
                         PutRequest(b"c", b"1"))
    assert isinstance(results[1], LeaseNotFoundError)
    assert [r.revision for r in (results[0], results[2])] == [2, 3]  # type: ignore[union-attr]
    assert feed.keys() == [b"a", b"c"]
    assert feed.store.applied_index == 3


def test_requests_that_do_not_belong_in_the_log_are_refused_not_fatal(feed: Feeder) -> None:
    results = feed.batch(StatusRequest(), LeaseKeepAliveRequest(id=1), PutRequest(b"a", b"1"))
    assert isinstance(results[0], BadRequestError)
    assert isinstance(results[1], BadRequestError)
    assert feed.store.revision == 2


def test_a_none_entry_only_advances_the_applied_index(feed: Feeder) -> None:
    assert feed.batch(None, None) == [None, None]
    assert (feed.store.applied_index, feed.store.revision) == (2, 1)


def test_range_inside_the_log_reads_at_that_point(feed: Feeder) -> None:
    results = feed.batch(PutRequest(b"a", b"1"), RangeRequest(key=b"a"), PutRequest(b"a", b"2"))
    assert results[1].kvs[0].value == b"1"  # type: ignore[union-attr]
    assert results[1].revision == 2  # type: ignore[union-attr]


def test_compaction_keeps_the_latest_live_version_of_each_key(feed: Feeder) -> None:
    feed.batch(PutRequest(b"a", b"1"), PutRequest(b"a", b"2"), PutRequest(b"b", b"1"),
               DeleteRangeRequest(b"b"), PutRequest(b"c", b"1"), PutRequest(b"a", b"3"))
    # revisions: a@2, a@3, b@4, b deleted @5, c@6, a@7
    assert feed.one(CompactionRequest(revision=6)).revision == 7
    assert feed.store.compact_revision == 6
    assert history(feed.store) == [(b"a", 3, False), (b"c", 6, False), (b"a", 7, False)]
    assert [kv.key for kv in feed.store.range(
        RangeRequest(key=b"\0", range_end=b"\0", revision=6)).kvs] == [b"a", b"c"]
    assert feed.store.revision == 7  # compaction does not bump the revision


def test_compaction_at_or_below_the_compact_revision_fails(feed: Feeder) -> None:
    feed.batch(PutRequest(b"a", b"1"), PutRequest(b"a", b"2"))
    feed.one(CompactionRequest(revision=2))
    assert isinstance(feed.fail(CompactionRequest(revision=2)), CompactedError)
    assert isinstance(feed.fail(CompactionRequest(revision=1)), CompactedError)


def test_compaction_beyond_the_current_revision_fails(feed: Feeder) -> None:
    feed.batch(PutRequest(b"a", b"1"))
    assert isinstance(feed.fail(CompactionRequest(revision=3)), FutureRevisionError)
    assert feed.store.compact_revision == 0


def test_compaction_twice_only_touches_keys_written_since(feed: Feeder) -> None:
    feed.batch(PutRequest(b"a", b"1"), PutRequest(b"b", b"1"), PutRequest(b"a", b"2"))
    feed.one(CompactionRequest(revision=4))
    feed.batch(PutRequest(b"b", b"2"), PutRequest(b"b", b"3"), DeleteRangeRequest(b"a"))
    feed.one(CompactionRequest(revision=7))
    assert history(feed.store) == [(b"b", 6, False)]
    assert feed.keys() == [b"b"]


def test_events_below_the_compact_revision_are_refused(feed: Feeder) -> None:
    feed.batch(PutRequest(b"a", b"1"), PutRequest(b"a", b"2"))
    feed.one(CompactionRequest(revision=3))
    with pytest.raises(CompactedError):
        feed.store.events(2)


def test_events_carry_prev_kv_and_filter_by_range(feed: Feeder) -> None:
    feed.batch(PutRequest(b"a", b"1"), PutRequest(b"b", b"1"), PutRequest(b"a", b"2"),
               DeleteRangeRequest(b"a"))
    events = feed.store.events(3, key=b"a", range_end=b"", prev_kv=True)
    assert [(e.is_delete, e.kv.mod_revision, e.prev_kv) for e in events] == [
        (False, 4, KeyValue(b"a", b"1", 2, 2, 1)),
        (True, 5, KeyValue(b"a", b"2", 2, 4, 2)),
    ]


def test_statistics_report_sizes_and_counters(feed: Feeder) -> None:
    feed.batch(PutRequest(b"a", b"1"), PutRequest(b"b", b"1"), DeleteRangeRequest(b"a"))
    stats = feed.store.statistics()
    assert (stats.revision, stats.applied_index, stats.keys, stats.leases) == (4, 3, 1, 0)
    assert stats.db_size_bytes >= stats.db_size_in_use_bytes > 0


def test_defragment_keeps_the_data_and_releases_free_pages(feed: Feeder) -> None:
    feed.batch(*(PutRequest(b"k%05d" % i, b"x" * 500) for i in range(300)))
    feed.one(DeleteRangeRequest(b"k", range_end=b"l"))
    feed.one(CompactionRequest(revision=feed.store.revision))
    before = feed.store.hash_kv()
    feed.store.defragment()
    assert feed.store.db_size_bytes == feed.store.db_size_in_use_bytes
    assert feed.store.hash_kv() == before

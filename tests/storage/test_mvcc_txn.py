"""Txn: compares, branches, one-revision semantics, nesting, failures inside a txn."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.errors import (
    DuplicateKeyError,
    FutureRevisionError,
    KeyNotFoundError,
    LeaseNotFoundError,
)
from cluster.kv import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResult,
    KeyValue,
    PutRequest,
    PutResult,
    RangeRequest,
    TxnRequest,
    TxnResult,
)
from storage.mvcc import MvccStore
from tests.storage.mvcc_helpers import Feeder

EQ, NE, LT, GT = (CompareResult.EQUAL, CompareResult.NOT_EQUAL, CompareResult.LESS,
                  CompareResult.GREATER)
VERSION, CREATE, MOD, VALUE, LEASE = (CompareTarget.VERSION, CompareTarget.CREATE,
                                      CompareTarget.MOD, CompareTarget.VALUE, CompareTarget.LEASE)


@pytest.fixture
def feed(tmp_path: Path) -> Iterator[Feeder]:
    """k1@2 "one", k2@3 "two" then k2@4 "two2" (version 2)."""
    store = MvccStore(tmp_path / "state.db")
    f = Feeder(store)
    f.batch(PutRequest(b"k1", b"one"), PutRequest(b"k2", b"two"), PutRequest(b"k2", b"two2"))
    yield f
    store.close()


def _succeeds(feed: Feeder, *compares: Compare) -> bool:
    result = feed.one(TxnRequest(compare=compares))
    assert isinstance(result, TxnResult)
    return result.succeeded


@pytest.mark.parametrize(
    ("compare", "expected"),
    [
        (Compare(b"k2", VERSION, EQ, 2), True),
        (Compare(b"k2", VERSION, NE, 2), False),
        (Compare(b"k2", VERSION, GT, 1), True),
        (Compare(b"k2", VERSION, LT, 2), False),
        (Compare(b"k2", CREATE, EQ, 3), True),
        (Compare(b"k2", MOD, EQ, 4), True),
        (Compare(b"k2", MOD, LT, 4), False),
        (Compare(b"k1", VALUE, EQ, b"one"), True),
        (Compare(b"k1", VALUE, GT, b"on"), True),
        (Compare(b"k1", VALUE, LT, b"one"), False),
        (Compare(b"k1", VALUE, NE, b"two"), True),
        (Compare(b"k1", LEASE, EQ, 0), True),
        # A missing key compares as zeros...
        (Compare(b"nope", VERSION, EQ, 0), True),
        (Compare(b"nope", CREATE, EQ, 0), True),
        (Compare(b"nope", MOD, LT, 1), True),
        (Compare(b"nope", LEASE, EQ, 0), True),
        # ...but a value compare on a missing key always fails, even "!=".
        (Compare(b"nope", VALUE, EQ, b""), False),
        (Compare(b"nope", VALUE, NE, b"x"), False),
        # With range_end every key of the range must satisfy the compare.
        (Compare(b"k", VERSION, GT, 0, range_end=b"l"), True),
        (Compare(b"k", VERSION, EQ, 2, range_end=b"l"), False),
        (Compare(b"k", MOD, LT, 5, range_end=b"\0"), True),
        (Compare(b"x", VERSION, EQ, 0, range_end=b"y"), True),
    ],
)
def test_compare(feed: Feeder, compare: Compare, expected: bool) -> None:
    assert _succeeds(feed, compare) is expected


def test_all_compares_must_hold(feed: Feeder) -> None:
    assert _succeeds(feed, Compare(b"k1", VERSION, EQ, 1), Compare(b"k2", VERSION, EQ, 2))
    assert not _succeeds(feed, Compare(b"k1", VERSION, EQ, 1), Compare(b"k2", VERSION, EQ, 1))


def test_success_and_failure_branches_run_their_ops(feed: Feeder) -> None:
    txn = TxnRequest(
        compare=(Compare(b"k1", VALUE, EQ, b"one"),),
        success=(PutRequest(b"s", b"yes"),),
        failure=(PutRequest(b"f", b"no"),),
    )
    assert feed.one(txn) == TxnResult(True, (PutResult(revision=5),), revision=5)
    feed.batch(PutRequest(b"k1", b"changed"))
    assert feed.one(txn) == TxnResult(False, (PutResult(revision=7),), revision=7)
    assert feed.get(b"s") is not None
    assert feed.get(b"f") is not None


def test_a_txn_is_one_revision_whatever_it_writes(feed: Feeder) -> None:
    result = feed.one(TxnRequest(success=(
        PutRequest(b"a", b"1"), PutRequest(b"b", b"1"), DeleteRangeRequest(b"k1"),
    )))
    assert result.revision == 5
    assert feed.store.revision == 5
    assert [kv.mod_revision for kv in (feed.get(b"a"), feed.get(b"b"))] == [5, 5]  # type: ignore[union-attr]
    subs = [(e.kv.key, e.is_delete) for e in feed.store.events(5)]
    assert subs == [(b"a", False), (b"b", False), (b"k1", True)]


def test_a_read_only_txn_keeps_the_revision(feed: Feeder) -> None:
    result = feed.one(TxnRequest(success=(RangeRequest(b"k1"), DeleteRangeRequest(b"none"))))
    assert result.revision == 4
    assert feed.store.revision == 4


def test_reads_inside_a_txn_see_its_earlier_writes(feed: Feeder) -> None:
    result = feed.one(TxnRequest(success=(
        RangeRequest(b"k1"), PutRequest(b"k1", b"new"), RangeRequest(b"k1"),
        DeleteRangeRequest(b"k2", prev_kv=True), RangeRequest(b"k2"),
    )))
    assert isinstance(result, TxnResult)
    before, _, after, deleted, gone = result.responses
    assert before.kvs[0].value == b"one"  # type: ignore[union-attr]
    assert after.kvs[0] == KeyValue(b"k1", b"new", 2, 5, 2)  # type: ignore[union-attr]
    assert deleted == DeleteRangeResult(1, (KeyValue(b"k2", b"two2", 3, 4, 2),), revision=5)
    assert gone.kvs == ()  # type: ignore[union-attr]


def test_nested_txn_runs_in_the_chosen_branch(feed: Feeder) -> None:
    inner = TxnRequest(
        compare=(Compare(b"k2", VERSION, EQ, 2),),
        success=(PutRequest(b"inner", b"then"),),
        failure=(PutRequest(b"inner", b"else"),),
    )
    result = feed.one(TxnRequest(compare=(Compare(b"k1", VERSION, EQ, 1),),
                                 success=(PutRequest(b"outer", b"1"), inner)))
    assert result == TxnResult(True, (
        PutResult(revision=5), TxnResult(True, (PutResult(revision=5),), revision=5),
    ), revision=5)
    assert feed.get(b"inner").value == b"then"  # type: ignore[union-attr]


def test_nested_compares_see_the_state_before_the_txn(feed: Feeder) -> None:
    """etcd evaluates every compare of the txn path before any write of the txn."""
    inner = TxnRequest(compare=(Compare(b"k1", VALUE, EQ, b"one"),),
                       success=(PutRequest(b"seen", b"old"),),
                       failure=(PutRequest(b"seen", b"new"),))
    feed.one(TxnRequest(success=(PutRequest(b"k1", b"changed"), inner)))
    assert feed.get(b"seen").value == b"old"  # type: ignore[union-attr]


def test_a_failing_op_inside_a_txn_undoes_the_whole_txn(feed: Feeder) -> None:
    results = feed.batch(
        TxnRequest(success=(PutRequest(b"k1", b"lost"), RangeRequest(b"k1", revision=5))),
        PutRequest(b"after", b"1"),
    )
    assert isinstance(results[0], FutureRevisionError)
    assert feed.get(b"k1").value == b"one"  # type: ignore[union-attr]
    assert results[1].revision == 5  # type: ignore[union-attr]


def test_txn_put_checks_keys_and_leases(feed: Feeder) -> None:
    assert isinstance(
        feed.fail(TxnRequest(success=(PutRequest(b"a", b"1"),
                                      PutRequest(b"missing", ignore_value=True)))),
        KeyNotFoundError,
    )
    assert isinstance(
        feed.fail(TxnRequest(success=(PutRequest(b"a", b"1"), PutRequest(b"b", lease=7)))),
        LeaseNotFoundError,
    )
    assert feed.get(b"a") is None
    assert feed.store.revision == 4


def test_an_unparsed_txn_writing_a_key_twice_is_refused_not_fatal(feed: Feeder) -> None:
    txn = TxnRequest(success=(PutRequest(b"a", b"1"), PutRequest(b"a", b"2")))
    results = feed.batch(txn, PutRequest(b"b", b"1"))
    assert isinstance(results[0], DuplicateKeyError)
    assert results[1].revision == 5  # type: ignore[union-attr]

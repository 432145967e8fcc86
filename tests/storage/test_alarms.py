"""Alarms as applied state: NOSPACE caps the writes that grow the store, deterministically."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.errors import NoSpaceError
from cluster.kv import (
    AlarmAction,
    AlarmMember,
    AlarmRequest,
    AlarmResult,
    AlarmType,
    CompactionRequest,
    DeleteRangeRequest,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    PutRequest,
    RangeRequest,
    TxnRequest,
)
from storage.alarms import AlarmReader, grows_store
from storage.mvcc import MvccStore
from tests.storage.mvcc_helpers import Feeder

NOSPACE_1 = AlarmRequest(AlarmAction.ACTIVATE, 1, AlarmType.NOSPACE)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MvccStore]:
    s = MvccStore(tmp_path / "state.db")
    yield s
    s.close()


@pytest.fixture
def feed(store: MvccStore) -> Feeder:
    return Feeder(store)


def alarms(store: MvccStore) -> tuple[AlarmMember, ...]:
    reader = AlarmReader(store.path)
    try:
        return reader.alarms()
    finally:
        reader.close()


@pytest.mark.parametrize(("request_", "grows"), [
    (PutRequest(b"k", b"v"), True),
    (LeaseGrantRequest(ttl=5, id=7), True),
    (TxnRequest(failure=(PutRequest(b"k"),)), True),
    (TxnRequest(success=(TxnRequest(success=(PutRequest(b"k"),)),)), True),
    (TxnRequest(success=(DeleteRangeRequest(b"k"), RangeRequest(b"k"))), False),
    (DeleteRangeRequest(b"k"), False),
    (CompactionRequest(3), False),
    (LeaseRevokeRequest(7), False),
    (NOSPACE_1, False),
])
def test_grows_store_is_put_txn_with_put_and_lease_grant(request_: object, grows: bool) -> None:
    assert grows_store(request_) is grows  # type: ignore[arg-type]


def test_activate_is_recorded_once_and_survives_reopen(tmp_path: Path) -> None:
    store = MvccStore(tmp_path / "state.db")
    feed = Feeder(store)
    assert feed.one(NOSPACE_1) == AlarmResult(alarms=(AlarmMember(1, AlarmType.NOSPACE),))
    assert feed.one(NOSPACE_1) == AlarmResult()  # already active: nothing new
    store.close()
    reopened = MvccStore(tmp_path / "state.db")
    try:
        assert alarms(reopened) == (AlarmMember(1, AlarmType.NOSPACE),)
        assert isinstance(Feeder(reopened).fail(PutRequest(b"k", b"v")), NoSpaceError)
    finally:
        reopened.close()


def test_nospace_refuses_growth_but_not_reads_deletes_compaction_or_revoke(
    feed: Feeder, store: MvccStore
) -> None:
    feed.one(LeaseGrantRequest(ttl=60, id=9))
    for i in range(3):
        feed.one(PutRequest(b"k%d" % i, b"v"))
    feed.one(NOSPACE_1)
    revision = store.revision
    for req in (PutRequest(b"new", b"v"), LeaseGrantRequest(ttl=5, id=10),
                TxnRequest(failure=(PutRequest(b"x", b"y"),))):
        err = feed.fail(req)
        assert isinstance(err, NoSpaceError)
        assert err.message == "etcdserver: mvcc: database space exceeded"
    assert store.revision == revision
    assert feed.get(b"k0") is not None
    feed.one(DeleteRangeRequest(b"k0"))
    feed.one(TxnRequest(success=(DeleteRangeRequest(b"k1"),)))
    feed.one(CompactionRequest(store.revision))
    feed.one(LeaseRevokeRequest(9))
    assert feed.keys() == [b"k2"]


def test_alarm_applied_mid_batch_caps_the_rest_of_that_batch(feed: Feeder) -> None:
    before, _, after = feed.batch(PutRequest(b"a", b"1"), NOSPACE_1, PutRequest(b"b", b"2"))
    assert not isinstance(before, NoSpaceError)
    assert isinstance(after, NoSpaceError)


def test_deactivate_matches_member_and_type_with_wildcards(
    feed: Feeder, store: MvccStore
) -> None:
    feed.one(NOSPACE_1)
    feed.one(AlarmRequest(AlarmAction.ACTIVATE, 2, AlarmType.NOSPACE))
    feed.one(AlarmRequest(AlarmAction.ACTIVATE, 2, AlarmType.CORRUPT))
    gone = feed.one(AlarmRequest(AlarmAction.DEACTIVATE, 2, AlarmType.NOSPACE))
    assert gone == AlarmResult(alarms=(AlarmMember(2, AlarmType.NOSPACE),))
    assert isinstance(feed.fail(PutRequest(b"k", b"v")), NoSpaceError)  # member 1's remains
    gone = feed.one(AlarmRequest(AlarmAction.DEACTIVATE))  # disarm everything
    assert {a.member_id for a in gone.alarms} == {1, 2}  # type: ignore[union-attr]
    assert alarms(store) == ()
    feed.one(PutRequest(b"k", b"v"))


def test_activate_without_member_or_type_records_nothing(feed: Feeder, store: MvccStore) -> None:
    feed.one(AlarmRequest(AlarmAction.ACTIVATE, 0, AlarmType.NOSPACE))
    feed.one(AlarmRequest(AlarmAction.ACTIVATE, 1, AlarmType.NONE))
    assert alarms(store) == ()


def test_a_version_1_store_gains_the_alarms_table(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    MvccStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE alarms")
    conn.execute("UPDATE meta SET value = 1 WHERE name = 'schema_version'")
    conn.commit()
    conn.close()
    store = MvccStore(path)
    try:
        Feeder(store).one(NOSPACE_1)
        assert alarms(store) == (AlarmMember(1, AlarmType.NOSPACE),)
    finally:
        store.close()

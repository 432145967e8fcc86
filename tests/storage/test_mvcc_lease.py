"""Leases in the store: grant, attach, revoke (one revision), checkpoint, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.errors import BadRequestError, LeaseExistsError, LeaseNotFoundError
from cluster.kv import (
    DeleteRangeRequest,
    LeaseCheckpointRequest,
    LeaseGrantRequest,
    LeaseGrantResult,
    LeaseRevokeRequest,
    PutRequest,
)
from storage.mvcc import LeaseRecord, MvccStore
from tests.storage.mvcc_helpers import Feeder


@pytest.fixture
def feed(tmp_path: Path) -> Iterator[Feeder]:
    f = Feeder(MvccStore(tmp_path / "state.db"))
    yield f
    f.store.close()


def test_grant_records_the_lease_without_bumping_the_revision(feed: Feeder) -> None:
    assert feed.one(LeaseGrantRequest(ttl=10, id=7)) == LeaseGrantResult(7, 10, revision=1)
    assert feed.store.lease_get(7) == LeaseRecord(id=7, granted_ttl=10, remaining_ttl=0)
    assert feed.store.leases() == [LeaseRecord(7, 10)]
    assert feed.store.revision == 1


def test_granting_a_taken_id_fails(feed: Feeder) -> None:
    feed.one(LeaseGrantRequest(ttl=10, id=7))
    assert isinstance(feed.fail(LeaseGrantRequest(ttl=5, id=7)), LeaseExistsError)
    assert feed.store.lease_get(7) == LeaseRecord(7, 10)


def test_a_grant_in_the_log_must_carry_an_id(feed: Feeder) -> None:
    assert isinstance(feed.fail(LeaseGrantRequest(ttl=10)), BadRequestError)


def test_put_attaches_keys_to_a_lease(feed: Feeder) -> None:
    feed.one(LeaseGrantRequest(ttl=10, id=7))
    feed.batch(PutRequest(b"b", b"1", lease=7), PutRequest(b"a", b"1", lease=7),
               PutRequest(b"c", b"1"))
    assert feed.store.lease_keys(7) == [b"a", b"b"]
    assert feed.get(b"a").lease == 7  # type: ignore[union-attr]


def test_put_moves_a_key_between_leases_and_ignore_lease_keeps_it(feed: Feeder) -> None:
    feed.batch(LeaseGrantRequest(ttl=10, id=1), LeaseGrantRequest(ttl=10, id=2))
    feed.one(PutRequest(b"k", b"1", lease=1))
    feed.one(PutRequest(b"k", b"2", ignore_lease=True))
    assert feed.store.lease_keys(1) == [b"k"]
    feed.one(PutRequest(b"k", b"3", lease=2))
    assert (feed.store.lease_keys(1), feed.store.lease_keys(2)) == ([], [b"k"])
    feed.one(PutRequest(b"k", b"4"))
    assert feed.store.lease_keys(2) == []


def test_deleting_a_key_detaches_it(feed: Feeder) -> None:
    feed.one(LeaseGrantRequest(ttl=10, id=1))
    feed.one(PutRequest(b"k", b"1", lease=1))
    feed.one(DeleteRangeRequest(b"k"))
    assert feed.store.lease_keys(1) == []


def test_revoke_deletes_all_attached_keys_in_one_revision(feed: Feeder) -> None:
    feed.one(LeaseGrantRequest(ttl=10, id=7))
    feed.batch(PutRequest(b"a", b"1", lease=7), PutRequest(b"b", b"1", lease=7),
               PutRequest(b"keep", b"1"))
    result = feed.one(LeaseRevokeRequest(id=7))
    assert result.revision == 5
    assert feed.keys() == [b"keep"]
    assert [(e.kv.key, e.is_delete) for e in feed.store.events(5)] == [(b"a", True), (b"b", True)]
    assert feed.store.lease_get(7) is None
    assert feed.store.leases() == []


def test_revoking_a_lease_without_keys_keeps_the_revision(feed: Feeder) -> None:
    feed.one(LeaseGrantRequest(ttl=10, id=7))
    assert feed.one(LeaseRevokeRequest(id=7)).revision == 1


def test_revoking_an_unknown_lease_fails(feed: Feeder) -> None:
    assert isinstance(feed.fail(LeaseRevokeRequest(id=3)), LeaseNotFoundError)


def test_checkpoint_stores_the_remaining_ttl(feed: Feeder) -> None:
    feed.one(LeaseGrantRequest(ttl=60, id=7))
    feed.one(LeaseCheckpointRequest(id=7, remaining_ttl=42))
    record = feed.store.lease_get(7)
    assert record == LeaseRecord(7, 60, 42)
    assert record is not None
    assert record.ttl == 42
    assert isinstance(feed.fail(LeaseCheckpointRequest(id=8, remaining_ttl=1)),
                      LeaseNotFoundError)


def test_leases_survive_a_reopen(feed: Feeder, tmp_path: Path) -> None:
    feed.batch(LeaseGrantRequest(ttl=60, id=7), PutRequest(b"k", b"v", lease=7))
    feed.store.close()
    store = MvccStore(tmp_path / "state.db")
    try:
        assert store.leases() == [LeaseRecord(7, 60)]
        assert store.lease_keys(7) == [b"k"]
    finally:
        store.close()
    feed.store = MvccStore(tmp_path / "state.db")  # the fixture closes this one

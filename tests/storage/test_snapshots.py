"""Snapshot files: sealed with a checksum, listed, purged; a corrupt one is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.kv import PutRequest
from cluster.messages import ConfState, SnapshotMeta
from storage.mvcc import MvccStore
from storage.snapshots import CorruptSnapshotError, SnapshotStore, file_sha256

CONF = ConfState(voters=frozenset({1, 2, 3}))


def store_at(tmp_path: Path, index: int) -> MvccStore:
    mvcc = MvccStore(tmp_path / "state.db")
    mvcc.apply([(i, PutRequest(key=b"k%d" % i, value=b"v")) for i in range(1, index + 1)])
    return mvcc


def test_snapshot_round_trip_restores_the_same_state(tmp_path: Path) -> None:
    mvcc = store_at(tmp_path, 5)
    snaps = SnapshotStore(tmp_path / "snapshots")
    snap = snaps.create(mvcc, SnapshotMeta(5, 2, CONF))
    assert snaps.latest() == snap
    SnapshotStore.verify(snap)
    other = MvccStore(tmp_path / "other.db")
    other.replace_from(snap.path)
    assert (other.applied_index, other.revision) == (5, mvcc.revision)
    assert other.hash_kv() == mvcc.hash_kv()


def test_a_corrupt_snapshot_is_refused(tmp_path: Path) -> None:
    mvcc = store_at(tmp_path, 3)
    snaps = SnapshotStore(tmp_path / "snapshots")
    snap = snaps.create(mvcc, SnapshotMeta(3, 1, CONF))
    data = bytearray(snap.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    snap.path.write_bytes(bytes(data))
    with pytest.raises(CorruptSnapshotError):
        SnapshotStore.verify(snap)


def test_a_received_file_with_a_wrong_checksum_is_not_adopted(tmp_path: Path) -> None:
    mvcc = store_at(tmp_path, 2)
    snaps = SnapshotStore(tmp_path / "snapshots")
    incoming = snaps.incoming_path(2)
    mvcc.backup_to(incoming)
    with pytest.raises(CorruptSnapshotError):
        snaps.adopt(incoming, SnapshotMeta(2, 1, CONF), "0" * 64)
    assert snaps.latest() is None
    mvcc.backup_to(incoming)
    snap = snaps.adopt(incoming, SnapshotMeta(2, 1, CONF), file_sha256(incoming))
    assert snaps.get(2) == snap


def test_only_the_newest_snapshots_are_kept(tmp_path: Path) -> None:
    mvcc = MvccStore(tmp_path / "state.db")
    snaps = SnapshotStore(tmp_path / "snapshots")
    for index in range(1, 6):
        mvcc.apply([(index, PutRequest(key=b"k", value=b"%d" % index))])
        snaps.create(mvcc, SnapshotMeta(index, 1, CONF))
    assert [s.meta.index for s in snaps.list()] == [4, 5]
    assert len(list((tmp_path / "snapshots").glob("*.db"))) == 2

"""The members table: conf changes, published attributes, migration, snapshots, restarts."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from cluster import codec
from cluster.conf_change import ConfChange, ConfChangeType
from cluster.errors import MemberNotFoundError
from cluster.kv import MemberAttrRequest, PutRequest
from cluster.messages import ConfState, SnapshotMeta
from storage.members import (
    MemberChange,
    MemberRecord,
    conf_change_context,
    member_change_from,
)
from storage.mvcc import MvccStore
from storage.snapshots import SnapshotStore

M4 = 0x37D47A74873B2965
M4_ATTRS = MemberAttrRequest(member_id=M4, name="m4", client_urls=("tcp://h:4378",),
                             etcd_client_urls=("http://h:4379",))


def _add(member_id: int, name: str, peer: str, *, etcd: list[str] | None = None
         ) -> MemberChange:
    cc = ConfChange(ConfChangeType.ADD_NODE, member_id, conf_change_context(
        name=name, peer_urls=[peer], client_urls=[] if not name else ["tcp://h:1"],
        etcd_client_urls=etcd))
    return member_change_from(cc)


def _store_with_unstarted_m4(path: Path) -> MvccStore:
    store = MvccStore(path)
    # The applier hands conf changes to apply() as MemberChange, outside the Request union.
    store.apply([(1, _add(1, "m1", "tcp://h:1380", etcd=["http://h:1379"])),  # type: ignore[list-item]
                 (2, _add(M4, "", "tcp://h:4380"))])  # type: ignore[list-item]
    return store


def test_bootstrap_context_carries_etcd_urls_and_old_contexts_keep_their_bytes() -> None:
    old = conf_change_context(name="m1", peer_urls=["tcp://h:1"], client_urls=[])
    assert "etcd_client_urls" not in codec.loads(old)
    change = member_change_from(ConfChange(ConfChangeType.ADD_NODE, 1, old))
    assert change.etcd_client_urls == ()


def test_unstarted_member_gets_its_name_and_urls_without_a_new_revision(tmp_path: Path
                                                                        ) -> None:
    store = _store_with_unstarted_m4(tmp_path / "state.db")
    unstarted = next(m for m in store.members() if m.id == M4)
    assert (unstarted.name, unstarted.client_urls) == ("", ())  # etcdctl: "unstarted"
    assert store.members()[0].etcd_client_urls == ("http://h:1379",)
    revision = store.revision
    (result,) = store.apply([(3, M4_ATTRS)])
    assert isinstance(result, list)
    assert store.revision == revision  # membership, not key space
    assert store.applied_index == 3
    m4 = next(m for m in store.members() if m.id == M4)
    assert m4 == MemberRecord(M4, "m4", ("tcp://h:4380",), ("tcp://h:4378",), False,
                              ("http://h:4379",))
    assert m4.to_wire()["etcd_client_urls"] == ["http://h:4379"]
    store.close()
    reopened = MvccStore(tmp_path / "state.db")
    assert next(m for m in reopened.members() if m.id == M4).name == "m4"


def test_attributes_of_a_removed_member_are_void_and_the_batch_goes_on(tmp_path: Path
                                                                       ) -> None:
    store = MvccStore(tmp_path / "state.db")
    results = store.apply([(1, M4_ATTRS), (2, PutRequest(key=b"k", value=b"v"))])
    assert isinstance(results[0], MemberNotFoundError)
    assert store.applied_index == 2
    assert store.revision == 2


def test_published_attributes_are_in_snapshots(tmp_path: Path) -> None:
    store = _store_with_unstarted_m4(tmp_path / "state.db")
    store.apply([(3, M4_ATTRS)])
    snaps = SnapshotStore(tmp_path / "snapshots")
    snap = snaps.create(store, SnapshotMeta(3, 2, ConfState(voters=frozenset({1, M4}))))
    other = MvccStore(tmp_path / "other.db")
    other.replace_from(snap.path)
    assert other.members() == store.members()


def test_a_state_db_from_before_published_attributes_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE members (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                 "peer_urls TEXT NOT NULL, client_urls TEXT NOT NULL, "
                 "is_learner INTEGER NOT NULL)")
    conn.execute("INSERT INTO members VALUES (1, 'm1', ?, ?, 0)",
                 (json.dumps(["tcp://h:1380"]), json.dumps(["tcp://h:1378"])))
    conn.commit()
    conn.close()
    store = MvccStore(path)
    assert store.members() == [MemberRecord(1, "m1", ("tcp://h:1380",), ("tcp://h:1378",),
                                            False, ())]

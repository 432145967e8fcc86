"""state.db <-> etcd's backend buckets: what etcd's tools would read, and the way back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.auth_types import (
    AuthEnableRequest,
    Permission,
    PermType,
    RoleAddRequest,
    RoleGrantPermissionRequest,
    UserAddRequest,
    UserGrantRoleRequest,
)
from cluster.etcdpb import auth_pb2, kv_pb2, lease_pb2
from cluster.kv import (
    AlarmAction,
    AlarmRequest,
    AlarmType,
    CompactionRequest,
    DeleteRangeRequest,
    LeaseGrantRequest,
    PutRequest,
    RangeRequest,
    TxnRequest,
)
from storage.auth import load_view
from storage.bbolt import PAGE_SIZE, BoltFormatError, BoltReader, write_bolt
from storage.etcd_backend import (
    export_to_bolt,
    import_from_bolt,
    parse_revision,
    revision_bytes,
)
from storage.mvcc import MvccStore
from tests.storage.mvcc_helpers import Feeder

ETCD_BUCKETS = [b"alarm", b"auth", b"authRoles", b"authUsers", b"cluster", b"key", b"lease",
                b"members", b"members_removed", b"meta"]


@pytest.fixture
def store(tmp_path: Path) -> MvccStore:
    """Revisions: 2 a=1, 3 b=1 (leased), 4 txn{a=2, c=1}, 5 del b, 6 a=3, 7 d=1, NOSPACE."""
    s = MvccStore(tmp_path / "live.db")
    feed = Feeder(s)
    feed.one(LeaseGrantRequest(ttl=60, id=0x1234))
    feed.one(PutRequest(b"a", b"1"))
    feed.one(PutRequest(b"b", b"1", lease=0x1234))
    feed.one(TxnRequest(success=(PutRequest(b"a", b"2"), PutRequest(b"c", b"1"))))
    feed.one(DeleteRangeRequest(b"b"))
    feed.one(PutRequest(b"a", b"3"))
    feed.one(PutRequest(b"d", b"1"))
    feed.one(AlarmRequest(AlarmAction.ACTIVATE, 9, AlarmType.NOSPACE))
    return s


def _key_bucket(path: Path) -> list[tuple[tuple[int, int, bool], kv_pb2.KeyValue]]:
    with BoltReader(path) as bolt:
        return [(parse_revision(k), kv_pb2.KeyValue.FromString(v))
                for k, v in bolt.items(b"key")]


def test_revision_keys_are_etcds_17_bytes_plus_tombstone_mark() -> None:
    assert revision_bytes(5, 1) == b"\x00" * 7 + b"\x05_" + b"\x00" * 7 + b"\x01"
    assert revision_bytes(5, 1, tombstone=True)[-1:] == b"t"
    assert parse_revision(revision_bytes(2**40, 3, tombstone=True)) == (2**40, 3, True)
    with pytest.raises(BoltFormatError):
        parse_revision(b"short")


def test_export_writes_every_version_in_revision_order(store: MvccStore,
                                                       tmp_path: Path) -> None:
    result = export_to_bolt(store.path, tmp_path / "etcd.db")
    assert result.revision == store.revision == 7
    with BoltReader(tmp_path / "etcd.db") as bolt:
        assert bolt.buckets() == ETCD_BUCKETS
    rows = _key_bucket(tmp_path / "etcd.db")
    assert [(rev, kv.key, kv.value) for rev, kv in rows] == [
        ((2, 0, False), b"a", b"1"), ((3, 0, False), b"b", b"1"),
        ((4, 0, False), b"a", b"2"), ((4, 1, False), b"c", b"1"),
        ((5, 0, True), b"b", b""), ((6, 0, False), b"a", b"3"), ((7, 0, False), b"d", b"1")]
    a3 = rows[5][1]
    assert (a3.create_revision, a3.mod_revision, a3.version) == (2, 6, 3)
    assert rows[1][1].lease == 0x1234
    tombstone = rows[4][1]
    assert tombstone == kv_pb2.KeyValue(key=b"b")  # etcd's tombstone carries the key only


def test_export_writes_meta_lease_alarm_members_and_cluster_version(
        store: MvccStore, tmp_path: Path) -> None:
    feed = Feeder(store)
    feed.one(CompactionRequest(revision=4))
    conn = sqlite3.connect(str(store.path))
    conn.execute("INSERT INTO members (id, name, peer_urls, client_urls, is_learner)"
                 " VALUES (?, 'm1', '[\"tcp://127.0.0.1:2380\"]', '[]', 0)",
                 (0xABC,))
    conn.execute("INSERT INTO members (id, name, peer_urls, client_urls, is_learner,"
                 " etcd_client_urls) VALUES (?, 'm2', '[\"tcp://h:2\"]',"
                 " '[\"tcp://h:1\"]', 1, '[\"http://h:3\"]')", (0xDEF,))
    conn.commit()
    conn.close()
    export_to_bolt(store.path, tmp_path / "etcd.db")
    with BoltReader(tmp_path / "etcd.db") as bolt:
        meta = dict(bolt.items(b"meta"))
        assert meta[b"finishedCompactRev"] == meta[b"scheduledCompactRev"] == revision_bytes(4)
        assert int.from_bytes(meta[b"consistent_index"], "big") == store.applied_index
        ((lease_key, lease_value),) = bolt.items(b"lease")
        assert lease_key == (0x1234).to_bytes(8, "big")
        assert lease_pb2.Lease.FromString(lease_value).TTL == 60
        assert len(list(bolt.items(b"alarm"))) == 1
        assert dict(bolt.items(b"members")) == {
            b"abc": b'{"id":2748,"peerURLs":["http://127.0.0.1:2380"],"name":"m1"}',
            b"def": b'{"id":3567,"peerURLs":["http://h:2"],"isLearner":true,"name":"m2",'
                    b'"clientURLs":["http://h:3"]}'}
        assert dict(bolt.items(b"cluster")) == {b"clusterVersion": b"3.4.0"}
    # Compaction at 4 dropped a=1 (superseded by a=2 at 4); b=1 stays (deleted after 4).
    assert [rev for rev, _ in _key_bucket(tmp_path / "etcd.db")][:3] == [
        (3, 0, False), (4, 0, False), (4, 1, False)]


def test_import_gives_back_the_same_history_revision_and_leases(store: MvccStore,
                                                                tmp_path: Path) -> None:
    Feeder(store).one(CompactionRequest(revision=3))
    export_to_bolt(store.path, tmp_path / "etcd.db")
    result = import_from_bolt(tmp_path / "etcd.db", tmp_path / "back.db")
    assert (result.revision, result.compact_revision, result.leases) == (7, 3, 1)
    back = MvccStore(tmp_path / "back.db")
    try:
        assert (back.revision, back.compact_revision) == (store.revision, 3)
        assert back.hash_kv(7) == store.hash_kv(7)
        everything = RangeRequest(key=b"\x00", range_end=b"\x00")
        assert back.range(everything).kvs == store.range(everything).kvs
        assert back.range(RangeRequest(key=b"a", revision=4)).kvs[0].value == b"2"
        assert [lease.granted_ttl for lease in back.leases()] == [60]
    finally:
        back.close()


def test_import_refuses_a_bbolt_file_that_is_not_etcds(tmp_path: Path) -> None:
    write_bolt(tmp_path / "other.db", [(b"things", [(b"a", b"1")])])
    with pytest.raises(BoltFormatError, match="no etcd 'key' bucket"):
        import_from_bolt(tmp_path / "other.db", tmp_path / "state.db")
    assert not (tmp_path / "state.db").exists()
    write_bolt(tmp_path / "junk.db", [(b"key", [(b"not-a-revision", b"x")])])
    with pytest.raises(BoltFormatError, match="not an etcd revision key"):
        import_from_bolt(tmp_path / "junk.db", tmp_path / "state.db")
    assert not (tmp_path / "state.db").exists()


def test_users_roles_and_auth_state_go_to_etcds_auth_buckets_and_back(
        store: MvccStore, tmp_path: Path) -> None:
    feed = Feeder(store)
    feed.one(UserAddRequest("root", b"$2b$10$roothash"))
    feed.one(UserGrantRoleRequest("root", "root"))
    feed.one(RoleAddRequest("app"))
    feed.one(RoleGrantPermissionRequest("app", PermType.READWRITE, b"app/", b"app0"))
    feed.one(RoleGrantPermissionRequest("app", PermType.READ, b"cfg"))
    feed.one(UserAddRequest("svc", b"", no_password=True))
    feed.one(UserGrantRoleRequest("svc", "app"))
    feed.one(AuthEnableRequest(secret=b"s" * 32))
    export_to_bolt(store.path, tmp_path / "etcd.db")
    with BoltReader(tmp_path / "etcd.db") as bolt:
        settings = dict(bolt.items(b"auth"))
        assert settings[b"authEnabled"] == b"\x01"
        users = {k: auth_pb2.User.FromString(v) for k, v in bolt.items(b"authUsers")}
        roles = {k: auth_pb2.Role.FromString(v) for k, v in bolt.items(b"authRoles")}
    assert (users[b"root"].password, list(users[b"root"].roles)) == (b"$2b$10$roothash",
                                                                   ["root"])
    assert users[b"svc"].options.no_password
    assert [(p.permType, p.key, p.range_end) for p in roles[b"app"].keyPermission] == [
        (auth_pb2.Permission.READWRITE, b"app/", b"app0"), (auth_pb2.Permission.READ, b"cfg", b"")]

    result = import_from_bolt(tmp_path / "etcd.db", tmp_path / "back.db")
    assert (result.users, result.roles, result.auth_was_enabled) == (2, 1, True)
    back = MvccStore(tmp_path / "back.db")
    try:
        conn = sqlite3.connect(str(back.path))
        view = load_view(conn)
        conn.close()
    finally:
        back.close()
    assert not view.enabled  # a new cluster turns it on with its own secret
    assert view.users["svc"].roles == ("app",)
    assert view.users["root"].password_hash == b"$2b$10$roothash"
    assert sorted(view.roles["app"], key=lambda p: p.key) == [
        Permission(PermType.READWRITE, b"app/", b"app0"), Permission(PermType.READ, b"cfg")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """An etcd-format file with history, a tombstone, a lease and auth records."""
    tmp = tmp_path_factory.mktemp("exported")
    s = MvccStore(tmp / "s.db")
    feed = Feeder(s)
    feed.one(LeaseGrantRequest(ttl=60, id=7))
    for i in range(60):
        feed.one(PutRequest(b"k%d" % i, b"v" * i, lease=7 if i % 5 == 0 else 0))
    feed.one(DeleteRangeRequest(b"k1"))
    feed.one(UserAddRequest("root", b"hash"))
    feed.one(RoleAddRequest("r"))
    feed.one(RoleGrantPermissionRequest("r", PermType.READ, b"a"))
    feed.one(UserGrantRoleRequest("root", "r"))
    s.close()
    export_to_bolt(tmp / "s.db", tmp / "e.db")
    return (tmp / "e.db").read_bytes()


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(2, 20), st.integers(0, 700), st.integers(0, 255)),
                min_size=1, max_size=4))
def test_importing_a_damaged_etcd_file_fails_only_with_a_format_error(
        exported: bytes, tmp_path: Path, flips: list[tuple[int, int, int]]) -> None:
    """`etcdlite snapshot restore` of a corrupt etcd snapshot: a clear error (which
    restore turns into bad_request), never a traceback, and no half-made state.db."""
    data = bytearray(exported)
    for page, offset, value in flips:
        at = page * PAGE_SIZE + offset
        if at < len(data):
            data[at] = value
    source, dest = tmp_path / "damaged.db", tmp_path / f"out-{len(flips)}-{flips[0]}.db"
    source.write_bytes(bytes(data))
    try:
        import_from_bolt(source, dest)
    except BoltFormatError:
        assert not dest.exists()
    dest.unlink(missing_ok=True)


@pytest.mark.parametrize(("buckets", "message"), [
    pytest.param([(b"key", [(b"\xff" * 8 + b"_" + bytes(8), b"")])], "out of range",
                 id="revision-beyond-int64"),
    pytest.param([(b"key", []), (b"lease", [(bytes(8), b"\xff\xff\xff")])], "leasepb.Lease",
                 id="garbage-lease-record"),
    pytest.param([(b"key", []), (b"meta", [(b"consistent_index", b"\xff" * 8)])],
                 "out of range", id="consistent-index-beyond-int64"),
    pytest.param([(b"key", [(revision_bytes(2), b"\xff\xff")])], "mvccpb.KeyValue",
                 id="garbage-key-value"),
])
def test_importing_records_etcd_never_writes_is_a_format_error(
        tmp_path: Path, buckets: list[tuple[bytes, list[tuple[bytes, bytes]]]],
        message: str) -> None:
    write_bolt(tmp_path / "odd.db", buckets)
    with pytest.raises(BoltFormatError, match=message):
        import_from_bolt(tmp_path / "odd.db", tmp_path / "state.db")
    assert not (tmp_path / "state.db").exists()

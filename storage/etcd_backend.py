"""state.db <-> etcd's backend layout, so etcd's snapshot tools and ours interoperate.

etcd keeps its state in one bbolt file of top-level buckets, and a snapshot
streamed by `Maintenance.Snapshot` is that file. EXPORT lays an etcdlite
state.db out the same way (storage/bbolt.py writes the pages):

- `key`: one entry per stored key version, keyed by its revision (8-byte
  big-endian main revision, '_', 8-byte big-endian sub revision; a tombstone
  gets a trailing 't'), the value an mvccpb.KeyValue (a tombstone's carries
  only the key), exactly as etcd's MVCC writes them;
- `meta`: consistent_index (the applied Raft index, 8 bytes big-endian) and,
  after a compaction, finishedCompactRev / scheduledCompactRev (revision bytes);
- `lease`: leasepb.Lease {ID, TTL, RemainingTTL} keyed by the 8-byte id;
- `members`, `members_removed`, `cluster` (clusterVersion), `alarm`
  (etcdserverpb.AlarmMember keys);
- `auth` (authEnabled, authRevision), `authUsers` (authpb.User with the bcrypt
  hash, which etcd's Go bcrypt accepts) and `authRoles` (authpb.Role), so a real
  etcd restored from an etcdlite snapshot keeps its users, roles and auth state.

So `etcdctl snapshot status` reads the right revision and key count, and
`etcdctl snapshot restore` seeds a real etcd from an etcdlite cluster.

IMPORT is the other direction: a bbolt file (an etcd snapshot, or one of ours)
becomes a state.db holding the same history, revision, compaction point,
leases, users and roles, so `etcdlite snapshot restore` can start an etcdlite
cluster from an etcd backup. Membership and alarms are not imported: restore
discards the old cluster's identity anyway (cluster/snapshot_file.py). Auth
comes back DISABLED even if it was enabled: etcdlite's tokens are signed with a
cluster-wide secret that an etcd file does not hold, and it must be drawn once
for the whole new cluster, which `auth enable` does through the log. The
result says so (`auth_was_enabled`), and restore tells the operator.
"""

from __future__ import annotations

import json
import sqlite3
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

from cluster.auth_types import Permission, PermType, User
from cluster.etcdpb import auth_pb2, kv_pb2, lease_pb2, rpc_pb2
from storage.auth import META_AUTH_ENABLED, META_AUTH_REVISION, load_view
from storage.bbolt import BoltFormatError, BoltReader, write_bolt
from storage.mvcc import MvccStore
from storage.mvcc_schema import META_APPLIED_INDEX, META_COMPACT_REVISION, META_REVISION

ETCD_CLUSTER_VERSION = b"3.4.0"
"""What etcdlite reports as its version, and what the exported `cluster` bucket says."""

_REVISION = struct.Struct(">Q")
_TOMBSTONE_MARK = b"t"
_REVISION_BYTES = 17
_ALARM_TYPES = {"NOSPACE": rpc_pb2.NOSPACE, "CORRUPT": rpc_pb2.CORRUPT}
_BATCH = 10_000
_INT64_MAX = 2**63 - 1


def revision_bytes(main: int, sub: int = 0, *, tombstone: bool = False) -> bytes:
    key = _REVISION.pack(main) + b"_" + _REVISION.pack(sub)
    return key + _TOMBSTONE_MARK if tombstone else key


def parse_revision(key: bytes) -> tuple[int, int, bool]:
    """(main, sub, tombstone) of a `key` bucket key."""
    if len(key) not in (_REVISION_BYTES, _REVISION_BYTES + 1) or key[8:9] != b"_":
        raise BoltFormatError(f"not an etcd revision key: {key!r}")
    tombstone = len(key) == _REVISION_BYTES + 1
    if tombstone and key[-1:] != _TOMBSTONE_MARK:
        raise BoltFormatError(f"bad tombstone mark in revision key {key!r}")
    main, sub = _REVISION.unpack_from(key)[0], _REVISION.unpack_from(key, 9)[0]
    if main > _INT64_MAX or sub > _INT64_MAX:  # etcd's revisions are int64
        raise BoltFormatError(f"revision key {key!r} out of range")
    return main, sub, tombstone


def _etcd_url(url: str) -> str:
    """etcd stores http(s)/unix URLs; nng's tcp:// and ipc:// name the same endpoints."""
    parts = urlsplit(url)
    if parts.scheme == "tcp":
        return f"http://{parts.netloc}"
    if parts.scheme == "ipc":
        return f"unix://{parts.netloc}{parts.path}"
    return url


def _key_bucket(conn: sqlite3.Connection) -> Iterator[tuple[bytes, bytes]]:
    rows = conn.execute(
        "SELECT key, mod_revision, sub, create_revision, version, lease, tombstone, value"
        " FROM kv_history ORDER BY mod_revision, sub")
    while batch := rows.fetchmany(_BATCH):
        for key, mod, sub, create, version, lease, tombstone, value in batch:
            if tombstone:
                kv = kv_pb2.KeyValue(key=key)
            else:
                kv = kv_pb2.KeyValue(key=key, create_revision=create, mod_revision=mod,
                                     version=version, value=value, lease=lease)
            yield revision_bytes(mod, sub, tombstone=bool(tombstone)), kv.SerializeToString()


def _table_exists(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                        (name,)).fetchone() is not None


def _meta(conn: sqlite3.Connection) -> dict[str, int]:
    return {str(n): int(v) for n, v in conn.execute("SELECT name, value FROM meta")}


def _small_buckets(conn: sqlite3.Connection) -> dict[bytes, list[tuple[bytes, bytes]]]:
    """Every bucket but `key`, each sorted: these are small enough to build in memory."""
    meta = _meta(conn)
    meta_bucket = [(b"consistent_index", _REVISION.pack(meta.get(META_APPLIED_INDEX, 0)))]
    compact = meta.get(META_COMPACT_REVISION, 0)
    if compact > 0:
        meta_bucket += [(b"finishedCompactRev", revision_bytes(compact)),
                        (b"scheduledCompactRev", revision_bytes(compact))]
    leases = [
        (_REVISION.pack(lease_id),
         lease_pb2.Lease(ID=lease_id, TTL=ttl, RemainingTTL=remaining).SerializeToString())
        for lease_id, ttl, remaining in conn.execute(
            "SELECT id, granted_ttl, remaining_ttl FROM leases ORDER BY id")
    ]
    members: list[tuple[bytes, bytes]] = []
    removed: list[tuple[bytes, bytes]] = []
    if _table_exists(conn, "members"):
        columns = {row[1] for row in conn.execute("PRAGMA table_info(members)")}
        etcd_urls = "etcd_client_urls" if "etcd_client_urls" in columns else "'[]'"
        for mid, name, peer_urls, client_urls, published, learner in conn.execute(
                f"SELECT id, name, peer_urls, client_urls, {etcd_urls}, is_learner"
                " FROM members"):
            record: dict[str, object] = {
                "id": mid, "peerURLs": [_etcd_url(u) for u in json.loads(peer_urls)]}
            if learner:
                record["isLearner"] = True
            if name:
                record["name"] = name
            # etcd's clientURLs are its gRPC endpoints: the published etcd URLs when the
            # member has them, else the native ones in etcd's URL form.
            if clients := json.loads(published) or json.loads(client_urls):
                record["clientURLs"] = [_etcd_url(u) for u in clients]
            members.append((format(mid, "x").encode(), json.dumps(
                record, separators=(",", ":")).encode()))
        removed = [(format(mid, "x").encode(), b"removed")
                   for (mid,) in conn.execute("SELECT id FROM removed_members")]
    alarms: list[tuple[bytes, bytes]] = []
    if _table_exists(conn, "alarms"):
        alarms = [
            (rpc_pb2.AlarmMember(memberID=mid, alarm=_ALARM_TYPES[alarm]).SerializeToString(),
             b"")
            for mid, alarm in conn.execute("SELECT member_id, alarm FROM alarms")
            if alarm in _ALARM_TYPES
        ]
    return {
        b"alarm": sorted(alarms), **_auth_buckets(conn),
        b"cluster": [(b"clusterVersion", ETCD_CLUSTER_VERSION)],
        b"lease": leases, b"members": sorted(members), b"members_removed": sorted(removed),
        b"meta": meta_bucket,
    }


def _auth_buckets(conn: sqlite3.Connection) -> dict[bytes, list[tuple[bytes, bytes]]]:
    if not _table_exists(conn, "auth_users"):
        return {b"auth": [], b"authRoles": [], b"authUsers": []}
    view = load_view(conn)
    users = []
    for user in view.users.values():
        record = auth_pb2.User(name=user.name.encode(), password=user.password_hash,
                               roles=sorted(user.roles))
        if user.no_password:
            record.options.no_password = True
        users.append((user.name.encode(), record.SerializeToString()))
    roles = []
    for name, perms in view.roles.items():
        # The cast is for the stubs only: grpc_tools' generated .pyi types the enum's
        # Value() as a plain int, where the field's type is its Permission.Type.
        role_record = auth_pb2.Role(name=name.encode(), keyPermission=[
            auth_pb2.Permission(permType=cast("auth_pb2.Permission.Type",
                                              auth_pb2.Permission.Type.Value(p.perm_type.value)),
                                key=p.key, range_end=p.range_end)
            for p in sorted(perms, key=lambda p: (p.key, p.range_end))])
        roles.append((name.encode(), role_record.SerializeToString()))
    auth = [(b"authEnabled", b"\x01" if view.enabled else b"\x00"),
            (b"authRevision", _REVISION.pack(view.revision))]
    return {b"auth": auth, b"authRoles": sorted(roles), b"authUsers": sorted(users)}


@dataclass(frozen=True, slots=True)
class ExportResult:
    size: int
    revision: int


def export_to_bolt(state_db: Path, dest: Path) -> ExportResult:
    """Write the etcd-format (bbolt) image of a state.db, live or not.

    Blocking: run it in a worker thread. The source is opened read-only in one
    read transaction, so the image is one applied state even while the member
    keeps applying (WAL mode lets the writer go on).
    """
    conn = sqlite3.connect(f"file:{state_db}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("BEGIN")
        revision = _meta(conn).get(META_REVISION, 1)
        small = _small_buckets(conn)
        buckets: list[tuple[bytes, Iterable[tuple[bytes, bytes]]]] = list(small.items())
        buckets.append((b"key", _key_bucket(conn)))
        size = write_bolt(dest, buckets)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return ExportResult(size=size, revision=revision)


@dataclass(frozen=True, slots=True)
class ImportResult:
    revision: int
    compact_revision: int
    versions: int
    leases: int
    users: int = 0
    roles: int = 0
    auth_was_enabled: bool = False


def import_from_bolt(source: Path, state_db: Path) -> ImportResult:
    """Create a state.db at `state_db` (which must not exist) from an etcd backend file.

    Raises:
        BoltFormatError: the file is not a bbolt file, or not etcd's layout.
    """
    if state_db.exists():
        raise FileExistsError(state_db)
    with BoltReader(source) as bolt:
        if b"key" not in bolt.buckets():
            raise BoltFormatError(f"{source} is a bbolt file but has no etcd 'key' bucket")
        MvccStore(state_db).close()  # the schema, created the one way it always is
        conn = sqlite3.connect(str(state_db), isolation_level=None)
        try:
            conn.execute("BEGIN")
            revision, versions = _import_keys(conn, bolt.items(b"key"))
            meta = dict(bolt.items(b"meta"))
            compact = 0
            if raw := meta.get(b"finishedCompactRev"):
                compact = parse_revision(raw)[0]
            applied = _REVISION.unpack(meta[b"consistent_index"])[0] \
                if len(meta.get(b"consistent_index", b"")) == 8 else 0
            if applied > _INT64_MAX:
                raise BoltFormatError(f"consistent_index {applied} out of range")
            leases = 0
            for _key, value in bolt.items(b"lease"):
                try:
                    lease = lease_pb2.Lease.FromString(value)
                except Exception as exc:  # protobuf's DecodeError
                    raise BoltFormatError("a lease record is not a leasepb.Lease") from exc
                conn.execute("INSERT INTO leases (id, granted_ttl, remaining_ttl)"
                             " VALUES (?, ?, ?)", (lease.ID, lease.TTL, lease.RemainingTTL))
                leases += 1
            users, roles, auth_was_enabled = _import_auth(conn, bolt)
            revision = max(revision, compact, 1)
            for name, number in ((META_REVISION, revision), (META_COMPACT_REVISION, compact),
                                 (META_APPLIED_INDEX, applied)):
                conn.execute("UPDATE meta SET value = ? WHERE name = ?", (number, name))
            conn.execute("COMMIT")
        except (sqlite3.IntegrityError, OverflowError) as exc:
            # Only the file's content can cause these (a key written twice at one
            # revision, a user listed twice, a number beyond int64): it is damaged.
            conn.close()
            state_db.unlink(missing_ok=True)
            raise BoltFormatError(f"{source}: records etcd would never write ({exc})") from exc
        except BaseException:
            conn.close()
            state_db.unlink(missing_ok=True)
            raise
        conn.close()
    return ImportResult(revision=revision, compact_revision=compact, versions=versions,
                        leases=leases, users=users, roles=roles,
                        auth_was_enabled=auth_was_enabled)


def _import_auth(conn: sqlite3.Connection, bolt: BoltReader) -> tuple[int, int, bool]:
    """Users, their roles and the roles' permissions; auth itself stays disabled
    (see the module docstring). (users, roles, whether the source had auth on)."""
    settings = dict(bolt.items(b"auth"))
    was_enabled = settings.get(b"authEnabled", b"\x00") == b"\x01"
    raw_revision = settings.get(b"authRevision", b"")
    auth_rev = _REVISION.unpack(raw_revision)[0] if len(raw_revision) == 8 else 1
    try:
        users = [User(name=u.name.decode(), password_hash=u.password,
                      no_password=u.options.no_password, roles=tuple(u.roles),
                      cred_revision=auth_rev)
                 for u in (auth_pb2.User.FromString(v) for _k, v in bolt.items(b"authUsers"))]
        roles = {r.name.decode(): [Permission(PermType(auth_pb2.Permission.Type.Name(p.permType)),
                                              p.key, p.range_end) for p in r.keyPermission]
                 for r in (auth_pb2.Role.FromString(v) for _k, v in bolt.items(b"authRoles"))}
    except Exception as exc:  # protobuf decode errors, bad UTF-8, unknown enum values
        raise BoltFormatError(f"auth records are not etcd's: {exc}") from exc
    for user in users:
        conn.execute("INSERT INTO auth_users (name, password_hash, no_password, cred_revision)"
                     " VALUES (?, ?, ?, ?)", (user.name, user.password_hash,
                                              int(user.no_password), user.cred_revision))
        conn.executemany("INSERT INTO auth_user_roles (user, role) VALUES (?, ?)",
                         [(user.name, role) for role in user.roles])
    for name, perms in roles.items():
        conn.execute("INSERT INTO auth_roles (name) VALUES (?)", (name,))
        conn.executemany("INSERT INTO auth_permissions (role, key, range_end, perm_type)"
                         " VALUES (?, ?, ?, ?)",
                         [(name, p.key, p.range_end, p.perm_type.value) for p in perms])
    for name, value in ((META_AUTH_ENABLED, 0), (META_AUTH_REVISION, max(auth_rev, 1))):
        conn.execute("UPDATE meta SET value = ? WHERE name = ?", (value, name))
    return len(users), len(roles), was_enabled


def _import_keys(conn: sqlite3.Connection, items: Iterator[tuple[bytes, bytes]]
                 ) -> tuple[int, int]:
    """History rows in revision order; kv_latest follows the last write of each key."""
    revision = versions = 0
    history: list[tuple[bytes, int, int, int, int, int, int, bytes]] = []

    def flush() -> None:
        conn.executemany(
            "INSERT INTO kv_history (key, mod_revision, sub, create_revision, version,"
            " lease, tombstone, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", history)
        history.clear()

    for rev_key, value in items:
        main, sub, tombstone = parse_revision(rev_key)
        try:
            kv = kv_pb2.KeyValue.FromString(value)
        except Exception as exc:  # protobuf's DecodeError has no stable import path
            raise BoltFormatError(f"revision {main}.{sub}: not an mvccpb.KeyValue") from exc
        if tombstone:
            history.append((kv.key, main, sub, 0, 0, 0, 1, b""))
            conn.execute("DELETE FROM kv_latest WHERE key = ?", (kv.key,))
        else:
            history.append((kv.key, main, sub, kv.create_revision, kv.version, kv.lease, 0,
                            kv.value))
            conn.execute(
                "INSERT OR REPLACE INTO kv_latest (key, create_revision, mod_revision,"
                " version, lease) VALUES (?, ?, ?, ?, ?)",
                (kv.key, kv.create_revision, main, kv.version, kv.lease))
        revision = max(revision, main)
        versions += 1
        if len(history) >= _BATCH:
            flush()
    flush()
    return revision, versions

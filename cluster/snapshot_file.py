"""Offline work on a saved snapshot file: inspect it, or seed a new cluster from it.

A snapshot (from `etcdlite snapshot save`) is an ordinary state.db: the MVCC
key space, leases, alarms and membership at one applied Raft index of the
cluster it came from. Nothing here talks to a cluster or touches the file
itself (both functions work on a private copy).

RESTORE makes the data dir of one member of a NEW cluster (etcd's
`etcdutl snapshot restore`): state.db is the snapshot with everything that
belonged to the old cluster's identity reset, and the Raft log is fresh:

- the applied index goes back to 0, because the new cluster's log starts
  at index 1 (its bootstrap membership entries) and every member must apply
  its own log from there; revisions, keys, history, leases stay as they were,
  so the new cluster continues from the snapshot's revision;
- the old membership (members, removed ids, cluster id) and active alarms
  are dropped: the new members' ids come from the new --initial-cluster and
  --initial-cluster-token, and the bootstrap entries record them;
- wal.db is created empty apart from this member's id, so the member starts
  as a blank member of a "new" cluster, with the snapshot's data.

Run it once per member with the same --initial-cluster and token, then
start each member on its directory.

Both functions also take etcd's snapshot format (a bbolt backend file, from
`etcdctl snapshot save` against etcd or etcdlite, or `etcdlite snapshot save
--format etcd`): it is imported into a temporary state.db first
(storage/etcd_backend.py), so an etcd backup can seed an etcdlite cluster.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cluster.config import MemberConfig
from cluster.errors import BadRequestError
from storage.bbolt import BoltFormatError, is_bolt_file
from storage.etcd_backend import import_from_bolt
from storage.mvcc import MvccStore
from storage.mvcc_schema import META_APPLIED_INDEX
from storage.wal import SqliteWal

_SQLITE_MAGIC = b"SQLite format 3\x00"
_REQUIRED_TABLES = frozenset({"meta", "kv_history", "kv_latest"})
_IDENTITY_TABLES = ("members", "removed_members", "cluster_info", "alarms")
"""Tables restore empties: the old cluster's identity and its alarms (if present)."""


@dataclass(frozen=True, slots=True)
class SnapshotStatus:
    """etcdctl's snapshot status table, plus what etcdlite can tell for free.

    `hash` is the same CRC-32 of the MVCC history as `etcdlite endpoint hashkv`
    at `revision`, so a snapshot can be compared with a live member.
    `total_keys` counts stored key versions (history records), `live_keys`
    the keys a range at `revision` would see.
    """

    hash: int
    revision: int
    compact_revision: int
    total_keys: int
    live_keys: int
    total_size: int
    applied_index: int


@dataclass(frozen=True, slots=True)
class RestoreResult:
    data_dir: Path
    name: str
    member_id: int
    cluster_id: int
    revision: int
    warnings: tuple[str, ...] = ()
    """What the operator must know about the restored state (e.g. auth left off)."""


def check_snapshot_file(path: Path) -> None:
    """Refuse anything that is not an intact etcdlite state.db.

    Raises:
        BadRequestError: missing, not SQLite, not etcdlite's schema, or corrupt.
    """
    try:
        with open(path, "rb") as f:
            magic = f.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise BadRequestError(f"cannot read snapshot {path}: {exc.strerror}") from None
    if magic != _SQLITE_MAGIC:
        raise BadRequestError(f"{path} is not a snapshot (not an SQLite database)")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables >= _REQUIRED_TABLES:
            raise BadRequestError(f"{path} is an SQLite file but not an etcdlite snapshot")
        problems = [r[0] for r in conn.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as exc:
        raise BadRequestError(f"{path} is corrupt: {exc}") from None
    finally:
        conn.close()
    if problems != ["ok"]:
        raise BadRequestError(f"{path} is corrupt: {'; '.join(problems[:3])}")


@contextlib.contextmanager
def _as_state_db(path: Path) -> Iterator[tuple[Path, tuple[str, ...]]]:
    """A checked state.db for the snapshot at `path` and warnings about it: the file
    itself, or, for an etcd-format (bbolt) snapshot, a temporary state.db imported
    from it.

    Raises:
        BadRequestError: the file is neither an intact etcdlite nor etcd snapshot.
    """
    if not is_bolt_file(path):
        check_snapshot_file(path)
        yield path, ()
        return
    with tempfile.TemporaryDirectory(prefix="etcdlite-import-") as tmp:
        imported = Path(tmp) / "state.db"
        try:
            result = import_from_bolt(path, imported)
        except BoltFormatError as exc:
            raise BadRequestError(f"{path}: not a usable etcd snapshot: {exc}") from None
        warnings: tuple[str, ...] = ()
        if result.auth_was_enabled:
            warnings = (f"auth was enabled in {path}; its {result.users} users and "
                        f"{result.roles} roles are restored but auth is OFF until you run "
                        "`etcdlite auth enable` (or `etcdctl auth enable`) on the new "
                        "cluster",)
        yield imported, warnings


@contextlib.contextmanager
def _private_copy(path: Path) -> Iterator[MvccStore]:
    """The snapshot opened as a store, from a temporary copy (opening may migrate it)."""
    with _as_state_db(path) as (source, _warnings), \
            tempfile.TemporaryDirectory(prefix="etcdlite-snapshot-") as tmp:
        store = MvccStore.restore(source, Path(tmp) / "state.db")
        try:
            yield store
        finally:
            store.close()


def snapshot_status(path: str | Path) -> SnapshotStatus:
    """Hash, revision and sizes of a snapshot file."""
    path = Path(path)
    size = path.stat().st_size if path.exists() else 0
    with _private_copy(path) as store:
        stats = store.statistics()
        crc, compact = store.hash_kv(stats.revision)
        conn = sqlite3.connect(str(store.path))
        try:
            versions = int(conn.execute("SELECT count(*) FROM kv_history").fetchone()[0])
        finally:
            conn.close()
    return SnapshotStatus(hash=crc, revision=stats.revision, compact_revision=compact,
                          total_keys=versions, live_keys=stats.keys, total_size=size,
                          applied_index=stats.applied_index)


def restore_snapshot(path: str | Path, cfg: MemberConfig) -> RestoreResult:
    """Create `cfg.data_dir` for member `cfg.me` of a new cluster, from a snapshot.

    Raises:
        BadRequestError: the snapshot is not usable, or the data dir is not empty.
    """
    path = Path(path)
    data_dir = cfg.data_dir
    if data_dir.exists() and any(data_dir.iterdir()):
        raise BadRequestError(f"data dir {data_dir} exists and is not empty; "
                              "restore only creates new members")
    with _as_state_db(path) as (source, warnings):
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            revision = _restore_into(source, data_dir, cfg)
        except BaseException:
            shutil.rmtree(data_dir, ignore_errors=True)
            raise
    return RestoreResult(data_dir=data_dir, name=cfg.me.name, member_id=cfg.me.member_id,
                         cluster_id=cfg.cluster.cluster_id, revision=revision,
                         warnings=warnings)


def _restore_into(source: Path, data_dir: Path, cfg: MemberConfig) -> int:
    """Fill an empty `data_dir` from a checked state.db; the restored revision."""
    MvccStore.restore(source, data_dir / "state.db").close()
    _reset_identity(data_dir / "state.db")
    store = MvccStore(data_dir / "state.db")
    revision, applied = store.revision, store.applied_index
    store.close()
    assert applied == 0, applied
    wal = SqliteWal(data_dir / "wal.db")
    try:
        wal.set_meta("member_id", str(cfg.me.member_id))
    finally:
        wal.close()
    return revision


def _reset_identity(state_path: Path) -> None:
    conn = sqlite3.connect(str(state_path), isolation_level=None)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        conn.execute("BEGIN IMMEDIATE")
        for table in _IDENTITY_TABLES:
            if table in tables:
                conn.execute(f"DELETE FROM {table}")
        conn.execute("UPDATE meta SET value = 0 WHERE name = ?", (META_APPLIED_INDEX,))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()

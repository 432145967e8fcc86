"""Schema, connection settings and meta values of `state.db`.

Layout (one SQLite file per member):

- `kv_history`: every version of every key, tombstones included, keyed by
  (key, mod_revision) so that a historical read of a key range walks the
  primary key; `sub` orders the writes inside one revision, and the
  (mod_revision, sub) index gives revision order for watch catch-up, hashing and
  compaction. The value lives only here.
- `kv_latest`: one row per *live* key, with its current create/mod revision,
  version and lease. A read at the current revision touches only this table
  (plus one primary-key lookup into history per returned value), so current
  reads never scan history.
- `leases`: granted leases (id, granted TTL, last checkpointed remaining TTL).
- `alarms`: active alarms (member id, alarm name); see storage/alarms.py.
- `auth_*`: users, roles, permissions, token secret; see storage/auth.py
  (the auth flag and auth revision are rows of `meta`).
- `meta`: applied_index, revision, compact_revision, schema_version. They are
  written in the same transaction as the state they describe, which is what
  makes replay after a crash exactly-once.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils

from storage.alarms import ALARMS_TABLE_SQL
from storage.auth import AUTH_TABLES_SQL

SCHEMA_VERSION = 3
"""Bump with a new step in `_MIGRATIONS` whenever the layout changes."""

META_APPLIED_INDEX = "applied_index"
META_REVISION = "revision"
META_COMPACT_REVISION = "compact_revision"
META_SCHEMA_VERSION = "schema_version"

_INITIAL_META = {
    META_APPLIED_INDEX: 0,
    META_REVISION: 1,  # etcd: an empty store is at revision 1, the first write makes it 2
    META_COMPACT_REVISION: 0,  # 0 = never compacted
}

# sqlite-utils cannot express WITHOUT ROWID tables, so the two hot tables are
# plain SQL run through the sqlite-utils Database; the small ones use its API.
# WITHOUT ROWID stores the row in the primary-key b-tree itself, which saves
# one lookup per read and one b-tree per write on these tables.
_KV_TABLES_SQL = (
    """
    CREATE TABLE IF NOT EXISTS kv_history (
        key BLOB NOT NULL,
        mod_revision INTEGER NOT NULL,
        sub INTEGER NOT NULL,
        create_revision INTEGER NOT NULL,
        version INTEGER NOT NULL,
        lease INTEGER NOT NULL,
        tombstone INTEGER NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (key, mod_revision)
    ) WITHOUT ROWID
    """,
    "CREATE UNIQUE INDEX IF NOT EXISTS kv_history_by_revision ON kv_history (mod_revision, sub)",
    """
    CREATE TABLE IF NOT EXISTS kv_latest (
        key BLOB PRIMARY KEY NOT NULL,
        create_revision INTEGER NOT NULL,
        mod_revision INTEGER NOT NULL,
        version INTEGER NOT NULL,
        lease INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
    # Partial: most keys carry no lease, and they then cost this index nothing.
    "CREATE INDEX IF NOT EXISTS kv_latest_by_lease ON kv_latest (lease, key) WHERE lease != 0",
)


def _migrate_to_1(db: sqlite_utils.Database) -> None:
    for sql in _KV_TABLES_SQL:
        db.execute(sql)
    db.table("leases").create(
        {"id": int, "granted_ttl": int, "remaining_ttl": int},
        pk="id", not_null={"granted_ttl", "remaining_ttl"}, if_not_exists=True,
    )


def _migrate_to_2(db: sqlite_utils.Database) -> None:
    db.execute(ALARMS_TABLE_SQL)


def _migrate_to_3(db: sqlite_utils.Database) -> None:
    for sql in AUTH_TABLES_SQL:
        db.execute(sql)


_MIGRATIONS = {1: _migrate_to_1, 2: _migrate_to_2, 3: _migrate_to_3}


def open_connection(path: Path | str) -> sqlite3.Connection:
    """A connection in manual transaction mode with the durability settings of state.db.

    `isolation_level=None` hands BEGIN/COMMIT/SAVEPOINT to us: the apply path
    needs exact control of where a transaction starts and ends. The connection
    may be used from a worker thread (the applier may run there), but by one
    thread at a time.
    """
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL: in WAL mode a commit survives a process crash but not power loss, and
    # that is enough: the Raft WAL (wal.db, FULL) is the durable record. After a power
    # loss state.db rolls back to an earlier consistent state *with its applied index*,
    # and Raft re-applies the rest exactly once (etcd likewise commits its backend
    # lazily and relies on its WAL). Snapshot files are fsync'd before the log under
    # them is dropped, and a member whose state fell behind its log's start restores
    # the snapshot at boot (cluster/member.py).
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=OFF")
    return conn


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create or migrate the schema in place, one transaction per step."""
    db = sqlite_utils.Database(conn, execute_plugins=False)
    db.table("meta").create(
        {"name": str, "value": int}, pk="name", not_null={"value"}, if_not_exists=True
    )
    row = conn.execute(
        "SELECT value FROM meta WHERE name = ?", (META_SCHEMA_VERSION,)
    ).fetchone()
    current = 0 if row is None else int(row[0])
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"state.db schema version {current} is newer than this etcdlite ({SCHEMA_VERSION})"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        with db.atomic():
            _MIGRATIONS[version](db)
            if version == 1:
                conn.executemany(
                    "INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)",
                    list(_INITIAL_META.items()),
                )
            conn.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                (META_SCHEMA_VERSION, version),
            )


def read_meta(conn: sqlite3.Connection) -> dict[str, int]:
    return {str(name): int(value) for name, value in conn.execute("SELECT name, value FROM meta")}


def write_meta(conn: sqlite3.Connection, values: dict[str, int]) -> None:
    conn.executemany(
        "UPDATE meta SET value = ? WHERE name = ?", [(v, k) for k, v in values.items()]
    )

"""The hash of an MVCC history (etcd's HashKV), on any connection to a state.db.

Kept apart from `MvccStore` so that maintenance can compute it in a worker
thread on a connection of its own: hashing a million history records takes
seconds, which must not stall the member's event loop (Raft heartbeats).
`MvccStore.hash_kv` uses the same function, so both always agree.
"""

from __future__ import annotations

import sqlite3
import struct
import zlib
from pathlib import Path

from cluster.errors import CompactedError, FutureRevisionError
from storage.mvcc_read import COMPACTED_MESSAGE, FUTURE_MESSAGE
from storage.mvcc_schema import META_COMPACT_REVISION, META_REVISION, read_meta

_reader_busy_timeout_ms = 5000


def hash_history(conn: sqlite3.Connection, revision: int = 0) -> tuple[int, int, int]:
    """(hash, compact_revision, hash_revision) of every history record <= revision.

    `revision` 0 means the current one. Members that applied the same entries
    (the same compactions included) hold byte-identical history, so equal
    revisions and equal compact revisions must give equal hashes; anything else
    is corruption. Records are hashed in (mod_revision, sub) order in a fixed
    binary layout, independent of SQLite's page layout. One read transaction,
    so the meta and the rows come from one applied state.

    Raises:
        CompactedError: `revision` is below the compact revision.
        FutureRevisionError: `revision` is above the current revision.
    """
    conn.execute("BEGIN")
    try:
        meta = read_meta(conn)
        current, compact = meta[META_REVISION], meta[META_COMPACT_REVISION]
        if revision > current:
            raise FutureRevisionError(FUTURE_MESSAGE)
        if 0 < revision < compact:
            raise CompactedError(COMPACTED_MESSAGE)
        upto = revision or current
        crc = 0
        for key, mod, sub, create, version, lease, tomb, value in conn.execute(
            "SELECT key, mod_revision, sub, create_revision, version, lease, tombstone,"
            " value FROM kv_history WHERE mod_revision <= ? ORDER BY mod_revision, sub",
            (upto,),
        ):
            head = struct.pack(">qqqqqBII", mod, sub, create, version, lease, tomb,
                               len(key), len(value))
            crc = zlib.crc32(value, zlib.crc32(key, zlib.crc32(head, crc)))
        return crc, compact, upto
    finally:
        conn.execute("COMMIT")


def hash_state_db(path: Path | str, revision: int = 0) -> tuple[int, int, int]:
    """`hash_history` on a fresh read-only connection (blocking: run it in a thread)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout={_reader_busy_timeout_ms}")
        return hash_history(conn, revision)
    finally:
        conn.close()

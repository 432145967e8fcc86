"""The MVCC store of one member: etcd v3's revisioned key space in `state.db`.

The applier feeds it committed Raft entries in batches (`apply`); the server
reads from it directly (`range`) for serializable reads and, after ReadIndex,
for linearizable ones. Lease *timing* is not kept here: the lease actor
decides when a lease expires and proposes a revoke; this store only records
leases, their attached keys and checkpointed remaining TTLs.

Threading: the store holds two connections. `apply`, `backup_to`,
`defragment` and `close` use the writer; the read methods use a separate
reader connection that sees only committed state, so reads may run while an
`apply` is in progress in a worker thread. Each connection must still be used
by one thread at a time (one applier, one reading actor).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias, final

from cluster.auth_types import Authed, AuthRequest, AuthResult
from cluster.errors import CompactedError, EtcdliteError
from cluster.kv import KeyValue, MemberAttrRequest, RangeRequest, RangeResult, Request, Result
from storage.members import (
    MemberChange,
    MemberRecord,
    apply_member_attributes,
    apply_member_change,
    cluster_id_of,
    ensure_members_schema,
    is_removed,
    list_members,
)
from storage.mvcc_hash import hash_history
from storage.mvcc_read import COMPACTED_MESSAGE, key_condition, range_kvs
from storage.mvcc_schema import (
    META_APPLIED_INDEX,
    META_COMPACT_REVISION,
    META_REVISION,
    ensure_schema,
    open_connection,
    read_meta,
    write_meta,
)
from storage.mvcc_write import BatchWriter
from storage.request_ids import (
    ensure_request_ids_schema,
    first_application,
    forget_requests_before,
    request_ids_window,
)

_READER_BUSY_TIMEOUT_MS = 5000
"""A reader waits this long for an exclusive operation (VACUUM, restore) to finish."""


AppliedRequest: TypeAlias = Request | AuthRequest | Authed | MemberChange
"""What a committed entry carries to `MvccStore.apply` (decoded by actors/applier.py)."""

AppliedResult: TypeAlias = Result | AuthResult | list[MemberRecord]
"""What applying one `AppliedRequest` returns (a membership change: the new member list)."""


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """A granted lease as stored; `remaining_ttl` 0 means never checkpointed."""

    id: int
    granted_ttl: int
    remaining_ttl: int = 0

    @property
    def ttl(self) -> int:
        """The TTL a (new) leader should count down from: the checkpoint if any."""
        return self.remaining_ttl or self.granted_ttl


@dataclass(frozen=True, slots=True)
class MvccEvent:
    """One change in history, for watch catch-up: a put or a delete (tombstone)."""

    is_delete: bool
    kv: KeyValue
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class MvccStatistics:
    revision: int
    compact_revision: int
    applied_index: int
    keys: int
    leases: int
    db_size_bytes: int
    db_size_in_use_bytes: int


@final
class MvccStore:
    """etcd's MVCC key space and leases over one SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self._path = Path(path)
        self._conn = open_connection(self._path)
        ensure_schema(self._conn)
        ensure_members_schema(self._conn)
        ensure_request_ids_schema(self._conn)
        self._reader = open_connection(self._path)
        self._reader.execute(f"PRAGMA busy_timeout={_READER_BUSY_TIMEOUT_MS}")
        meta = read_meta(self._conn)
        self._applied_index = meta[META_APPLIED_INDEX]
        self._revision = meta[META_REVISION]
        self._compact_revision = meta[META_COMPACT_REVISION]
        assert self._revision >= 1, meta
        assert 0 <= self._compact_revision <= self._revision, meta

    @property
    def path(self) -> Path:
        return self._path

    def close(self) -> None:
        self._reader.close()
        self._conn.close()

    @property
    def applied_index(self) -> int:
        return self._applied_index

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def compact_revision(self) -> int:
        return self._compact_revision

    @property
    def db_size_bytes(self) -> int:
        """Logical size of the database (page count x page size), WAL content included."""
        return self._pragma("page_count") * self._pragma("page_size")

    @property
    def db_size_in_use_bytes(self) -> int:
        """Size minus free pages: what `defragment` would shrink the file to, about."""
        pages = self._pragma("page_count") - self._pragma("freelist_count")
        return pages * self._pragma("page_size")

    def _pragma(self, name: str) -> int:
        return int(self._reader.execute(f"PRAGMA {name}").fetchone()[0])

    # --- apply -----------------------------------------------------------------------

    def apply(
        self, batch: Sequence[tuple[int, AppliedRequest | None]],
        request_ids: Sequence[int | None] | None = None,
    ) -> list[AppliedResult | EtcdliteError | None]:
        """Apply committed entries in index order, in ONE transaction, exactly once.

        Args:
            batch: (Raft index, request) pairs in increasing index order; a None
                request is an entry that changes no state (a leader's empty entry,
                a conf change) and only advances the applied index. Indexes need
                not be contiguous, but must increase. Requests must have been
                validated (`cluster.kv.decode_request` / `request_from_wire` do it):
                out-of-range integers would abort the batch.

        Returns:
            One item per entry: the Result (whose `revision` is the store revision
            right after it), the typed error of a request that failed
            deterministically (its own effects undone, the batch goes on), or None
            for an entry at or below the applied index (already applied: skipped)
            and for a None request.

        The applied index is written in the same transaction as the state the
        entries produced (durability comes from the Raft WAL, see mvcc_schema), so after a
        crash the same entries replay as no-ops. Any other exception rolls the
        whole batch back and propagates: the member must stop, not skip entries.
        """
        previous = -1
        for index, _ in batch:
            assert index > previous, f"batch indexes must increase: {index} after {previous}"
            previous = index
        results: list[AppliedResult | EtcdliteError | None] = [None] * len(batch)
        if not batch or batch[-1][0] <= self._applied_index:
            return results
        conn = self._conn
        writer = BatchWriter(conn, self._revision, self._compact_revision)
        conn.execute("BEGIN IMMEDIATE")
        try:
            for position, (index, req) in enumerate(batch):
                if index <= self._applied_index or req is None:
                    continue
                rid = request_ids[position] if request_ids is not None else None
                if rid is not None and not first_application(conn, rid, index):
                    continue  # a duplicated proposal: applied once already, skip it
                conn.execute("SAVEPOINT request")
                try:
                    if isinstance(req, MemberChange):
                        results[position] = apply_member_change(conn, req)
                    elif isinstance(req, MemberAttrRequest):
                        # Membership, not key space: the revision stays (as in etcd).
                        results[position] = apply_member_attributes(conn, req)
                    else:
                        results[position] = writer.apply(req)
                except EtcdliteError as err:
                    conn.execute("ROLLBACK TO request")
                    results[position] = err
                conn.execute("RELEASE request")
            applied_index = batch[-1][0]
            if request_ids is not None:
                forget_requests_before(conn, applied_index - request_ids_window)
            write_meta(conn, {
                META_APPLIED_INDEX: applied_index,
                META_REVISION: writer.revision,
                META_COMPACT_REVISION: writer.compact_revision,
            })
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        assert writer.revision >= self._revision
        self._applied_index = applied_index
        self._revision = writer.revision
        self._compact_revision = writer.compact_revision
        return results

    # --- reads -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[tuple[sqlite3.Connection, int, int]]:
        """A read transaction on the reader: (conn, revision, compact_revision) of one snapshot.

        The revisions come from the same snapshot as the data rather than from
        this object's cached values, which an apply in another thread may be
        updating at this very moment.
        """
        conn = self._reader
        conn.execute("BEGIN")
        try:
            meta = read_meta(conn)
            yield conn, meta[META_REVISION], meta[META_COMPACT_REVISION]
        finally:
            conn.execute("COMMIT")

    def range(self, req: RangeRequest) -> RangeResult:
        """Read outside the log (serializable; linearizable once ReadIndex has caught up).

        Raises:
            CompactedError: `req.revision` is below the compact revision.
            FutureRevisionError: `req.revision` is above the current revision.
        """
        with self._snapshot() as (conn, revision, compact):
            return range_kvs(conn, req, current=revision, compact=compact)

    def lease_get(self, lease_id: int) -> LeaseRecord | None:
        row = self._reader.execute(
            "SELECT id, granted_ttl, remaining_ttl FROM leases WHERE id = ?", (lease_id,)
        ).fetchone()
        return None if row is None else LeaseRecord(*row)

    def leases(self) -> list[LeaseRecord]:
        rows = self._reader.execute(
            "SELECT id, granted_ttl, remaining_ttl FROM leases ORDER BY id"
        ).fetchall()
        return [LeaseRecord(*row) for row in rows]

    def lease_keys(self, lease_id: int) -> list[bytes]:
        rows = self._reader.execute(
            "SELECT key FROM kv_latest WHERE lease = ? AND lease != 0 ORDER BY key", (lease_id,)
        ).fetchall()
        return [bytes(row[0]) for row in rows]

    def events(
        self, start_revision: int, end_revision: int = 0, *, key: bytes = b"",
        range_end: bytes = b"\0", prev_kv: bool = False, limit: int = 0,
    ) -> list[MvccEvent]:
        """Changes with start_revision <= mod_revision <= end_revision (0 = current),
        in revision order, for keys in [key, range_end) (default: every key).

        Raises:
            CompactedError: start_revision is below the compact revision (etcd's
                watch rule: the changes it asks for may be gone).
        """
        with self._snapshot() as (conn, revision, compact):
            if start_revision < compact:
                raise CompactedError(COMPACTED_MESSAGE)
            cond, params = key_condition("key", key, range_end)
            sql = (
                "SELECT key, value, create_revision, mod_revision, version, lease, tombstone"
                f" FROM kv_history WHERE mod_revision >= ? AND mod_revision <= ? AND {cond}"
                " ORDER BY mod_revision, sub"
            )
            args = [start_revision, end_revision or revision, *params]
            if limit:
                sql += " LIMIT ?"
                args.append(limit)
            out = []
            for k, v, c, m, ver, lease, tomb in conn.execute(sql, args).fetchall():
                kv = KeyValue(key=k, value=v, create_revision=c, mod_revision=m, version=ver,
                              lease=lease)
                prev = self._prev_version(conn, k, m) if prev_kv else None
                out.append(MvccEvent(is_delete=bool(tomb), kv=kv, prev_kv=prev))
            return out

    @staticmethod
    def _prev_version(conn: sqlite3.Connection, key: bytes, mod_revision: int) -> KeyValue | None:
        row = conn.execute(
            "SELECT value, create_revision, mod_revision, version, lease, tombstone"
            " FROM kv_history WHERE key = ? AND mod_revision < ?"
            " ORDER BY mod_revision DESC LIMIT 1",
            (key, mod_revision),
        ).fetchone()
        if row is None or row[5]:
            return None
        v, c, m, ver, lease, _ = row
        return KeyValue(key=key, value=v, create_revision=c, mod_revision=m, version=ver,
                        lease=lease)

    def hash_kv(self, revision: int = 0) -> tuple[int, int]:
        """(hash, compact_revision): a CRC-32 of every history record at or below `revision`.

        Mirrors etcd's HashKV: members that applied the same entries (the same
        compactions included) hold byte-identical history, so equal revisions
        and equal compact revisions must give equal hashes; anything else is
        corruption. Records are hashed in (mod_revision, sub) order in a fixed
        binary layout, independent of SQLite's page layout.

        Raises:
            CompactedError: `revision` is below the compact revision.
            FutureRevisionError: `revision` is above the current revision.
        """
        crc, compact, _ = hash_history(self._reader, revision)  # storage/mvcc_hash.py
        return crc, compact

    def statistics(self) -> MvccStatistics:
        with self._snapshot() as (conn, revision, compact):
            keys = int(conn.execute("SELECT count(*) FROM kv_latest").fetchone()[0])
            leases = int(conn.execute("SELECT count(*) FROM leases").fetchone()[0])
            applied = read_meta(conn)[META_APPLIED_INDEX]
        return MvccStatistics(
            revision=revision, compact_revision=compact, applied_index=applied, keys=keys,
            leases=leases, db_size_bytes=self.db_size_bytes,
            db_size_in_use_bytes=self.db_size_in_use_bytes,
        )

    # --- maintenance -------------------------------------------------------------------

    def backup_to(self, path: Path | str) -> None:
        """Write a consistent copy of the store to `path` (a snapshot file).

        Uses SQLite's online backup API in one step, so the copy is one committed
        state (applied index included). The file is written beside its final name
        and renamed into place, so a crash never leaves a half-written snapshot
        under `path`.
        """
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        tmp.unlink(missing_ok=True)
        dest = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            self._reader.backup(dest)
            # A snapshot is one self-contained file: no -wal beside it.
            dest.execute("PRAGMA journal_mode=DELETE")
        finally:
            dest.close()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)

    @classmethod
    def restore(cls, backup_path: Path | str, path: Path | str) -> MvccStore:
        """Replace the store file at `path` with a backup and open it.

        The store at `path` (if any) must be closed first. A backup file is an
        ordinary state.db, so `MvccStore(backup_path)` would open it directly too;
        this copies it so that the snapshot file itself stays untouched.
        """
        source = sqlite3.connect(str(backup_path), isolation_level=None)
        dest = open_connection(path)
        try:
            source.backup(dest)
        finally:
            source.close()
            dest.close()
        return cls(path)

    def replace_from(self, backup_path: Path | str) -> None:
        """Replace this store's whole content by a snapshot file, in place and atomically.

        SQLite's backup API writes into the live connection in one transaction, so a
        crash leaves either the old state or the snapshot's, never a mix; the
        object stays valid for everyone holding it (server, watchers, applier).
        """
        source = sqlite3.connect(str(backup_path), isolation_level=None)
        try:
            source.backup(self._conn)
        finally:
            source.close()
        ensure_schema(self._conn)
        ensure_members_schema(self._conn)
        ensure_request_ids_schema(self._conn)
        meta = read_meta(self._conn)
        self._applied_index = meta[META_APPLIED_INDEX]
        self._revision = meta[META_REVISION]
        self._compact_revision = meta[META_COMPACT_REVISION]

    def members(self) -> list[MemberRecord]:
        """The applied membership (id order)."""
        return list_members(self._reader)

    def cluster_id(self) -> int:
        return cluster_id_of(self._reader)

    def is_removed_member(self, member_id: int) -> bool:
        return is_removed(self._reader, member_id)

    def defragment(self) -> None:
        """Rewrite the file without free pages (VACUUM), like etcd's defrag.

        This BLOCKS the member: it rewrites the whole database while holding it
        exclusively (apply and reads wait), so run it on one member at a time.
        """
        self._conn.execute("VACUUM")
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

"""Applying committed requests inside the store's open write transaction.

`BatchWriter` owns the revision counter while a batch is being applied. The
caller (`MvccStore.apply`) wraps each request in a SAVEPOINT and keeps the
writer's revision only if the request succeeded, so a request that fails
deterministically leaves no trace and the batch goes on.

Revision rule (etcd's): a request that writes anything gets main revision
`revision + 1`; each key it writes gets the next sub revision; one that
writes nothing (a read, a delete that matched nothing, a lease grant) leaves
the revision alone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, cast, final

from cluster.alarm_types import AlarmRequest
from cluster.auth_types import AUTH_REQUEST_TYPES, Authed, AuthRequest, AuthResult
from cluster.errors import (
    BadRequestError,
    CompactedError,
    FutureRevisionError,
    KeyNotFoundError,
    LeaseExistsError,
    LeaseNotFoundError,
    NoSpaceError,
)
from cluster.kv import (
    CompactionRequest,
    CompactionResult,
    DeleteRangeRequest,
    DeleteRangeResult,
    KeyValue,
    LeaseCheckpointRequest,
    LeaseCheckpointResult,
    LeaseGrantRequest,
    LeaseGrantResult,
    LeaseRevokeRequest,
    LeaseRevokeResult,
    PutRequest,
    PutResult,
    RangeRequest,
    Request,
    ResponseOp,
    Result,
    TxnRequest,
    TxnResult,
    check_duplicate_keys,
)
from storage.alarms import NO_SPACE_MESSAGE, apply_alarm, grows_store, nospace_active
from storage.auth import apply_auth
from storage.auth_check import ApplyAuth
from storage.mvcc_read import (
    COMPACTED_MESSAGE,
    FUTURE_MESSAGE,
    evaluate_compare,
    key_condition,
    range_kvs,
)

_SELECT_LATEST = (
    "SELECT create_revision, mod_revision, version, lease FROM kv_latest WHERE key = ?"
)
_SELECT_VALUE = "SELECT value FROM kv_history WHERE key = ? AND mod_revision = ?"
_INSERT_HISTORY = (
    "INSERT INTO kv_history"
    " (key, mod_revision, sub, create_revision, version, lease, tombstone, value)"
    " VALUES (?, ?, ?, ?, ?, ?, 0, ?)"
)
_UPSERT_LATEST = (
    "INSERT INTO kv_latest (key, create_revision, mod_revision, version, lease)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
    " create_revision = excluded.create_revision, mod_revision = excluded.mod_revision,"
    " version = excluded.version, lease = excluded.lease"
)
_AUTH_CLASSES = tuple(AUTH_REQUEST_TYPES.values())

# Removes, among the keys written since the previous compaction, every version at
# or below the compaction revision except the latest one, and that one too if it
# is a tombstone. Keys not written since the previous compaction already hold at
# most one live version at or below it, which must stay.
_COMPACT = (
    "DELETE FROM kv_history WHERE mod_revision <= :rev AND key IN ("
    "  SELECT DISTINCT key FROM kv_history WHERE mod_revision > :prev AND mod_revision <= :rev)"
    " AND (tombstone = 1 OR mod_revision < ("
    "  SELECT MAX(h.mod_revision) FROM kv_history AS h"
    "  WHERE h.key = kv_history.key AND h.mod_revision <= :rev))"
)


@final
class BatchWriter:
    """Applies requests on a connection that is inside a write transaction."""

    def __init__(self, conn: sqlite3.Connection, revision: int, compact_revision: int) -> None:
        self._conn = conn
        self.revision = revision
        self.compact_revision = compact_revision
        self._main = revision + 1
        self._sub = 0
        self._txn_base: int | None = None
        # Read once per batch, then kept current by the alarm requests of the batch.
        self._nospace = nospace_active(conn)
        # Permission checks against the auth state of each entry's own index.
        self._auth = ApplyAuth(conn)

    def apply(self, entry: Request | AuthRequest | Authed) -> Result | AuthResult:
        """Apply one request and return its result.

        Raises:
            EtcdliteError: the request fails deterministically; the caller must
                roll back to its savepoint (anything written is then undone, and
                this writer's revision is unchanged because it is only advanced here).
        """
        self._main = self.revision + 1
        self._sub = 0
        compact_to: int | None = None
        result: Result
        req: Request | AuthRequest
        if isinstance(entry, Authed):  # a client's request: check who sent it first
            self._auth.check(entry)
            req = entry.request
        else:
            req = entry
        if isinstance(req, _AUTH_CLASSES):
            auth_result = apply_auth(self._conn, req)
            self._auth.refresh()
            return auth_result
        # mypy does not narrow on isinstance against a tuple of class *values*, so
        # it would keep the auth requests in `req`'s type though they returned above.
        req = cast(Request, req)
        if self._nospace and grows_store(req):
            raise NoSpaceError(NO_SPACE_MESSAGE)
        match req:
            case PutRequest():
                result = self._put(req)
            case DeleteRangeRequest():
                result = self._delete(req)
            case TxnRequest():
                result = self._txn_top(req)
            case RangeRequest():
                result = range_kvs(self._conn, req, current=self.revision,
                                   compact=self.compact_revision)
            case CompactionRequest():
                result = self._compact(req)
                compact_to = req.revision
            case LeaseGrantRequest():
                result = self._lease_grant(req)
            case LeaseRevokeRequest():
                result = self._lease_revoke(req)
            case LeaseCheckpointRequest():
                result = self._lease_checkpoint(req)
            case AlarmRequest():
                result = apply_alarm(self._conn, req)
                self._nospace = nospace_active(self._conn)
            case _:
                # Deterministic refusal, not an assertion: a committed entry that
                # crashed the applier would crash every member on every replay.
                raise BadRequestError(f"operation {req.op!r} does not go through the log")
        if self._sub:
            self.revision = self._main
        if compact_to is not None:
            self.compact_revision = compact_to
        return result

    def _now(self) -> int:
        return self._main if self._sub else self.revision

    # --- put / delete -------------------------------------------------------------

    def _put(self, req: PutRequest) -> PutResult:
        conn = self._conn
        row = conn.execute(_SELECT_LATEST, (req.key,)).fetchone()
        if row is None and (req.ignore_value or req.ignore_lease):
            raise KeyNotFoundError("etcdserver: key not found")
        lease = row[3] if req.ignore_lease else req.lease
        if not req.ignore_lease and lease and not self._lease_exists(lease):
            raise LeaseNotFoundError("lease not found")
        value = req.value
        prev: KeyValue | None = None
        if row is None:
            create, version = self._main, 1
        else:
            create, prev_mod, prev_version, prev_lease = row
            version = prev_version + 1
            if req.ignore_value or req.prev_kv:
                prev_value = conn.execute(_SELECT_VALUE, (req.key, prev_mod)).fetchone()[0]
                if req.ignore_value:
                    value = prev_value
                if req.prev_kv:
                    prev = KeyValue(key=req.key, value=prev_value, create_revision=create,
                                    mod_revision=prev_mod, version=prev_version, lease=prev_lease)
        main, sub = self._main, self._sub
        self._sub += 1
        conn.execute(_INSERT_HISTORY, (req.key, main, sub, create, version, lease, value))
        conn.execute(_UPSERT_LATEST, (req.key, create, main, version, lease))
        return PutResult(prev_kv=prev, revision=main)

    def _delete_where(
        self, cond_for: Callable[[str], str], params: list[Any], want_prev: bool
    ) -> tuple[int, tuple[KeyValue, ...]]:
        """Tombstone every live key matching `cond_for(prefix)`, a condition on kv_latest
        columns written with the given table prefix ("" or "l.")."""
        conn = self._conn
        cond = cond_for("")
        prev_kvs: tuple[KeyValue, ...] = ()
        if want_prev:
            rows = conn.execute(
                "SELECT l.key, l.create_revision, l.mod_revision, l.version, l.lease, v.value"
                " FROM kv_latest AS l JOIN kv_history AS v"
                " ON v.key = l.key AND v.mod_revision = l.mod_revision"
                f" WHERE {cond_for('l.')} ORDER BY l.key",
                params,
            ).fetchall()
            prev_kvs = tuple(
                KeyValue(key=k, value=v, create_revision=c, mod_revision=m, version=ver,
                         lease=lease)
                for k, c, m, ver, lease, v in rows
            )
        # One statement for the whole range: keys get consecutive sub revisions in
        # key order, as etcd's delete walks its index in key order.
        deleted = conn.execute(
            "INSERT INTO kv_history"
            " (key, mod_revision, sub, create_revision, version, lease, tombstone, value)"
            " SELECT key, ?, ? + row_number() OVER (ORDER BY key) - 1, 0, 0, 0, 1, x''"
            f" FROM kv_latest WHERE {cond}",
            [self._main, self._sub, *params],
        ).rowcount
        if deleted:
            conn.execute(f"DELETE FROM kv_latest WHERE {cond}", params)
            self._sub += deleted
        return deleted, prev_kvs

    def _delete(self, req: DeleteRangeRequest) -> DeleteRangeResult:
        _, params = key_condition("key", req.key, req.range_end)
        deleted, prev_kvs = self._delete_where(
            lambda prefix: key_condition(f"{prefix}key", req.key, req.range_end)[0],
            params, req.prev_kv,
        )
        return DeleteRangeResult(deleted=deleted, prev_kvs=prev_kvs, revision=self._now())

    # --- txn ------------------------------------------------------------------------

    def _txn_path(self, txn: TxnRequest) -> list[bool]:
        """Outcome of every compare set that will run, depth first (etcd's txn path).

        All of them are evaluated against the state before the txn writes
        anything, nested txns included, exactly as etcd does.
        """
        succeeded = all(evaluate_compare(self._conn, c) for c in txn.compare)
        path = [succeeded]
        for op in txn.success if succeeded else txn.failure:
            if isinstance(op, TxnRequest):
                path.extend(self._txn_path(op))
        return path

    def _txn_top(self, txn: TxnRequest) -> TxnResult:
        # Parsing already refused these; checking again costs little and turns a txn
        # built in-process (never parsed) into a typed error instead of a primary-key
        # conflict that would abort the whole batch on every replay.
        check_duplicate_keys(txn.success)
        check_duplicate_keys(txn.failure)
        path = iter(self._txn_path(txn))
        self._txn_base = self.revision
        try:
            result = self._txn(txn, path)
        finally:
            self._txn_base = None
        assert next(path, None) is None, "txn path not fully consumed"
        return result

    def _txn(self, txn: TxnRequest, path: Iterator[bool]) -> TxnResult:
        succeeded = next(path)
        responses: list[ResponseOp] = []
        for op in txn.success if succeeded else txn.failure:
            match op:
                case RangeRequest():
                    # Reads see the txn's own earlier writes; the revision a read may
                    # name is bounded by the revision before the txn, as in etcd.
                    responses.append(range_kvs(self._conn, op, current=self._now(),
                                               compact=self.compact_revision,
                                               future_bound=self._txn_base))
                case PutRequest():
                    responses.append(self._put(op))
                case DeleteRangeRequest():
                    responses.append(self._delete(op))
                case TxnRequest():
                    responses.append(self._txn(op, path))
        return TxnResult(succeeded=succeeded, responses=tuple(responses), revision=self._now())

    # --- compaction -------------------------------------------------------------------

    def _compact(self, req: CompactionRequest) -> CompactionResult:
        if req.revision <= self.compact_revision:
            raise CompactedError(COMPACTED_MESSAGE)
        if req.revision > self.revision:
            raise FutureRevisionError(FUTURE_MESSAGE)
        self._conn.execute(_COMPACT, {"rev": req.revision, "prev": self.compact_revision})
        return CompactionResult(revision=self.revision)

    # --- leases ------------------------------------------------------------------------

    def _lease_exists(self, lease_id: int) -> bool:
        row = self._conn.execute("SELECT 1 FROM leases WHERE id = ?", (lease_id,)).fetchone()
        return row is not None

    def _lease_grant(self, req: LeaseGrantRequest) -> LeaseGrantResult:
        if req.id <= 0:
            raise BadRequestError("lease id must be chosen before the grant is proposed")
        if self._lease_exists(req.id):
            raise LeaseExistsError("lease already exists")
        self._conn.execute(
            "INSERT INTO leases (id, granted_ttl, remaining_ttl) VALUES (?, ?, 0)",
            (req.id, req.ttl),
        )
        return LeaseGrantResult(id=req.id, ttl=req.ttl, revision=self.revision)

    def _lease_revoke(self, req: LeaseRevokeRequest) -> LeaseRevokeResult:
        if not self._lease_exists(req.id):
            raise LeaseNotFoundError("lease not found")
        # "lease != 0" lets SQLite use the partial index on (lease, key).
        self._delete_where(lambda prefix: f"{prefix}lease = ? AND {prefix}lease != 0",
                           [req.id], want_prev=False)
        self._conn.execute("DELETE FROM leases WHERE id = ?", (req.id,))
        return LeaseRevokeResult(revision=self._now())

    def _lease_checkpoint(self, req: LeaseCheckpointRequest) -> LeaseCheckpointResult:
        # A checkpoint racing a revoke finds no lease; it is reported, not fatal.
        if not self._lease_exists(req.id):
            raise LeaseNotFoundError("lease not found")
        self._conn.execute("UPDATE leases SET remaining_ttl = ? WHERE id = ?",
                           (req.remaining_ttl, req.id))
        return LeaseCheckpointResult(revision=self.revision)

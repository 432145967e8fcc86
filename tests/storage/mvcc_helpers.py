"""Shared helpers for the MVCC store tests: feed requests with rising Raft indexes."""

from __future__ import annotations

import sqlite3

from cluster.errors import EtcdliteError
from cluster.kv import KeyValue, RangeRequest, Request, Result
from storage.mvcc import MvccStore


class Feeder:
    """Wraps a store and numbers the entries it applies, like the applier would."""

    def __init__(self, store: MvccStore) -> None:
        self.store = store
        self.index = store.applied_index

    def batch(self, *reqs: Request | None) -> list[Result | EtcdliteError | None]:
        entries = []
        for req in reqs:
            self.index += 1
            entries.append((self.index, req))
        return self.store.apply(entries)

    def one(self, req: Request) -> Result:
        """Apply one request that must succeed."""
        (result,) = self.batch(req)
        assert result is not None
        assert not isinstance(result, EtcdliteError), result
        return result

    def fail(self, req: Request) -> EtcdliteError:
        """Apply one request that must fail deterministically."""
        (result,) = self.batch(req)
        assert isinstance(result, EtcdliteError), result
        return result

    def get(self, key: bytes, revision: int = 0) -> KeyValue | None:
        kvs = self.store.range(RangeRequest(key=key, revision=revision)).kvs
        return kvs[0] if kvs else None

    def keys(self, **kwargs: object) -> list[bytes]:
        req = RangeRequest(key=b"\0", range_end=b"\0", **kwargs)  # type: ignore[arg-type]
        return [kv.key for kv in self.store.range(req).kvs]


def history(store: MvccStore) -> list[tuple[bytes, int, bool]]:
    """Every record still in kv_history as (key, mod_revision, is_tombstone), in revision order."""
    conn = sqlite3.connect(str(store.path))
    try:
        rows = conn.execute(
            "SELECT key, mod_revision, tombstone FROM kv_history ORDER BY mod_revision, sub"
        ).fetchall()
    finally:
        conn.close()
    return [(bytes(k), m, bool(t)) for k, m, t in rows]

"""The Raft WAL in SQLite (`<data-dir>/wal.db`).

Why SQLite rather than an append-only file: one transaction gives us the
atomic "entries + hard state + snapshot record" write that etcd builds by hand
out of WAL records and CRCs, and `sqlite-utils rows wal.db entries` is a
debugger for free. The price is per-commit overhead, so `save()` is the one
hot path: one `db.atomic()` transaction, `executemany` for the entries, no
read-backs (first/last index and the last term are cached in memory).

journal_mode=WAL with synchronous=FULL makes every commit fsync the SQLite
WAL file before `save()` returns, which is the durability Raft needs before
messages that depend on the save are sent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import final

import sqlite_utils

from cluster.codec import dumps, loads, snapshot_meta_from_wire, snapshot_meta_to_wire
from cluster.messages import Entry, EntryType, HardState, SnapshotMeta
from storage.protocols import (
    BootState,
    SavePlan,
    WalStatistics,
    check_boot_state,
    plan_save,
)

SCHEMA_VERSION = 1
"""Stored in PRAGMA user_version; a file from another version is refused."""

_INSERT_ENTRY = 'INSERT INTO entries ("index", term, type, data) VALUES (?, ?, ?, ?)'
_PUT_HARD_STATE = 'INSERT OR REPLACE INTO hard_state (id, term, vote, "commit") VALUES (0, ?, ?, ?)'
_PUT_SNAPSHOT = 'INSERT OR REPLACE INTO snapshot_meta (id, "index", term, meta) VALUES (0, ?, ?, ?)'


@final
class SqliteWal:
    """A `RaftWal` on one SQLite file; see `storage.protocols.RaftWal` for the contract."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        # check_same_thread=False: the wal actor calls us from a worker thread
        # (trio.to_thread); it never calls from two threads at once.
        conn = sqlite3.connect(str(self.path), check_same_thread=False)
        self._db = sqlite_utils.Database(conn, execute_plugins=False)
        self._db.enable_wal()
        self._db.execute("PRAGMA synchronous=FULL")
        self._create_schema()
        self.fault_before_commit: Callable[[], None] | None = None
        """Test hook: called inside the save transaction, after all writes, before COMMIT."""
        self._saves = 0
        boot = self.load()
        self._hard_state = boot.hard_state
        self._snapshot = boot.snapshot_meta
        last = boot.entries[-1] if boot.entries else None
        self._last_index = last.index if last else boot.snapshot_meta.index
        self._last_term = last.term if last else boot.snapshot_meta.term

    def _create_schema(self) -> None:
        db = self._db
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise RuntimeError(
                f"{self.path}: WAL schema version {version}, expected {SCHEMA_VERSION}"
            )
        with db.atomic():
            db.table("entries").create(
                {"index": int, "term": int, "type": int, "data": bytes},
                pk="index", not_null={"term", "type", "data"}, if_not_exists=True,
            )
            db.table("hard_state").create(
                {"id": int, "term": int, "vote": int, "commit": int},
                pk="id", not_null={"term", "vote", "commit"}, if_not_exists=True,
            )
            db.table("snapshot_meta").create(
                {"id": int, "index": int, "term": int, "meta": bytes},
                pk="id", not_null={"index", "term", "meta"}, if_not_exists=True,
            )
            db.table("meta").create({"key": str, "value": str}, pk="key", if_not_exists=True)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # --- RaftWal ---------------------------------------------------------------

    def load(self) -> BootState:
        conn = self._db.conn
        row = conn.execute('SELECT term, vote, "commit" FROM hard_state WHERE id = 0').fetchone()
        hard_state = HardState(term=row[0], vote=row[1], commit=row[2]) if row else HardState()
        row = conn.execute('SELECT "index", term, meta FROM snapshot_meta WHERE id = 0').fetchone()
        snapshot = SnapshotMeta()
        if row is not None:
            snapshot = snapshot_meta_from_wire(loads(row[2]))
            assert (snapshot.index, snapshot.term) == (row[0], row[1]), "snapshot row disagrees"
        entries = tuple(
            Entry(index=i, term=t, type=EntryType(k), data=d)
            for i, t, k, d in conn.execute(
                'SELECT "index", term, type, data FROM entries ORDER BY "index"'
            )
        )
        boot = BootState(hard_state=hard_state, snapshot_meta=snapshot, entries=entries)
        check_boot_state(boot)
        return boot

    def save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot_meta: SnapshotMeta | None = None,
    ) -> None:
        plan = plan_save(
            stored_hard_state=self._hard_state,
            stored_snapshot=self._snapshot,
            stored_last_index=self._last_index,
            term_at=self._term_at,
            hard_state=hard_state,
            entries=entries,
            snapshot_meta=snapshot_meta,
        )
        with self._db.atomic():
            self._write(plan)
            if self.fault_before_commit is not None:
                self.fault_before_commit()
        # Only now, after COMMIT (and its fsync), do the caches move.
        self._snapshot = plan.snapshot_after
        self._hard_state = plan.hard_state_after
        self._last_index = plan.last_index_after
        self._last_term = plan.last_term_after
        self._saves += 1

    def _write(self, plan: SavePlan) -> None:
        conn = self._db.conn
        if plan.snapshot_meta is not None:
            m = plan.snapshot_meta
            conn.execute(_PUT_SNAPSHOT, (m.index, m.term, dumps(snapshot_meta_to_wire(m))))
            if plan.drop_all:
                conn.execute("DELETE FROM entries")
            else:
                conn.execute('DELETE FROM entries WHERE "index" <= ?', (m.index,))
        if plan.truncate_from is not None:
            conn.execute('DELETE FROM entries WHERE "index" >= ?', (plan.truncate_from,))
        if plan.append:
            conn.executemany(
                _INSERT_ENTRY, [(e.index, e.term, int(e.type), e.data) for e in plan.append]
            )
        if plan.hard_state is not None:
            hs = plan.hard_state
            conn.execute(_PUT_HARD_STATE, (hs.term, hs.vote, hs.commit))

    def compact(self, index: int) -> None:
        assert 0 <= index <= self._snapshot.index, (
            f"compact({index}) beyond snapshot {self._snapshot.index} would lose entries"
        )
        with self._db.atomic():
            self._db.conn.execute('DELETE FROM entries WHERE "index" <= ?', (index,))

    def first_index(self) -> int:
        return self._snapshot.index + 1

    def last_index(self) -> int:
        return self._last_index

    def get_meta(self, key: str) -> str | None:
        row = self._db.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        assert isinstance(key, str)
        assert isinstance(value, str)
        with self._db.atomic():
            self._db.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)
            )

    def statistics(self) -> WalStatistics:
        conn = self._db.conn
        count, payload = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM entries"
        ).fetchone()
        file_bytes = sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"))
            if p.exists()
        )
        return WalStatistics(
            entries=count,
            first_index=self.first_index(),
            last_index=self._last_index,
            entries_bytes=payload,
            file_bytes=file_bytes,
            saves=self._saves,
        )

    def close(self) -> None:
        self._db.close()

    # --- internals -------------------------------------------------------------

    def _term_at(self, index: int) -> int | None:
        """The append path only asks about the last index (cached); conflicts and
        snapshots pay one indexed lookup."""
        if index == self._last_index:
            return self._last_term
        if index == self._snapshot.index:
            return self._snapshot.term
        row = self._db.conn.execute(
            'SELECT term FROM entries WHERE "index" = ?', (index,)
        ).fetchone()
        return None if row is None else int(row[0])

"""Serves `etcdlite snapshot save`: a consistent copy of state.db, in bounded chunks.

The REQ/REP protocol carries one bounded frame per request, so a snapshot is
fetched in three steps (docs/protocol.md):

1. `snapshot_begin` {format?}: SQLite's online backup API copies state.db into
   a file under `<data-dir>/client-snapshots/` in a worker thread (one read
   transaction, so the copy is one applied state; applies go on meanwhile,
   WAL mode lets them). With `format: "etcd"` the copy is then rewritten as
   etcd's backend file (bbolt, storage/etcd_backend.py): what etcd's
   `Maintenance.Snapshot` streams and etcd's tools read. The reply names the
   transfer (`token`) and gives the file's `size`, `sha256` and `revision`.
2. `snapshot_chunk` {token, offset}: up to `chunk_bytes` of the copy from
   `offset`; the client asks for the next offset until it has `size` bytes and
   checks the sha256 itself.
3. `snapshot_end` {token}: delete the copy. A client that vanishes does not
   leak it: copies idle for `idle_timeout_s` are deleted, and at most
   `transfers_max` exist at a time (disk is the bounded resource here).
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import trio

from cluster.errors import BadRequestError, UnavailableError
from storage.etcd_backend import export_to_bolt
from storage.mvcc_schema import META_REVISION, read_meta

log = logging.getLogger("etcdlite.snapshot")

chunk_bytes = 4 * 1024 * 1024
"""Bytes per `snapshot_chunk` reply: big enough to amortise a round trip, far below
any frame limit."""

transfers_max = 2
"""Snapshot copies that may exist at once on one member."""

idle_timeout_s = 60.0
"""A copy nobody asked a chunk of for this long is deleted."""

_reap_interval_s = 5.0

FORMATS = ("etcdlite", "etcd")
"""Snapshot file formats: an etcdlite state.db, or etcd's bbolt backend file."""


@dataclass(frozen=True, slots=True)
class SnapshotCopy:
    path: Path
    size: int
    sha256: str
    revision: int


def copy_state_db(state_path: Path, dest: Path) -> SnapshotCopy:
    """Write a consistent, self-contained copy of a live state.db (blocking).

    A fresh read-only connection is used, never the store's own ones, so this
    may run in a worker thread while the member keeps applying and reading.
    """
    src = sqlite3.connect(f"file:{state_path}?mode=ro", uri=True, isolation_level=None)
    try:
        dst = sqlite3.connect(str(dest), isolation_level=None)
        try:
            src.backup(dst)  # one step: one read transaction, one consistent state
            dst.execute("PRAGMA journal_mode=DELETE")  # no -wal beside the copy
            revision = read_meta(dst)[META_REVISION]
        finally:
            dst.close()
    finally:
        src.close()
    return SnapshotCopy(dest, dest.stat().st_size, _sha256(dest), revision)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def copy_as_etcd_backend(state_path: Path, dest: Path) -> SnapshotCopy:
    """Like copy_state_db, but the file is etcd's backend (bbolt) image (blocking).

    The export reads the live state.db inside one read transaction (WAL mode: a
    consistent applied state while the member keeps applying), so no intermediate
    SQLite copy is written.
    """
    result = export_to_bolt(state_path, dest)
    return SnapshotCopy(dest, result.size, _sha256(dest), result.revision)


def _read_chunk(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


class SnapshotServer:
    def __init__(self, *, state_path: Path, work_dir: Path, header: Any) -> None:
        self._state_path = state_path
        self._work_dir = work_dir
        self._header = header
        self._copies: dict[str, SnapshotCopy] = {}
        self._last_used: dict[str, float] = {}
        self.snapshots_served = 0

    def register(self, server: Any) -> None:
        server.add_operation("snapshot_begin", self.begin)
        server.add_operation("snapshot_chunk", self.chunk)
        server.add_operation("snapshot_end", self.end)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> NoReturn:
        # Copies of a previous run of this member are nobody's any more.
        shutil.rmtree(self._work_dir, ignore_errors=True)
        self._work_dir.mkdir(parents=True, exist_ok=True)
        task_status.started()
        try:
            while True:
                await trio.sleep(_reap_interval_s)  # pacing, not synchronisation
                self._reap(trio.current_time())
        finally:
            for token in list(self._copies):
                self._drop(token)
        raise AssertionError("snapshot server should never complete")

    def _reap(self, now: float) -> None:
        for token, used in list(self._last_used.items()):
            if now - used > idle_timeout_s:
                log.info("snapshot transfer %s idle for %.0fs: copy deleted", token[:8],
                         now - used)
                self._drop(token)

    def _drop(self, token: str) -> None:
        copy = self._copies.pop(token, None)
        self._last_used.pop(token, None)
        if copy is not None:
            copy.path.unlink(missing_ok=True)

    def _copy(self, body: dict[str, Any]) -> tuple[str, SnapshotCopy]:
        token = body.get("token")
        if not isinstance(token, str):
            raise BadRequestError("snapshot: 'token' must be a string")
        copy = self._copies.get(token)
        if copy is None:
            raise BadRequestError("snapshot: unknown or expired token; start again")
        self._last_used[token] = trio.current_time()
        return token, copy

    async def begin(self, body: dict[str, Any]) -> dict[str, Any]:
        _only(body, {"format"}, "snapshot_begin")
        fmt = body.get("format", "etcdlite")
        if fmt not in FORMATS:
            raise BadRequestError(f"snapshot_begin: 'format' must be one of {list(FORMATS)}")
        self._reap(trio.current_time())
        if len(self._copies) >= transfers_max:
            raise UnavailableError(f"{transfers_max} snapshot transfers already in progress; "
                                   "try again later")
        token = secrets.token_hex(16)
        dest = self._work_dir / f"{token}.db"
        # Reserve the slot before the (slow) copy, so concurrent begins respect the bound.
        self._copies[token] = SnapshotCopy(dest, 0, "", 0)
        self._last_used[token] = trio.current_time()
        try:
            make = copy_state_db if fmt == "etcdlite" else copy_as_etcd_backend
            copy = await trio.to_thread.run_sync(make, self._state_path, dest)
        except BaseException:
            self._drop(token)
            raise
        self._copies[token] = copy
        self._last_used[token] = trio.current_time()
        self.snapshots_served += 1
        log.info("snapshot %s (%s): %d bytes at revision %d", token[:8], fmt, copy.size,
                 copy.revision)
        return {"header": self._header(), "token": token, "size": copy.size,
                "sha256": copy.sha256, "revision": copy.revision, "chunk_bytes": chunk_bytes}

    async def chunk(self, body: dict[str, Any]) -> dict[str, Any]:
        _only(body, {"token", "offset"}, "snapshot_chunk")
        _, copy = self._copy(body)
        offset = body.get("offset")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise BadRequestError("snapshot_chunk: 'offset' must be a non-negative integer")
        if offset > copy.size:
            raise BadRequestError(f"snapshot_chunk: offset {offset} beyond size {copy.size}")
        data = await trio.to_thread.run_sync(_read_chunk, copy.path, offset, chunk_bytes)
        return {"header": self._header(), "offset": offset, "data": data,
                "eof": offset + len(data) >= copy.size}

    async def end(self, body: dict[str, Any]) -> dict[str, Any]:
        _only(body, {"token"}, "snapshot_end")
        token, _ = self._copy(body)
        self._drop(token)
        return {"header": self._header()}


def _only(body: dict[str, Any], allowed: set[str], op: str) -> None:
    extra = set(body) - {"op", "v"} - allowed
    if extra:
        raise BadRequestError(f"{op}: unknown argument(s) {sorted(extra)}")


def work_dir_for(data_dir: Path) -> Path:
    return Path(os.fspath(data_dir)) / "client-snapshots"

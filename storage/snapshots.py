"""Snapshot files of the applied state: created, checksummed, listed, verified, purged.

A snapshot is a self-contained copy of state.db (SQLite backup API) taken at an
applied index, plus a sidecar holding its Raft position (index, term,
membership) and the SHA-256 of the file. The sidecar is written last, after
the data file is fsync'd, so a snapshot without a valid sidecar does not
exist. A file whose checksum does not match is refused, never loaded.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cluster import codec
from cluster.errors import EtcdliteError
from cluster.messages import ConfState, SnapshotMeta
from storage.mvcc import MvccStore

SNAPSHOTS_KEPT = 2
_CHUNK = 1 << 20


class CorruptSnapshotError(Exception):
    """A snapshot file does not match its recorded checksum or size."""


@dataclass(frozen=True, slots=True)
class SnapshotFile:
    meta: SnapshotMeta
    path: Path
    sha256: str
    size: int


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SnapshotStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.tmp"):
            stale.unlink()

    def _data_path(self, index: int) -> Path:
        return self.directory / f"snap-{index:016x}.db"

    def _meta_path(self, index: int) -> Path:
        return self.directory / f"snap-{index:016x}.meta"

    def create(self, mvcc: MvccStore, meta: SnapshotMeta) -> SnapshotFile:
        """Copy the store (which must be applied exactly to `meta.index`) into a snapshot."""
        assert mvcc.applied_index == meta.index, "snapshot must match the applied index"
        data = self._data_path(meta.index)
        mvcc.backup_to(data)
        return self._seal(data, meta)

    def capture(self, db_path: Path,
                position_of: Callable[[int], tuple[int, ConfState] | None]
                ) -> SnapshotFile | None:
        """Snapshot a LIVE state.db without stopping its writer (call from a worker thread).

        The copy runs inside one read transaction on a connection of its own, so it
        is exactly the state at the applied index it reads first, while the applier
        keeps applying. `position_of(index)` gives that index's term and membership
        (the applier records them per batch); None if it no longer knows them, and
        then no snapshot is taken this time.
        """
        src = sqlite3.connect(str(db_path), isolation_level=None, check_same_thread=False)
        try:
            src.execute("BEGIN")
            row = src.execute("SELECT value FROM meta WHERE name = 'applied_index'").fetchone()
            index = int(row[0])
            position = position_of(index)
            if position is None:
                return None
            data = self._data_path(index)
            tmp = data.with_name(data.name + ".tmp")
            tmp.unlink(missing_ok=True)
            dest = sqlite3.connect(str(tmp), isolation_level=None)
            try:
                src.backup(dest)
                dest.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            finally:
                dest.close()
            src.execute("COMMIT")
        finally:
            src.close()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, data)
        term, conf = position
        return self._seal(data, SnapshotMeta(index=index, term=term, conf=conf))

    def adopt(self, incoming: Path, meta: SnapshotMeta, sha256: str) -> SnapshotFile:
        """Take a received file as the snapshot at `meta.index` after checking its hash."""
        if file_sha256(incoming) != sha256:
            incoming.unlink(missing_ok=True)
            raise CorruptSnapshotError(f"received snapshot at {meta.index} fails its checksum")
        data = self._data_path(meta.index)
        os.replace(incoming, data)
        return self._seal(data, meta)

    def _seal(self, data: Path, meta: SnapshotMeta) -> SnapshotFile:
        digest = file_sha256(data)
        size = data.stat().st_size
        sidecar = self._meta_path(meta.index)
        tmp = sidecar.with_name(sidecar.name + ".tmp")
        tmp.write_bytes(codec.dumps({"meta": codec.snapshot_meta_to_wire(meta),
                                     "sha256": digest, "size": size}))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, sidecar)
        _fsync_dir(self.directory)
        self.purge()
        return SnapshotFile(meta, data, digest, size)

    def incoming_path(self, index: int) -> Path:
        return self.directory / f"incoming-{index:016x}.db.tmp"

    def list(self) -> list[SnapshotFile]:
        """Every sealed snapshot, oldest first (checksums not verified: see `verify`)."""
        out = []
        for sidecar in sorted(self.directory.glob("snap-*.meta")):
            try:
                body = codec.loads(sidecar.read_bytes())
                meta = codec.snapshot_meta_from_wire(body["meta"])
                data = self._data_path(meta.index)
                if data.exists():
                    out.append(SnapshotFile(meta, data, str(body["sha256"]), int(body["size"])))
            except (EtcdliteError, KeyError, ValueError, TypeError, OSError):
                # An unreadable sidecar means there is no snapshot there.
                continue
        return out

    def latest(self) -> SnapshotFile | None:
        snaps = self.list()
        return snaps[-1] if snaps else None

    def get(self, index: int) -> SnapshotFile | None:
        return next((s for s in self.list() if s.meta.index == index), None)

    @staticmethod
    def verify(snap: SnapshotFile) -> None:
        """Raise CorruptSnapshotError unless the file matches its sidecar."""
        if not snap.path.exists() or snap.path.stat().st_size != snap.size \
                or file_sha256(snap.path) != snap.sha256:
            raise CorruptSnapshotError(f"snapshot {snap.path} is corrupt")

    def purge(self, keep: int = SNAPSHOTS_KEPT) -> None:
        for snap in self.list()[:-keep]:
            self._meta_path(snap.meta.index).unlink(missing_ok=True)
            snap.path.unlink(missing_ok=True)

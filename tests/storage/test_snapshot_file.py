"""Offline snapshot work: status of a file, restore into a fresh member dir, refusals."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from actors.snapshot_server import copy_state_db
from cluster.client_maintenance import SnapshotBegin, SnapshotChunk, _Download
from cluster.config import MemberConfig, resolve_member_config
from cluster.errors import BadRequestError, InternalError
from cluster.kv import AlarmAction, AlarmRequest, AlarmType, PutRequest, RangeRequest
from cluster.snapshot_file import restore_snapshot, snapshot_status
from storage.alarms import AlarmReader
from storage.etcd_backend import export_to_bolt
from storage.mvcc import MvccStore
from storage.wal import SqliteWal
from tests.storage.mvcc_helpers import Feeder


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    """A snapshot of a store at revision 6 holding a NOSPACE alarm and one extra table row."""
    store = MvccStore(tmp_path / "live.db")
    feed = Feeder(store)
    for i in range(5):
        feed.one(PutRequest(b"k%d" % i, b"v"))
    feed.one(AlarmRequest(AlarmAction.ACTIVATE, 7, AlarmType.NOSPACE))
    copy = copy_state_db(store.path, tmp_path / "snap.db")
    store.close()
    assert copy.revision == 6
    return copy.path


def member_config(tmp_path: Path, name: str = "m2") -> MemberConfig:
    initial = ",".join(f"m{i}=tcp://127.0.0.1:{30000 + 10 * i}" for i in (1, 2, 3))
    return resolve_member_config(config_path=None, name=name, env={}, flags={
        "initial-cluster": initial, "initial-cluster-token": "t-restore",
        "data-dir": str(tmp_path / "new" / name)})


def test_status_reports_hash_revision_and_versions(snapshot: Path) -> None:
    st = snapshot_status(snapshot)
    assert (st.revision, st.total_keys, st.live_keys) == (6, 5, 5)
    assert st.total_size == snapshot.stat().st_size
    store = MvccStore(snapshot.with_name("other.db"))  # the same history hashes the same
    Feeder(store).batch(*(PutRequest(b"k%d" % i, b"v") for i in range(5)))
    assert store.hash_kv(6)[0] == st.hash
    store.close()


def test_restore_keeps_data_resets_raft_position_and_old_identity(snapshot: Path,
                                                                  tmp_path: Path) -> None:
    cfg = member_config(tmp_path)
    result = restore_snapshot(snapshot, cfg)
    assert (result.revision, result.member_id) == (6, cfg.me.member_id)
    store = MvccStore(cfg.data_dir / "state.db")
    try:
        assert (store.revision, store.applied_index) == (6, 0)
        assert Feeder(store).get(b"k4") is not None
    finally:
        store.close()
    reader = AlarmReader(cfg.data_dir / "state.db")
    assert reader.alarms() == ()
    reader.close()
    wal = SqliteWal(cfg.data_dir / "wal.db")
    try:
        assert wal.get_meta("member_id") == str(cfg.me.member_id)
        boot = wal.load()
        assert not boot.entries
        assert boot.hard_state.commit == 0
    finally:
        wal.close()
    assert snapshot_status(snapshot).revision == 6  # the snapshot itself is untouched


def test_restore_refuses_a_non_empty_dir_and_a_broken_file(snapshot: Path,
                                                           tmp_path: Path) -> None:
    cfg = member_config(tmp_path)
    cfg.data_dir.mkdir(parents=True)
    (cfg.data_dir / "wal.db").write_bytes(b"precious")
    with pytest.raises(BadRequestError, match="not empty"):
        restore_snapshot(snapshot, cfg)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    with pytest.raises(BadRequestError):
        restore_snapshot(junk, member_config(tmp_path, "m3"))
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(BadRequestError, match="not an etcdlite snapshot"):
        snapshot_status(other)
    assert not (tmp_path / "new" / "m3").exists()  # a failed restore leaves nothing


def test_status_and_restore_take_an_etcd_format_snapshot(snapshot: Path,
                                                         tmp_path: Path) -> None:
    """What `etcdctl snapshot save` writes (bbolt, then its sha256) seeds etcdlite too."""
    etcd_file = tmp_path / "etcd-format.db"
    export_to_bolt(snapshot, etcd_file)
    with open(etcd_file, "ab") as f:
        f.write(hashlib.sha256(etcd_file.read_bytes()).digest())
    st = snapshot_status(etcd_file)
    assert (st.revision, st.total_keys, st.live_keys) == (6, 5, 5)
    assert st.hash == snapshot_status(snapshot).hash  # the same history, the same hash
    cfg = member_config(tmp_path)
    assert restore_snapshot(etcd_file, cfg).revision == 6
    store = MvccStore(cfg.data_dir / "state.db")
    try:
        assert [kv.key for kv in store.range(RangeRequest(b"k", b"l")).kvs] == [
            b"k%d" % i for i in range(5)]
    finally:
        store.close()
    damaged = bytearray(etcd_file.read_bytes())
    damaged[5 * 4096:] = bytes(len(damaged) - 5 * 4096)  # zero every page after the fifth
    (tmp_path / "damaged.db").write_bytes(bytes(damaged))
    with pytest.raises(BadRequestError, match="not a usable etcd snapshot"):
        restore_snapshot(tmp_path / "damaged.db", member_config(tmp_path, "m3"))
    assert not (tmp_path / "new" / "m3").exists()


def test_download_refuses_a_checksum_mismatch_and_leaves_no_file(tmp_path: Path) -> None:
    begin = SnapshotBegin("ipc://x", "tok", 4, "0" * 64, 9)
    download = _Download(tmp_path / "s.db", begin)
    download.write(SnapshotChunk(0, b"data", True))
    with pytest.raises(InternalError, match="corrupt"):
        download.finish()
    assert list(tmp_path.iterdir()) == []


def test_download_refuses_out_of_order_chunks(tmp_path: Path) -> None:
    download = _Download(tmp_path / "s.db", SnapshotBegin("ipc://x", "tok", 8, "", 1))
    with pytest.raises(InternalError, match="expected one at 0"):
        download.write(SnapshotChunk(4, b"data", True))
    download.abort()

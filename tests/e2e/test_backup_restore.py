"""Snapshot save from a running cluster, restore into a new cluster; auto compaction."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner, Result

from cluster.cli import cli
from cluster.config import dump_toml, local_cluster_ipc
from cluster.errors import CompactedError
from cluster.snapshot_file import snapshot_status
from tests.e2e.harness import ProcessCluster, wait_until

pytestmark = pytest.mark.e2e


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_snapshot_restored_into_a_new_cluster_keeps_keys_and_revision(make_cluster) -> None:
    old = make_cluster(3)
    old.wait_for_leader(15)
    with old.client() as c:
        for i in range(200):
            c.put(f"key/{i:03d}", f"value-{i}")
        c.delete("key/00", prefix=True)
        lease = c.lease_grant(300).id
        c.put("leased", "yes", lease=lease)
        revision = c.get("leased").header.revision
    snap = old.root / "backup.db"
    saved = run_cli("--endpoints", old.endpoint(old.names[0]), "snapshot", "save", str(snap))
    assert saved.exit_code == 0, saved.output
    assert f"revision {revision}" in saved.stdout
    status = json.loads(run_cli("-w", "json", "snapshot", "status", str(snap)).stdout)
    assert status["revision"] == revision
    assert status["totalKey"] == 200 + 10 + 1  # versions: puts, 10 tombstones, "leased"
    etcd_format = old.root / "backup-etcd.db"
    saved = run_cli("--endpoints", old.endpoint(old.names[0]), "snapshot", "save",
                    "--format", "etcd", str(etcd_format))
    assert saved.exit_code == 0, saved.output
    assert etcd_format.read_bytes()[16:20] == (0xED0CDAED).to_bytes(4, "little")  # bbolt
    assert json.loads(run_cli("-w", "json", "snapshot", "status", str(etcd_format)).stdout
                      ) == {**status, "totalSize": etcd_format.stat().st_size}

    new = make_cluster(3, start=False)
    new.config = dataclasses.replace(local_cluster_ipc(3, new.root, token="restored-1"),
                                     data_dir=new.root / "data")
    new.config_path.write_text(dump_toml(new.config))
    initial = ",".join(f"{m.name}={m.peer_url}" for m in new.config.members)
    for m in new.config.members:
        restored = run_cli("snapshot", "restore", str(snap), "--name", m.name,
                           "--data-dir", str(new.config.data_dir / m.name),
                           "--initial-cluster", initial,
                           "--initial-cluster-token", "restored-1")
        assert restored.exit_code == 0, restored.output
        assert f"revision {revision}" in restored.stdout
    again = run_cli("snapshot", "restore", str(snap), "--name", "m1", "--data-dir",
                    str(new.config.data_dir / "m1"), "--initial-cluster", initial)
    assert again.exit_code == 1
    assert "not empty" in again.stderr
    new.start_all()
    new.wait_for_leader(15)
    with new.client() as c:
        members = c.member_list().members
        assert {m.id for m in members} == {m.member_id for m in new.config.members}
        got = c.get("key/", prefix=True)
        assert got.count == 190
        assert got.header.revision == revision
        assert got.kvs[0].key == b"key/010"
        assert c.get("leased").kvs[0].lease == lease
        assert c.lease_timetolive(lease).granted_ttl == 300
        assert c.put("fresh", "write").header.revision == revision + 1
        for name in new.names:
            wait_until(lambda n=name: new.status(n).revision == revision + 1, 5,
                       f"{name} to apply the new write")
            assert c.hash_kv(new.endpoint(name), revision).hash == status["hash"]
    assert new.status(new.names[0]).header.cluster_id != old.status(old.names[0]).header.cluster_id


def test_snapshot_status_counts_versions_and_refuses_non_snapshots(make_cluster, tmp_path
                                                                     ) -> None:
    pc = make_cluster(3)
    pc.wait_for_leader(15)
    with pc.client() as c:
        for i in range(10):
            c.put("k", f"v{i}")
        c.delete("k")
        info = c.snapshot_save(tmp_path / "s.db")
    st = snapshot_status(info.path)
    assert (st.revision, st.total_keys, st.live_keys) == (info.revision, 11, 0)
    table = run_cli("-w", "table", "snapshot", "status", str(info.path)).stdout
    for column in ("HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"):
        assert column in table
    (tmp_path / "junk.db").write_bytes(b"not a database at all")
    refused = run_cli("snapshot", "status", str(tmp_path / "junk.db"))
    assert refused.exit_code == 1
    assert "not a snapshot" in refused.stderr


def test_revision_auto_compaction_keeps_the_last_n_revisions(make_cluster, monkeypatch) -> None:
    monkeypatch.setenv("ETCDLITE_AUTO_COMPACTION_INTERVAL_S", "0.3")
    pc: ProcessCluster = make_cluster(3, auto_compaction_mode="revision",
                                      auto_compaction_retention="10")
    pc.wait_for_leader(15)
    with pc.client() as c:
        for i in range(40):
            c.put("key", f"v{i}")
        revision = c.get("key").header.revision
        for name in pc.names:
            wait_until(lambda n=name: pc.status(n).compact_revision == revision - 10, 8,
                       f"{name} to be auto compacted to {revision - 10}")
        with pytest.raises(CompactedError):
            c.get("key", revision=revision - 11)
        assert c.get("key", revision=revision - 10).kvs[0].value == b"v29"


def test_periodic_auto_compaction_keeps_the_retention_window(make_cluster) -> None:
    pc: ProcessCluster = make_cluster(3, auto_compaction_mode="periodic",
                                      auto_compaction_retention="2s")
    pc.wait_for_leader(15)
    with pc.client() as c:
        first = c.put("key", "first").header.revision
        wait_until(lambda: pc.status(pc.leader() or pc.names[0]).compact_revision >= first,
                   10, "a periodic compaction")
        recent = c.put("key", "recent").header.revision
        compacted = max(pc.status(n).compact_revision for n in pc.names)
        assert first <= compacted < recent  # younger than the retention: kept
        assert c.get("key", revision=recent).kvs[0].value == b"recent"

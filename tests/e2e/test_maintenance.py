"""Maintenance on real clusters: quota + NOSPACE alarm, defrag, status, hash_kv, health, CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result

from cluster.alarm_types import AlarmType
from cluster.cli import cli
from cluster.client import Client, Op
from cluster.errors import CompactedError, EtcdliteError, NoSpaceError
from tests.e2e.harness import ProcessCluster, wait_until

pytestmark = pytest.mark.e2e

QUOTA = 256 * 1024


def etcdlite(pc: ProcessCluster, *args: str, names: list[str] | None = None) -> Result:
    endpoints = ",".join(pc.endpoint(n) for n in (names or pc.names))
    return CliRunner().invoke(cli, ["--endpoints", endpoints, *args], catch_exceptions=False)


def fill_until_no_space(c: Client) -> int:
    for i in range(5000):
        try:
            c.put(f"fill/{i:05d}", "x" * 1024)
        except NoSpaceError:
            return i
    raise AssertionError("the quota was never hit")


def test_nospace_alarm_caps_writes_until_compact_defrag_disarm(make_cluster) -> None:
    pc = make_cluster(3, quota_backend_bytes=QUOTA)
    pc.wait_for_leader(15)
    with pc.client() as c:
        lease = c.lease_grant(60).id
        c.put("keep", "me", lease=lease)
        written = fill_until_no_space(c)
        assert written > 10
        # The alarm travels through the log: every member records it and refuses growth.
        for name in pc.names:
            wait_until(lambda n=name: pc.status(n).errors, 5, f"{name} to report the alarm")
        alarms = c.alarm_list().alarms
        assert {a.alarm for a in alarms} == {AlarmType.NOSPACE}
        for name in pc.names:
            with pc.client([name]) as one:
                with pytest.raises(NoSpaceError, match="database space exceeded"):
                    one.put("more", "data")
                with pytest.raises(NoSpaceError):
                    one.txn([], [Op.delete("fill/00000"), Op.put("x", "y")], [])
                with pytest.raises(NoSpaceError):
                    one.lease_grant(30)
                assert one.get("keep").kvs[0].value == b"me"  # reads still work
                health = one.health(pc.endpoint(name))
                assert not health.health
                assert "alarm NOSPACE" in health.reason
        unhealthy = etcdlite(pc, "endpoint", "health")
        assert unhealthy.exit_code == 1
        assert "is unhealthy: failed to commit proposal: alarm NOSPACE" in unhealthy.stderr
        listed = etcdlite(pc, "alarm", "list")
        assert "alarm:NOSPACE" in listed.stdout

        # The alarm is applied state: it survives a restart of a member.
        pc.stop(pc.names[0])
        pc.start(pc.names[0])
        wait_until(lambda: pc.status(pc.names[0]).errors, 10, "the alarm after a restart")

        # Free space: deletes, compaction and lease revoke are allowed under NOSPACE.
        deleted = c.delete("fill/", prefix=True)
        assert deleted.deleted == written
        c.lease_revoke(lease)
        revision = c.get("keep").header.revision
        c.compact(revision, physical=True)
        for name in pc.names:  # the restarted member may still be catching up
            wait_until(lambda n=name: pc.status(n).compact_revision == revision, 5,
                       f"{name} to apply the compaction")
        defrag = etcdlite(pc, "defrag")
        assert defrag.exit_code == 0, defrag.output
        assert defrag.stdout.count("Finished defragmenting etcd member[") == 3
        for name in pc.names:
            st = pc.status(name)
            assert st.db_size < QUOTA
            assert st.db_size_in_use <= st.db_size
        with pytest.raises(NoSpaceError):
            c.put("still", "alarmed")  # freeing space does not clear the alarm by itself
        disarm = etcdlite(pc, "alarm", "disarm")
        assert disarm.exit_code == 0
        assert "alarm:NOSPACE" in disarm.stdout
        assert c.alarm_list().alarms == ()
        c.put("after", "disarm")
        assert c.get("after").kvs[0].value == b"disarm"
        healthy = etcdlite(pc, "endpoint", "health")
        assert healthy.exit_code == 0, healthy.output
        assert healthy.stdout.count("is healthy: successfully committed proposal: took = ") == 3


def test_hash_kv_agrees_across_members_and_status_reports_sizes(make_cluster) -> None:
    pc = make_cluster(3)
    pc.wait_for_leader(15)
    with pc.client() as c:
        for i in range(300):
            c.put(f"k/{i % 50:02d}", f"v{i}")
        c.delete("k/1", prefix=True)
        middle = c.get("k/00").header.revision
        for i in range(100):
            c.put(f"j/{i}", "x" * 200)
        c.compact(middle - 100)
        revision = c.put("last", "one").header.revision
        # Members apply at their own pace: hash each at one explicit revision.
        hashes = {}
        for name in pc.names:
            wait_until(lambda n=name: pc.status(n).revision >= revision, 5, f"{name} caught up")
            h = c.hash_kv(pc.endpoint(name), revision)
            assert (h.hash_revision, h.compact_revision) == (revision, middle - 100)
            hashes[name] = h.hash
        assert len(set(hashes.values())) == 1, hashes
        older = {c.hash_kv(pc.endpoint(n), middle).hash for n in pc.names}
        assert len(older) == 1
        assert older != set(hashes.values())
        with pytest.raises(CompactedError):
            c.hash_kv(pc.endpoint(pc.names[0]), middle - 150)

        table = etcdlite(pc, "-w", "table", "endpoint", "hashkv", "--rev", str(revision))
        assert table.exit_code == 0
        assert str(hashes[pc.names[0]]) in table.stdout
        statuses = json.loads(etcdlite(pc, "-w", "json", "endpoint", "status").stdout)
        for s in statuses:
            st = s["Status"]
            assert st["version"]
            assert st["leader"]
            assert st["raftTerm"] >= 1
            assert st["raftAppliedIndex"] >= 1
            assert st["errors"] == []
            assert 0 < st["dbSizeInUse"] <= st["dbSize"]

        c.delete("j/", prefix=True)
        c.compact(c.get("last").header.revision)
        name = pc.names[1]
        before = pc.status(name)
        result = c.defragment(pc.endpoint(name))
        assert result.db_size < result.db_size_before == before.db_size
        assert pc.status(name).db_size == result.db_size
        c.put("works", "after defrag")  # the member applies again
        with pc.client([name]) as one:
            assert one.get("works").kvs[0].value == b"after defrag"


def test_compaction_reply_comes_after_this_member_applied_it(make_cluster) -> None:
    pc = make_cluster(3)
    pc.wait_for_leader(15)
    follower = next(n for n in pc.names if n != pc.leader())
    with pc.client([follower]) as c:
        for i in range(20):
            c.put("key", f"v{i}")
        revision = c.get("key").header.revision
        c.compact(revision - 5, physical=True)
        # Physical: the member that answered has applied the compaction already.
        assert pc.status(follower).compact_revision == revision - 5
        with pytest.raises(CompactedError):
            c.get("key", revision=revision - 6)
        assert c.get("key", revision=revision - 5).kvs[0].value == b"v14"
        compacted = etcdlite(pc, "get", "key", "--rev", "3", names=[follower])
        assert compacted.exit_code == 1
        assert "compacted" in compacted.stderr
        with pytest.raises(EtcdliteError):
            c.compact(revision - 5)  # already compacted

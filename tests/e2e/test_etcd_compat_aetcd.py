"""The `aetcd` asyncio client (PyPI, 1.x), unchanged, against etcdlite's gRPC endpoints.

aetcd ships its own generated etcdserverpb/mvccpb modules, and importing them next
to etcdlite's cluster/etcdpb fails ("duplicate symbol 'mvccpb.KeyValue'" in
protobuf's default descriptor pool). aetcd is also asyncio-only, while the
project's async tests run under pytest-trio. So each scenario runs in a
subprocess as `asyncio.run(...)`, with one client `c` on one member and one
client `other` on another member. It prints what it saw as JSON, and the test
checks that against etcd's semantics.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.etcd_tools import etcd_cluster
from tests.e2e.harness import ProcessCluster

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(importlib.util.find_spec("aetcd") is None,
                       reason="the aetcd client is not installed (pip install aetcd)"),
]

SCRIPT_TIMEOUT_S = 90

PRELUDE = """
import asyncio, json, sys
import aetcd
from aetcd.rtypes import EventKind

EVENT_TIMEOUT_S = 15

async def next_event(watch_iter):
    return await asyncio.wait_for(watch_iter.__anext__(), EVENT_TIMEOUT_S)

def event(e):
    # aetcd passes prev_kv through only if the watch asked for it (else None); an
    # unset one then reads as an empty KeyValue, as with etcd on a create.
    prev = None if e.prev_kv is None else [e.prev_kv.key.decode(), e.prev_kv.value.decode()]
    return [e.kind, e.kv.key.decode(), e.kv.value.decode(), e.kv.mod_revision, prev]

async def main(out):
    host = sys.argv[1]
    async with aetcd.Client(host=host, port=int(sys.argv[2]), timeout=10) as c, \\
               aetcd.Client(host=host, port=int(sys.argv[3]), timeout=10) as other:
"""

EPILOGUE = """
out = {}
try:
    asyncio.run(main(out))
finally:
    print(json.dumps(out))  # on a failure too: what was seen before it
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[ProcessCluster]:
    yield from etcd_cluster(3)


def run_aetcd(pc: ProcessCluster, body: str, names: tuple[str, str] = ("m1", "m2")
              ) -> dict[str, Any]:
    """Run `body` (the inside of `main(out)`, with clients `c` on names[0] and `other`
    on names[1]) in a fresh interpreter; returns the `out` dict it filled."""
    script = PRELUDE + textwrap.indent(textwrap.dedent(body), " " * 8) + EPILOGUE
    host, port = pc.etcd_endpoint(names[0]).rsplit(":", 1)
    other_port = pc.etcd_endpoint(names[1]).rsplit(":", 1)[1]
    done = subprocess.run([sys.executable, "-c", script, host, port, other_port],
                          capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S,
                          check=False)
    assert done.returncode == 0, f"{done.stderr}\nseen before the failure: {done.stdout}"
    out: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return out


def followers(pc: ProcessCluster) -> tuple[str, str]:
    leader = pc.wait_for_leader()
    first, second = (n for n in pc.names if n != leader)
    return first, second


def test_put_get_prefix_delete_carry_values_versions_and_revisions(
        cluster: ProcessCluster) -> None:
    out = run_aetcd(cluster, """
        first = await c.put(b"kv/k", b"v1")
        got = await c.get(b"kv/k")
        out["get1"] = [got.value.decode(), got.version, got.create_revision,
                       got.mod_revision, got.lease, got.header.revision]
        out["put1"] = first.header.revision
        second = await other.put(b"kv/k", b"v2", prev_kv=True)
        out["put2"] = [second.header.revision, second.prev_kv.value.decode(),
                       second.prev_kv.version]
        got = await c.get(b"kv/k")
        out["get2"] = [got.value.decode(), got.version, got.create_revision,
                       got.mod_revision, got.header.revision]
        h = got.header
        out["header"] = [h.cluster_id, h.member_id, h.raft_term]
        out["serializable"] = (await other.get(b"kv/k", serializable=True)).value.decode()
        out["missing"] = await c.get(b"kv/none") is None

        for key, value in ((b"kv/p/b", b"2"), (b"kv/p/a", b"1"), (b"kv/p/c", b"3")):
            await other.put(key, value)
        prefix = await c.get_prefix(b"kv/p/")
        out["prefix"] = [[kv.key.decode(), kv.value.decode(), kv.version] for kv in prefix]
        out["prefix_meta"] = [prefix.count, prefix.more, len(prefix)]
        desc = await c.get_prefix(b"kv/p/", sort_order="descend", keys_only=True)
        out["desc"] = [[kv.key.decode(), kv.value.decode()] for kv in desc]
        ranged = await c.get_range(b"kv/p/a", b"kv/p/c")  # [start, end)
        out["range"] = [kv.key.decode() for kv in ranged]

        gone = await c.delete(b"kv/p/a", prev_kv=True)
        out["delete"] = [gone.deleted, gone.prev_kv.key.decode(), gone.prev_kv.value.decode(),
                         gone.header.revision]
        out["delete_again"] = await c.delete(b"kv/p/a") is None
        dropped = await other.delete_prefix(b"kv/p/", prev_kv=True)
        out["delete_prefix"] = [dropped.deleted, sorted(kv.key.decode() for kv in dropped)]
        out["after"] = [bool(await c.get_prefix(b"kv/p/")), (await c.get_prefix(b"kv/p/")).count]
        recreated = await c.put(b"kv/k", b"v3")
        await c.delete(b"kv/k")
        await c.put(b"kv/k", b"v4")
        got = await c.get(b"kv/k")
        out["recreated"] = [got.version, got.create_revision, recreated.header.revision]
    """)
    value, version, create_rev, mod_rev, lease, header_rev = out["get1"]
    assert (value, version, lease) == ("v1", 1, 0)
    assert create_rev == mod_rev == out["put1"] == header_rev
    put2_rev, prev_value, prev_version = out["put2"]
    assert (prev_value, prev_version) == ("v1", 1)
    assert put2_rev > out["put1"]
    assert out["get2"] == ["v2", 2, create_rev, put2_rev, put2_rev]
    cluster_id, member_id, raft_term = out["header"]
    assert cluster_id == cluster.config.cluster_id
    assert member_id == cluster.member_id("m1")  # the member that answered
    assert raft_term >= 1
    assert out["serializable"] == "v2"
    assert out["missing"] is True

    assert out["prefix"] == [["kv/p/a", "1", 1], ["kv/p/b", "2", 1], ["kv/p/c", "3", 1]]
    assert out["prefix_meta"] == [3, False, 3]
    assert out["desc"] == [["kv/p/c", ""], ["kv/p/b", ""], ["kv/p/a", ""]]
    assert out["range"] == ["kv/p/a", "kv/p/b"]
    deleted, prev_key, prev_val, delete_rev = out["delete"]
    assert (deleted, prev_key, prev_val) == (1, "kv/p/a", "1")
    assert delete_rev > put2_rev
    assert out["delete_again"] is True
    assert out["delete_prefix"] == [2, ["kv/p/b", "kv/p/c"]]
    assert out["after"] == [False, 0]
    # A delete resets the version; the key's next put starts a new generation.
    version, new_create_rev, put3_rev = out["recreated"]
    assert version == 1
    assert new_create_rev > put3_rev > delete_rev


def test_txn_takes_the_branch_its_compares_choose(cluster: ProcessCluster) -> None:
    out = run_aetcd(cluster, """
        t = c.transactions
        created = await c.put(b"tx/k", b"v1")
        rev = created.header.revision
        ok, responses = await c.transaction(
            compare=[t.value(b"tx/k") == b"v1", t.version(b"tx/k") == 1,
                     t.mod(b"tx/k") == rev, t.create(b"tx/missing") == 0],
            success=[t.put(b"tx/k", b"v2"), t.get(b"tx/k")],
            failure=[t.put(b"tx/k", b"wrong")])
        put_response = responses[0].response_put
        ((value, got),) = responses[1]
        out["success"] = [ok, put_response.header.revision, value.decode(), got.version,
                          got.mod_revision]
        ok, responses = await other.transaction(
            compare=[t.value(b"tx/k") == b"v1"],
            success=[t.put(b"tx/k", b"wrong")],
            failure=[t.put(b"tx/k", b"failed"), t.get(b"tx/k"), t.delete(b"tx/none")])
        out["failure"] = [ok, responses[1][0][0].decode(),
                          responses[2].response_delete_range.deleted]
        ok, _ = await c.transaction(compare=[t.version(b"tx/k") > 5],
                                    success=[t.put(b"tx/k", b"wrong")], failure=[])
        out["greater"] = ok
        ok, _ = await c.transaction(compare=[t.mod(b"tx/k") < rev],
                                    success=[t.put(b"tx/k", b"wrong")], failure=[])
        out["less"] = ok
        ok, _ = await c.transaction(compare=[t.value(b"tx/k") != b"v1"],
                                    success=[t.delete(b"tx/k")], failure=[])
        out["not_equal"] = [ok, await c.get(b"tx/k") is None]
        out["replace"] = [await c.replace(b"tx/r", b"x", b"y"),
                          (await c.put(b"tx/r", b"x")) is not None,
                          await c.replace(b"tx/r", b"x", b"y"),
                          (await other.get(b"tx/r")).value.decode()]
    """)
    ok, put_rev, value, version, mod_rev = out["success"]
    assert ok is True
    # The get inside the txn sees the put before it, at the txn's one revision.
    assert (value, version) == ("v2", 2)
    assert mod_rev == put_rev
    ok, value, deleted = out["failure"]
    assert (ok, value, deleted) == (False, "failed", 0)
    assert out["greater"] is False
    assert out["less"] is False
    assert out["not_equal"] == [True, True]
    assert out["replace"] == [False, True, True, "y"]


def test_lease_grant_attach_ttl_keys_refresh_revoke_and_expire(cluster: ProcessCluster) -> None:
    out = run_aetcd(cluster, """
        lease = await c.lease(60)
        out["granted"] = [lease.id > 0, lease.ttl]
        await other.put(b"ls/a", b"x", lease=lease)
        await c.put(b"ls/b", b"y", lease=lease.id)
        out["attached"] = (await c.get(b"ls/a")).lease == lease.id
        out["keys"] = sorted(k.decode() for k in await lease.keys())
        out["granted_ttl"] = await lease.granted_ttl()
        out["remaining_ttl"] = await lease.remaining_ttl()
        refreshed = await lease.refresh()
        out["refresh"] = [refreshed.ID == lease.id, refreshed.TTL]
        await lease.revoke()
        out["after_revoke"] = [await c.get(b"ls/a") is None, await other.get(b"ls/b") is None]
        out["info_after_revoke"] = (await c.get_lease_info(lease.id)).TTL
        out["refresh_after_revoke"] = (await lease.refresh()).TTL
        try:
            await c.revoke_lease(lease.id)
            out["revoke_again"] = "no error"
        except aetcd.ClientError as exc:
            out["revoke_again"] = str(exc)

        chosen = await c.lease(30, lease_id=0x5EED)
        out["chosen_id"] = chosen.id
        try:
            await other.lease(30, lease_id=0x5EED)
            out["duplicate"] = "no error"
        except aetcd.DuplicateLeaseError:
            out["duplicate"] = "DuplicateLeaseError"
        await chosen.revoke()

        short = await c.lease(1)  # etcdlite raises it to its minimum TTL, as etcd does
        put = await c.put(b"ls/short", b"z", lease=short)
        watch = await other.watch(b"ls/short", start_revision=put.header.revision + 1)
        expired = await next_event(watch.__aiter__())
        await watch.cancel()
        out["short_ttl"] = short.ttl
        out["expired"] = [expired.kind, expired.kv.key.decode(),
                          await c.get(b"ls/short") is None]
    """)
    assert out["granted"] == [True, 60]
    assert out["attached"] is True
    assert out["keys"] == ["ls/a", "ls/b"]
    assert out["granted_ttl"] == 60
    assert 0 < out["remaining_ttl"] <= 60
    assert out["refresh"] == [True, 60]
    assert out["after_revoke"] == [True, True]
    assert out["info_after_revoke"] == -1  # etcd's TimeToLive of a lease that is gone
    assert out["refresh_after_revoke"] == 0  # etcd answers a keepalive of one with TTL 0
    assert "requested lease not found" in out["revoke_again"]
    assert out["chosen_id"] == 0x5EED
    assert out["duplicate"] == "DuplicateLeaseError"
    assert out["short_ttl"] >= 1
    assert out["expired"] == ["DELETE", "ls/short", True]


def test_watch_sees_puts_and_deletes_written_through_another_member(
        cluster: ProcessCluster) -> None:
    watcher, writer = followers(cluster)
    out = run_aetcd(cluster, """
        watch = await c.watch_prefix(b"wt/", prev_kv=True)
        deletes = await c.watch_prefix(b"wt/", kind=EventKind.DELETE)
        events = watch.__aiter__()
        put1 = await other.put(b"wt/k", b"seen")
        put2 = await other.put(b"wt/k", b"again")
        gone = await other.delete(b"wt/k")
        out["revs"] = [put1.header.revision, put2.header.revision, gone.header.revision]
        out["events"] = [event(await next_event(events)) for _ in range(3)]
        out["deletes_only"] = event(await next_event(deletes.__aiter__()))
        await watch.cancel()
        await deletes.cancel()

        # History: a watch from an old revision replays what happened since.
        replay = await c.watch(b"wt/k", start_revision=put1.header.revision)
        history = replay.__aiter__()
        out["replay"] = [event(await next_event(history)) for _ in range(3)]
        await replay.cancel()
        out["once"] = event(await c.watch_once(b"wt/k", timeout=10,
                                               start_revision=put2.header.revision))
        try:
            await c.watch_once(b"wt/quiet", timeout=1)
            out["quiet"] = "an event"
        except aetcd.WatchTimeoutError:
            out["quiet"] = "WatchTimeoutError"
    """, names=(watcher, writer))
    put1, put2, delete = out["revs"]
    assert put1 < put2 < delete
    # etcd sends no prev_kv for a create, the previous pair for the rest.
    assert out["events"] == [["PUT", "wt/k", "seen", put1, ["", ""]],
                             ["PUT", "wt/k", "again", put2, ["wt/k", "seen"]],
                             ["DELETE", "wt/k", "", delete, ["wt/k", "again"]]]
    assert out["deletes_only"] == ["DELETE", "wt/k", "", delete, None]
    assert out["replay"] == [["PUT", "wt/k", "seen", put1, None],
                             ["PUT", "wt/k", "again", put2, None],
                             ["DELETE", "wt/k", "", delete, None]]
    assert out["once"] == ["PUT", "wt/k", "again", put2, None]
    assert out["quiet"] == "WatchTimeoutError"


def test_watch_from_a_compacted_revision_raises_revision_compacted(
        cluster: ProcessCluster) -> None:
    out = run_aetcd(cluster, """
        old = (await c.put(b"cp/k", b"1")).header.revision
        now = (await c.put(b"cp/k", b"2")).header.revision
        await other.compact(now)
        watch = await c.watch(b"cp/k", start_revision=old)
        try:
            await next_event(watch.__aiter__())
            out["watch"] = "an event"
        except aetcd.RevisionCompactedError as exc:
            out["watch"] = ["RevisionCompactedError", exc.compacted_revision]
        out["compacted"] = now
        out["latest"] = (await c.get(b"cp/k")).value.decode()
    """)
    assert out["watch"] == ["RevisionCompactedError", out["compacted"]]
    assert out["latest"] == "2"


def test_lock_is_exclusive_across_members(cluster: ProcessCluster) -> None:
    out = run_aetcd(cluster, """
        first = c.lock(b"lk/res", ttl=30)
        second = other.lock(b"lk/res", ttl=30)
        out["first"] = await first.acquire(timeout=5)
        out["second_while_held"] = await second.acquire(timeout=1)
        waiting = asyncio.create_task(second.acquire(timeout=15))
        await asyncio.sleep(0.5)
        out["waiting_done_early"] = waiting.done()
        out["released"] = await first.release()
        out["second_after_release"] = await waiting
        out["held"] = [await first.is_acquired(), await second.is_acquired()]
        out["released_second"] = await second.release()
    """)
    assert out["first"] is True
    assert out["second_while_held"] is False
    assert out["waiting_done_early"] is False
    assert out["released"] is True
    assert out["second_after_release"] is True
    assert out["held"] == [False, True]
    assert out["released_second"] is True


def test_status_and_members_describe_the_cluster(cluster: ProcessCluster) -> None:
    out = run_aetcd(cluster, """
        status = await c.status()
        out["status"] = [status.version, status.leader.name if status.leader else None,
                         status.db_size > 0, status.raft_index > 0, status.raft_term > 0]
        out["members"] = sorted([[m.name, m.id, list(m.client_urls)] async for m in c.members()])
        out["alarms"] = [a.alarm_type async for a in c.list_alarms()]
    """)
    leader = cluster.wait_for_leader()
    assert out["status"] == ["3.4.0", leader, True, True, True]
    assert out["members"] == sorted(
        [n, cluster.member_id(n), [f"http://{cluster.etcd_endpoint(n)}"]] for n in cluster.names)
    assert out["alarms"] == []

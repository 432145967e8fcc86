"""Snapshots in real processes: periodic snapshot, log truncation, catch-up by InstallSnapshot."""

from __future__ import annotations

import sqlite3
import time

import pytest
import trio

from cluster.client import AsyncClient
from tests.e2e.harness import ProcessCluster, wait_until

pytestmark = pytest.mark.e2e


def wal_entries(pc: ProcessCluster, name: str) -> int:
    conn = sqlite3.connect(pc.config.data_dir / name / "wal.db")
    try:
        return int(conn.execute("SELECT count(*) FROM entries").fetchone()[0])
    finally:
        conn.close()


def put_many(pc: ProcessCluster, names: list[str], start: int, count: int) -> None:
    """Write `count` keys with 16 writers in flight (each write still one Raft entry)."""
    endpoints = [pc.endpoint(n) for n in names]

    async def main() -> None:
        async with AsyncClient(endpoints, timeout_s=10) as c:
            async def writer(first: int) -> None:
                for i in range(first, start + count, 16):
                    await c.put(f"snap/{i:05d}", f"v{i}")
            async with trio.open_nursery() as nursery:
                for w in range(16):
                    nursery.start_soon(writer, start + w)

    trio.run(main)


def test_lagging_follower_catches_up_by_snapshot_and_wal_stays_bounded(make_cluster) -> None:
    pc = make_cluster(3, snapshot_count=100)
    leader = pc.wait_for_leader(15)
    put_many(pc, [leader], 0, 1000)
    follower = next(n for n in pc.names if n != leader)
    pc.kill(follower)
    survivors = [n for n in pc.names if n != follower]
    put_many(pc, survivors, 1000, 1000)

    started = time.monotonic()
    pc.start(follower)

    def caught_up() -> bool:
        with pc.client([follower]) as c:
            return c.get("snap/", prefix=True, count_only=True, serializable=True).count == 2000
    wait_until(caught_up, 30, "the restarted follower to hold all 2,000 keys")
    print(f"catch-up of a follower 1,000 entries behind: {time.monotonic() - started:.2f}s")
    with pc.client([follower]) as c:
        r = c.get("snap/", prefix=True, serializable=True)
    assert {kv.key_str: kv.value_str for kv in r.kvs} == {
        f"snap/{i:05d}": f"v{i}" for i in range(2000)}
    # The restarted follower may be served by appends the leader queued while it was
    # down; a member that joins now has no log at all and can only get a snapshot.
    spec = pc.add_member_spec("m4")
    with pc.client(pc.names[:3]) as c:
        c.member_add("m4", [spec.peer_url], [spec.client_url], is_learner=True)
    pc.start("m4")
    wait_until(lambda: "installed snapshot" in pc.log_path("m4").read_text(), 20,
               "the new member to install the leader's snapshot")
    with pc.client(["m4"]) as c:
        wait_until(lambda: c.get("snap/", prefix=True, count_only=True,
                                 serializable=True).count == 2000, 10, "m4 to hold every key")
    # Every member took snapshots and truncated its WAL below them.
    for name in pc.names[:3]:
        assert wal_entries(pc, name) < 600, f"{name}'s WAL is not bounded"
    assert list((pc.config.data_dir / leader / "snapshots").glob("snap-*.db"))


def test_restart_from_snapshot_and_wal_tail_keeps_everything(make_cluster) -> None:
    pc = make_cluster(3, snapshot_count=50)
    pc.wait_for_leader(15)
    put_many(pc, pc.names, 0, 180)
    for name in pc.names:
        pc.stop(name)
    pc.start_all()
    pc.wait_for_leader(15)
    with pc.client() as c:
        assert c.get("snap/", prefix=True, count_only=True).count == 180
        c.put("snap/after", "restart")
    for name in pc.names:
        wait_until(lambda n=name: pc.status(n).applied_index >= 180, 10, "apply")

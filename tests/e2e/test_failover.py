"""Real processes, real kill -9: the walking skeleton's failure story."""

from __future__ import annotations

import threading
import time

import pytest

from cluster.errors import EtcdliteError, TimeoutError_
from tests.e2e.harness import ProcessCluster, wait_until

pytestmark = pytest.mark.e2e


def read_all_from(pc: ProcessCluster, name: str, prefix: str) -> dict[str, str]:
    """Every key under `prefix` as member `name` alone has it (serializable, local)."""
    with pc.client([name]) as c:
        r = c.get(prefix, prefix=True, serializable=True)
    return {kv.key.decode(): kv.value.decode() for kv in r.kvs}


def test_leader_kill_fails_over_and_restarted_member_catches_up(make_cluster) -> None:
    pc = make_cluster(3)
    old_leader = pc.wait_for_leader(15)
    with pc.client() as c:
        for i in range(100):
            c.put(f"key/{i:03d}", f"value-{i}")

    killed_at = time.monotonic()
    pc.kill(old_leader)
    survivors = [n for n in pc.names if n != old_leader]
    with pc.client(survivors, timeout_s=1.0) as c:
        def write_once() -> bool:
            c.put("after-failover", "yes")
            return True
        wait_until(write_once, 3.0, "a write acknowledged after the leader kill")
    failover_s = time.monotonic() - killed_at
    assert failover_s < 3.0
    new_leader = pc.wait_for_leader(5, among=survivors)
    assert new_leader != old_leader

    pc.start(old_leader)
    expected = {f"key/{i:03d}": f"value-{i}" for i in range(100)}
    for name in pc.names:
        wait_until(lambda n=name: read_all_from(pc, n, "key/") == expected, 15,
                   f"{name} to hold every acknowledged key")
        wait_until(lambda n=name: read_all_from(pc, n, "after-failover") ==
                   {"after-failover": "yes"}, 15, f"{name} to hold the post-failover write")
    print(f"failover: first acknowledged write {failover_s:.2f}s after kill -9 of the leader")


def test_whole_cluster_restart_keeps_every_key_and_revision(make_cluster) -> None:
    pc = make_cluster(3)
    pc.wait_for_leader(15)
    with pc.client() as c:
        for i in range(50):
            c.put(f"k{i}", f"v{i}")
        c.delete("k0")
        revision_before = c.get("k1").header.revision
    for name in pc.names:
        pc.stop(name)
    pc.start_all()
    pc.wait_for_leader(15)
    with pc.client() as c:
        r = c.get("k", prefix=True)
        assert {kv.key_str: kv.value_str for kv in r.kvs} == {
            f"k{i}": f"v{i}" for i in range(1, 50)}
        assert r.header.revision == revision_before
        put = c.put("k-new", "x")
        assert put.header.revision == revision_before + 1


def test_kill_follower_then_leader_under_load_loses_no_acknowledged_write(make_cluster) -> None:
    pc = make_cluster(3)
    pc.wait_for_leader(15)
    acknowledged: dict[str, str] = {}
    indeterminate: set[str] = set()
    stop = threading.Event()

    def writer() -> None:
        with pc.client(timeout_s=2.0) as c:
            i = 0
            while not stop.is_set():
                key, value = f"load/{i:05d}", f"v{i}"
                try:
                    c.put(key, value)
                    acknowledged[key] = value
                except TimeoutError_:
                    indeterminate.add(key)
                except EtcdliteError:
                    pass  # refused before it reached the log: definitely not applied
                i += 1

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(acknowledged) >= 50, 20, "writes before the faults")
        leader = pc.wait_for_leader(10)
        follower = next(n for n in pc.names if n != leader)
        pc.kill(follower)
        count = len(acknowledged)
        wait_until(lambda: len(acknowledged) >= count + 30, 20, "writes with a follower down")
        pc.kill(leader)
        count = len(acknowledged)
        pc.start(follower)
        wait_until(lambda: len(acknowledged) >= count + 30, 30, "writes after the leader kill")
        pc.start(leader)
        count = len(acknowledged)
        wait_until(lambda: len(acknowledged) >= count + 30, 30, "writes after recovery")
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    pc.wait_for_leader(15)
    for name in pc.names:
        def holds_all(n: str = name) -> bool:
            have = read_all_from(pc, n, "load/")
            return all(have.get(k) == v for k, v in acknowledged.items())
        wait_until(holds_all, 20, f"{name} to hold every acknowledged write")
    print(f"{len(acknowledged)} acknowledged, {len(indeterminate)} indeterminate")

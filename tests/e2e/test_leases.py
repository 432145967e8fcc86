"""Leases on real 3-member clusters: grant/attach/keepalive/revoke, expiry, forwarding
through followers, and what a kill -9 of the leader does to leases."""

from __future__ import annotations

import time

import pytest

from cluster.errors import LeaseNotFoundError
from tests.e2e.harness import ProcessCluster, wait_until

pytestmark = pytest.mark.e2e

FAST = {"heartbeat_interval_ms": 50, "election_timeout_ms": 500}
"""Short timeouts: minimum lease TTL 0.75 s (1 s once rounded up), failover well under 1 s."""


def roles(pc: ProcessCluster) -> tuple[str, list[str]]:
    leader = pc.wait_for_leader(15)
    return leader, [n for n in pc.names if n != leader]


def test_grant_attach_keepalive_timetolive_list_and_revoke(make_cluster) -> None:
    pc = make_cluster(3)  # default timings: election timeout 1 s, minimum TTL 2 s
    pc.wait_for_leader(15)
    with pc.client() as c:
        assert c.lease_grant(1).ttl == 2  # raised to ceil(1.5 x election timeout)
        lease = c.lease_grant(30)
        assert lease.ttl == 30
        c.put("svc/a", "1", lease=lease.id)
        c.put("svc/b", "2", lease=lease.id)
        c.put("plain", "3")
        ttl = c.lease_timetolive(lease.id, keys=True)
        assert ttl.granted_ttl == 30
        assert 28 <= ttl.ttl <= 30
        assert sorted(ttl.keys) == [b"svc/a", b"svc/b"]
        assert c.lease_timetolive(lease.id).keys == ()
        assert c.lease_keepalive_once(lease.id).ttl == 30
        assert lease.id in c.lease_leases().leases

        before = c.get("plain").header.revision
        revoked = c.lease_revoke(lease.id)
        assert revoked.header.revision == before + 1  # every attached key in ONE revision
        assert c.get("svc/", prefix=True).kvs == ()
        assert len(c.get("svc/", prefix=True, revision=before).kvs) == 2
        assert c.get("plain").value_str == "3"
        gone = c.lease_timetolive(lease.id, keys=True)
        assert (gone.ttl, gone.keys) == (-1, ())
        assert lease.id not in c.lease_leases().leases
        with pytest.raises(LeaseNotFoundError):
            c.lease_keepalive_once(lease.id)
        with pytest.raises(LeaseNotFoundError):
            c.lease_revoke(lease.id)
        with pytest.raises(LeaseNotFoundError):
            c.put("orphan", "x", lease=lease.id)
        with pytest.raises(LeaseNotFoundError):
            c.put("orphan", "x", lease=0x1234)
        assert c.get("orphan").kvs == ()


def test_lease_not_kept_alive_expires_and_its_keys_vanish(make_cluster) -> None:
    pc = make_cluster(3, **FAST)
    _, followers = roles(pc)
    with pc.client() as c, pc.client([followers[0]]) as f:
        sent_at = time.monotonic()
        lease = c.lease_grant(2)
        c.put("ephemeral", "x", lease=lease.id)
        granted_via_follower = f.lease_grant(2)  # timed by the leader from its next sync
        f.put("ephemeral-2", "y", lease=granted_via_follower.id)
        time.sleep(1.0)
        assert c.get("ephemeral").kvs, "expired before its TTL"
        wait_until(lambda: not c.get("ephemeral").kvs, 8, "the expired lease's key to vanish")
        assert time.monotonic() - sent_at >= 2.0
        wait_until(lambda: not c.get("ephemeral-2").kvs, 8, "the follower-granted lease to expire")
        assert c.lease_timetolive(lease.id).ttl == -1
        leases = c.lease_leases().leases
        assert lease.id not in leases
        assert granted_via_follower.id not in leases


def test_keepalive_through_a_follower_is_forwarded_to_the_leader(make_cluster) -> None:
    pc = make_cluster(3, **FAST)
    leader, followers = roles(pc)
    with pc.client([leader]) as c, pc.client([followers[0]]) as f:
        lease = f.lease_grant(2)
        f.put("held", "1", lease=lease.id)
        with f.lease_keepalive(lease.id) as ka:
            time.sleep(4.5)  # more than twice the TTL
            assert f.get("held").kvs
            assert ka.renewals >= 4
            assert not ka.lost
            ttl = f.lease_timetolive(lease.id, keys=True)
            assert ttl.header.member_id == pc.member_id(leader)  # answered by the leader
            assert ttl.keys == (b"held",)
            assert 0 <= ttl.ttl <= 2

        rounds = 200
        figures = {}
        for name, client in (("leader", c), ("follower", f)):
            started = time.perf_counter()
            for _ in range(rounds):
                client.lease_keepalive_once(lease.id)
            figures[name] = (time.perf_counter() - started) / rounds * 1000
        print(f"keepalive round trip: {figures['leader']:.2f} ms at the leader, "
              f"{figures['follower']:.2f} ms through a follower")
        wait_until(lambda: not f.get("held").kvs, 8, "the lease to expire once not renewed")


def test_kept_alive_lease_survives_leader_kill_and_unkept_one_still_expires(
        make_cluster) -> None:
    pc = make_cluster(3, **FAST)
    leader, survivors = roles(pc)
    with pc.client(timeout_s=2.0) as c:
        kept = c.lease_grant(4)
        unkept = c.lease_grant(3)
        c.put("kept", "1", lease=kept.id)
        c.put("unkept", "1", lease=unkept.id)
        with c.lease_keepalive(kept.id) as ka:
            time.sleep(1.0)
            pc.kill(leader)
            killed_at = time.monotonic()
            with pc.client(survivors, timeout_s=2.0) as s:
                new_leader = pc.wait_for_leader(10, among=survivors)
                assert new_leader != leader
                # The new leader restarts the countdown: nothing is cut short.
                ttl = s.lease_timetolive(kept.id)
                assert ttl.ttl >= kept.ttl - 2, ttl
                assert s.lease_timetolive(unkept.id).ttl >= 1
                wait_until(lambda: not s.get("unkept").kvs, 10,
                           "the un-renewed lease to expire after failover")
                while time.monotonic() < killed_at + 2 * kept.ttl:
                    assert s.get("kept").kvs, "a kept-alive lease expired across failover"
                    time.sleep(0.25)
                assert not ka.lost
                assert s.lease_timetolive(unkept.id).ttl == -1
                assert s.lease_timetolive(kept.id).ttl >= 1

"""The lessor actor on a virtual clock (pytest-trio autojump_clock) with a fake store and log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import trio

from actors.lessor import Lessor, checkpoint_interval_from_env
from cluster import kv
from cluster.errors import LeaseNotFoundError, NotLeaderError, TimeoutError_
from cluster.messages import Role
from storage.mvcc import LeaseRecord

MIN_TTL = 1.5


@dataclass
class FakeLog:
    """Store + log in one: proposals apply at once, unless told to fail."""

    leases: dict[int, LeaseRecord] = field(default_factory=dict)
    keys: dict[int, list[bytes]] = field(default_factory=dict)
    proposed: list[tuple[float, Any]] = field(default_factory=list)
    fail_next: int = 0

    def lease_get(self, lease_id: int) -> LeaseRecord | None:
        return self.leases.get(lease_id)

    def list_leases(self) -> list[LeaseRecord]:
        return [self.leases[i] for i in sorted(self.leases)]

    def lease_keys(self, lease_id: int) -> list[bytes]:
        return self.keys.get(lease_id, [])

    async def propose(self, req: Any) -> dict[str, Any]:
        self.proposed.append((trio.current_time(), req))
        await trio.sleep(0.01)  # a log round trip
        if self.fail_next:
            self.fail_next -= 1
            raise TimeoutError_("not applied")
        header = {"revision": 1}
        if isinstance(req, kv.LeaseGrantRequest):
            lease_id = req.id or 100 + len(self.leases)
            self.leases[lease_id] = LeaseRecord(lease_id, req.ttl)
            return {"header": header, "id": lease_id, "ttl": req.ttl}
        if req.id not in self.leases:
            raise LeaseNotFoundError("lease not found")
        if isinstance(req, kv.LeaseRevokeRequest):
            del self.leases[req.id]
        elif isinstance(req, kv.LeaseCheckpointRequest):
            old = self.leases[req.id]
            self.leases[req.id] = LeaseRecord(old.id, old.granted_ttl, req.remaining_ttl)
        return {"header": header}

    def revoked(self) -> list[tuple[float, int]]:
        return [(t, r.id) for t, r in self.proposed if isinstance(r, kv.LeaseRevokeRequest)]

    def checkpoints(self) -> list[tuple[int, int]]:
        return [(r.id, r.remaining_ttl) for _, r in self.proposed
                if isinstance(r, kv.LeaseCheckpointRequest)]


class Store:
    """The MvccStore-shaped view of a FakeLog (its `leases()` is a method)."""

    def __init__(self, log: FakeLog) -> None:
        self._log = log

    def lease_get(self, lease_id: int) -> LeaseRecord | None:
        return self._log.lease_get(lease_id)

    def leases(self) -> list[LeaseRecord]:
        return self._log.list_leases()

    def lease_keys(self, lease_id: int) -> list[bytes]:
        return self._log.lease_keys(lease_id)


@dataclass
class World:
    log: FakeLog
    lessor: Lessor
    role: list[Any]
    forwarded: list[dict[str, Any]]


def make_world(*leases: LeaseRecord, checkpoint_interval_s: float = float("inf"),
               revoke_rate_per_s: int = 1000) -> World:
    log = FakeLog(leases={r.id: r for r in leases})
    role: list[Any] = [Role.LEADER, 2]
    forwarded: list[dict[str, Any]] = []

    async def forward(body: dict[str, Any]) -> dict[str, Any]:
        forwarded.append(body)
        return {"header": {"member_id": 9}, "id": body.get("id", 0), "ttl": 42}

    async def barrier() -> None:
        await trio.lowlevel.checkpoint()

    lessor = Lessor(store=Store(log), propose=log.propose, forward=forward,
                    role=lambda: (role[0], role[1]), header=lambda: {"revision": 1},
                    read_barrier=barrier, min_ttl_s=MIN_TTL, retry_s=3.0, name="m1",
                    checkpoint_interval_s=checkpoint_interval_s,
                    revoke_rate_per_s=revoke_rate_per_s)
    return World(log, lessor, role, forwarded)


def op(name: str, **args: Any) -> dict[str, Any]:
    return {"v": 1, "op": name, **args}


async def test_leader_revokes_leases_at_their_deadlines(autojump_clock: Any) -> None:
    w = make_world(LeaseRecord(1, 10), LeaseRecord(2, 600, remaining_ttl=5))
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        await nursery.start(w.lessor.run)
        await trio.sleep(4.5)
        assert w.log.revoked() == []
        await trio.sleep(7)
        nursery.cancel_scope.cancel()
    revoked = [(round(t - start), lease_id) for t, lease_id in w.log.revoked()]
    assert revoked == [(5, 2), (10, 1)]  # the checkpoint's remaining TTL counts for lease 2
    assert w.log.leases == {}


async def test_keepalive_extends_and_timetolive_counts_down(autojump_clock: Any) -> None:
    w = make_world(LeaseRecord(1, 10))
    w.log.keys[1] = [b"a"]
    async with trio.open_nursery() as nursery:
        await nursery.start(w.lessor.run)
        for _ in range(5):
            await trio.sleep(8)
            assert (await w.lessor.keepalive(op("lease_keepalive", id=1)))["ttl"] == 10
        await trio.sleep(3.5)
        ttl = await w.lessor.timetolive(op("lease_timetolive", id=1, keys=True))
        assert (ttl["ttl"], ttl["granted_ttl"], ttl["keys"]) == (6, 10, [b"a"])
        assert w.log.revoked() == []
        await trio.sleep(7)
        gone = await w.lessor.timetolive(op("lease_timetolive", id=1))
        assert gone["ttl"] == -1
        with pytest.raises(LeaseNotFoundError):
            await w.lessor.keepalive(op("lease_keepalive", id=1))
        nursery.cancel_scope.cancel()


async def test_revoke_that_is_not_applied_is_retried(autojump_clock: Any) -> None:
    w = make_world(LeaseRecord(1, 2))
    w.log.fail_next = 2
    async with trio.open_nursery() as nursery:
        await nursery.start(w.lessor.run)
        await trio.sleep(12)
        nursery.cancel_scope.cancel()
    assert [lease_id for _, lease_id in w.log.revoked()] == [1, 1, 1]
    times = [t for t, _ in w.log.revoked()]
    assert times[1] - times[0] >= 3.0  # retry_s apart
    assert w.log.leases == {}


async def test_revokes_are_rate_limited(autojump_clock: Any) -> None:
    w = make_world(*(LeaseRecord(i, 2) for i in range(1, 201)), revoke_rate_per_s=100)
    async with trio.open_nursery() as nursery:
        await nursery.start(w.lessor.run)
        await trio.sleep(2.1)
        await trio.sleep(0.9)  # one second of revoking
        first_second = len(w.log.revoked())
        await trio.sleep(2)
        nursery.cancel_scope.cancel()
    assert 75 <= first_second <= 125
    assert len(w.log.revoked()) == 200


async def test_grant_below_minimum_is_raised_and_timed_at_once(autojump_clock: Any) -> None:
    w = make_world()
    async with trio.open_nursery() as nursery:
        await nursery.start(w.lessor.run)
        granted = await w.lessor.grant(op("lease_grant", ttl=1))
        assert granted["ttl"] == 2  # ceil(1.5)
        await trio.sleep(1.5)
        assert w.log.revoked() == []
        await trio.sleep(1.0)
        assert [lease_id for _, lease_id in w.log.revoked()] == [granted["id"]]
        nursery.cancel_scope.cancel()


async def test_new_leader_extends_every_lease_to_at_least_the_minimum(
        autojump_clock: Any) -> None:
    w = make_world(LeaseRecord(1, 600, remaining_ttl=1))
    w.role[:] = [Role.FOLLOWER, 2]
    async with trio.open_nursery() as nursery:
        await nursery.start(w.lessor.run)
        await trio.sleep(100)  # followers never expire anything
        assert w.log.revoked() == []
        w.role[:] = [Role.LEADER, 3]
        promoted = trio.current_time()
        await trio.sleep(1.4)
        assert w.log.revoked() == []
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    # Promotion and expiry are noticed on the next round (every 0.25 s): never early.
    [(revoked_at, _)] = w.log.revoked()
    assert 1.5 <= revoked_at - promoted <= 2.0


async def test_losing_leadership_stops_expiry(autojump_clock: Any) -> None:
    w = make_world(LeaseRecord(1, 5))
    async with trio.open_nursery() as nursery:
        await nursery.start(w.lessor.run)
        await trio.sleep(2)
        w.role[:] = [Role.FOLLOWER, 3]
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert w.log.revoked() == []
    assert not w.lessor.statistics().primary


async def test_follower_forwards_and_refuses_forwarded_requests(autojump_clock: Any) -> None:
    w = make_world(LeaseRecord(1, 10))
    w.role[:] = [Role.FOLLOWER, 2]
    reply = await w.lessor.keepalive(op("lease_keepalive", id=1))
    assert reply["header"]["member_id"] == 9
    assert w.forwarded == [op("lease_keepalive", id=1)]
    await w.lessor.timetolive(op("lease_timetolive", id=1))
    await w.lessor.leases(op("lease_leases"))
    assert len(w.forwarded) == 3
    with pytest.raises(NotLeaderError):
        await w.lessor.keepalive(op("lease_keepalive", id=1, fwd=1))


async def test_leader_answers_forwarded_requests(autojump_clock: Any) -> None:
    w = make_world(LeaseRecord(1, 10))
    reply = await w.lessor.keepalive(op("lease_keepalive", id=1, fwd=1))
    assert reply["ttl"] == 10
    assert (await w.lessor.leases(op("lease_leases", fwd=1)))["leases"] == [1]
    assert w.forwarded == []


async def test_checkpoints_and_keepalive_clears_a_stale_one(autojump_clock: Any) -> None:
    w = make_world(LeaseRecord(1, 60), checkpoint_interval_s=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(w.lessor.run)
        await trio.sleep(5.5)
        assert w.log.checkpoints() == [(1, 55)]
        assert w.log.leases[1].remaining_ttl == 55
        await w.lessor.keepalive(op("lease_keepalive", id=1))
        # Applied before the keepalive was answered: a new leader would use 60, not 55.
        assert w.log.checkpoints() == [(1, 55), (1, 0)]
        assert w.log.leases[1].remaining_ttl == 0
        await w.lessor.keepalive(op("lease_keepalive", id=1))
        assert len(w.log.checkpoints()) == 2  # nothing stale any more
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("raw", "expect"), [
    ("", 300.0), ("2.5", 2.5), ("off", float("inf")), ("0", float("inf"))])
def test_checkpoint_interval_from_environment(raw: str, expect: float) -> None:
    env = {"ETCDLITE_LEASE_CHECKPOINT_INTERVAL_S": raw} if raw else {}
    assert checkpoint_interval_from_env(env) == expect

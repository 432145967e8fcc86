"""The compactor actor on a fake clock: leader-only, reset on leadership, errors survived."""

from __future__ import annotations

from typing import Any

import trio

from actors.compactor import Compactor, interval_from_env
from cluster import kv
from cluster.compaction_policy import PeriodicPolicy, RevisionPolicy
from cluster.errors import CompactedError, NoLeaderError
from cluster.messages import Role


class FakeMember:
    def __init__(self) -> None:
        self.role, self.term = Role.FOLLOWER, 1
        self.revision, self.compact_revision = 1, 0
        self.proposed: list[tuple[float, int]] = []
        self.fail_with: Exception | None = None

    async def propose(self, req: Any) -> dict[str, Any]:
        assert isinstance(req, kv.CompactionRequest)
        if self.fail_with is not None:
            raise self.fail_with
        self.proposed.append((trio.current_time(), req.revision))
        self.compact_revision = req.revision
        return {}

    def compactor(self, policy: Any) -> Compactor:
        return Compactor(policy=policy, role=lambda: (self.role, self.term),
                         revisions=lambda: (self.revision, self.compact_revision),
                         propose=self.propose, name="m1")


async def test_only_the_leader_compacts_and_starts_counting_when_it_leads(
        autojump_clock: trio.abc.Clock) -> None:
    m = FakeMember()
    m.revision = 1000
    compactor = m.compactor(RevisionPolicy(retention=100, interval_s=10))
    async with trio.open_nursery() as nursery:
        await nursery.start(compactor.run)
        await trio.sleep(35)
        assert m.proposed == []  # a follower never compacts
        m.role = Role.LEADER
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    times = [round(t - 35) for t, _ in m.proposed]
    assert [r for _, r in m.proposed] == [900]  # nothing new after the first one
    assert times[0] >= 10  # one whole interval of leadership first


async def test_new_leadership_resets_the_periodic_window(autojump_clock: trio.abc.Clock) -> None:
    m = FakeMember()
    m.role = Role.LEADER
    compactor = m.compactor(PeriodicPolicy(retention_s=10))

    async def grow() -> None:
        while True:
            await trio.sleep(0.5)
            m.revision += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(grow)
        await nursery.start(compactor.run)
        await trio.sleep(25)
        first = list(m.proposed)
        m.role = Role.FOLLOWER
        await trio.sleep(5)
        m.role, m.term = Role.LEADER, 2
        await trio.sleep(9)
        assert m.proposed == first  # the new term watches a whole retention first
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert first
    assert len(m.proposed) > len(first)
    for t, revision in m.proposed:
        assert 1 + int((t - 10) / 0.5) >= revision  # never younger than 10 s


async def test_failed_proposals_are_logged_and_retried_later(
        autojump_clock: trio.abc.Clock) -> None:
    m = FakeMember()
    m.role, m.revision = Role.LEADER, 500
    m.fail_with = NoLeaderError("no leader")
    compactor = m.compactor(RevisionPolicy(retention=10, interval_s=1))
    async with trio.open_nursery() as nursery:
        await nursery.start(compactor.run)
        await trio.sleep(5)
        m.fail_with = CompactedError("compacted")
        await trio.sleep(2)
        m.fail_with = None
        await trio.sleep(2)
        nursery.cancel_scope.cancel()
    assert [r for _, r in m.proposed] == [490]
    assert compactor.compactions == 1


def test_interval_env() -> None:
    assert interval_from_env({}) == 300
    assert interval_from_env({"ETCDLITE_AUTO_COMPACTION_INTERVAL_S": "0.5"}) == 0.5

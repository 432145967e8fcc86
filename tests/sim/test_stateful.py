"""Hypothesis explores fault schedules over the simulator, and shrinks what breaks.

The random schedules in test_random.py sample fixed fault mixes; here
hypothesis picks each next action (propose, read, partition, heal, crash,
restart, tick, transfer, membership change) and, on a failure, shrinks the
sequence to a short story. The incremental checkers run after every event;
the invariants below re-check the end-to-end properties from scratch, and
teardown demands liveness once everything is healed.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from cluster.conf_change import ConfChange, ConfChangeType
from cluster.messages import Role
from tests.sim.cluster import SimCluster
from tests.sim.network import Faults
from tests.sim.node import NodeOptions

node_index = st.integers(min_value=0, max_value=7)


class RaftClusterMachine(RuleBasedStateMachine):
    cluster: SimCluster

    @initialize(seed=st.integers(0, 2**32 - 1), size=st.sampled_from([3, 5]),
                snapshot_every=st.sampled_from([0, 4]), lossy=st.booleans())
    def boot(self, seed: int, size: int, snapshot_every: int, lossy: bool) -> None:
        faults = Faults(drop=0.05, duplicate=0.05, slow=0.1) if lossy else Faults()
        self.cluster = SimCluster(size, seed=seed, faults=faults,
                                  options=NodeOptions(snapshot_every=snapshot_every,
                                                      snapshot_tail=1, ready_defer=0.2))

    def _pick(self, i: int) -> int:
        ids = sorted(self.cluster.nodes)
        return ids[i % len(ids)]

    @rule(i=node_index)
    def propose(self, i: int) -> None:
        self.cluster.propose(self._pick(i))

    @rule(i=node_index)
    def read(self, i: int) -> None:
        self.cluster.read(self._pick(i))

    @rule(data=st.data())
    def partition(self, data: st.DataObject) -> None:
        ids = sorted(self.cluster.nodes)
        side = data.draw(st.sets(st.sampled_from(ids), min_size=1, max_size=len(ids) - 1))
        self.cluster.partition(side, [i for i in ids if i not in side])

    @rule(a=node_index, b=node_index)
    def cut_one_way(self, a: int, b: int) -> None:
        if self._pick(a) != self._pick(b):
            self.cluster.net.block(self._pick(a), self._pick(b))

    @rule()
    def heal(self) -> None:
        self.cluster.heal()

    @rule(i=node_index)
    def crash(self, i: int) -> None:
        self.cluster.crash(self._pick(i))

    @rule(i=node_index)
    def crash_mid_persist(self, i: int) -> None:
        self.cluster.crash_during_persist(self._pick(i))

    @rule(i=node_index)
    def restart(self, i: int) -> None:
        self.cluster.restart(self._pick(i))

    @rule(ticks=st.integers(1, 30))
    def tick(self, ticks: int) -> None:
        self.cluster.run_ticks(ticks)

    @rule(via=node_index, to=node_index)
    def transfer(self, via: int, to: int) -> None:
        # (`target` is reserved by @rule for bundles.)
        self.cluster.transfer(self._pick(via), self._pick(to))

    @precondition(lambda self: self.cluster.leader() is not None)
    @rule(data=st.data())
    def change_membership(self, data: st.DataObject) -> None:
        leader = self.cluster.leader()
        assert leader is not None
        assert leader.raft is not None
        conf = leader.raft.conf
        choices = [ConfChange(ConfChangeType.ADD_LEARNER, self.cluster.next_id)]
        choices += [ConfChange(ConfChangeType.ADD_NODE, i) for i in sorted(conf.learners)]
        if len(conf.voters) >= 3:
            choices += [ConfChange(ConfChangeType.REMOVE_NODE, i) for i in sorted(conf.voters)]
        self.cluster.change_membership(data.draw(st.sampled_from(choices)))

    # --- invariants: the end-to-end properties, recomputed from scratch ---------------

    @invariant()
    def one_leader_per_term(self) -> None:
        seen: dict[int, int] = {}
        for n in self.cluster.up_nodes():
            if n.raft is not None and n.raft.role is Role.LEADER:
                assert seen.setdefault(n.raft.term, n.id) == n.id

    @invariant()
    def applied_states_are_prefixes_of_one_history(self) -> None:
        history = self.cluster.checker.applied
        for n in self.cluster.up_nodes():
            assert n.state == history[: len(n.state)], f"{n.id} diverged"

    @invariant()
    def acknowledged_writes_are_in_the_history(self) -> None:
        history = self.cluster.checker.applied
        for payload, index in self.cluster.acked().items():
            assert history[index - 1] == payload

    def teardown(self) -> None:
        if not hasattr(self, "cluster"):
            return
        self.cluster.heal_all()
        self.cluster.check_liveness()
        self.cluster.check_acked_durable()


RaftClusterMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_raft_cluster_under_hypothesis = RaftClusterMachine.TestCase

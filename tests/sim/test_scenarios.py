"""Named fault scenarios on the deterministic simulator.

Each test scripts one failure story (partition, crash, transfer, membership
change...) on a seeded SimCluster; the safety checkers run after every event
behind the scenes, and each test asserts the liveness/behaviour that story
is about. Names follow `<fault>_<shape>_<detail>` so a failure reads as a
sentence.
"""

from __future__ import annotations

import pytest

from cluster.conf_change import ConfChange, ConfChangeType
from cluster.messages import Message, MessageType, Role
from tests.sim.cluster import SimCluster
from tests.sim.network import Faults
from tests.sim.node import NodeOptions, SimNode

ELECTION = 10  # NodeOptions().election_ticks


def _others(c: SimCluster, node_id: int) -> list[int]:
    return [i for i in sorted(c.nodes) if i != node_id]


def _applied_everywhere(c: SimCluster, index: int) -> bool:
    return all(len(n.state) >= index for n in c.up_nodes())


def test_basic_replication_3_nodes_apply_the_same_sequence() -> None:
    c = SimCluster(3, seed=1)
    leader = c.wait_leader()
    indexes = [c.write(leader.id)[1] for _ in range(20)]
    assert indexes == sorted(indexes)
    c.run_until(lambda: _applied_everywhere(c, indexes[-1]), 20)
    states = [n.state[: indexes[-1]] for n in c.nodes.values()]
    assert states[0] == states[1] == states[2]


def test_basic_replication_write_via_follower_is_forwarded() -> None:
    c = SimCluster(3, seed=2)
    leader = c.wait_leader()
    follower = _others(c, leader.id)[0]
    _, index = c.write(follower)
    assert c.nodes[leader.id].state[index - 1].startswith(b"w")


def test_basic_replication_under_lossy_network() -> None:
    c = SimCluster(5, seed=3, faults=Faults(drop=0.2, duplicate=0.1, slow=0.2))
    leader = c.wait_leader(300)
    for _ in range(10):
        leader = c.wait_leader(300)
        c.write(leader.id, ticks_max=300)
    c.heal_all()
    c.check_liveness()
    c.check_acked_durable()


def test_leader_crash_new_leader_elected_and_old_catches_up() -> None:
    c = SimCluster(3, seed=4)
    old = c.wait_leader()
    assert old.raft is not None
    old_term = old.raft.term
    c.write(old.id)
    c.crash(old.id)
    new = c.wait_leader(4 * ELECTION)
    assert new.id != old.id
    assert new.raft is not None
    assert new.raft.term > old_term
    _, index = c.write(new.id)
    c.restart(old.id)
    c.run_until(lambda: len(c.nodes[old.id].state) >= index, 3 * ELECTION)
    assert c.nodes[old.id].role is Role.FOLLOWER


def test_partition_2_1_isolate_leader_symmetric() -> None:
    c = SimCluster(3, seed=5)
    old = c.wait_leader()
    c.partition([old.id], _others(c, old.id))
    new = c.run_until(lambda: any(n.is_leader() and n.id != old.id for n in c.nodes.values()),
                      5 * ELECTION)
    assert new >= 0
    majority_leader = next(n for n in c.nodes.values() if n.is_leader() and n.id != old.id)
    _, index = c.write(majority_leader.id)
    # check-quorum has made the isolated one step down by now.
    assert old.role is not Role.LEADER
    c.heal()
    c.run_until(lambda: len(old.state) >= index, 3 * ELECTION)
    assert old.raft is not None
    assert majority_leader.raft is not None
    assert old.raft.leader == majority_leader.id


def test_partition_3_2_minority_side_cannot_commit() -> None:
    c = SimCluster(5, seed=6)
    leader = c.wait_leader()
    minority = [leader.id, _others(c, leader.id)[0]]
    majority = [i for i in c.nodes if i not in minority]
    c.partition(minority, majority)
    stale = c.propose(leader.id)
    assert stale is not None
    c.run_ticks(3 * ELECTION)
    assert all(stale not in n.state for n in c.nodes.values())
    new = next(n for n in c.nodes.values() if n.is_leader())
    assert new.id in majority
    _, index = c.write(new.id)
    c.heal()
    c.run_until(lambda: _applied_everywhere(c, index), 3 * ELECTION)
    # The minority leader's uncommitted entry was overwritten, never applied.
    assert all(stale not in n.state for n in c.nodes.values())


def test_partition_2_1_isolate_follower_leader_keeps_term() -> None:
    c = SimCluster(3, seed=7)
    leader = c.wait_leader()
    assert leader.raft is not None
    term = leader.raft.term
    loner = _others(c, leader.id)[0]
    c.partition([loner], _others(c, loner))
    for _ in range(5):
        c.write(leader.id)
    c.run_ticks(5 * ELECTION)
    assert leader.is_leader()
    assert leader.raft.term == term


def test_partition_asymmetric_leader_deaf_steps_down_and_cluster_recovers() -> None:
    """The leader still reaches everyone but hears nobody: check-quorum retires it."""
    c = SimCluster(3, seed=8)
    old = c.wait_leader()
    for other in _others(c, old.id):
        c.net.block(other, old.id)
    c.run_until(lambda: not old.is_leader(), 2 * ELECTION + 1)
    new = c.run_until(lambda: any(n.is_leader() and n.id != old.id for n in c.nodes.values()),
                      6 * ELECTION)
    assert new >= 0
    c.heal()
    c.check_liveness()


def test_prevote_rejoining_node_does_not_bump_leader_term() -> None:
    c = SimCluster(3, seed=9, options=NodeOptions(pre_vote=True, check_quorum=True))
    leader = c.wait_leader()
    assert leader.raft is not None
    term = leader.raft.term
    loner = c.nodes[_others(c, leader.id)[0]]
    c.partition([loner.id], _others(c, loner.id))
    c.run_ticks(6 * ELECTION)  # the loner times out again and again
    assert loner.raft is not None
    assert loner.raft.term == term
    c.heal()
    c.run_ticks(3 * ELECTION)
    assert leader.is_leader()
    assert leader.raft.term == term


def test_without_prevote_rejoining_node_disrupts_the_term() -> None:
    """The contrast to the test above: pre-vote is what protects the leader's term."""
    c = SimCluster(3, seed=9, options=NodeOptions(pre_vote=False, check_quorum=False))
    leader = c.wait_leader()
    assert leader.raft is not None
    term = leader.raft.term
    loner = c.nodes[_others(c, leader.id)[0]]
    c.partition([loner.id], _others(c, loner.id))
    c.run_ticks(6 * ELECTION)
    assert loner.raft is not None
    assert loner.raft.term > term
    c.heal()
    c.run_ticks(3 * ELECTION)
    assert max(n.raft.term for n in c.up_nodes() if n.raft is not None) > term


def test_check_quorum_leader_cut_off_steps_down_within_election_timeout() -> None:
    c = SimCluster(5, seed=10)
    leader = c.wait_leader()
    c.partition([leader.id], _others(c, leader.id))
    took = c.run_until(lambda: not leader.is_leader(), 2 * ELECTION)
    # The quorum check runs every election timeout; the leader's last quorum
    # round can be up to one timeout old when the cut happens.
    assert took <= 2 * ELECTION


def test_read_index_from_leader_sees_acknowledged_write() -> None:
    c = SimCluster(3, seed=11)
    leader = c.wait_leader()
    _, index = c.write(leader.id)
    ctx = c.read(leader.id)
    assert ctx is not None
    c.run_until(lambda: any(x == ctx for x, _ in leader.reads_served), 10)
    served = dict(leader.reads_served)[ctx]
    assert served >= index


def test_read_index_from_follower_sees_acknowledged_write() -> None:
    c = SimCluster(3, seed=12)
    leader = c.wait_leader()
    _, index = c.write(leader.id)
    follower = c.nodes[_others(c, leader.id)[0]]
    ctx = c.read(follower.id)
    assert ctx is not None
    c.run_until(lambda: any(x == ctx for x, _ in follower.reads_served), 10)
    served = dict(follower.reads_served)[ctx]
    assert served >= index
    assert len(follower.state) >= index


def test_read_index_isolated_leader_cannot_answer() -> None:
    c = SimCluster(3, seed=13, options=NodeOptions(check_quorum=False))
    leader = c.wait_leader()
    c.write(leader.id)
    c.partition([leader.id], _others(c, leader.id))
    ctx = c.read(leader.id)
    c.run_ticks(3 * ELECTION)
    assert all(x != ctx for x, _ in leader.reads_served)


def test_leader_transfer_target_becomes_leader_without_election_timeout() -> None:
    c = SimCluster(3, seed=14)
    old = c.wait_leader()
    assert old.raft is not None
    term = old.raft.term
    c.write(old.id)
    target = _others(c, old.id)[1]
    c.transfer(old.id, target)
    took = c.run_until(lambda: c.nodes[target].is_leader(), ELECTION)
    assert took < ELECTION  # well before any election timeout could fire
    assert c.nodes[target].raft is not None
    assert c.nodes[target].raft.term == term + 1
    c.write(target)


def test_leader_transfer_requested_on_follower_is_forwarded() -> None:
    c = SimCluster(3, seed=15)
    old = c.wait_leader()
    target = _others(c, old.id)[0]
    c.transfer(target, target)
    c.run_until(lambda: c.nodes[target].is_leader(), ELECTION)


def test_leader_transfer_to_lagging_follower_catches_it_up_first() -> None:
    c = SimCluster(3, seed=16)
    old = c.wait_leader()
    target = _others(c, old.id)[0]
    c.partition([target], _others(c, target))
    for _ in range(5):
        c.write(old.id)
    c.heal()
    c.transfer(old.id, target)
    c.run_until(lambda: c.nodes[target].is_leader(), ELECTION)
    assert len(c.nodes[target].state) >= len(old.state) - 1


def test_snapshot_install_for_follower_behind_compacted_log() -> None:
    c = SimCluster(3, seed=17, options=NodeOptions(snapshot_every=5, snapshot_tail=1))
    leader = c.wait_leader()
    laggard = c.nodes[_others(c, leader.id)[0]]
    c.crash(laggard.id)
    index = 0
    for _ in range(30):
        _, index = c.write(leader.id)
    assert leader.store.snapshot_meta.index > laggard.store.snapshot_meta.index + 5
    installed = c.checker.stats.snapshots_installed
    c.restart(laggard.id)
    c.run_until(lambda: len(laggard.state) >= index, 3 * ELECTION)
    assert c.checker.stats.snapshots_installed > installed
    assert laggard.store.snapshot_meta.index > 1  # the snapshot was persisted
    assert laggard.state[:index] == leader.state[:index]


def test_snapshot_lost_in_transit_is_retried() -> None:
    c = SimCluster(3, seed=18, options=NodeOptions(snapshot_every=4, snapshot_tail=0))
    leader = c.wait_leader()
    laggard = c.nodes[_others(c, leader.id)[0]]
    c.partition([laggard.id], _others(c, laggard.id))
    index = 0
    for _ in range(20):
        _, index = c.write(leader.id)
    c.heal()
    c.net.faults = Faults(drop=0.5)
    c.run_until(lambda: len(laggard.state) >= index, 30 * ELECTION)
    c.heal_all()
    c.check_liveness()


def test_membership_add_learner_catch_up_then_promote() -> None:
    c = SimCluster(3, seed=19, options=NodeOptions(snapshot_every=6, snapshot_tail=2))
    leader = c.wait_leader()
    for _ in range(15):
        c.write(leader.id)
    assert c.change_membership(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    learner = c.nodes[4]
    c.run_until(lambda: 4 in c.members().learners, 3 * ELECTION)
    _, index = c.write(leader.id)
    c.run_until(lambda: len(learner.state) >= index, 3 * ELECTION)
    assert learner.raft is not None
    assert not learner.raft.promotable()
    assert c.change_membership(ConfChange(ConfChangeType.ADD_NODE, 4))
    c.run_until(lambda: learner.raft is not None and 4 in learner.raft.conf.voters,
                3 * ELECTION)
    # 4 voters: quorum is 3, so with two originals down the promoted node is needed.
    down = [i for i in _others(c, leader.id) if i != 4]
    c.crash(down[0])
    c.write(leader.id)


def test_membership_learner_never_votes_or_campaigns() -> None:
    c = SimCluster(3, seed=20)
    leader = c.wait_leader()
    assert c.change_membership(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    learner = c.nodes[4]
    c.run_until(lambda: learner.raft is not None and 4 in learner.raft.conf.learners,
                3 * ELECTION)
    assert learner.raft is not None
    assert leader.raft is not None
    term = leader.raft.term
    c.partition([4], [1, 2, 3])
    c.run_ticks(5 * ELECTION)
    assert learner.raft.role is Role.FOLLOWER
    assert learner.raft.term == term
    # And the voters never asked it for a vote: elections skip learners.
    c.crash(leader.id)
    c.heal()
    new = c.wait_leader(5 * ELECTION)
    assert new.id != 4


def test_membership_remove_follower() -> None:
    c = SimCluster(3, seed=21)
    leader = c.wait_leader()
    victim = _others(c, leader.id)[0]
    assert c.change_membership(ConfChange(ConfChangeType.REMOVE_NODE, victim))
    c.run_until(lambda: victim not in c.members().voters, 3 * ELECTION)
    c.run_ticks(15)  # the removed member stops itself after a short delay
    assert victim in c.gone
    assert not c.nodes[victim].up
    c.write(leader.id)
    # Two voters left: losing either one stops progress, losing none does not.
    c.check_liveness()


def test_membership_remove_leader_steps_down_new_leader_among_rest() -> None:
    c = SimCluster(3, seed=22)
    old = c.wait_leader()
    c.write(old.id)
    assert c.change_membership(ConfChange(ConfChangeType.REMOVE_NODE, old.id))
    c.run_until(lambda: not old.is_leader(), 3 * ELECTION)
    new = c.wait_leader(5 * ELECTION)
    assert new.id != old.id
    assert new.raft is not None
    assert old.id not in new.raft.conf.voters
    c.write(new.id)


def test_membership_shrink_to_one_voter_and_grow_back() -> None:
    """2 -> 1 voters (removing the follower), a single-voter leader serving writes
    and reads alone, then back to 2 voters."""
    c = SimCluster(3, seed=27)
    leader = c.wait_leader()
    for victim in _others(c, leader.id):
        assert c.change_membership(ConfChange(ConfChangeType.REMOVE_NODE, victim))
        c.run_until(lambda v=victim: v in c.gone, 3 * ELECTION)
        c.run_ticks(11)  # the removed member stops
    assert leader.raft is not None
    assert leader.raft.conf.voters == {leader.id}
    _, index = c.write(leader.id)
    ctx = c.read(leader.id)
    c.run_until(lambda: any(x == ctx for x, _ in leader.reads_served), 5)
    assert dict(leader.reads_served)[ctx] >= index
    c.crash(leader.id)
    c.restart(leader.id)
    leader = c.wait_leader(3 * ELECTION)
    assert c.change_membership(ConfChange(ConfChangeType.ADD_NODE, 9))
    c.run_until(lambda: 9 in c.members().voters, 3 * ELECTION)
    c.write(leader.id)
    c.check_liveness()


def test_membership_change_proposed_on_follower_is_forwarded() -> None:
    c = SimCluster(3, seed=26)
    leader = c.wait_leader()
    follower = _others(c, leader.id)[0]
    assert c.change_membership(ConfChange(ConfChangeType.ADD_LEARNER, 4), via=follower)
    c.run_until(lambda: 4 in c.members().learners, 3 * ELECTION)
    c.run_until(lambda: len(c.nodes[4].state) >= len(leader.state), 3 * ELECTION)


def test_membership_change_refused_while_one_is_pending() -> None:
    c = SimCluster(3, seed=23)
    leader = c.wait_leader()
    c.partition([leader.id], _others(c, leader.id))  # nothing can commit
    assert c.change_membership(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    assert not c.change_membership(ConfChange(ConfChangeType.ADD_LEARNER, 5))


@pytest.mark.parametrize("seed", range(12))
def test_crash_during_persistence_loses_only_unacknowledged_work(seed: int) -> None:
    c = SimCluster(3, seed=100 + seed)
    leader = c.wait_leader()
    for _ in range(3):
        c.write(leader.id)
    victim = leader.id if seed % 2 == 0 else _others(c, leader.id)[seed % 2]
    c.crash_during_persist(victim)
    for _ in range(4):
        c.propose(leader.id)
        c.run_ticks(1)
    c.run_ticks(2 * ELECTION)
    assert not c.nodes[victim].up
    c.heal_all()
    c.check_liveness()
    c.check_acked_durable()


def test_same_seed_replays_the_same_run() -> None:
    def run() -> tuple[int, list[bytes], int]:
        c = SimCluster(5, seed=42, faults=Faults(drop=0.1, duplicate=0.1, slow=0.2))
        for t in range(200):
            if t % 3 == 0:
                c.propose(1 + t % 5)
            c.run_ticks(1)
        return c.now, list(c.checker.applied), c.net.stats.delivered

    assert run() == run()


def test_snapshot_dropped_is_reported_failed_and_resent() -> None:
    c = SimCluster(3, seed=24, options=NodeOptions(snapshot_every=3, snapshot_tail=0))
    leader = c.wait_leader()
    laggard = c.nodes[_others(c, leader.id)[0]]
    c.partition([laggard.id], _others(c, laggard.id))
    index = 0
    for _ in range(10):
        _, index = c.write(leader.id)
    snaps: list[int] = []
    send = c._send

    def lossy_send(m: Message, incarnation: int) -> None:
        if m.type is MessageType.SNAP:
            snaps.append(c.now)
            if len(snaps) <= 2:  # the first two snapshot streams break
                c._lost(m, incarnation)
                return
        send(m, incarnation)

    for n in c.nodes.values():
        n._send = lossy_send
    c.heal()
    c.run_until(lambda: len(laggard.state) >= index, 6 * ELECTION)
    assert len(snaps) >= 3, "a lost snapshot must be reported failed and sent again"
    assert laggard.store.snapshot_meta.index > 1


def figure8(c: SimCluster) -> None:
    """Raft paper Figure 8, scripted: a previous-term entry on a majority is NOT committed.

    S1 (leader, term a) writes X and reaches only S2; S1 dies. A leader S5 of
    term b > a is elected by the rest and is cut off before its first entry
    (at X's index) leaves. S1 returns and is re-elected in term c > b; it
    replicates X to a majority. X must not count as committed until S1's own
    term-c entry is on a majority, since S5 (last term b > a) could otherwise
    still be elected and overwrite X. The checkers fire if it does count.
    Needs 5 members and one entry per AppendEntries, so that X is acknowledged
    apart from the leader's no-op.
    """
    s1 = c.wait_leader()
    c.write(s1.id)
    assert s1.raft is not None
    s2 = _others(c, s1.id)[0]
    rest = [i for i in _others(c, s1.id) if i != s2]
    c.partition([s1.id, s2], rest)
    x = c.propose(s1.id)
    assert x is not None
    x_index = s1.raft.log.last_index()
    c.run_ticks(1)
    assert c.nodes[s2].raft is not None
    assert c.nodes[s2].raft.log.term(x_index) == s1.raft.term
    c.crash(s1.id)

    def rest_leader() -> SimNode | None:
        return next((c.nodes[i] for i in rest if c.nodes[i].is_leader()), None)

    assert c.run_ticks(6 * ELECTION, stop=lambda: rest_leader() is not None)
    s5 = rest_leader()
    assert s5 is not None
    assert s5.raft is not None
    c.heal()
    c.net.isolate(s5.id, c.nodes)  # before its no-op at X's index leaves
    assert s5.raft.log.term(x_index) == s5.raft.term  # the Figure 8 (c) shape
    c.restart(s1.id)
    voters = [s1.id, s2, *[i for i in rest if i != s5.id]]

    def x_holder_leads() -> bool:
        return any(c.nodes[i].is_leader() for i in (s1.id, s2))

    c.run_until(x_holder_leads, 10 * ELECTION)
    leader = next(c.nodes[i] for i in (s1.id, s2) if c.nodes[i].is_leader())
    c.run_until(lambda: all(len(c.nodes[i].state) >= x_index for i in voters), 5 * ELECTION)
    assert leader.state[x_index - 1] == x
    c.heal()
    c.run_until(lambda: len(s5.state) >= x_index, 5 * ELECTION)
    assert s5.state[x_index - 1] == x  # S5's stale entry was overwritten, never applied


def test_figure8_previous_term_entry_committed_only_via_current_term() -> None:
    c = SimCluster(5, seed=25, options=NodeOptions(entries_per_message_max=1))
    figure8(c)
    c.check_liveness()
    c.check_acked_durable()

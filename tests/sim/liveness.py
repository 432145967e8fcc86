"""Liveness of a healed simulated cluster: what "the cluster recovers" means.

After `SimCluster.heal_all()` (links healed, loss off, every member that was
not removed restarted), within bounded time:

- a leader is elected and a fresh write is applied on it (20 election
  timeouts by default), and
- ReadIndex answers on every member, with an index covering that write
  (5 election timeouts; clients retry a read their member dropped).

Bounds are in ticks, so a failure is a deterministic, replayable fact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.sim.checkers import SafetyViolation
from tests.sim.network import TICK_STEPS

if TYPE_CHECKING:
    from tests.sim.cluster import SimCluster
    from tests.sim.node import SimNode


class LivenessViolation(AssertionError):
    """The healed cluster failed to elect a leader and commit within the bound."""


def check_liveness(c: SimCluster, ticks_max: int | None = None) -> tuple[int, int]:
    """After `heal_all()`: a leader emerges and a new write is applied on it.

    Returns (ticks until a leader was known, ticks until the write was applied).
    Raises:
        LivenessViolation: nothing committed within `ticks_max` ticks.
    """
    ticks_max = ticks_max or 20 * c.options.election_ticks
    start = c.now
    payload: bytes | None = None
    asked: tuple[SimNode, int] | None = None
    leader_at = -1
    for _ in range(ticks_max):
        leader = c.leader()
        if leader is not None and leader_at < 0:
            leader_at = (c.now - start) // TICK_STEPS
        if leader is not None and leader.raft is not None \
                and (asked != (leader, leader.raft.term) or payload is None):
            # Ask each new leader (node, term) again: a write proposed to a
            # leader that lost its term may have been truncated.
            payload = c.propose(leader.id)
            asked = (leader, leader.raft.term)
        if asked is not None and payload is not None and any(
                p == payload for p, _ in asked[0].acks):
            committed_at = (c.now - start) // TICK_STEPS
            check_reads_complete(c, dict(asked[0].acks)[payload])
            return leader_at, committed_at
        c.run_ticks(1)
    raise LivenessViolation(
        f"no leader/commit within {ticks_max} ticks after heal (seed {c.seed}): "
        + c.describe())


def check_reads_complete(c: SimCluster, index: int) -> None:
    """On a quiet network ReadIndex answers on every member and is served there.

    A read is dropped when its member knows no leader (say, mid pre-vote), so
    each member's client retries every election timeout with a new context,
    as an etcd client retries on timeout; a read index must arrive within 5
    election timeouts. Serving then waits for the member to apply up to it,
    which for a member far behind takes about a tick per entry in the worst
    case (one entry per message, Readies deferred), so that bound grows with
    the member's lag. Every read must cover `index`, the write acknowledged
    just before the reads began.
    """
    election = c.options.election_ticks
    leader = c.leader()
    # Only members can serve reads: a member removed without learning it (or
    # one whose addition never committed) is never caught up again.
    conf = leader.raft.conf if leader is not None and leader.raft is not None else c.members()
    members = conf.voters | conf.learners
    waiting = {n.id: set[bytes]() for n in c.up_nodes() if n.id in members}
    lag = max((index - len(c.nodes[i].state) for i in waiting), default=0)
    ticks_max = 5 * election + 2 * max(lag, 0)
    for tick in range(ticks_max):
        for node_id in sorted(waiting):
            node = c.nodes[node_id]
            served = [i for ctx, i in node.reads_served if ctx in waiting[node_id]]
            if served:
                if min(served) < index:
                    raise SafetyViolation(f"read on {node_id} served at {min(served)} "
                                          f"< acknowledged write {index}")
                del waiting[node_id]
            elif tick < 5 * election and tick % election == 0 and not any(
                    ctx in waiting[node_id] for _, ctx in node.read_waiters):
                ctx = c.read(node_id)
                assert ctx is not None
                waiting[node_id].add(ctx)
        if not waiting:
            return
        c.run_ticks(1)
    raise LivenessViolation(f"reads on {sorted(waiting)} unserved {ticks_max} ticks "
                            f"after heal (seed {c.seed}): {c.describe()}")

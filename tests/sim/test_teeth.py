"""The checkers have teeth: a deliberately broken core rule must be caught.

Each case monkeypatches one Raft safety rule out of the core and runs seeded
schedules until a checker raises. A simulator whose checkers never fail
proves nothing; these tests prove that each property check can fail, and
bound how many schedules it takes to notice.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cluster.messages import NONE, HardState, Message
from cluster.quorum import committed_index
from cluster.raft import Raft
from cluster.raft_leader import LeaderRole
from cluster.raft_log import RaftLog
from tests.sim.checkers import SafetyViolation
from tests.sim.cluster import SimCluster
from tests.sim.node import NodeOptions
from tests.sim.test_scenarios import figure8
from tests.sim.workload import run_schedule


def _commit_by_counting(self: Raft) -> bool:
    """Broken §5.4.2: commit whatever a majority holds, whatever its term."""
    index = committed_index(self.conf.voters, {p: pr.match for p, pr in self.progress.items()})
    if index > self.log.committed:
        self.log.commit_to(index)
        return True
    return False


def _read_without_quorum(self: Raft, m: Message) -> None:
    """Broken §6.4: answer a read with the local commit index, no heartbeat round."""
    self._release_read(m.frm, self.log.committed, m.entries[0].data if m.entries else b"")


BROKEN: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    # §5.4.1: grant votes without comparing logs.
    "vote_ignores_log": lambda mp: mp.setattr(RaftLog, "is_up_to_date", lambda *a: True),
    "commit_previous_term_by_counting": lambda mp: mp.setattr(
        LeaderRole, "_maybe_commit", _commit_by_counting),
    "read_without_heartbeat_quorum": lambda mp: mp.setattr(
        LeaderRole, "_leader_read_index", _read_without_quorum),
    # §6.4 step 1: a new leader must commit an entry of its term before serving reads.
    "read_before_own_term_commit": lambda mp: mp.setattr(
        LeaderRole, "_committed_in_current_term", lambda self: True),
    # Figure 2: votedFor is persistent state. Without it a member that crashes
    # after voting can vote again in the same term; only a simulator that
    # really forgets unpersisted state on a crash can notice.
    "vote_not_persisted": lambda mp: mp.setattr(
        Raft, "_hard_state", lambda self: HardState(self.term, NONE, self.log.committed)),
}

SEEDS_MAX = {
    "vote_ignores_log": 100,
    "commit_previous_term_by_counting": 1500,
    "read_without_heartbeat_quorum": 1500,
    "read_before_own_term_commit": 1500,
    "vote_not_persisted": 1500,
}


@pytest.mark.parametrize("rule", sorted(BROKEN))
def test_checkers_catch_broken_rule(rule: str, monkeypatch: pytest.MonkeyPatch) -> None:
    BROKEN[rule](monkeypatch)
    for seed in range(SEEDS_MAX[rule]):
        try:
            run_schedule(seed)
        except SafetyViolation as exc:
            print(f"{rule}: caught at seed {seed}: {exc}")
            return
    pytest.fail(f"{SEEDS_MAX[rule]} schedules did not notice the broken rule {rule}")


def test_scripted_figure8_catches_commit_by_counting(monkeypatch: pytest.MonkeyPatch) -> None:
    c = SimCluster(5, seed=25, options=NodeOptions(entries_per_message_max=1))
    BROKEN["commit_previous_term_by_counting"](monkeypatch)
    with pytest.raises(SafetyViolation, match="can be lost"):
        figure8(c)

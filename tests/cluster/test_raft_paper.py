"""Paper tests: the Raft core against the rules of the paper, one rule per test.

Each docstring cites the section of "In Search of an Understandable Consensus
Algorithm (Extended Version)" (Ongaro & Ousterhout, 2014), or of Ongaro's
thesis "Consensus: Bridging Theory and Practice" (2014) for the extensions
(pre-vote, check-quorum, ReadIndex, leader transfer, learners). Tests are
structured init / step / check, after etcd-io/raft's raft_paper_test.go.
"""

from __future__ import annotations

import random

import pytest

from cluster.messages import (
    NONE,
    Entry,
    EntryType,
    Message,
    MessageType,
    ReadState,
    Role,
    Snapshot,
    SnapshotMeta,
)
from cluster.raft import TRANSFER_CONTEXT
from tests.cluster.rafttest import (
    Net,
    ack_all,
    drain,
    entries,
    make_leader,
    msgs_of,
    new_raft,
    ready,
)

MT = MessageType


# --- §5.1 Raft basics: terms ---------------------------------------------------------


@pytest.mark.parametrize("role", [Role.FOLLOWER, Role.CANDIDATE, Role.LEADER])
def test_follower_updates_term_from_message(role: Role) -> None:
    """§5.1: a server seeing a larger term adopts it and reverts to follower."""
    r = new_raft(term=1)
    if role is Role.CANDIDATE:
        r.campaign()
    elif role is Role.LEADER:
        make_leader(r)
    drain(r)

    r.step(Message(MT.APP, to=1, frm=2, term=5))

    assert r.term == 5
    assert r.role is Role.FOLLOWER
    assert r.leader == 2


def test_candidate_falls_back_on_higher_term() -> None:
    """§5.1: a candidate that learns of a higher term steps back to follower."""
    r = new_raft(term=1)
    r.campaign()
    assert r.role is Role.CANDIDATE
    drain(r)

    r.step(Message(MT.VOTE_RESP, to=1, frm=2, term=r.term + 3, reject=True))

    assert r.role is Role.FOLLOWER
    assert r.term == 5
    assert r.vote == NONE


def test_leader_steps_down_on_higher_term_response() -> None:
    """§5.1: a leader hearing of a higher term, even in a response, steps down."""
    r = new_raft()
    make_leader(r)

    r.step(Message(MT.APP_RESP, to=1, frm=3, term=r.term + 1))

    assert r.role is Role.FOLLOWER
    assert r.leader == NONE


def test_stale_term_message_is_ignored() -> None:
    """§5.1: a request with a stale term number is rejected (here: ignored)."""
    r = new_raft(term=3)
    drain(r)

    r.step(Message(MT.APP, to=1, frm=2, term=2, index=0, log_term=0, entries=tuple(entries(2)),
                   commit=1))

    assert r.term == 3
    assert r.log.last_index() == 0
    assert r.leader == NONE
    assert drain(r) == []


def test_stale_leader_is_told_the_newer_term_when_check_quorum_on() -> None:
    """§5.1 + thesis §4.2.3: with check-quorum, a stale leader is answered so it can step down."""
    r = new_raft(term=3, check_quorum=True)
    drain(r)

    r.step(Message(MT.HEARTBEAT, to=1, frm=2, term=2))

    out = drain(r)
    assert [(m.type, m.to, m.term) for m in out] == [(MT.APP_RESP, 2, 3)]


# --- §5.2 Leader election -----------------------------------------------------------------


def test_start_as_follower() -> None:
    """§5.2: when servers start up, they begin as followers."""
    r = new_raft()
    assert r.role is Role.FOLLOWER
    assert r.leader == NONE


def test_leader_bcast_heartbeat() -> None:
    """§5.2: leaders send periodic heartbeats to all followers to keep their authority."""
    r = new_raft(heartbeat_ticks=1)
    make_leader(r)

    r.tick()

    beats = msgs_of(drain(r), MT.HEARTBEAT)
    assert sorted(m.to for m in beats) == [2, 3]
    assert all(m.term == r.term for m in beats)


@pytest.mark.parametrize("role", [Role.FOLLOWER, Role.CANDIDATE])
def test_election_timeout_starts_campaign(role: Role) -> None:
    """§5.2: on election timeout a follower (or a stuck candidate) starts a new
    election: it increments its term, votes for itself and sends RequestVote to all."""
    r = new_raft(term=1, log=entries(1, 1), commit=2)
    if role is Role.CANDIDATE:
        r.campaign()
    drain(r)
    term = r.term

    for _ in range(2 * r.cfg.election_ticks):
        r.tick()

    assert r.role is Role.CANDIDATE
    assert r.term == term + 1
    assert r.vote == 1
    votes = msgs_of(drain(r), MT.VOTE)
    assert sorted(m.to for m in votes) == [2, 3]
    assert all((m.term, m.index, m.log_term) == (term + 1, 2, 1) for m in votes)


@pytest.mark.parametrize(("size", "granted", "rejected", "role"), [
    (1, [], [], Role.LEADER),
    (3, [2], [], Role.LEADER),
    (3, [2, 3], [], Role.LEADER),
    (3, [], [2, 3], Role.FOLLOWER),
    (3, [], [2], Role.CANDIDATE),
    (5, [2, 3], [], Role.LEADER),
    (5, [2], [], Role.CANDIDATE),
    (5, [2], [3, 4], Role.CANDIDATE),  # node 5 could still make it 3 of 5
    (5, [2], [3, 4, 5], Role.FOLLOWER),
    (5, [], [2, 3, 4], Role.FOLLOWER),
    (5, [], [], Role.CANDIDATE),
])
def test_leader_election_in_one_round(size: int, granted: list[int], rejected: list[int],
                                      role: Role) -> None:
    """§5.2: a candidate wins with votes from a majority, loses once a majority
    refused, and otherwise waits."""
    r = new_raft(voters=range(1, size + 1))
    r.campaign()
    for p in granted:
        r.step(Message(MT.VOTE_RESP, to=1, frm=p, term=r.term))
    for p in rejected:
        r.step(Message(MT.VOTE_RESP, to=1, frm=p, term=r.term, reject=True))
    assert r.role is role


@pytest.mark.parametrize(("vote", "candidate", "granted"), [
    (NONE, 2, True),
    (NONE, 3, True),
    (2, 2, True),
    (3, 3, True),
    (2, 3, False),
    (3, 2, False),
])
def test_follower_votes_once_per_term(vote: int, candidate: int, granted: bool) -> None:
    """§5.2: each server votes for at most one candidate in a given term,
    first-come-first-served."""
    r = new_raft(term=1, vote=vote)
    drain(r)

    r.step(Message(MT.VOTE, to=1, frm=candidate, term=1))

    [resp] = drain(r)
    assert (resp.type, resp.to, resp.reject) == (MT.VOTE_RESP, candidate, not granted)


def test_rejecting_a_vote_does_not_restart_the_election_timer() -> None:
    """§5.2 / Figure 2 (Rules for Servers, Followers): the election timer restarts
    on AppendEntries from the current leader or on GRANTING a vote. A candidate
    with a stale log that keeps asking must not keep the up-to-date member from
    timing out and winning."""
    r = new_raft(term=2, log=entries(1, 2, 2))
    drain(r)
    for _ in range(5):
        r.tick()
    elapsed = r.election_elapsed

    r.step(Message(MT.VOTE, to=1, frm=2, term=3, index=1, log_term=1))  # stale log

    [resp] = drain(r)
    assert resp.reject
    assert r.term == 3
    assert r.election_elapsed == elapsed
    r.step(Message(MT.VOTE, to=1, frm=3, term=4, index=3, log_term=2))  # up to date
    [resp] = drain(r)
    assert not resp.reject
    assert r.election_elapsed == 0


def test_candidate_falls_back_on_append_from_leader_of_same_term() -> None:
    """§5.2: a candidate receiving AppendEntries from a leader of its term recognizes it."""
    r = new_raft(term=1)
    r.campaign()
    drain(r)

    r.step(Message(MT.APP, to=1, frm=3, term=r.term))

    assert r.role is Role.FOLLOWER
    assert r.leader == 3


def test_randomized_election_timeout_range() -> None:
    """§5.2: election timeouts are chosen randomly from a fixed interval
    [election_ticks, 2 * election_ticks) so that split votes are rare."""
    seen = set()
    for seed in range(200):
        r = new_raft(seed=seed, election_ticks=10)
        ticks = 0
        while r.role is Role.FOLLOWER:
            r.tick()
            ticks += 1
            assert ticks < 20
        seen.add(ticks)
    assert seen == set(range(10, 20))


def test_election_timeouts_differ_between_members() -> None:
    """§5.2: randomized timeouts make one server usually time out first."""
    rng = random.Random(7)
    firsts = set()
    for _ in range(50):
        rafts = [new_raft(i, seed=rng.getrandbits(32)) for i in (1, 2, 3)]
        firsts.add(tuple(r.randomized_election_timeout for r in rafts))
    assert any(len(set(t)) == 3 for t in firsts)


# --- §5.3 Log replication ----------------------------------------------------------------


def test_leader_start_replication() -> None:
    """§5.3: the leader appends the command to its log, then issues AppendEntries
    in parallel, with the preceding entry's index and term."""
    r = new_raft()
    first = make_leader(r)
    ack_all(r, first)
    last = r.log.last_index()

    r.propose([b"x"])

    apps = msgs_of(drain(r), MT.APP)
    assert sorted(m.to for m in apps) == [2, 3]
    for m in apps:
        assert (m.index, m.log_term, m.commit) == (last, r.term, last)
        assert m.entries == (Entry(last + 1, r.term, EntryType.NORMAL, b"x"),)


def test_leader_commits_once_majority_replicated() -> None:
    """§5.3: an entry is committed once the leader replicated it on a majority,
    and the leader tells followers the new commit index."""
    r = new_raft(voters=(1, 2, 3, 4, 5))
    ack_all(r, make_leader(r))
    r.propose([b"x"])
    apps = msgs_of(drain(r), MT.APP)
    index = r.log.last_index()

    r.step(Message(MT.APP_RESP, to=1, frm=2, term=r.term, index=index))
    assert r.log.committed < index  # 2 of 5
    r.step(Message(MT.APP_RESP, to=1, frm=3, term=r.term, index=index))

    assert r.log.committed == index
    out = msgs_of(drain(r), MT.APP)
    assert {m.to for m in out} >= {4, 5}
    assert all(m.commit == index for m in out)
    assert len(apps) == 4


@pytest.mark.parametrize(("size", "acceptors", "committed"), [
    (1, set(), True),
    (3, set(), False),
    (3, {2}, True),
    (3, {2, 3}, True),
    (5, set(), False),
    (5, {2}, False),
    (5, {2, 3}, True),
    (5, {2, 3, 4, 5}, True),
])
def test_leader_acknowledge_commit(size: int, acceptors: set[int], committed: bool) -> None:
    """§5.3: committed exactly when a majority (leader included) holds the entry."""
    r = new_raft(voters=range(1, size + 1))
    ack_all(r, make_leader(r))
    r.propose([b"x"])
    drain(r)
    index = r.log.last_index()

    for p in acceptors:
        r.step(Message(MT.APP_RESP, to=1, frm=p, term=r.term, index=index))

    assert (r.log.committed == index) is committed


def test_leader_commits_preceding_entries() -> None:
    """§5.3: committing an entry commits all preceding entries, including those
    created by previous leaders."""
    r = new_raft(term=2, log=entries(1, 2))
    make_leader(r)
    r.propose([b"x"])
    drain(r)
    index = r.log.last_index()

    r.step(Message(MT.APP_RESP, to=1, frm=2, term=r.term, index=index))

    assert r.log.committed == index
    rd = ready(r)
    assert [e.index for e in rd.committed_entries] == list(range(1, index + 1))


def test_follower_commits_up_to_leader_commit() -> None:
    """§5.3: once a follower learns an entry is committed, it applies it."""
    r = new_raft(term=1)
    drain(r)

    r.step(Message(MT.APP, to=1, frm=2, term=1, index=0, log_term=0,
                   entries=tuple(entries(1, 1, 1)), commit=2))

    assert r.log.committed == 2
    rd = ready(r)
    assert [e.index for e in rd.committed_entries] == [1, 2]


@pytest.mark.parametrize(("prev_term", "prev_index", "reject"), [
    (0, 0, False),  # the empty prefix always matches
    (1, 1, False),
    (2, 2, False),
    (1, 2, True),  # term mismatch at an existing index
    (3, 3, True),  # index beyond the log
])
def test_follower_rejects_append_with_mismatched_prev(prev_term: int, prev_index: int,
                                                       reject: bool) -> None:
    """§5.3: if the follower does not find an entry with the same index and term
    as the leader's preceding one, it refuses the new entries."""
    r = new_raft(term=2, log=entries(1, 2))
    drain(r)

    r.step(Message(MT.APP, to=1, frm=2, term=2, index=prev_index, log_term=prev_term))

    [resp] = drain(r)
    assert resp.type is MT.APP_RESP
    assert resp.reject is reject
    if reject:
        assert resp.index == prev_index
        assert resp.reject_hint <= r.log.last_index()


@pytest.mark.parametrize(("prev_index", "prev_term", "sent", "want"), [
    # Appends after the matching prefix.
    (2, 2, [(3, 3)], [(1, 1), (2, 2), (3, 3)]),
    # A conflicting suffix is truncated and replaced.
    (1, 1, [(2, 3), (3, 4)], [(1, 1), (2, 3), (3, 4)]),
    # Entries already present are kept (a duplicate or reordered AppendEntries
    # must not truncate the log).
    (0, 0, [(1, 1)], [(1, 1), (2, 2)]),
    (0, 0, [(1, 1), (2, 2)], [(1, 1), (2, 2)]),
    (0, 0, [(1, 3)], [(1, 3)]),
])
def test_conflicting_suffix_is_truncated(prev_index: int, prev_term: int,
                                         sent: list[tuple[int, int]],
                                         want: list[tuple[int, int]]) -> None:
    """§5.3: if an existing entry conflicts with a new one (same index, different
    term), delete it and all that follow; append entries not already in the log."""
    r = new_raft(term=2, log=[Entry(1, 1, data=b"e1"), Entry(2, 2, data=b"e2")])
    drain(r)
    new = tuple(Entry(i, t, data=b"e%d" % i) for i, t in sent)

    r.step(Message(MT.APP, to=1, frm=2, term=4, index=prev_index, log_term=prev_term,
                   entries=new))

    log = r.log.slice(1, r.log.last_index() + 1, 1 << 30, 1 << 30)
    assert [(e.index, e.term) for e in log] == want
    rd = r.ready()
    if log != [Entry(1, 1, data=b"e1"), Entry(2, 2, data=b"e2")]:
        assert rd.entries, "a changed log must be handed out for persisting"


FIGURE7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIGURE7_FOLLOWERS = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


@pytest.mark.parametrize("case", sorted(FIGURE7_FOLLOWERS))
def test_leader_sync_follower_log(case: str) -> None:
    """§5.3 Figure 7: whatever the follower's log (missing, extra, or conflicting
    entries), the leader forces it to duplicate its own."""
    lead_log = entries(*FIGURE7_LEADER)
    lead = new_raft(1, term=7, log=lead_log, commit=len(lead_log))
    follower = new_raft(2, term=7, log=entries(*FIGURE7_FOLLOWERS[case]))
    lead.campaign()
    drain(lead)
    # The follower may hold the more up-to-date log (case d); the third voter
    # elects the leader, as in etcd's version of this test.
    lead.step(Message(MT.VOTE_RESP, to=1, frm=3, term=lead.term))
    assert lead.role is Role.LEADER
    net = Net(lead, follower)

    net.propose(1, b"x")
    for _ in range(5):
        net.tick(1)

    assert net.log_of(2) == net.log_of(1)
    assert follower.log.committed == lead.log.committed == lead.log.last_index()


# --- §5.4 Safety -----------------------------------------------------------------------------


@pytest.mark.parametrize(("last_index", "last_term", "granted"), [
    (1, 1, False),  # older last term
    (2, 1, False),
    (3, 1, False),
    (1, 2, False),  # same last term, shorter log
    (2, 2, True),  # same last term, same length
    (3, 2, True),
    (1, 3, True),  # newer last term wins whatever the length
])
def test_vote_denied_to_stale_log(last_index: int, last_term: int, granted: bool) -> None:
    """§5.4.1: the voter denies its vote if its own log is more up-to-date than
    the candidate's (compare last terms, then lengths)."""
    r = new_raft(term=2, log=entries(1, 2))
    drain(r)

    r.step(Message(MT.VOTE, to=1, frm=2, term=3, index=last_index, log_term=last_term))

    [resp] = drain(r)
    assert resp.type is MT.VOTE_RESP
    assert resp.reject is not granted
    assert r.vote == (2 if granted else NONE)


def test_leader_commits_only_current_term_entries_by_counting() -> None:
    """§5.4.2 (Figure 8): entries from previous terms are never committed by
    counting replicas; only an entry of the leader's term is, which then
    commits everything before it."""
    r = new_raft(term=2, log=entries(1, 2))
    make_leader(r)  # term 3, no-op at index 3
    assert r.log.last_index() == 3

    r.step(Message(MT.APP_RESP, to=1, frm=2, term=r.term, index=2))
    assert r.log.committed == 0, "a term-2 entry on a majority is not yet committed"

    r.step(Message(MT.APP_RESP, to=1, frm=2, term=r.term, index=3))
    assert r.log.committed == 3


def test_leader_counts_its_own_entries_only_once_persisted() -> None:
    """§5.3/§10.2.1 (thesis): the leader may send before its own write finishes,
    but its copy only counts toward commitment once it is durable."""
    r = new_raft(voters=(1,))
    r.campaign()
    assert r.role is Role.LEADER
    rd = r.ready()
    assert rd.entries
    assert r.log.committed < rd.entries[-1].index
    r.advance(rd)
    assert r.log.committed == rd.entries[-1].index


# --- §5.5 / persistence ---------------------------------------------------------------------


def test_vote_is_persisted_with_the_response() -> None:
    """§5.5 (Figure 2, "persistent state"): a granted vote reaches stable storage
    before the response leaves, so both ride in one Ready."""
    r = new_raft(term=1)
    drain(r)

    r.step(Message(MT.VOTE, to=1, frm=2, term=2))

    rd = r.ready()
    assert rd.hard_state is not None
    assert (rd.hard_state.term, rd.hard_state.vote) == (2, 2)
    assert [m.type for m in rd.messages] == [MT.VOTE_RESP]


def test_append_response_rides_with_the_entries_it_acknowledges() -> None:
    """§5.5: a follower acknowledges entries only in the Ready that persists them."""
    r = new_raft(term=1)
    drain(r)

    r.step(Message(MT.APP, to=1, frm=2, term=1, index=0, log_term=0,
                   entries=tuple(entries(1))))

    rd = r.ready()
    assert [e.index for e in rd.entries] == [1]
    assert [(m.type, m.index) for m in rd.messages] == [(MT.APP_RESP, 1)]


# --- §7 Log compaction -----------------------------------------------------------------------


def test_follower_installs_snapshot_beyond_its_log() -> None:
    """§7: a follower far behind gets InstallSnapshot; it discards its log and
    hands the snapshot to the state machine."""
    r = new_raft(term=1, log=entries(1, 1))
    drain(r)
    meta = SnapshotMeta(index=10, term=3, conf=r.conf)

    r.step(Message(MT.SNAP, to=1, frm=2, term=3, snapshot=Snapshot(meta, b"state")))

    rd = r.ready()
    assert rd.snapshot is not None
    assert rd.snapshot.meta == meta
    assert (r.log.first_index(), r.log.last_index(), r.log.committed) == (11, 10, 10)
    assert [(m.type, m.index) for m in rd.messages] == [(MT.APP_RESP, 10)]


def test_follower_keeps_log_when_snapshot_matches_it() -> None:
    """§7: if the snapshot describes a prefix of the follower's log, entries
    following it are retained."""
    r = new_raft(term=1, log=entries(1, 1, 1, 1))
    drain(r)

    r.step(Message(MT.SNAP, to=1, frm=2, term=1,
                   snapshot=Snapshot(SnapshotMeta(index=2, term=1, conf=r.conf))))

    rd = r.ready()
    assert rd.snapshot is None
    assert r.log.last_index() == 4
    assert r.log.committed == 2


def test_leader_sends_snapshot_to_follower_behind_compaction() -> None:
    """§7: the leader sends InstallSnapshot when the entries a follower needs
    were already discarded."""
    r = new_raft(term=1, log=entries(1, 1, 1, 1, 1), commit=5, applied=5)
    r.compact(4, r.conf)
    make_leader(r)

    # Follower 2 says it has nothing: the probe walks back below the log start.
    r.step(Message(MT.APP_RESP, to=1, frm=2, term=r.term, index=r.log.last_index() - 1,
                   reject=True, reject_hint=0))

    snaps = msgs_of(drain(r), MT.SNAP)
    assert [m.to for m in snaps] == [2]
    assert snaps[0].snapshot is not None
    assert snaps[0].snapshot.meta.index == 4


# --- Thesis extensions ---------------------------------------------------------------------


def test_learner_does_not_vote() -> None:
    """Thesis §4.2.1 (non-voting members): a learner never campaigns, is never
    asked for its vote, and a vote from it does not count."""
    learner = new_raft(4, voters=(1, 2, 3), learners=(4,))
    for _ in range(5 * learner.cfg.election_ticks):
        learner.tick()
    assert learner.role is Role.FOLLOWER
    assert drain(learner) == []

    r = new_raft(1, voters=(1, 2, 3), learners=(4,))
    r.campaign()
    assert sorted(m.to for m in msgs_of(drain(r), MT.VOTE)) == [2, 3]
    r.step(Message(MT.VOTE_RESP, to=1, frm=4, term=r.term))
    assert r.role is Role.CANDIDATE


def test_prevote_does_not_bump_term() -> None:
    """Thesis §9.6: with pre-vote a server first asks whether it could win; a
    partitioned server therefore keeps its term instead of inflating it."""
    r = new_raft(term=2, pre_vote=True)
    drain(r)

    for _ in range(2 * r.cfg.election_ticks):
        r.tick()

    assert r.role is Role.PRE_CANDIDATE
    assert r.term == 2
    assert r.vote == NONE
    pre = msgs_of(drain(r), MT.PRE_VOTE)
    assert sorted(m.to for m in pre) == [2, 3]
    assert all(m.term == 3 for m in pre)  # the term it WOULD campaign in

    for p in (2, 3):
        r.step(Message(MT.PRE_VOTE_RESP, to=1, frm=p, term=2, reject=True))
    assert r.role is Role.FOLLOWER
    assert r.term == 2


def test_prevote_answer_does_not_change_voter_term() -> None:
    """Thesis §9.6: answering a pre-vote changes neither the voter's term nor its vote."""
    r = new_raft(term=2, vote=3, pre_vote=True)
    drain(r)

    r.step(Message(MT.PRE_VOTE, to=1, frm=2, term=3, index=0, log_term=0))

    [resp] = drain(r)
    assert (resp.type, resp.reject, resp.term) == (MT.PRE_VOTE_RESP, False, 3)
    assert (r.term, r.vote) == (2, 3)


def test_prevote_win_starts_real_election() -> None:
    """Thesis §9.6: only after a majority of pre-votes does the server increment its term."""
    r = new_raft(term=2, pre_vote=True)
    r.campaign()
    drain(r)

    r.step(Message(MT.PRE_VOTE_RESP, to=1, frm=2, term=3))

    assert r.role is Role.CANDIDATE
    assert r.term == 3
    assert sorted(m.to for m in msgs_of(drain(r), MT.VOTE)) == [2, 3]


def test_check_quorum_leader_steps_down() -> None:
    """Thesis §6.2: a leader that has not heard from a majority within an election
    timeout steps down, so clients can find the real leader.

    The check runs once per election timeout over "heard from since the last
    check", so a leader cut off just after a check steps down at the second
    check: within two timeouts of its last contact, never later.
    """
    r = new_raft(check_quorum=True)
    make_leader(r)
    for _ in range(r.cfg.election_ticks - 1):
        r.tick()
    r.step(Message(MT.HEARTBEAT_RESP, to=1, frm=2, term=r.term))  # last contact
    drain(r)

    for _ in range(2 * r.cfg.election_ticks):
        r.tick()
        if r.role is not Role.LEADER:
            break

    assert r.role is Role.FOLLOWER
    assert r.leader == NONE


def test_check_quorum_leader_stays_with_majority_contact() -> None:
    """Thesis §6.2: hearing from a majority (itself included) keeps the leader in office."""
    r = new_raft(check_quorum=True)
    make_leader(r)

    for _ in range(3):
        for _ in range(r.cfg.election_ticks - 1):
            r.tick()
        r.step(Message(MT.HEARTBEAT_RESP, to=1, frm=2, term=r.term))
        r.tick()
    assert r.role is Role.LEADER


def test_check_quorum_follower_ignores_vote_while_leader_is_alive() -> None:
    """Thesis §4.2.3: a server that heard from a current leader within the minimum
    election timeout neither updates its term nor grants a vote."""
    r = new_raft(term=2, check_quorum=True)
    r.step(Message(MT.HEARTBEAT, to=1, frm=2, term=2))
    drain(r)

    r.step(Message(MT.VOTE, to=1, frm=3, term=5, index=10, log_term=5))

    assert r.term == 2
    assert r.leader == 2
    assert drain(r) == []


def _leader_with_committed_noop(voters: tuple[int, ...] = (1, 2, 3)) -> tuple[object, int]:
    r = new_raft(voters=voters)
    ack_all(r, make_leader(r))
    assert r.log.committed == r.log.last_index()
    return r, r.log.committed


def test_read_index_requires_heartbeat_quorum() -> None:
    """Thesis §6.4: a read index is served only after a heartbeat round confirms,
    with a majority, that no newer leader exists."""
    r = new_raft(voters=(1, 2, 3, 4, 5))
    ack_all(r, make_leader(r))
    commit = r.log.committed

    r.read_index(b"ctx")

    beats = msgs_of(drain(r), MT.HEARTBEAT)
    assert sorted(m.to for m in beats) == [2, 3, 4, 5]
    assert all(m.context == b"ctx" for m in beats)
    r.step(Message(MT.HEARTBEAT_RESP, to=1, frm=2, term=r.term, context=b"ctx"))
    assert ready(r).read_states == ()  # 2 of 5
    r.step(Message(MT.HEARTBEAT_RESP, to=1, frm=3, term=r.term, context=b"ctx"))
    assert ready(r).read_states == (ReadState(commit, b"ctx"),)


def test_read_index_waits_for_commit_in_current_term() -> None:
    """Thesis §6.4 step 1: a new leader does not know the commit index until an
    entry of its own term commits, so reads wait for that."""
    r = new_raft(term=1, log=entries(1))
    make_leader(r)

    r.read_index(b"early")
    assert msgs_of(drain(r), MT.HEARTBEAT) == []

    out = ack_all(r, [Message(MT.APP, to=2, frm=1, term=r.term, entries=(Entry(2, r.term),))])
    beats = msgs_of(out, MT.HEARTBEAT)
    assert beats
    assert all(m.context == b"early" for m in beats)


def test_read_index_from_follower_is_forwarded_and_answered() -> None:
    """Thesis §6.4: followers ask the leader for its read index and wait for it."""
    lead = new_raft(1)
    f = new_raft(2)
    net = Net(lead, f, new_raft(3))
    net.campaign(1)
    assert lead.role is Role.LEADER

    f.read_index(b"r1")
    net.send()

    assert net.read_states[2] == [ReadState(lead.log.committed, b"r1")]
    assert net.read_states[1] == []


def test_read_index_forwarded_twice_is_answered_to_the_requester() -> None:
    """Thesis §6.4: the read index goes back to the server that asked. A member
    with an outdated idea of the leader asks a follower, which forwards again;
    the answer must still reach the original requester, not the middleman."""
    lead = new_raft(1)
    middle = new_raft(2)
    stale = new_raft(3)
    net = Net(lead, middle, stale)
    net.campaign(1)
    assert lead.role is Role.LEADER
    stale.leader = 2  # it last heard of 2 as leader (say, of an older term)

    stale.read_index(b"r3")
    net.send()

    assert net.read_states[3] == [ReadState(lead.log.committed, b"r3")]
    assert net.read_states[2] == []


def test_transfer_leader_sends_timeout_now() -> None:
    """Thesis §3.10: once the target's log is up to date, the leader sends
    TimeoutNow; the target starts an election at once."""
    r = new_raft()
    ack_all(r, make_leader(r))

    r.transfer_leadership(2)

    assert [(m.type, m.to) for m in drain(r)] == [(MT.TIMEOUT_NOW, 2)]
    assert r.propose([b"x"]) is False, "proposals are refused during a transfer"


def test_transfer_leader_catches_target_up_first() -> None:
    """Thesis §3.10: the leader first brings a lagging target's log up to date."""
    r = new_raft()
    first = make_leader(r)
    r.step(Message(MT.APP_RESP, to=1, frm=3, term=r.term, index=r.log.last_index()))
    drain(r)
    assert first

    r.transfer_leadership(2)
    out = drain(r)
    assert msgs_of(out, MT.TIMEOUT_NOW) == []
    r.step(Message(MT.APP_RESP, to=1, frm=2, term=r.term, index=r.log.last_index()))
    assert [m.to for m in msgs_of(drain(r), MT.TIMEOUT_NOW)] == [2]


def test_timeout_now_skips_prevote_and_overrides_lease() -> None:
    """Thesis §3.10: the target campaigns immediately (no pre-vote), and voters
    grant despite a live leader because the request is marked as a transfer."""
    target = new_raft(2, term=1, pre_vote=True, check_quorum=True)
    target.step(Message(MT.TIMEOUT_NOW, to=2, frm=1, term=1))
    assert target.role is Role.CANDIDATE
    votes = msgs_of(drain(target), MT.VOTE)
    assert all(m.context == TRANSFER_CONTEXT for m in votes)

    voter = new_raft(3, term=1, pre_vote=True, check_quorum=True)
    voter.step(Message(MT.HEARTBEAT, to=3, frm=1, term=1))
    drain(voter)
    voter.step(votes[0] if votes[0].to == 3 else votes[1])
    [resp] = drain(voter)
    assert (resp.type, resp.reject) == (MT.VOTE_RESP, False)


def test_transfer_aborts_after_election_timeout() -> None:
    """Thesis §3.10: a transfer that does not complete within an election timeout
    is aborted and the leader resumes accepting proposals."""
    r = new_raft()
    make_leader(r)
    r.transfer_leadership(2)  # 2 is behind: the leader waits
    drain(r)
    assert r.propose([b"x"]) is False

    for _ in range(r.cfg.election_ticks):
        r.tick()

    assert r.role is Role.LEADER
    assert r.propose([b"x"]) is True


def test_removed_leader_steps_down_when_removal_applies() -> None:
    """Thesis §4.2.2: a leader removed from the configuration steps down once the
    change is applied (it managed the cluster until then)."""
    r = new_raft()
    ack_all(r, make_leader(r))

    r.apply_conf_change(type(r.conf)(voters=frozenset({2, 3})))

    assert r.role is Role.FOLLOWER
    assert not r.promotable()


def test_one_conf_change_at_a_time() -> None:
    """Thesis §4.1: single-server changes are safe only one at a time; the leader
    refuses a new change while an earlier one is unapplied."""
    r = new_raft()
    ack_all(r, make_leader(r))
    assert r.propose([b"cc1"], EntryType.CONF_CHANGE) is True
    assert r.propose([b"cc2"], EntryType.CONF_CHANGE) is False

"""The Raft consensus core: a pure, deterministic state machine.

It is fed `step(message)`, `tick()` and `propose(...)`, and hands back a
`Ready` of what must happen next. No sockets, no clock, no SQLite, no
`await`, no global randomness: randomness arrives as a seeded
`random.Random`, time as integer ticks. That is what lets the simulator in
tests/sim run thousands of clusters per second and replay any one from a seed.

Features, as etcd-io/raft has them: pre-vote and check-quorum (a rejoining
member cannot disrupt a healthy leader; a leader that loses its quorum steps
down), ReadIndex for linearizable reads without log writes, leader transfer
(TimeoutNow), pipelined replication with flow control, snapshots for
followers behind the log's start, and single-server membership changes.

Membership changes are single-server and take effect when the change entry
is APPLIED (etcd's ConfChange v1). One change at a time: the leader refuses a
new change while an earlier one is unapplied. Single-server changes keep any
two majorities of consecutive configurations overlapping, which is all joint
consensus would buy us for one-at-a-time add/remove/promote.

USAGE CONTRACT: after `ready()`, the caller PERSISTS hard state, entries and
snapshot (fsync), THEN SENDS the messages, THEN APPLIES the committed entries
(and the snapshot), THEN CALLS `advance(ready)` — with no `step`/`tick` in
between `ready()` and `advance()`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cluster import limits
from cluster.messages import (
    NONE,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
    SoftState,
)
from cluster.progress import Inflights, Progress, ProgressState
from cluster.quorum import has_quorum
from cluster.raft_election import TRANSFER_CONTEXT, ElectionRole
from cluster.raft_follower import FollowerRole
from cluster.raft_leader import LeaderRole
from cluster.raft_log import RaftLog
from cluster.read_only import ReadOnly

MT = MessageType


@dataclass(frozen=True, slots=True)
class RaftConfig:
    id: int
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    entries_per_message_max: int = limits.append_entries_max
    bytes_per_message_max: int = limits.append_bytes_max
    inflight_max: int = limits.inflight_messages_max
    committed_per_ready_max: int = 4096


@dataclass(frozen=True, slots=True)
class Status:
    id: int
    term: int
    vote: int
    role: Role
    leader: int
    commit: int
    applied: int
    last_index: int
    conf: ConfState
    progress: dict[int, tuple[int, int, str]]  # id -> (match, next, state); leader only


class Raft(LeaderRole, FollowerRole, ElectionRole):
    """One member's Raft state. Construct from what the WAL holds (see BootState)."""

    def __init__(self, config: RaftConfig, *, hard_state: HardState, snapshot_meta: SnapshotMeta,
                 entries: Sequence[Entry], conf: ConfState, rng: random.Random,
                 applied: int = 0) -> None:
        assert config.id != NONE
        assert config.heartbeat_ticks < config.election_ticks
        self.id = config.id
        self.cfg = config
        self._rng = rng
        self.log = RaftLog(snapshot_meta.index, snapshot_meta.term, entries, hard_state.commit)
        self.log.applied = max(self.log.applied, min(applied, self.log.committed))
        self.term = hard_state.term
        self.vote = hard_state.vote
        self.conf = conf
        self.snapshot_meta = snapshot_meta
        self.role = Role.FOLLOWER
        self.leader = NONE
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.read_only = ReadOnly()
        self.pending_read_requests: list[Message] = []
        self.lead_transferee = NONE
        self.pending_conf_index = 0
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_ticks
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self._pending_snapshot: Snapshot | None = None
        self._prev_hard = HardState(self.term, self.vote, self.log.committed)
        self._prev_soft = SoftState(NONE, Role.FOLLOWER)
        self._step_fn: Callable[[Message], None] = self._step_follower
        self._tick_fn: Callable[[], None] = self._tick_election
        self._ready_pending = False
        self.become_follower(self.term, NONE)

    # --- public API ---------------------------------------------------------------

    def tick(self) -> None:
        assert not self._ready_pending, "tick between ready() and advance()"
        self._tick_fn()

    def campaign(self) -> None:
        self.step(Message(MT.HUP, to=self.id, frm=self.id))

    def propose(self, datas: Sequence[bytes], entry_type: EntryType = EntryType.NORMAL) -> bool:
        """Propose entries; False when dropped (no leader known, or a transfer is under way)."""
        if self.role is not Role.LEADER and self.leader == NONE:
            return False
        if self.role is Role.LEADER and self.lead_transferee != NONE:
            return False
        if entry_type is EntryType.CONF_CHANGE and self.role is Role.LEADER \
                and self.pending_conf_index > self.log.applied:
            return False
        entries = tuple(Entry(0, 0, entry_type, d) for d in datas)
        self.step(Message(MT.PROP, to=self.id, frm=self.id, entries=entries))
        return True

    def read_index(self, context: bytes) -> None:
        """Ask for a read index; the answer appears as a ReadState with this context."""
        self.step(Message(MT.READ_INDEX, to=self.id, frm=self.id,
                          entries=(Entry(0, 0, EntryType.NORMAL, context),)))

    def transfer_leadership(self, transferee: int) -> None:
        self.step(Message(MT.TRANSFER_LEADER, to=self.id, frm=transferee))

    def report_snapshot(self, peer: int, *, failed: bool) -> None:
        self.step(Message(MT.SNAP_STATUS, to=self.id, frm=peer, reject=failed))

    def report_unreachable(self, peer: int) -> None:
        pr = self.progress.get(peer)
        if self.role is Role.LEADER and pr is not None and pr.state is ProgressState.REPLICATE:
            pr.become_probe()

    def apply_conf_change(self, conf: ConfState) -> None:
        """Adopt a membership the applier computed from a committed CONF_CHANGE entry."""
        self.conf = conf
        if self.role is Role.LEADER:
            members = conf.voters | conf.learners
            for pid in list(self.progress):
                if pid not in members:
                    del self.progress[pid]
            for pid in sorted(members):
                pr = self.progress.get(pid)
                if pr is None:
                    self.progress[pid] = self._new_progress(pid, match=0)
                else:
                    pr.is_learner = pid in conf.learners
            if self.id not in conf.voters:
                # A removed leader steps down once its removal is applied.
                self.become_follower(self.term, NONE)
                return
            if self._maybe_commit():
                self._bcast_append()
        elif self.id not in conf.voters and self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            self.become_follower(self.term, NONE)

    def compact(self, index: int, conf: ConfState, keep_entries: int = 0) -> None:
        """The caller took a snapshot at `index` (with `conf`): drop the log up to it.

        `keep_entries` entries below the snapshot stay in memory so that a follower
        only slightly behind catches up from the log instead of a whole snapshot
        (etcd keeps 5,000). Followers behind the kept tail get the snapshot.
        """
        term = self.log.term(index)
        assert term is not None, "compacting at an unknown index"
        if index > self.snapshot_meta.index:
            self.snapshot_meta = SnapshotMeta(index=index, term=term, conf=conf)
        self.log.compact(max(self.log.snapshot_index, index - keep_entries))

    def promotable(self) -> bool:
        return self.id in self.conf.voters

    def status(self) -> Status:
        progress = {}
        if self.role is Role.LEADER:
            progress = {pid: (pr.match, pr.next, pr.state.value)
                        for pid, pr in sorted(self.progress.items())}
        return Status(self.id, self.term, self.vote, self.role, self.leader, self.log.committed,
                      self.log.applied, self.log.last_index(), self.conf, progress)

    # --- Ready ---------------------------------------------------------------------

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def has_ready(self) -> bool:
        return bool(
            self.msgs or self.read_states or self._pending_snapshot is not None
            or self._hard_state() != self._prev_hard
            or self.log.stable_index < self.log.last_index()
            or self.log.applied < self.log.committed
            or SoftState(self.leader, self.role) != self._prev_soft)

    def ready(self) -> Ready:
        assert not self._ready_pending, "ready() twice without advance()"
        self._ready_pending = True
        hs = self._hard_state()
        soft = SoftState(self.leader, self.role)
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hs if hs != self._prev_hard else None,
            entries=tuple(self.log.unstable_entries()),
            snapshot=self._pending_snapshot,
            committed_entries=tuple(
                self.log.next_committed_entries(self.cfg.committed_per_ready_max)),
            messages=tuple(self.msgs),
            read_states=tuple(self.read_states),
        )
        self.msgs = []
        self.read_states = []
        return rd

    def advance(self, rd: Ready) -> None:
        """Everything in `rd` was persisted, sent and applied."""
        assert self._ready_pending, "advance() without ready()"
        self._ready_pending = False
        if rd.soft_state is not None:
            self._prev_soft = rd.soft_state
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        if rd.snapshot is not None:
            self._pending_snapshot = None
        if rd.entries:
            last = rd.entries[-1]
            self.log.stable_to(last.index, last.term)
            if self.role is Role.LEADER:
                # The leader counts its own copy only once it is on disk.
                pr = self.progress[self.id]
                if pr.maybe_update(self.log.stable_index) and self._maybe_commit():
                    self._bcast_append()
        if rd.committed_entries:
            self.log.applied_to(rd.committed_entries[-1].index)
        if self.role is Role.LEADER and self.pending_read_requests \
                and self._committed_in_current_term():
            pending, self.pending_read_requests = self.pending_read_requests, []
            for m in pending:
                self._step_leader(m)

    # --- role changes ----------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = NONE
        self.leader = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.cfg.election_ticks + self._rng.randrange(
            self.cfg.election_ticks)
        self.votes = {}
        self.progress = {}
        self.read_only = ReadOnly()
        self.pending_read_requests = []
        self.lead_transferee = NONE

    def become_follower(self, term: int, leader: int) -> None:
        assert term >= self.term, "term never decreases"
        self._reset(term)
        self.leader = leader
        self.role = Role.FOLLOWER
        self._step_fn = self._step_follower
        self._tick_fn = self._tick_election

    def _become_pre_candidate(self) -> None:
        assert self.role is not Role.LEADER, "invalid transition leader -> pre-candidate"
        # Pre-vote changes neither term nor vote: a failed pre-campaign leaves no trace.
        self.votes = {}
        self.leader = NONE
        self.role = Role.PRE_CANDIDATE
        self._step_fn = self._step_candidate
        self._tick_fn = self._tick_election

    def _become_candidate(self) -> None:
        assert self.role is not Role.LEADER, "invalid transition leader -> candidate"
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE
        self._step_fn = self._step_candidate
        self._tick_fn = self._tick_election

    def _become_leader(self) -> None:
        assert self.role is not Role.FOLLOWER, "invalid transition follower -> leader"
        self._reset(self.term)
        self.leader = self.id
        self.role = Role.LEADER
        self._step_fn = self._step_leader
        self._tick_fn = self._tick_heartbeat
        for pid in sorted(self.conf.voters | self.conf.learners):
            self.progress[pid] = self._new_progress(pid, match=0)
        me = self.progress[self.id]
        me.match = self.log.stable_index
        me.become_replicate()
        me.recent_active = True
        # Conservatively assume the tail holds an unapplied conf change.
        self.pending_conf_index = self.log.last_index()
        # The no-op entry of the new term: committing it commits everything before it.
        self._append_entries([Entry(0, 0, EntryType.NORMAL, b"")])

    def _new_progress(self, pid: int, match: int) -> Progress:
        return Progress(match=match, next=self.log.last_index() + 1,
                        inflights=Inflights(self.cfg.inflight_max),
                        is_learner=pid in self.conf.learners, recent_active=True)

    # --- ticks ---------------------------------------------------------------------

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.step(Message(MT.HUP, to=self.id, frm=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_ticks:
            self.election_elapsed = 0
            if self.cfg.check_quorum:
                active = [pid for pid, pr in self.progress.items()
                          if pid == self.id or pr.recent_active]
                if not has_quorum(self.conf.voters, active):
                    self.become_follower(self.term, NONE)
                    return
                for pid, pr in self.progress.items():
                    if pid != self.id:
                        pr.recent_active = False
            if self.lead_transferee != NONE:
                self.lead_transferee = NONE  # the transfer timed out
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self._bcast_heartbeat(b"")

    # --- stepping --------------------------------------------------------------------

    def step(self, m: Message) -> None:
        if m.term > self.term and m.term != 0:
            if m.type in (MT.VOTE, MT.PRE_VOTE):
                in_lease = (self.cfg.check_quorum and self.leader != NONE
                            and self.election_elapsed < self.cfg.election_ticks)
                if in_lease and m.context != TRANSFER_CONTEXT:
                    # We heard from a live leader recently: ignore the disruptor.
                    return
            if m.type is MT.PRE_VOTE or (m.type is MT.PRE_VOTE_RESP and not m.reject):
                pass  # pre-votes never change our term
            elif m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
                self.become_follower(m.term, m.frm)
            elif m.type is MT.VOTE:
                # Raft Figure 2: only GRANTING a vote restarts the election timer
                # (_handle_vote_request does that). Restarting it on every
                # higher-term request lets a candidate with a stale log, which
                # can never win, keep resetting the members that could, and
                # without pre-vote the cluster can go leaderless for many
                # timeouts (seen in the simulator with a removed member that
                # never learned of its removal).
                elapsed = self.election_elapsed
                self.become_follower(m.term, NONE)
                self.election_elapsed = elapsed
            else:
                self.become_follower(m.term, NONE)
        elif m.term < self.term and m.term != 0:
            if (self.cfg.check_quorum or self.cfg.pre_vote) and m.type in (MT.HEARTBEAT, MT.APP):
                # Tell a stale leader about the newer term so it steps down.
                self._send(Message(MT.APP_RESP, to=m.frm, frm=self.id))
            elif m.type is MT.PRE_VOTE:
                self._send(Message(MT.PRE_VOTE_RESP, to=m.frm, frm=self.id, reject=True))
            return

        if m.type is MT.HUP:
            self._hup(transfer=False)
        elif m.type in (MT.VOTE, MT.PRE_VOTE):
            self._handle_vote_request(m)
        else:
            self._step_fn(m)

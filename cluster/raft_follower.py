"""Follower and candidate halves of the Raft core: AppendEntries, snapshots, forwarding.

Split from cluster/raft.py only to keep files short; `Raft` inherits it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cluster.messages import (
    NONE,
    Message,
    MessageType,
    ReadState,
    Role,
    Snapshot,
)

if TYPE_CHECKING:
    from cluster.raft_state import RaftState

MT = MessageType


class FollowerRole:
    """Methods used while following or campaigning.

    `self` is always a `Raft`; it is typed as the `RaftState` Protocol
    (cluster/raft_state.py) so that mypy can check the composition.
    """

    # mypy turns `self._pending_snapshot = m.snapshot` in _handle_snapshot into an
    # attribute of this class typed `Snapshot` (narrowed by the assert there), which
    # clashes with Raft's `Snapshot | None`. Declaring it here (an annotation only,
    # nothing at run time) keeps the one type.
    _pending_snapshot: Snapshot | None

    def _step_candidate(self: RaftState, m: Message) -> None:
        expected = MT.PRE_VOTE_RESP if self.role is Role.PRE_CANDIDATE else MT.VOTE_RESP
        if m.type is MT.PROP:
            return  # no leader: dropped
        if m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
            self.become_follower(m.term, m.frm)
            self._step_follower(m)
        elif m.type is expected:
            self._record_vote(m)
        elif m.type is MT.TIMEOUT_NOW:
            pass  # a candidate ignores it

    def _step_follower(self: RaftState, m: Message) -> None:
        t = m.type
        if t is MT.PROP:
            if self.leader != NONE:
                self._send(Message(MT.PROP, to=self.leader, frm=self.id, entries=m.entries))
        elif t is MT.APP:
            self.election_elapsed = 0
            self.leader = m.frm
            self._handle_append(m)
        elif t is MT.HEARTBEAT:
            self.election_elapsed = 0
            self.leader = m.frm
            self.log.commit_to(min(m.commit, self.log.last_index()))
            self._send(Message(MT.HEARTBEAT_RESP, to=m.frm, frm=self.id, context=m.context))
        elif t is MT.SNAP:
            self.election_elapsed = 0
            self.leader = m.frm
            self._handle_snapshot(m)
        elif t is MT.TIMEOUT_NOW:
            self._hup(transfer=True)
        elif t in (MT.READ_INDEX, MT.TRANSFER_LEADER):
            if self.leader != NONE:
                # Keep the original sender: a request forwarded twice (by a
                # member with an outdated leader) must be answered to the
                # member that asked, not to us. For a local request frm is us.
                self._send(Message(t, to=self.leader, frm=m.frm, entries=m.entries))
        elif t is MT.READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.entries[0].data if m.entries else b""))

    def _handle_append(self: RaftState, m: Message) -> None:
        if m.index < self.log.committed:
            self._send(Message(MT.APP_RESP, to=m.frm, frm=self.id, index=self.log.committed))
            return
        last_new = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._send(Message(MT.APP_RESP, to=m.frm, frm=self.id, index=last_new))
        else:
            hint, hint_term = self.log.find_conflict_by_term(m.index, m.log_term)
            self._send(Message(MT.APP_RESP, to=m.frm, frm=self.id, index=m.index, reject=True,
                               reject_hint=hint, log_term=hint_term))

    def _handle_snapshot(self: RaftState, m: Message) -> None:
        assert m.snapshot is not None
        meta = m.snapshot.meta
        if meta.index <= self.log.committed:
            self._send(Message(MT.APP_RESP, to=m.frm, frm=self.id, index=self.log.committed))
            return
        if self.log.match_term(meta.index, meta.term):
            # We already hold the entries the snapshot covers: just fast-forward commit.
            self.log.commit_to(meta.index)
        else:
            self.log.restore(meta.index, meta.term)
            self.conf = meta.conf
            self.snapshot_meta = meta
            self._pending_snapshot = m.snapshot
        self._send(Message(MT.APP_RESP, to=m.frm, frm=self.id, index=self.log.last_index()))

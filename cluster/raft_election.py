"""Elections in the Raft core: pre-vote, RequestVote, vote counting (Raft §5.2, §9.6).

Split from cluster/raft.py only to keep files short; `Raft` inherits it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cluster.messages import (
    NONE,
    EntryType,
    Message,
    MessageType,
    Role,
)
from cluster.quorum import VoteResult, vote_result

if TYPE_CHECKING:
    from cluster.raft_state import RaftState

MT = MessageType

TRANSFER_CONTEXT = b"transfer"
"""Vote context of a campaign started by TimeoutNow: it may override a leader lease."""


class ElectionRole:
    """Campaigning and voting.

    `self` is always a `Raft`; it is typed as the `RaftState` Protocol
    (cluster/raft_state.py) so that mypy can check the composition.
    """

    def _hup(self: RaftState, *, transfer: bool) -> None:
        if self.role is Role.LEADER or not self.promotable():
            return
        if self.log.applied < self.log.committed and self._has_unapplied_conf_change():
            return  # etcd: do not campaign with a pending configuration change
        if self.cfg.pre_vote and not transfer:
            self._become_pre_candidate()
            self._request_votes(MT.PRE_VOTE, self.term + 1, b"")
        else:
            self._become_candidate()
            self._request_votes(MT.VOTE, self.term, TRANSFER_CONTEXT if transfer else b"")

    def _has_unapplied_conf_change(self: RaftState) -> bool:
        base = self.log.applied + 1
        return any(e.type is EntryType.CONF_CHANGE
                   for e in self.log.slice(base, self.log.committed + 1, 1 << 62, 1 << 30)) \
            if base <= self.log.committed else False

    def _request_votes(self: RaftState, mtype: MessageType, term: int, context: bytes) -> None:
        resp = MT.PRE_VOTE_RESP if mtype is MT.PRE_VOTE else MT.VOTE_RESP
        self._record_vote(Message(resp, to=self.id, frm=self.id, term=term))
        for pid in sorted(self.conf.voters):
            if pid != self.id:
                self._send(Message(mtype, to=pid, frm=self.id, term=term,
                                   index=self.log.last_index(), log_term=self.log.last_term(),
                                   context=context))

    def _handle_vote_request(self: RaftState, m: Message) -> None:
        can_vote = (self.vote == m.frm
                    or (self.vote == NONE and self.leader == NONE)
                    or (m.type is MT.PRE_VOTE and m.term > self.term))
        resp = MT.PRE_VOTE_RESP if m.type is MT.PRE_VOTE else MT.VOTE_RESP
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            self._send(Message(resp, to=m.frm, frm=self.id, term=m.term))
            if m.type is MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.frm
        else:
            self._send(Message(resp, to=m.frm, frm=self.id, term=self.term, reject=True))

    def _record_vote(self: RaftState, m: Message) -> None:
        self.votes.setdefault(m.frm, not m.reject)
        result = vote_result(self.conf.voters, self.votes)
        if result is VoteResult.WON:
            if self.role is Role.PRE_CANDIDATE:
                self._become_candidate()
                self._request_votes(MT.VOTE, self.term, b"")
            else:
                self._become_leader()
                self._bcast_append()
        elif result is VoteResult.LOST:
            self.become_follower(self.term, NONE)

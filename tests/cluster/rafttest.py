"""Helpers for driving bare Raft cores in unit tests (etcd's raft_test.go harness, trimmed).

No persistence and no clock: `drain` plays the whole Ready contract in one
go (as if persisting were instant) and hands back the messages to send;
`Net` delivers messages between cores synchronously until the network is
quiet, optionally dropping some links.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from cluster.messages import (
    ConfState,
    Entry,
    HardState,
    Message,
    MessageType,
    ReadState,
    Ready,
    Role,
    SnapshotMeta,
)
from cluster.raft import Raft, RaftConfig

MT = MessageType


def entries(*terms: int, start: int = 1) -> list[Entry]:
    """Entries with the given terms at consecutive indexes from `start`."""
    return [Entry(start + i, t, data=b"e%d" % (start + i)) for i, t in enumerate(terms)]


def new_raft(node_id: int = 1, voters: Iterable[int] = (1, 2, 3), *, learners: Iterable[int] = (),
             term: int = 0, vote: int = 0, commit: int = 0, log: Sequence[Entry] = (),
             snapshot: SnapshotMeta | None = None, pre_vote: bool = False,
             check_quorum: bool = False, election_ticks: int = 10, heartbeat_ticks: int = 1,
             seed: int = 0, applied: int = 0, entries_per_message_max: int = 256) -> Raft:
    conf = ConfState(voters=frozenset(voters), learners=frozenset(learners))
    meta = snapshot if snapshot is not None else SnapshotMeta(conf=conf)
    cfg = RaftConfig(id=node_id, election_ticks=election_ticks, heartbeat_ticks=heartbeat_ticks,
                     pre_vote=pre_vote, check_quorum=check_quorum,
                     entries_per_message_max=entries_per_message_max)
    return Raft(cfg, hard_state=HardState(term, vote, commit), snapshot_meta=meta,
                entries=list(log), conf=conf, rng=random.Random(seed), applied=applied)


def drain(r: Raft) -> list[Message]:
    """Run every pending Ready (persist = instant) and return the messages to send."""
    out: list[Message] = []
    while r.has_ready():
        rd = r.ready()
        out.extend(rd.messages)
        r.advance(rd)
    return out


def ready(r: Raft) -> Ready:
    """One Ready, advanced at once (for tests that look at what it carried)."""
    rd = r.ready()
    r.advance(rd)
    return rd


def msgs_of(msgs: Iterable[Message], mtype: MessageType) -> list[Message]:
    return [m for m in msgs if m.type is mtype]


def make_leader(r: Raft) -> list[Message]:
    """Elect `r` (pre-vote off) by feeding it granted votes; returns its first messages."""
    r.campaign()
    drain(r)
    for peer in sorted(r.conf.voters - {r.id}):
        if r.role is Role.LEADER:
            break
        r.step(Message(MT.VOTE_RESP, to=r.id, frm=peer, term=r.term))
    assert r.role is Role.LEADER
    return drain(r)


def ack_all(r: Raft, msgs: Iterable[Message]) -> list[Message]:
    """Answer every APP in `msgs` as an in-sync follower would; returns the leader's replies."""
    for m in msgs:
        if m.type is MT.APP:
            last = m.entries[-1].index if m.entries else m.index
            r.step(Message(MT.APP_RESP, to=r.id, frm=m.to, term=r.term, index=last))
    return drain(r)


class Net:
    """Synchronous delivery between cores; links in `cut` drop everything."""

    def __init__(self, *rafts: Raft) -> None:
        self.rafts = {r.id: r for r in rafts}
        self.cut: set[tuple[int, int]] = set()
        self.delivered: list[Message] = []
        self.read_states: dict[int, list[ReadState]] = {r.id: [] for r in rafts}

    def _drain(self, r: Raft) -> list[Message]:
        out: list[Message] = []
        while r.has_ready():
            rd = r.ready()
            out.extend(rd.messages)
            self.read_states[r.id].extend(rd.read_states)
            r.advance(rd)
        return out

    def isolate(self, node_id: int) -> None:
        for other in self.rafts:
            if other != node_id:
                self.cut.add((node_id, other))
                self.cut.add((other, node_id))

    def send(self, *msgs: Message, limit: int = 10_000) -> None:
        queue = list(msgs)
        for r in self.rafts.values():
            queue.extend(self._drain(r))
        while queue:
            limit -= 1
            assert limit > 0, "network never went quiet"
            m = queue.pop(0)
            r = self.rafts.get(m.to)
            if r is None or (m.frm, m.to) in self.cut:
                continue
            self.delivered.append(m)
            r.step(m)
            queue.extend(self._drain(r))

    def tick(self, node_id: int, times: int = 1) -> None:
        r = self.rafts[node_id]
        for _ in range(times):
            r.tick()
            self.send(*self._drain(r))

    def campaign(self, node_id: int) -> None:
        self.send(Message(MT.HUP, to=node_id, frm=node_id))

    def propose(self, node_id: int, *datas: bytes) -> bool:
        ok = self.rafts[node_id].propose(list(datas))
        self.send()
        return ok

    def log_of(self, node_id: int) -> list[Entry]:
        log = self.rafts[node_id].log
        return log.slice(log.first_index(), log.last_index() + 1, 1 << 62, 1 << 62) \
            if log.last_index() >= log.first_index() else []

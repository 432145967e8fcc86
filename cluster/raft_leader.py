"""The leader's half of the Raft core: replication, commit, heartbeats, reads, transfer.

Split from cluster/raft.py only to keep files short; `Raft` inherits it and
the two share state through `self`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cluster.messages import (
    NONE,
    Entry,
    EntryType,
    Message,
    MessageType,
    ReadState,
    Role,
    Snapshot,
)
from cluster.progress import ProgressState
from cluster.quorum import committed_index, has_quorum

if TYPE_CHECKING:
    from cluster.raft_state import RaftState

MT = MessageType


class LeaderRole:
    """Methods used while leading.

    `self` is always a `Raft`; it is typed as the `RaftState` Protocol
    (cluster/raft_state.py) so that mypy can check the composition.
    """

    def _send(self: RaftState, m: Message) -> None:
        if m.term == 0 and m.type not in (MT.PROP, MT.READ_INDEX, MT.TRANSFER_LEADER):
            m = Message(m.type, m.to, m.frm, self.term, m.log_term, m.index, m.entries,
                        m.commit, m.reject, m.reject_hint, m.context, m.snapshot)
        self.msgs.append(m)

    def _append_entries(self: RaftState, entries: list[Entry]) -> None:
        last = self.log.last_index()
        stamped = [Entry(last + 1 + i, self.term, e.type, e.data) for i, e in enumerate(entries)]
        for e in stamped:
            if e.type is EntryType.CONF_CHANGE:
                self.pending_conf_index = e.index
        self.log.append(stamped)

    def _committed_in_current_term(self: RaftState) -> bool:
        return self.log.term(self.log.committed) == self.term

    def _maybe_commit(self: RaftState) -> bool:
        match = {pid: pr.match for pid, pr in self.progress.items()}
        index = committed_index(self.conf.voters, match)
        # Raft §5.4.2: only entries of the current term are committed by counting.
        if index > self.log.committed and self.log.term(index) == self.term:
            self.log.commit_to(index)
            return True
        return False

    def _bcast_append(self: RaftState) -> None:
        for pid in sorted(self.progress):
            if pid != self.id:
                self._send_append(pid, send_if_empty=True)

    def _send_append(self: RaftState, pid: int, *, send_if_empty: bool) -> bool:
        pr = self.progress[pid]
        if pr.is_paused():
            return False
        prev_index = pr.next - 1
        prev_term = self.log.term(prev_index)
        if prev_term is None:
            return self._send_snapshot(pid)
        entries: list[Entry] = []
        if pr.next <= self.log.last_index():
            entries = self.log.slice(pr.next, self.log.last_index() + 1,
                                     self.cfg.bytes_per_message_max,
                                     self.cfg.entries_per_message_max)
        if not entries and not send_if_empty:
            return False
        self._send(Message(MT.APP, to=pid, frm=self.id, index=prev_index, log_term=prev_term,
                           entries=tuple(entries), commit=self.log.committed))
        if entries:
            pr.sent_entries(entries[-1].index)
        elif pr.state is ProgressState.PROBE:
            pr.probe_sent = True
        return True

    def _send_snapshot(self: RaftState, pid: int) -> bool:
        pr = self.progress[pid]
        if not pr.recent_active:
            return False
        meta = self.snapshot_meta
        # The snapshot's bytes are attached by the member's snapshot sender, not here.
        self._send(Message(MT.SNAP, to=pid, frm=self.id, snapshot=Snapshot(meta=meta)))
        pr.become_snapshot(meta.index)
        return True

    def _bcast_heartbeat(self: RaftState, context: bytes) -> None:
        ctx = context or self.read_only.last_pending_context()
        for pid in sorted(self.progress):
            if pid == self.id:
                continue
            pr = self.progress[pid]
            self._send(Message(MT.HEARTBEAT, to=pid, frm=self.id,
                               commit=min(pr.match, self.log.committed), context=ctx))

    def _step_leader(self: RaftState, m: Message) -> None:
        t = m.type
        if t is MT.BEAT:
            self._bcast_heartbeat(b"")
        elif t is MT.PROP:
            if self.id not in self.progress or self.lead_transferee != NONE:
                return  # removed, or handing over: dropped
            entries = list(m.entries)
            for i, e in enumerate(entries):
                if e.type is EntryType.CONF_CHANGE and self.pending_conf_index > self.log.applied:
                    entries[i] = Entry(0, 0, EntryType.NORMAL, b"")  # refused, as etcd does
            self._append_entries(entries)
            self._bcast_append()
        elif t is MT.READ_INDEX:
            self._leader_read_index(m)
        elif t in (MT.APP_RESP, MT.HEARTBEAT_RESP, MT.SNAP_STATUS, MT.TRANSFER_LEADER):
            pr = self.progress.get(m.frm)
            if pr is None:
                return
            if t is MT.APP_RESP:
                self._handle_append_response(m)
            elif t is MT.HEARTBEAT_RESP:
                pr.recent_active = True
                pr.probe_sent = False
                if pr.state is ProgressState.REPLICATE and pr.inflights.full():
                    pr.inflights.free_first()  # lost messages must not stall the window forever
                if pr.match < self.log.last_index():
                    # Empty probe: a follower with a gap rejects it and we back off.
                    self._send_append(m.frm, send_if_empty=True)
                if m.context:
                    self._handle_read_ack(m)
            elif t is MT.SNAP_STATUS:
                if pr.state is ProgressState.SNAPSHOT:
                    if m.reject:
                        pr.pending_snapshot = 0
                    pr.become_probe()
                    pr.probe_sent = True  # wait a heartbeat before probing again
            else:
                self._handle_transfer(m.frm)

    def _handle_append_response(self: RaftState, m: Message) -> None:
        pr = self.progress[m.frm]
        pr.recent_active = True
        if m.reject:
            hint = m.reject_hint
            if pr.maybe_decr_to(m.index, hint):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.frm, send_if_empty=True)
            return
        old_paused = pr.is_paused()
        if pr.maybe_update(m.index):
            if pr.state is ProgressState.PROBE:
                pr.become_replicate()
            elif pr.state is ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
                pr.become_probe()
                pr.become_replicate()
            else:
                pr.inflights.free_le(m.index)
            if self._maybe_commit():
                self._bcast_append()
            elif old_paused:
                self._send_append(m.frm, send_if_empty=False)
            while self._send_append(m.frm, send_if_empty=False):
                pass
            if m.frm == self.lead_transferee and pr.match == self.log.last_index():
                self._send(Message(MT.TIMEOUT_NOW, to=m.frm, frm=self.id))

    def _leader_read_index(self: RaftState, m: Message) -> None:
        context = m.entries[0].data if m.entries else b""
        if len(self.conf.voters) == 1 and self.id in self.conf.voters:
            self._release_read(m.frm, self.log.committed, context)
            return
        if not self._committed_in_current_term():
            # Until the no-op of this term commits we do not know the real commit index.
            self.pending_read_requests.append(m)
            return
        self.read_only.add_request(self.log.committed, m.frm, context)
        self.read_only.recv_ack(self.id, context)
        self._bcast_heartbeat(context)

    def _handle_read_ack(self: RaftState, m: Message) -> None:
        acks = self.read_only.recv_ack(m.frm, m.context)
        if acks is None or not has_quorum(self.conf.voters, acks):
            return
        for status in self.read_only.advance(m.context):
            self._release_read(status.requester, status.index, status.context)

    def _release_read(self: RaftState, requester: int, index: int, context: bytes) -> None:
        if requester == self.id or requester == NONE:
            self.read_states.append(ReadState(index, context))
        else:
            self._send(Message(MT.READ_INDEX_RESP, to=requester, frm=self.id, index=index,
                               entries=(Entry(0, 0, EntryType.NORMAL, context),)))

    def _handle_transfer(self: RaftState, transferee: int) -> None:
        if self.role is not Role.LEADER:
            return
        pr = self.progress.get(transferee)
        if pr is None or pr.is_learner or transferee == self.id:
            return
        if self.lead_transferee == transferee:
            return
        self.lead_transferee = transferee
        self.election_elapsed = 0  # the transfer must finish within one election timeout
        if pr.match == self.log.last_index():
            self._send(Message(MT.TIMEOUT_NOW, to=transferee, frm=self.id))
        else:
            self._send_append(transferee, send_if_empty=True)

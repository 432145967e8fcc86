"""The single owner of the Raft core: feeds it input, carries out each Ready.

Loop: take one input, drain whatever else is already queued (so a burst of
proposals becomes one log append, one fsync and one AppendEntries per peer),
then run the Ready cycle: PERSIST (one SQLite transaction, fsync) → SEND →
hand committed entries to the applier → ADVANCE. Nothing else touches the
core, so it needs no lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import trio

from actors.events import (
    PeerMessages,
    Propose,
    RaftInput,
    ReadIndexRequest,
    SnapshotStatus,
    SnapshotTaken,
    Tick,
    TransferLeader,
)
from actors.snapshot_transfer import SnapshotSender, parse_descriptor
from actors.transport import PeerTransport
from actors.wait import WaitRegistry
from cluster import limits
from cluster.conf_change import ConfChange
from cluster.errors import BadRequestError, NoLeaderError
from cluster.messages import (
    NONE,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MessageType,
    Ready,
    Role,
    SnapshotMeta,
)
from cluster.raft import Raft
from storage.protocols import RaftWal
from storage.snapshots import SnapshotFile, SnapshotStore

log = logging.getLogger("etcdlite.raft")


@dataclass(frozen=True, slots=True)
class ApplyBatch:
    """Committed entries for the applier, or a received snapshot to install (then `done`)."""

    entries: tuple[Entry, ...]
    conf_after: ConfState
    snapshot: SnapshotFile | None = None
    done: trio.Event | None = None


@dataclass(frozen=True, slots=True)
class RaftView:
    """What the rest of the member may read about Raft, replaced after every Ready."""

    member_id: int
    role: Role
    leader: int
    term: int
    commit_index: int
    last_index: int
    conf: ConfState
    match: dict[int, int]  # leader only: how far each member's log is known to match


class RaftNode:
    def __init__(self, raft: Raft, wal: RaftWal, transport: PeerTransport,
                 inbox: trio.MemoryReceiveChannel[RaftInput],
                 apply_out: trio.MemorySendChannel[ApplyBatch], waits: WaitRegistry,
                 name: str, on_conf_change: Callable[[ConfState, ConfChange], None],
                 snapshots: SnapshotStore, snapshot_sender: SnapshotSender,
                 log_tail_entries: int) -> None:
        self._snapshots = snapshots
        self._snapshot_sender = snapshot_sender
        self._log_tail_entries = log_tail_entries
        self._raft = raft
        self._wal = wal
        self._transport = transport
        self._inbox = inbox
        self._apply_out = apply_out
        self._waits = waits
        self._name = name
        self._on_conf_change = on_conf_change
        self._proposals: list[Propose] = []
        self._persisted = HardState(raft.term, raft.vote, raft.log.committed)
        self.view = self._make_view()
        self._view_changed = trio.Event()

    async def wait_view_change(self) -> None:
        """Return after the next Ready has been processed (role, leader, term may differ)."""
        await self._view_changed.wait()

    def _make_view(self) -> RaftView:
        r = self._raft
        match = {pid: pr.match for pid, pr in r.progress.items()} if r.role is Role.LEADER else {}
        return RaftView(r.id, r.role, r.leader, r.term, r.log.committed, r.log.last_index(),
                        r.conf, match)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> NoReturn:
        task_status.started()
        await self._process_ready()
        async with self._inbox, self._apply_out:
            while True:
                self._handle(await self._inbox.receive())
                for _ in range(limits.proposal_batch_max):
                    try:
                        self._handle(self._inbox.receive_nowait())
                    except trio.WouldBlock:
                        break
                self._flush_proposals()
                await self._process_ready()
        raise AssertionError("raft node should never complete")

    def _handle(self, item: RaftInput) -> None:
        raft = self._raft
        if isinstance(item, PeerMessages):
            for m in item.messages:
                raft.step(m)
        elif isinstance(item, Tick):
            raft.tick()
        elif isinstance(item, Propose):
            if item.entry_type is EntryType.NORMAL:
                self._proposals.append(item)
            else:
                self._flush_proposals()
                if not raft.propose([item.data], item.entry_type):
                    self._waits.trigger(item.request_id, BadRequestError(
                        "a membership change is already in progress or there is no leader"))
        elif isinstance(item, ReadIndexRequest):
            raft.read_index(item.context)
        elif isinstance(item, TransferLeader):
            raft.transfer_leadership(item.target)
        elif isinstance(item, SnapshotStatus):
            raft.report_snapshot(item.peer, failed=item.failed)
        elif isinstance(item, SnapshotTaken):
            self._compact(item.meta)

    def _flush_proposals(self) -> None:
        if not self._proposals:
            return
        batch, self._proposals = self._proposals, []
        if not self._raft.propose([p.data for p in batch]):
            for p in batch:
                self._waits.trigger(p.request_id, NoLeaderError("no leader to take the write"))

    async def _process_ready(self) -> None:
        raft = self._raft
        while raft.has_ready():
            rd = raft.ready()
            self._log_soft_state(rd)
            # PERSIST before anything that depends on it leaves this process.
            if rd.snapshot is not None:
                await self._install_snapshot(rd)
            if self._must_sync(rd):
                # In a worker thread: while the fsync runs, the server keeps queueing
                # proposals, and the next Ready takes them all (group commit).
                await trio.to_thread.run_sync(
                    self._wal.save, rd.hard_state, rd.entries,
                    rd.snapshot.meta if rd.snapshot is not None else None)
                if rd.hard_state is not None:
                    self._persisted = rd.hard_state
            # SEND.
            for m in rd.messages:
                if m.type is MessageType.SNAP:
                    self._snapshot_sender.send_nowait(m)
                else:
                    self._transport.send_nowait(m)
            for rs in rd.read_states:
                self._waits.trigger(rs.context, rs.index)
            # APPLY (handed to the applier in order; membership takes effect here).
            if rd.committed_entries:
                for e in rd.committed_entries:
                    if e.type is EntryType.CONF_CHANGE:
                        self._apply_conf_change(e)
                await self._apply_out.send(ApplyBatch(rd.committed_entries, raft.conf))
            raft.advance(rd)
            self.view = self._make_view()
            self._view_changed.set()
            self._view_changed = trio.Event()

    def _must_sync(self, rd: Ready) -> bool:
        """Whether this Ready needs the disk (etcd's MustSync).

        A hard state that only moved its commit index is not worth an fsync: a
        commit index lost in a crash is learnt again from the leader, and the
        next write that does sync carries it along.
        """
        if rd.entries or rd.snapshot is not None:
            return True
        hs = rd.hard_state
        return hs is not None and (hs.term, hs.vote) != (self._persisted.term,
                                                         self._persisted.vote)

    async def _install_snapshot(self, rd: Ready) -> None:
        """Replace the applied state by a received snapshot BEFORE the WAL records it.

        In that order a crash in between leaves state ahead of the log, which the
        exactly-once apply tolerates; the other order would lose entries.
        """
        assert rd.snapshot is not None
        meta = rd.snapshot.meta
        path, sha256 = parse_descriptor(rd.snapshot.data)
        snap = self._snapshots.adopt(path, meta, sha256)
        done = trio.Event()
        await self._apply_out.send(ApplyBatch((), meta.conf, snapshot=snap, done=done))
        await done.wait()
        log.info("%s installed snapshot at index %d term %d", self._name, meta.index, meta.term)

    def _compact(self, meta: SnapshotMeta) -> None:
        raft = self._raft
        if meta.index <= raft.snapshot_meta.index or meta.index > raft.log.applied:
            return
        if raft.log.term(meta.index) != meta.term:
            return  # the log moved on (a newer snapshot was installed meanwhile)
        raft.compact(meta.index, meta.conf, keep_entries=self._log_tail_entries)
        # The hard state goes along: the WAL's commit must cover the snapshot.
        self._persisted = HardState(raft.term, raft.vote,
                                    min(raft.log.committed, raft.log.stable_index))
        self._wal.save(self._persisted, [], raft.snapshot_meta)
        log.info("%s compacted the log at snapshot %d", self._name, meta.index)

    def _apply_conf_change(self, e: Entry) -> None:
        try:
            change = ConfChange.from_bytes(e.data)
        except BadRequestError:
            log.error("%s ignored malformed conf change at index %d", self._name, e.index)
            return
        conf = change.apply_to(self._raft.conf)
        self._raft.apply_conf_change(conf)
        self._on_conf_change(conf, change)

    def _log_soft_state(self, rd: Ready) -> None:
        ss = rd.soft_state
        if ss is None:
            return
        term = self._raft.term
        if ss.role is Role.LEADER:
            log.info("%s became leader at term %d", self._name, term)
        elif ss.leader == NONE:
            log.info("%s is %s at term %d, no leader", self._name, ss.role.value, term)
        else:
            log.info("%s is follower of %x at term %d", self._name, ss.leader, term)

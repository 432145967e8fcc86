"""One simulated member: a Raft core, a durable store, and a toy state machine.

The durable store (`DurableStore`) holds exactly what the member persisted
through the Ready contract: hard state, snapshot meta + image, log entries.
A crash throws away everything else (the Raft object, the state machine,
pending client requests) and a restart rebuilds the member from the store,
the way a real member boots from its WAL and snapshot file.

The state machine is the list of applied entry datas, index-aligned
(`state[i - 1]` is the data of log entry `i`, no-ops and conf changes
included): comparing it across members compares everything ever applied,
and a snapshot image is simply a prefix of it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from cluster import codec
from cluster.conf_change import ConfChange
from cluster.messages import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
)
from cluster.raft import Raft, RaftConfig
from tests.sim.checkers import Checker

SendFn = Callable[[Message, int], None]


@dataclass(slots=True)
class DurableStore:
    """What survives a crash: exactly what was persisted from Readies (and compact())."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot_meta: SnapshotMeta = field(default_factory=SnapshotMeta)
    snapshot_image: tuple[bytes, ...] = ()
    entries: list[Entry] = field(default_factory=list)

    def append(self, entries: tuple[Entry, ...] | list[Entry]) -> None:
        """Write entries after truncating any suffix they replace (a WAL append)."""
        if not entries:
            return
        first = entries[0].index
        keep = first - self.snapshot_meta.index - 1
        assert 0 <= keep <= len(self.entries), "durable log would get a gap"
        del self.entries[keep:]
        self.entries.extend(entries)

    def last_index(self) -> int:
        return self.snapshot_meta.index + len(self.entries)


@dataclass(slots=True)
class NodeOptions:
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    snapshot_every: int = 0  # 0: never compact; else compact every K applied entries
    snapshot_tail: int = 2  # entries kept below the applied index when compacting
    compact_keep_entries: bool = False  # keep the tail via compact(keep_entries=) instead
    inflight_max: int = 8
    entries_per_message_max: int = 8
    # Probability that a node leaves its Ready for later after an event, so that
    # several steps/ticks pile up before one Ready, as in a member whose WAL
    # writer is busy. The contract allows it; synchronous Readies would hide
    # every bug that needs two steps between persists.
    ready_defer: float = 0.0
    committed_per_ready_max: int = 4096


class SimNode:
    """A member: drive it with `tick`/`step`/`propose`/`read`, it processes its Readies."""

    def __init__(self, node_id: int, store: DurableStore, options: NodeOptions,
                 checker: Checker, send: SendFn, rng: random.Random) -> None:
        self.id = node_id
        self.store = store
        self.options = options
        self.checker = checker
        self._send = send
        self.rng = rng
        self.incarnation = 0
        self.up = False
        self.removed = False  # applied its own removal: it stops, as an etcd member does
        self.crash_mid_persist = False  # the next syncing Ready is torn, then the node dies
        self.deferred = False  # has work it chose not to take a Ready for yet
        self.raft: Raft | None = None
        self.state: list[bytes] = []
        self.conf_history: list[tuple[int, ConfState]] = []
        self.pending_writes: set[bytes] = set()
        self.pending_reads: dict[bytes, int] = {}  # read context -> acked index at issue
        self.read_waiters: list[tuple[int, bytes]] = []  # (read index, context) awaiting apply
        self.acks: list[tuple[bytes, int]] = []  # (payload, index) acknowledged to clients
        self.reads_served: list[tuple[bytes, int]] = []
        self._seen_commit = 0
        self.restart()

    # --- lifecycle -------------------------------------------------------------------

    def crash(self) -> None:
        """Lose everything not in the durable store."""
        self.up = False
        self.raft = None
        self.state = []
        self.conf_history = []
        self.pending_writes.clear()
        self.pending_reads.clear()
        self.read_waiters.clear()
        self.crash_mid_persist = False
        self.deferred = False

    def restart(self) -> None:
        """Boot from the durable store, as a member boots from WAL + snapshot.

        Half of the restarts (seeded) re-apply the committed log themselves and
        tell the core via `applied=`; the others let the core hand the
        committed entries out again in the first Ready. Both are legal uses of
        the boot contract and both must rebuild the same state.
        """
        assert not self.up
        s = self.store
        self.incarnation += 1
        self.state = list(s.snapshot_image)
        self.conf_history = [(s.snapshot_meta.index, s.snapshot_meta.conf)]
        conf = s.snapshot_meta.conf
        applied = s.snapshot_meta.index
        commit = max(s.hard_state.commit, s.snapshot_meta.index)
        if self.rng.random() < 0.5:
            for e in s.entries:
                if e.index > commit:
                    break
                conf = self._apply_data(e, conf)
                self.checker.on_apply(self.id, e.index, e.data)
            applied = commit
        cfg = RaftConfig(id=self.id, election_ticks=self.options.election_ticks,
                         heartbeat_ticks=self.options.heartbeat_ticks,
                         pre_vote=self.options.pre_vote, check_quorum=self.options.check_quorum,
                         inflight_max=self.options.inflight_max,
                         entries_per_message_max=self.options.entries_per_message_max,
                         committed_per_ready_max=self.options.committed_per_ready_max)
        self.raft = Raft(cfg, hard_state=s.hard_state, snapshot_meta=s.snapshot_meta,
                         entries=list(s.entries), conf=conf,
                         rng=random.Random(self.rng.getrandbits(64)), applied=applied)
        self._seen_commit = self.raft.log.committed
        self.up = True
        self.process_ready()

    # --- driving ---------------------------------------------------------------------

    def tick(self) -> None:
        assert self.raft is not None
        self.raft.tick()
        self.process_ready()

    def step(self, m: Message) -> None:
        assert self.raft is not None
        self.raft.step(m)
        self.process_ready()

    def propose(self, *payloads: bytes) -> bool:
        """Propose a batch of payloads (one Raft proposal, as a batching server does)."""
        assert self.raft is not None
        ok = self.raft.propose(list(payloads))
        if ok:
            self.pending_writes.update(payloads)
        self.process_ready()
        return ok

    def propose_conf_change(self, cc: ConfChange) -> bool:
        assert self.raft is not None
        ok = self.raft.propose([cc.to_bytes()], EntryType.CONF_CHANGE)
        self.process_ready()
        return ok

    def read(self, context: bytes) -> None:
        assert self.raft is not None
        self.pending_reads[context] = self.checker.acked_index_max
        self.raft.read_index(context)
        self.process_ready()

    def transfer(self, target: int) -> None:
        assert self.raft is not None
        self.raft.transfer_leadership(target)
        self.process_ready()

    def report_snapshot(self, peer: int, *, failed: bool) -> None:
        assert self.raft is not None
        self.raft.report_snapshot(peer, failed=failed)
        self.process_ready()

    # --- the Ready loop --------------------------------------------------------------

    def observe(self) -> None:
        """Feed the checkers whatever changed since the last event."""
        raft = self.raft
        assert raft is not None
        if raft.role is Role.LEADER:
            self.checker.on_leader(raft)
        if raft.log.committed > self._seen_commit:
            self.checker.on_commit(raft, self._seen_commit)
        self._seen_commit = raft.log.committed

    def process_ready(self, *, force: bool = False) -> None:
        """Run Readies to completion: PERSIST, THEN SEND, THEN APPLY, THEN ADVANCE.

        Unless `force`, the node may defer the work (see NodeOptions.ready_defer);
        the cluster flushes deferred nodes on later ticks.
        """
        raft = self.raft
        assert raft is not None
        self.observe()
        defer = self.options.ready_defer
        if not force and defer and self.rng.random() < defer:
            self.deferred = raft.has_ready()
            return
        self.deferred = False
        while self.up and raft.has_ready():
            rd = raft.ready()
            if self.crash_mid_persist and rd.must_sync:
                self._persist_torn(rd)
                self.crash()
                return
            self._persist(rd)
            if rd.entries:
                self.checker.on_entries_written(raft, rd.entries)
            for m in rd.messages:
                self._send(self._attach_snapshot(m), self.incarnation)
            self._apply(rd)
            raft.advance(rd)
            self._maybe_compact()
            self._serve_reads()
            self.observe()
            if not force and defer and self.rng.random() < defer:
                # Stop between two Readies: with committed_per_ready_max small
                # this leaves applying behind committing across events.
                self.deferred = raft.has_ready()
                return

    def _persist(self, rd: Ready) -> None:
        s = self.store
        if rd.snapshot is not None:
            s.snapshot_meta = rd.snapshot.meta
            s.snapshot_image = tuple(codec.loads(rd.snapshot.data))
            s.entries = []
        s.append(rd.entries)
        if rd.hard_state is not None:
            s.hard_state = rd.hard_state

    def _persist_torn(self, rd: Ready) -> None:
        """A crash in the middle of the WAL write: a prefix of (snapshot, entries, hard state).

        The WAL writes entries before the hard state record, so a torn write
        can keep some entries and lose the hard state, never the reverse.
        """
        s = self.store
        rng = self.rng
        if rd.snapshot is not None:
            if rng.random() < 0.5:
                return
            s.snapshot_meta = rd.snapshot.meta
            s.snapshot_image = tuple(codec.loads(rd.snapshot.data))
            s.entries = []
        kept = rng.randint(0, len(rd.entries))
        s.append(rd.entries[:kept])
        if kept == len(rd.entries) and rd.hard_state is not None and rng.random() < 0.5:
            s.hard_state = rd.hard_state

    def _attach_snapshot(self, m: Message) -> Message:
        """The core sends snapshot metadata only; the member attaches the image."""
        if m.type is not MessageType.SNAP:
            return m
        assert m.snapshot is not None
        meta = m.snapshot.meta
        assert meta == self.store.snapshot_meta, "leader sends a snapshot it does not hold"
        data = codec.dumps(list(self.store.snapshot_image))
        return Message(m.type, m.to, m.frm, m.term, m.log_term, m.index, m.entries, m.commit,
                       m.reject, m.reject_hint, m.context, Snapshot(meta, data))

    def _apply(self, rd: Ready) -> None:
        raft = self.raft
        assert raft is not None
        if rd.snapshot is not None:
            meta = rd.snapshot.meta
            self.state = list(self.store.snapshot_image)
            self.conf_history = [(meta.index, meta.conf)]
            self.checker.on_snapshot_installed(self.id, meta, self.state)
        for e in rd.committed_entries:
            if e.index != len(self.state) + 1:
                Checker.fail(f"{self.id} applies {e.index} after {len(self.state)}: "
                             "not exactly once, in order")
            before = raft.conf
            after = self._apply_data(e, before)
            self.checker.on_apply(self.id, e.index, e.data)
            if e.type is EntryType.CONF_CHANGE:
                raft.apply_conf_change(after)
                if self.id in (before.voters | before.learners) and \
                        self.id not in (after.voters | after.learners):
                    self.removed = True
            if e.data in self.pending_writes:
                self.pending_writes.discard(e.data)
                self.acks.append((e.data, e.index))
                self.checker.on_ack(e.index)
        for rs in rd.read_states:
            floor = self.pending_reads.pop(rs.context, None)
            if floor is None:
                continue  # a duplicate answer, or one for a request from before a crash
            self.checker.on_read_state(self.id, rs.index, floor)
            self.read_waiters.append((rs.index, rs.context))

    def _apply_data(self, e: Entry, conf: ConfState) -> ConfState:
        """Apply one entry to the state machine; returns the conf after it."""
        self.state.append(e.data)
        if e.type is EntryType.CONF_CHANGE:
            conf = ConfChange.from_bytes(e.data).apply_to(conf)
            self.conf_history.append((e.index, conf))
        return conf

    def _serve_reads(self) -> None:
        if not self.read_waiters:
            return
        applied = len(self.state)
        waiting = []
        for index, ctx in self.read_waiters:
            if index <= applied:
                self.reads_served.append((ctx, index))
            else:
                waiting.append((index, ctx))
        self.read_waiters = waiting

    def conf_at(self, index: int) -> ConfState:
        conf = self.conf_history[0][1]
        for at, c in self.conf_history:
            if at > index:
                break
            conf = c
        return conf

    def _maybe_compact(self) -> None:
        """Take a snapshot every `snapshot_every` applied entries, keeping a short log tail.

        Two legal ways to keep the tail, chosen per member: snapshot a little
        below the applied index, or snapshot AT it and ask the core to keep
        `keep_entries` older entries in memory (then the core's log starts
        below its snapshot, which the leader must cope with).
        """
        every = self.options.snapshot_every
        raft = self.raft
        assert raft is not None
        if not every or len(self.state) - self.store.snapshot_meta.index < every:
            return
        tail = self.options.snapshot_tail
        keep = tail if self.options.compact_keep_entries else 0
        index = len(self.state) - (tail - keep)
        if index <= self.store.snapshot_meta.index:
            return
        conf = self.conf_at(index)
        raft.compact(index, conf, keep_entries=keep)
        s = self.store
        s.snapshot_meta = raft.snapshot_meta
        assert s.snapshot_meta.index == index
        s.snapshot_image = tuple(self.state[:index])
        s.entries = [e for e in s.entries if e.index > index]
        self.conf_history = [(index, conf)] + [(at, c) for at, c in self.conf_history
                                              if at > index]

    # --- views -----------------------------------------------------------------------

    @property
    def role(self) -> Role | None:
        return self.raft.role if self.raft is not None else None

    def is_leader(self) -> bool:
        return self.up and self.raft is not None and self.raft.role is Role.LEADER

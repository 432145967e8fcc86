"""SimCluster: N simulated members, one seeded event loop, clients and faults.

Everything happens in one thread on one integer clock, and every choice comes
from `random.Random(seed)`, so a schedule replays exactly from its seed
(`SIM_SEED=<seed> python -m pytest tests/sim -k random`). The loop jumps from
event to event (tick, message delivery, timer) instead of stepping through
idle time, which is what makes thousands of schedules per minute possible.

Checkers run inside the nodes after every event (see tests/sim/checkers.py);
liveness is checked by `check_liveness()` once faults are healed.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cluster.conf_change import ConfChange, ConfChangeType
from cluster.messages import ConfState, Entry, HardState, Message, MessageType, SnapshotMeta
from cluster.raft_log import RaftLog
from tests.sim.checkers import DURABLE_COVERED, Checker, LogView, SafetyViolation
from tests.sim.liveness import check_liveness
from tests.sim.network import TICK_STEPS, Faults, SimNetwork
from tests.sim.node import DurableStore, NodeOptions, SimNode

BOOT_INDEX = 1
"""Initial members start from a bootstrap snapshot at index 1 holding the initial conf.

A member added later starts empty and learns the conf from the leader's
snapshot, exactly as etcd's joining members do; without a bootstrap snapshot
a joiner replaying the log from index 1 would never learn the initial voters.
"""


@dataclass(slots=True)
class Timer:
    due: int
    seq: int
    action: Callable[[], None] = field(compare=False)
    fault: bool = field(default=False, compare=False)  # cancelled by heal_all()

    def __lt__(self, other: Timer) -> bool:
        return (self.due, self.seq) < (other.due, other.seq)


class SimCluster:
    """A whole cluster in one process; see the module docstring."""

    def __init__(self, n: int, *, seed: int, options: NodeOptions | None = None,
                 faults: Faults | None = None) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.options = options or NodeOptions()
        self.net = SimNetwork(random.Random(self.rng.getrandbits(64)), faults)
        self.checker = Checker(self._durable_term, self._log_views)
        self.checker.committed.append(Entry(BOOT_INDEX, 1))
        self.checker.applied.append(b"")
        self.now = 0
        self.nodes: dict[int, SimNode] = {}
        self.gone: set[int] = set()  # members that stopped after applying their own removal
        self._timers: list[Timer] = []
        self._timer_seq = 0
        self._payload_seq = 0
        self._read_seq = 0
        self.next_id = n + 1
        conf = ConfState(voters=frozenset(range(1, n + 1)))
        for i in range(1, n + 1):
            store = DurableStore(hard_state=HardState(term=1, commit=BOOT_INDEX),
                                 snapshot_meta=SnapshotMeta(BOOT_INDEX, 1, conf),
                                 snapshot_image=(b"",))
            self._add_node(i, store)
        self.on_event: Callable[[SimNode], None] | None = None
        """Called after every event on a node: lets a workload react mid-tick."""

    def _add_node(self, node_id: int, store: DurableStore) -> SimNode:
        node = SimNode(node_id, store, self.options, self.checker, self._send,
                       random.Random(self.rng.getrandbits(64)))
        self.nodes[node_id] = node
        return node

    def _durable_term(self, node_id: int, index: int) -> int | None:
        node = self.nodes.get(node_id)
        if node is None:
            return None
        s = node.store
        if index < s.snapshot_meta.index:
            return DURABLE_COVERED
        if index == s.snapshot_meta.index:
            return s.snapshot_meta.term
        pos = index - s.snapshot_meta.index - 1
        return s.entries[pos].term if pos < len(s.entries) else None

    def _log_views(self) -> list[LogView]:
        """Every member's log as an election would see it: in memory if up, else on disk."""
        views = []
        for node in self.nodes.values():
            if node.id in self.gone:
                continue
            if node.up and node.raft is not None:
                log = node.raft.log

                def term_at(i: int, log: RaftLog = log) -> int | None:
                    return DURABLE_COVERED if i < log.snapshot_index else log.term(i)

                views.append(LogView(node.id, log.last_index(), log.last_term(), term_at))
            else:
                s = node.store
                last_term = s.entries[-1].term if s.entries else s.snapshot_meta.term

                def durable(i: int, node_id: int = node.id) -> int | None:
                    return self._durable_term(node_id, i)

                views.append(LogView(node.id, s.last_index(), last_term, durable))
        return views

    # --- messages --------------------------------------------------------------------

    def _send(self, m: Message, incarnation: int) -> None:
        if m.to not in self.nodes:
            return
        for lost in self.net.send(m, self.now, incarnation):
            self._lost(lost, incarnation)

    def _lost(self, m: Message, incarnation: int) -> None:
        # Reports go through a timer: `_send` runs between ready() and advance(),
        # where the core must not be stepped.
        if m.type is MessageType.SNAP:
            # A transport learns that a snapshot stream failed; tell the leader soon.
            self.after(1, lambda: self._report_snapshot(m, incarnation, failed=True))
        elif m.type is MessageType.APP and self.rng.random() < 0.2:
            self.after(1, lambda: self._report_unreachable(m, incarnation))

    def _report_unreachable(self, m: Message, incarnation: int) -> None:
        sender = self.nodes.get(m.frm)
        if sender is not None and sender.up and sender.incarnation == incarnation \
                and sender.raft is not None:
            sender.raft.report_unreachable(m.to)
            sender.process_ready()

    def _report_snapshot(self, m: Message, incarnation: int, *, failed: bool) -> None:
        sender = self.nodes.get(m.frm)
        if sender is not None and sender.up and sender.incarnation == incarnation:
            sender.report_snapshot(m.to, failed=failed)

    def _deliver(self, m: Message, incarnation: int) -> None:
        node = self.nodes.get(m.to)
        if node is None or not node.up or not self.net.can_reach(m.frm, m.to):
            self.net.stats.dropped += 1
            self._lost(m, incarnation)
            return
        self.net.stats.delivered += 1
        self.net.stats.delivered_by_type[m.type] += 1
        node.step(m)
        self._after(node)
        if m.type is MessageType.SNAP:
            self._report_snapshot(m, incarnation, failed=False)

    def _after(self, node: SimNode) -> None:
        if self.on_event is not None:
            self.on_event(node)
        if node.removed and node.id not in self.gone:
            # etcd stops a removed member after a short delay, so that its last
            # messages (the commit of its own removal) can still go out.
            self.gone.add(node.id)
            self.after(10 * TICK_STEPS, lambda: node.crash() if node.up else None)

    # --- time ------------------------------------------------------------------------

    def after(self, steps: int, action: Callable[[], None], *, fault: bool = False) -> None:
        """Run `action` in `steps` steps; `fault` timers belong to the chaos phase."""
        self._timer_seq += 1
        heapq.heappush(self._timers, Timer(self.now + steps, self._timer_seq, action, fault))

    def run_ticks(self, ticks: int, on_tick: Callable[[], None] | None = None,
                  stop: Callable[[], bool] | None = None) -> bool:
        """Advance the clock by `ticks` ticks, delivering messages and firing timers.

        With `stop`, return True as soon as it holds after some instant of
        simulated time (finer than a tick: scenarios use it to act between
        two message deliveries); False when the time ran out.
        """
        end = self.now + ticks * TICK_STEPS
        while self.now < end:
            if stop is not None and stop():
                return True
            next_tick = (self.now // TICK_STEPS + 1) * TICK_STEPS
            t = min(next_tick, self.net.next_due())
            if self._timers and self._timers[0].due < t:
                t = self._timers[0].due
            self.now = max(t, self.now + 1)
            for m, inc in self.net.due(self.now):
                self._deliver(m, inc)
            while self._timers and self._timers[0].due <= self.now:
                heapq.heappop(self._timers).action()
            if self.now % TICK_STEPS == 0:
                self.tick_all()
                if on_tick is not None:
                    on_tick()
        return stop is not None and stop()

    def run_until(self, predicate: Callable[[], bool], ticks_max: int) -> int:
        """Tick until `predicate()` holds; returns the ticks it took.

        Raises:
            AssertionError: it did not hold within `ticks_max` ticks.
        """
        for ticks in range(ticks_max + 1):
            if predicate():
                return ticks
            self.run_ticks(1)
        raise AssertionError(f"condition not met within {ticks_max} ticks: {self.describe()}")

    def wait_leader(self, ticks_max: int = 100) -> SimNode:
        self.run_until(lambda: self.leader() is not None, ticks_max)
        leader = self.leader()
        assert leader is not None
        return leader

    def write(self, node_id: int, ticks_max: int = 50) -> tuple[bytes, int]:
        """Propose a fresh payload at `node_id` and wait until that node applied it."""
        node = self.nodes[node_id]
        payload = self.propose(node_id)
        assert payload is not None, f"{node_id} dropped the proposal: {self.describe()}"
        self.run_until(lambda: any(p == payload for p, _ in node.acks), ticks_max)
        return payload, dict(node.acks)[payload]

    def tick_all(self) -> None:
        for node in list(self.nodes.values()):
            if node.up:
                if node.deferred and self.rng.random() < 0.7:
                    node.process_ready(force=True)  # may die mid-persist
                if node.up:
                    node.tick()
                    self._after(node)

    # --- views -----------------------------------------------------------------------

    def up_nodes(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.up]

    def leader(self) -> SimNode | None:
        """The up leader of the highest term, if any."""
        best: SimNode | None = None
        for n in self.nodes.values():
            if n.is_leader():
                assert n.raft is not None
                if best is None or n.raft.term > best.raft.term:  # type: ignore[union-attr]
                    best = n
        return best

    def members(self) -> ConfState:
        """The newest conf any up member has applied (a client's view of membership)."""
        best: tuple[int, ConfState] = (-1, ConfState())
        for n in self.up_nodes():
            if n.conf_history:
                at, conf = n.conf_history[-1]
                if at > best[0]:
                    best = (at, conf)
        return best[1]

    # --- clients ---------------------------------------------------------------------

    def new_payload(self) -> bytes:
        self._payload_seq += 1
        return b"w%d" % self._payload_seq

    def propose(self, node_id: int, batch: int = 1) -> bytes | None:
        """Propose `batch` fresh payloads at `node_id`; returns the last one (None if dropped)."""
        node = self.nodes[node_id]
        if not node.up:
            return None
        payloads = [self.new_payload() for _ in range(batch)]
        ok = node.propose(*payloads)
        self._after(node)
        return payloads[-1] if ok else None

    def read(self, node_id: int) -> bytes | None:
        node = self.nodes[node_id]
        if not node.up:
            return None
        self._read_seq += 1
        ctx = b"r%d" % self._read_seq
        node.read(ctx)
        self._after(node)
        return ctx

    def acked(self) -> dict[bytes, int]:
        out: dict[bytes, int] = {}
        for n in self.nodes.values():
            out.update(n.acks)
        return out

    # --- faults ----------------------------------------------------------------------

    def crash(self, node_id: int) -> None:
        self.nodes[node_id].crash()

    def restart(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if not node.up and node_id not in self.gone:
            node.restart()
            self._after(node)

    def crash_during_persist(self, node_id: int) -> None:
        """The node dies in the middle of writing its next Ready that needs a sync."""
        node = self.nodes[node_id]
        if node.up:
            node.crash_mid_persist = True

    def partition(self, *groups: Iterable[int]) -> None:
        self.net.partition(*groups)

    def heal(self) -> None:
        self.net.heal()

    def transfer(self, via: int, target: int) -> None:
        node = self.nodes[via]
        if node.up:
            node.transfer(target)
            self._after(node)

    def change_membership(self, cc: ConfChange, via: int | None = None) -> bool:
        """Propose `cc` at the leader, or at `via` (a follower forwards it).

        A node being added is started (empty) first, as an operator starts a
        new etcd member right after `member add`.
        """
        node = self.leader() if via is None else self.nodes[via]
        if node is None or not node.up:
            return False
        if cc.type in (ConfChangeType.ADD_LEARNER, ConfChangeType.ADD_NODE) \
                and cc.node_id not in self.nodes:
            self._add_node(cc.node_id, DurableStore())
            self.next_id = max(self.next_id, cc.node_id + 1)
        ok = node.propose_conf_change(cc)
        self._after(node)
        return ok

    # --- liveness --------------------------------------------------------------------

    def heal_all(self) -> None:
        """Remove every fault: links, lossy network, crashed members, pending fault timers."""
        self.net.heal()
        self.net.faults = Faults()
        self._timers = [t for t in self._timers if not t.fault]
        heapq.heapify(self._timers)
        for node in self.nodes.values():
            node.crash_mid_persist = False
            if node.up and node.deferred:
                node.process_ready(force=True)
            if not node.up and node.id not in self.gone:
                node.restart()
                self._after(node)

    def check_liveness(self, ticks_max: int | None = None) -> tuple[int, int]:
        """See tests/sim/liveness.py: a leader, a committed write, answered reads."""
        return check_liveness(self, ticks_max)

    def check_acked_durable(self) -> None:
        """Every acknowledged write is in the one applied history (after liveness)."""
        applied = self.checker.applied
        for payload, index in self.acked().items():
            if index > len(applied) or applied[index - 1] != payload:
                raise SafetyViolation(f"acknowledged write {payload!r} at {index} lost")

    def describe(self) -> str:
        parts = []
        for n in self.nodes.values():
            if n.raft is None or not n.up:
                parts.append(f"{n.id}:down{'(gone)' if n.id in self.gone else ''}")
                continue
            r = n.raft
            parts.append(f"{n.id}:{r.role.value} t{r.term} lead{r.leader} c{r.log.committed} "
                         f"a{r.log.applied} last{r.log.last_index()} "
                         f"v{sorted(r.conf.voters)} l{sorted(r.conf.learners)}")
        return "; ".join(parts)

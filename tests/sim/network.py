"""A seeded, in-memory network for the Raft simulator.

Every fault a real network can inflict on Raft traffic is here, decided by
one `random.Random` so that a schedule replays bit for bit from its seed:
loss, delay, duplication, reordering (a consequence of random per-message
delays) and partitions of any shape. A partition is a set of *directed*
blocked links, so a symmetric split and a one-way (asymmetric) cut are the
same mechanism; `heal()` removes them all.

Time is an integer count of simulator "steps"; the cluster ticks its nodes
every `TICK_STEPS` steps, so a message delay below that is sub-tick latency.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from cluster.messages import Message, MessageType

TICK_STEPS = 10
"""Simulator steps per Raft tick; message delays are measured in steps."""


@dataclass(slots=True)
class Faults:
    """Probabilities and bounds of the random faults applied to each send."""

    drop: float = 0.0
    duplicate: float = 0.0
    delay_steps_min: int = 1
    delay_steps_max: int = 3
    # With this probability a message is held back up to `slow_steps_max`:
    # that is what reorders messages across ticks.
    slow: float = 0.0
    slow_steps_max: int = 4 * TICK_STEPS


@dataclass(order=True, slots=True)
class _InFlight:
    due: int
    seq: int
    message: Message = field(compare=False)
    sender_incarnation: int = field(compare=False)


@dataclass(slots=True)
class NetStats:
    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0
    delivered_by_type: Counter[MessageType] = field(default_factory=Counter)


class SimNetwork:
    """Messages in flight, ordered by delivery time, plus the fault model."""

    def __init__(self, rng: random.Random, faults: Faults | None = None) -> None:
        self.rng = rng
        self.faults = faults or Faults()
        self.blocked: set[tuple[int, int]] = set()
        self.stats = NetStats()
        self._heap: list[_InFlight] = []
        self._seq = 0

    # --- topology -------------------------------------------------------------------

    def partition(self, *groups: Iterable[int]) -> None:
        """Split into `groups` that cannot talk to each other in either direction.

        Nodes named in no group keep talking to everyone; blocks add up with any
        partition already in place (call `heal()` first for a fresh split).
        """
        sets = [set(g) for g in groups]
        for i, a in enumerate(sets):
            for b in sets[i + 1:]:
                for x in a:
                    for y in b:
                        self.blocked.add((x, y))
                        self.blocked.add((y, x))

    def isolate(self, node: int, others: Iterable[int]) -> None:
        """Cut `node` from every node in `others`, both ways."""
        self.partition([node], [o for o in others if o != node])

    def block(self, frm: int, to: int) -> None:
        """Cut one direction only: `frm` can no longer reach `to` (asymmetric fault)."""
        self.blocked.add((frm, to))

    def heal(self) -> None:
        self.blocked.clear()

    def can_reach(self, frm: int, to: int) -> bool:
        return (frm, to) not in self.blocked

    # --- traffic -------------------------------------------------------------------

    def send(self, m: Message, now: int, sender_incarnation: int) -> list[Message]:
        """Put `m` on the wire; returns the copies that were dropped immediately."""
        self.stats.sent += 1
        f = self.faults
        rng = self.rng
        if not self.can_reach(m.frm, m.to) or (f.drop and rng.random() < f.drop):
            self.stats.dropped += 1
            return [m]
        copies = 1
        if f.duplicate and rng.random() < f.duplicate:
            copies = 2
            self.stats.duplicated += 1
        for _ in range(copies):
            delay = rng.randint(f.delay_steps_min, f.delay_steps_max)
            if f.slow and rng.random() < f.slow:
                delay += rng.randint(1, f.slow_steps_max)
            self._seq += 1
            heapq.heappush(self._heap, _InFlight(now + delay, self._seq, m, sender_incarnation))
        return []

    def due(self, now: int) -> list[tuple[Message, int]]:
        """Pop every message due at or before `now`, in delivery order.

        A partition raised while a message was in flight also drops it: the
        link is checked again at delivery time, as a real cut cable would.
        """
        out: list[tuple[Message, int]] = []
        heap = self._heap
        while heap and heap[0].due <= now:
            item = heapq.heappop(heap)
            out.append((item.message, item.sender_incarnation))
        return out

    def next_due(self) -> float:
        """Delivery time of the next message (infinity when none is in flight)."""
        return self._heap[0].due if self._heap else float("inf")

    def in_flight(self) -> int:
        return len(self._heap)

    def clear(self) -> None:
        self._heap.clear()

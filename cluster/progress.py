"""What the leader knows about each follower's log (etcd's tracker.Progress + Inflights).

States, as in etcd: PROBE sends one AppendEntries per heartbeat until the
follower's match is found; REPLICATE streams optimistically with a bounded
window of in-flight messages; SNAPSHOT waits for a snapshot to be installed.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@dataclass(slots=True)
class Inflights:
    """Last index of each AppendEntries sent but not yet acknowledged, oldest first."""

    capacity: int
    _indexes: deque[int] = field(default_factory=deque)

    def full(self) -> bool:
        return len(self._indexes) >= self.capacity

    def add(self, last_index: int) -> None:
        assert not self.full(), "inflights overflow"
        self._indexes.append(last_index)

    def free_le(self, index: int) -> None:
        while self._indexes and self._indexes[0] <= index:
            self._indexes.popleft()

    def free_first(self) -> None:
        if self._indexes:
            self._indexes.popleft()

    def reset(self) -> None:
        self._indexes.clear()

    def __len__(self) -> int:
        return len(self._indexes)


@dataclass(slots=True)
class Progress:
    match: int
    next: int
    inflights: Inflights
    state: ProgressState = ProgressState.PROBE
    probe_sent: bool = False
    recent_active: bool = False
    pending_snapshot: int = 0
    is_learner: bool = False

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.inflights.reset()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.pending_snapshot = 0
        self.inflights.reset()

    def become_snapshot(self, snapshot_index: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.pending_snapshot = snapshot_index
        self.probe_sent = False
        self.inflights.reset()

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def maybe_update(self, index: int) -> bool:
        """Record an acknowledgement; False when it tells nothing new (stale)."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def sent_entries(self, last_index: int) -> None:
        """Account for an AppendEntries carrying entries up to `last_index`."""
        if self.state is ProgressState.REPLICATE:
            self.next = last_index + 1
            self.inflights.add(last_index)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def maybe_decr_to(self, rejected: int, hint: int) -> bool:
        """Back off after a rejection; False when the rejection is stale."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, hint + 1), self.match + 1, 1)
        self.probe_sent = False
        return True

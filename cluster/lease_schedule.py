"""When each lease expires, as the leader sees it: pure bookkeeping, no clock, no I/O.

Only the leader keeps lease deadlines (etcd's lessor works the same way):
followers store leases (granted TTL, checkpointed remaining TTL) but never
time them. The lessor actor (`actors/lessor.py`) owns one `LeaseSchedule`,
passes it the current time on every call, and proposes a revoke for what
`expired(now)` returns. Times are plain floats in seconds from any monotonic
clock; tests feed made-up numbers.

Rules kept here:

- `promote`: a new leader gives every stored lease the deadline
  now + max(its TTL, min_ttl), where its TTL is the checkpointed remaining
  TTL if there is one, else the granted TTL. Counting from "now" (the moment
  of promotion) instead of from when the old leader last renewed it can only
  EXTEND a lease, never shorten it: the old leader's deadline was at most
  "last keepalive + granted TTL", and that keepalive happened before now.
  `min_ttl` (etcd: 1.5 x election timeout) keeps leases alive at least long
  enough for their holders to find the new leader and renew.
- `renew`: deadline = now + granted TTL; an already expired lease cannot be
  renewed (its revoke is on its way), as in etcd.
- `expired`: leases past their deadline, oldest first, at most `limit` of them,
  and each one is then held back for `retry_s` so a revoke in flight is not
  proposed twice; if that revoke is lost, the lease is offered again.
- checkpoints: a lease whose granted TTL exceeds the checkpoint interval is
  offered for a checkpoint (its remaining TTL) once per interval, so a leader
  change does not restart it from the full TTL. `checkpointed` remembers that
  the store may hold a remaining TTL that a later renew has made stale.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import final


@dataclass(frozen=True, slots=True)
class StoredLease:
    """A lease as the store has it: what `promote` and `sync` need."""

    id: int
    granted_ttl: int
    remaining_ttl: int = 0  # 0 = never checkpointed


@dataclass(slots=True)
class _Entry:
    granted_ttl: int
    deadline: float
    check_at: float  # when `expired` looks at it next (deadline, or a revoke retry)
    checkpoint_at: float = math.inf
    checkpointed: bool = False


@dataclass(frozen=True, slots=True)
class ScheduleStatistics:
    leases: int
    expired_offered: int
    checkpoints_offered: int


@final
@dataclass(slots=True)
class LeaseSchedule:
    """id -> deadline for every lease the leader times, with a lazy min-heap for expiry.

    Args:
        checkpoint_interval_s: how often long leases are offered for a
            checkpoint; `math.inf` turns checkpoints off.
    """

    checkpoint_interval_s: float = math.inf
    _entries: dict[int, _Entry] = field(default_factory=dict)
    _heap: list[tuple[float, int]] = field(default_factory=list)
    _expired_offered: int = 0
    _checkpoints_offered: int = 0
    _checkpoint_due_min: float = math.inf  # lower bound of every checkpoint_at

    def statistics(self) -> ScheduleStatistics:
        return ScheduleStatistics(len(self._entries), self._expired_offered,
                                  self._checkpoints_offered)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, lease_id: int) -> bool:
        return lease_id in self._entries

    def ids(self) -> list[int]:
        return sorted(self._entries)

    # --- changes ---------------------------------------------------------------------

    def promote(self, now: float, leases: Iterable[StoredLease], min_ttl: float) -> None:
        """Start timing every stored lease afresh (this member just became leader)."""
        self.clear()
        for lease in leases:
            ttl = lease.remaining_ttl or lease.granted_ttl
            self._put(lease.id, lease.granted_ttl, now + max(ttl, min_ttl), now,
                      checkpointed=lease.remaining_ttl > 0)

    def clear(self) -> None:
        """Forget everything (this member stopped being leader)."""
        self._entries.clear()
        self._heap.clear()
        self._checkpoint_due_min = math.inf

    def add(self, now: float, lease: StoredLease, min_ttl: float = 0.0) -> None:
        """Time a lease granted since `promote` (no-op if it is already timed).

        The deadline counts from `now`, the moment the leader first sees the
        lease, which is never before its grant was applied: at worst a lease is
        timed a little late, never early.
        """
        if lease.id in self._entries:
            return
        ttl = lease.remaining_ttl or lease.granted_ttl
        self._put(lease.id, lease.granted_ttl, now + max(ttl, min_ttl), now,
                  checkpointed=lease.remaining_ttl > 0)

    def remove(self, lease_id: int) -> None:
        """The lease is gone from the store (revoked); its heap item is dropped lazily."""
        self._entries.pop(lease_id, None)

    def sync(self, now: float, stored: Iterable[StoredLease], min_ttl: float = 0.0) -> int:
        """Match the store: time leases granted elsewhere, drop leases revoked elsewhere.

        Returns:
            How many entries were added or dropped.
        """
        seen: set[int] = set()
        changes = 0
        for lease in stored:
            seen.add(lease.id)
            if lease.id not in self._entries:
                self.add(now, lease, min_ttl)
                changes += 1
        for lease_id in [i for i in self._entries if i not in seen]:
            self.remove(lease_id)
            changes += 1
        return changes

    def renew(self, now: float, lease_id: int) -> tuple[int, bool] | None:
        """Keep a lease alive: deadline = now + granted TTL.

        Returns:
            (granted TTL, whether the store may hold a checkpoint this renew made
            stale, which the caller must clear), or None when the lease is
            unknown or already expired.
        """
        e = self._entries.get(lease_id)
        if e is None or e.deadline <= now:
            return None
        stale = e.checkpointed
        e.checkpointed = False
        self._put(lease_id, e.granted_ttl, now + e.granted_ttl, now)
        return e.granted_ttl, stale

    def mark_checkpointed(self, lease_id: int) -> None:
        """A nonzero remaining TTL may be (or become) stored for this lease."""
        e = self._entries.get(lease_id)
        if e is not None:
            e.checkpointed = True

    # --- queries ---------------------------------------------------------------------

    def granted_ttl(self, lease_id: int) -> int | None:
        e = self._entries.get(lease_id)
        return None if e is None else e.granted_ttl

    def remaining(self, now: float, lease_id: int) -> float | None:
        """Seconds left (<= 0 once expired), or None for a lease not timed here."""
        e = self._entries.get(lease_id)
        return None if e is None else e.deadline - now

    def expired(self, now: float, limit: int, retry_s: float) -> list[int]:
        """Up to `limit` leases past their deadline, earliest deadline first.

        Each one returned is not returned again for `retry_s`, which should
        cover a revoke's round trip through the log: the caller proposes a
        revoke and calls `remove` when it is applied; if it never is (lost
        leadership, timeout), the lease comes back here and is retried.
        """
        out: list[int] = []
        heap = self._heap
        while heap and len(out) < limit and heap[0][0] <= now:
            check_at, lease_id = heapq.heappop(heap)
            e = self._entries.get(lease_id)
            if e is None or e.check_at != check_at:
                continue  # stale heap item: removed or rescheduled since
            if e.deadline > now:  # defensive: never drop a live lease from the heap
                e.check_at = e.deadline
                heapq.heappush(heap, (e.check_at, lease_id))
                continue
            out.append(lease_id)
            e.check_at = now + retry_s
            heapq.heappush(heap, (e.check_at, lease_id))
        self._expired_offered += len(out)
        return out

    def next_check_at(self) -> float:
        """When `expired` could next return something (math.inf if never)."""
        heap = self._heap
        while heap:
            check_at, lease_id = heap[0]
            e = self._entries.get(lease_id)
            if e is not None and e.check_at == check_at:
                return check_at
            heapq.heappop(heap)
        return math.inf

    def due_checkpoints(self, now: float, limit: int) -> list[tuple[int, int]]:
        """Up to `limit` (id, remaining TTL in whole seconds) pairs due for a checkpoint.

        Only live leases whose granted TTL exceeds the checkpoint interval are
        ever due (shorter ones would be renewed or gone before a checkpoint
        could matter); each is due again one interval later. The remaining
        TTL is rounded up so a checkpoint never shortens a lease.
        """
        if now < self._checkpoint_due_min:
            return []  # the common case, without a scan of every lease
        out: list[tuple[int, int]] = []
        earliest = math.inf
        for lease_id, e in self._entries.items():
            if len(out) < limit and e.checkpoint_at <= now and e.deadline > now:
                out.append((lease_id, max(1, math.ceil(e.deadline - now))))
                e.checkpoint_at = now + self.checkpoint_interval_s
                e.checkpointed = True
            earliest = min(earliest, e.checkpoint_at)
        self._checkpoint_due_min = earliest
        self._checkpoints_offered += len(out)
        return out

    # --- internals -------------------------------------------------------------------

    def _put(self, lease_id: int, granted_ttl: int, deadline: float, now: float,
             checkpointed: bool = False) -> None:
        checkpoint_at = math.inf
        if granted_ttl > self.checkpoint_interval_s:
            # Restarted on every renew: a lease kept alive more often than the
            # interval is never checkpointed, since a renew resets it anyway.
            checkpoint_at = now + self.checkpoint_interval_s
            self._checkpoint_due_min = min(self._checkpoint_due_min, checkpoint_at)
        self._entries[lease_id] = _Entry(granted_ttl, deadline, deadline, checkpoint_at,
                                         checkpointed)
        heapq.heappush(self._heap, (deadline, lease_id))

"""When auto compaction compacts, and to which revision: pure, clock-free decisions.

The leader's compactor actor (actors/compactor.py) feeds these policies the
time (`trio.current_time()`) and the store's revisions and proposes whatever
compaction they return; tests feed them fake times. Semantics follow etcd's
two --auto-compaction-mode values:

- revision, retention N: every `interval_s` (etcd: 5 minutes), compact to
  current revision - N, unless that is not above what is already compacted.
- periodic, retention T: keep T of history. The revision is sampled every
  min(T, 1h) / 10; every min(T, 1h) the store is compacted to the newest
  sample taken at least T ago. So nothing is compacted until the leader has
  watched the store for T, and history younger than T always survives.

A leadership change resets the policy: the new leader starts sampling from
scratch (it cannot know what the old leader saw), as etcd's compactor does
when it is resumed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

compact_interval_s_max = 3600.0
"""Periodic mode compacts at least hourly however long the retention (etcd's rule)."""

samples_per_interval = 10
"""Periodic mode samples the revision this many times per compaction interval."""


class CompactionPolicy(Protocol):
    @property
    def sample_interval_s(self) -> float:
        """How long the actor sleeps between two calls of `decide`."""
        ...

    def reset(self, now: float) -> None:
        """Forget everything: called when this member becomes leader."""
        ...

    def decide(self, now: float, revision: int, compact_revision: int) -> int | None:
        """Observe the store at `now`; return a revision to compact to, or None."""
        ...


@dataclass
class RevisionPolicy:
    """--auto-compaction-mode=revision: keep the last `retention` revisions."""

    retention: int
    interval_s: float = 300.0
    _next_s: float = 0.0

    def __post_init__(self) -> None:
        assert self.retention > 0, self.retention
        assert self.interval_s > 0, self.interval_s

    @property
    def sample_interval_s(self) -> float:
        return self.interval_s

    def reset(self, now: float) -> None:
        self._next_s = now + self.interval_s

    def decide(self, now: float, revision: int, compact_revision: int) -> int | None:
        if now < self._next_s:
            return None
        self._next_s = now + self.interval_s
        target = revision - self.retention
        return target if target > compact_revision and target > 0 else None


class PeriodicPolicy:
    """--auto-compaction-mode=periodic: keep `retention_s` seconds of history."""

    def __init__(self, retention_s: float) -> None:
        assert retention_s > 0, retention_s
        self.retention_s = retention_s
        self.compact_interval_s = min(retention_s, compact_interval_s_max)
        self._samples: deque[tuple[float, int]] = deque()
        self._next_compact_s = 0.0

    @property
    def sample_interval_s(self) -> float:
        return self.compact_interval_s / samples_per_interval

    def reset(self, now: float) -> None:
        self._samples.clear()
        self._next_compact_s = now + self.compact_interval_s

    def decide(self, now: float, revision: int, compact_revision: int) -> int | None:
        self._samples.append((now, revision))
        horizon = now - self.retention_s
        # Keep exactly one sample at or before the horizon: the newest such one,
        # which is the revision that was current `retention` ago.
        while len(self._samples) > 1 and self._samples[1][0] <= horizon:
            self._samples.popleft()
        if now < self._next_compact_s:
            return None
        taken_s, target = self._samples[0]
        if taken_s > horizon:
            return None  # not watched the store for a whole retention yet
        self._next_compact_s = now + self.compact_interval_s
        return target if target > compact_revision and target > 0 else None

    @property
    def samples(self) -> int:
        return len(self._samples)


def make_policy(mode: str, *, retention_revisions: int, retention_s: float,
                revision_interval_s: float) -> CompactionPolicy | None:
    """The policy a member's configuration asks for; None when auto compaction is off."""
    if mode == "revision" and retention_revisions > 0:
        return RevisionPolicy(retention_revisions, revision_interval_s)
    if mode == "periodic" and retention_s > 0:
        return PeriodicPolicy(retention_s)
    return None

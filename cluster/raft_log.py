"""The Raft log as the core sees it: everything after the last snapshot, in memory.

The member loads the log from its WAL at boot and the core keeps it in memory
from then on (bounded by snapshotting and `compact`). Entries at or below
`stable_index` are known to be on disk; the rest are handed out in the next
Ready for persisting. Names follow etcd's raftLog.
"""

from __future__ import annotations

from collections.abc import Sequence

from cluster.messages import Entry


class RaftLog:
    def __init__(self, snapshot_index: int, snapshot_term: int, entries: Sequence[Entry],
                 commit: int) -> None:
        assert all(e.index == snapshot_index + 1 + i for i, e in enumerate(entries)), \
            "boot entries must follow the snapshot contiguously"
        self.snapshot_index = snapshot_index
        self.snapshot_term = snapshot_term
        self._entries: list[Entry] = list(entries)
        self.stable_index = self.last_index()
        self.committed = max(commit, snapshot_index)
        assert self.committed <= self.last_index(), "commit beyond the log on boot"
        # Entries up to `applied` have been handed out for applying.
        self.applied = snapshot_index

    # --- reading ----------------------------------------------------------------

    def first_index(self) -> int:
        return self.snapshot_index + 1

    def last_index(self) -> int:
        return self.snapshot_index + len(self._entries)

    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self.snapshot_term

    def term(self, index: int) -> int | None:
        """Term of the entry at `index`; None when compacted away or not yet written."""
        if index == self.snapshot_index:
            return self.snapshot_term
        if index < self.snapshot_index or index > self.last_index():
            return None
        return self._entries[index - self.snapshot_index - 1].term

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: a candidate's log at least as up-to-date as ours."""
        return last_term > self.last_term() or (
            last_term == self.last_term() and last_index >= self.last_index())

    def slice(self, lo: int, hi: int, bytes_max: int, count_max: int) -> list[Entry]:
        """Entries [lo, hi), at least one, stopping at `bytes_max` or `count_max`."""
        assert lo >= self.first_index(), f"slice from {lo} below first index"
        hi = min(hi, self.last_index() + 1, lo + count_max)
        out: list[Entry] = []
        size = 0
        base = self.snapshot_index + 1
        for i in range(lo, hi):
            e = self._entries[i - base]
            size += len(e.data)
            if out and size > bytes_max:
                break
            out.append(e)
        return out

    def unstable_entries(self) -> list[Entry]:
        return self._entries[self.stable_index - self.snapshot_index:]

    def next_committed_entries(self, count_max: int) -> list[Entry]:
        lo = self.applied + 1
        hi = min(self.committed, lo + count_max - 1)
        if hi < lo:
            return []
        base = self.snapshot_index + 1
        return self._entries[lo - base:hi - base + 1]

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Largest i <= index whose term <= `term`, with its term (etcd's hint to the leader)."""
        i = min(index, self.last_index())
        while i > self.snapshot_index:
            t = self.term(i)
            assert t is not None
            if t <= term:
                return i, t
            i -= 1
        return self.snapshot_index, self.snapshot_term

    # --- writing ----------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> int:
        """Append after `entries[0].index - 1`, dropping any conflicting suffix."""
        if not entries:
            return self.last_index()
        after = entries[0].index - 1
        assert after >= self.committed, f"would truncate committed entry {after + 1}"
        assert after <= self.last_index(), "gap in log"
        del self._entries[after - self.snapshot_index:]
        self._entries.extend(entries)
        self.stable_index = min(self.stable_index, after)
        return self.last_index()

    def maybe_append(self, index: int, log_term: int, commit: int,
                     entries: Sequence[Entry]) -> int | None:
        """Follower side of AppendEntries; the new last index, or None on mismatch."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = self._find_conflict(entries)
        if conflict:
            assert conflict > self.committed, "conflict with committed entry"
            self.append(entries[conflict - index - 1:])
        self.commit_to(min(commit, last_new))
        return last_new

    def _find_conflict(self, entries: Sequence[Entry]) -> int:
        """First index whose entry differs from ours (0 when all are already present)."""
        for e in entries:
            if e.index <= self.snapshot_index:
                continue
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            assert index <= self.last_index(), f"commit {index} beyond last {self.last_index()}"
            self.committed = index

    def stable_to(self, index: int, term: int) -> None:
        """The entries up to `index` (of `term`) are now durable."""
        if self.term(index) == term and index > self.stable_index:
            self.stable_index = index

    def applied_to(self, index: int) -> None:
        assert self.applied <= index <= self.committed, "applied out of range"
        self.applied = index

    def compact(self, index: int) -> None:
        """Forget entries up to `index` (they are covered by a snapshot)."""
        assert index <= self.applied, "compacting unapplied entries"
        if index <= self.snapshot_index:
            return
        term = self.term(index)
        assert term is not None
        del self._entries[:index - self.snapshot_index]
        self.snapshot_index, self.snapshot_term = index, term

    def restore(self, index: int, term: int) -> None:
        """Replace the whole log by a snapshot's position (follower installing a snapshot)."""
        self._entries.clear()
        self.snapshot_index = self.snapshot_term = 0
        self.snapshot_index, self.snapshot_term = index, term
        self.committed = index
        self.applied = index
        self.stable_index = index

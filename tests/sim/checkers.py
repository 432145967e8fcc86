"""Safety checkers for the Raft simulator, run after every simulated event.

Each check is incremental (O(new work) per event) so that it can run after
every single step of thousands of schedules; together they cover Figure 3 of
the Raft paper plus the read path:

- Election Safety: at most one leader per term. Single-server membership
  changes must preserve this across configurations, so the same map catches
  two leaders elected by non-overlapping quorums of different confs.
- Log Matching: an (index, term) pair names exactly one entry, and that entry
  always follows the same (index - 1, term) pair. By induction the two checks
  give "same index and term => same entry and same prefix" without ever
  comparing whole logs.
- Leader Completeness / commit stability: every entry any node ever marked
  committed is recorded in one global committed log; a node's log up to its
  commit index must agree with it, and a new leader must hold all of it.
- State Machine Safety: every node's applied sequence is a prefix of one
  global sequence (snapshot images included).
- Commit durability: when a leader advances its commit index to c, a
  majority of its voters DURABLY hold the entry at c (checked against the
  simulated disks, not the in-memory logs), so a commit can never rest on
  an acknowledgement sent before the fsync it acknowledges.
- Committed entries cannot be lost: when a leader commits c, no member
  whose log lacks the entry at c could gather a quorum of votes (a voter
  grants only to a log at least as up to date as its own). This is the
  lemma behind Leader Completeness, checked as a state invariant: it fires
  the moment an unsafe commit happens (e.g. a previous-term entry committed
  by counting, Raft §5.4.2 / Figure 8), not only in the rare schedule where
  the loss then actually plays out.
- Linearizable ReadIndex: a read index is never below the index of a write
  acknowledged before the read was issued.

A violation raises `SafetyViolation` at once, while the simulator's state
still shows how it happened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cluster.messages import Entry, Role, SnapshotMeta
from cluster.quorum import majority

if TYPE_CHECKING:
    from cluster.raft import Raft


class SafetyViolation(AssertionError):
    """A Raft safety property failed in the simulator."""


@dataclass(slots=True)
class CheckerStats:
    elections: int = 0
    commits: int = 0
    applied: int = 0
    reads_checked: int = 0
    snapshots_installed: int = 0
    leader_terms: set[int] = field(default_factory=set)


DURABLE_COVERED = -1
"""`durable_term` answer for an index inside a member's durable snapshot."""


@dataclass(frozen=True, slots=True)
class LogView:
    """What an election would see of one member's log right now."""

    node: int
    last_index: int
    last_term: int
    term_at: Callable[[int], int | None]  # None: not held (DURABLE_COVERED: in a snapshot)


def _no_disk(node: int, index: int) -> int | None:
    return None


def _no_logs() -> list[LogView]:
    return []


class Checker:
    """Global knowledge accumulated across all nodes of one simulated cluster.

    `durable_term(node, index)` is supplied by the simulator: the term of the
    entry at `index` on `node`'s disk, DURABLE_COVERED when a persisted
    snapshot covers it, None when the disk does not hold it.
    """

    def __init__(self, durable_term: Callable[[int, int], int | None] = _no_disk,
                 logs: Callable[[], list[LogView]] = _no_logs) -> None:
        self.durable_term = durable_term
        self.logs = logs
        self.leader_of_term: dict[int, int] = {}
        # (index, term) -> (entry, term of the entry before it)
        self.entry_ids: dict[tuple[int, int], tuple[Entry, int]] = {}
        self.committed: list[Entry] = []  # committed[i - 1] is the committed entry at index i
        self.applied: list[bytes] = []  # applied[i - 1] is the data applied at index i
        self.acked_index_max = 0
        self.stats = CheckerStats()

    @staticmethod
    def fail(what: str) -> None:
        raise SafetyViolation(what)

    # --- election safety -----------------------------------------------------------

    def on_leader(self, raft: Raft) -> None:
        """`raft` is leader now; called after every event, so it must be cheap when known."""
        term = raft.term
        holder = self.leader_of_term.get(term)
        if holder == raft.id:
            return
        if holder is not None:
            self.fail(f"election safety: term {term} has two leaders, {holder} and {raft.id}")
        self.leader_of_term[term] = raft.id
        self.stats.elections += 1
        self.stats.leader_terms.add(term)
        if raft.id not in raft.conf.voters:
            self.fail(f"{raft.id} became leader of term {term} without being a voter "
                      f"in its conf {sorted(raft.conf.voters)}")
        self._check_leader_completeness(raft)

    def _check_leader_completeness(self, raft: Raft) -> None:
        log = raft.log
        known = len(self.committed)
        if log.last_index() < known:
            self.fail(f"leader completeness: leader {raft.id} of term {raft.term} has last "
                      f"index {log.last_index()} < committed {known}")
        lo = log.snapshot_index + 1
        if log.snapshot_index and log.snapshot_index <= known:
            want = self.committed[log.snapshot_index - 1]
            if want.term != log.snapshot_term:
                self.fail(f"leader completeness: leader {raft.id} snapshot at "
                          f"{log.snapshot_index} has term {log.snapshot_term}, committed {want}")
        if lo <= known:
            for e in log.slice(lo, known + 1, 1 << 62, 1 << 62):
                if e != self.committed[e.index - 1]:
                    self.fail(f"leader completeness: leader {raft.id} of term {raft.term} has "
                              f"{e} where {self.committed[e.index - 1]} was committed")

    # --- log matching ----------------------------------------------------------------

    def on_entries_written(self, raft: Raft, entries: Sequence[Entry]) -> None:
        """`entries` were just appended to `raft`'s log (a Ready's entries)."""
        log = raft.log
        for e in entries:
            prev_term = log.term(e.index - 1)
            if prev_term is None:  # pragma: no cover - the core keeps entries contiguous
                self.fail(f"{raft.id} wrote {e} with no entry before it")
            key = (e.index, e.term)
            seen = self.entry_ids.get(key)
            if seen is None:
                self.entry_ids[key] = (e, prev_term)
                continue
            if seen[0] != e:
                self.fail(f"log matching: {raft.id} has {e} but another log has {seen[0]}")
            if seen[1] != prev_term:
                self.fail(f"log matching: {raft.id} has {e} after term {prev_term}, another "
                          f"log has it after term {seen[1]}")

    # --- commit ----------------------------------------------------------------------

    def on_commit(self, raft: Raft, old_commit: int) -> None:
        """`raft`'s commit index moved from `old_commit` up to `raft.log.committed`."""
        log = raft.log
        new_commit = log.committed
        self.stats.commits += 1
        if raft.role is Role.LEADER:
            self._check_commit_durable(raft, new_commit)
            self._check_commit_unlosable(raft, new_commit)
        lo = max(old_commit, log.snapshot_index) + 1
        if log.snapshot_index > old_commit:
            self._check_snapshot_point(raft.id, log.snapshot_index, log.snapshot_term)
        if lo > new_commit:
            return
        for e in log.slice(lo, new_commit + 1, 1 << 62, 1 << 62):
            known = len(self.committed)
            if e.index <= known:
                if self.committed[e.index - 1] != e:
                    self.fail(f"committed entry changed: {raft.id} committed {e}, earlier "
                              f"{self.committed[e.index - 1]} was committed")
            elif e.index == known + 1:
                self.committed.append(e)
            else:
                self.fail(f"{raft.id} committed {e} past the known committed log ({known}): "
                          "a commit index moved without the checker seeing it")

    def _check_commit_durable(self, raft: Raft, index: int) -> None:
        term = raft.log.term(index)
        holders = [v for v in sorted(raft.conf.voters)
                   if self.durable_term(v, index) in (term, DURABLE_COVERED)]
        if len(holders) < majority(len(raft.conf.voters)):
            self.fail(f"commit durability: leader {raft.id} of term {raft.term} committed "
                      f"{index} (term {term}) but only {holders} of voters "
                      f"{sorted(raft.conf.voters)} hold it on disk")

    def _check_commit_unlosable(self, raft: Raft, index: int) -> None:
        term = raft.log.term(index)
        views = self.logs()
        voters = raft.conf.voters
        need = majority(len(voters))
        for n in views:
            held = n.term_at(index)
            if held in (term, DURABLE_COVERED):
                continue
            # Voters whose logs are no more up to date than n's would vote for n.
            granting = [v.node for v in views if v.node in voters
                        and (v.last_term, v.last_index) <= (n.last_term, n.last_index)]
            if len(granting) >= need:
                self.fail(f"committed entry can be lost: leader {raft.id} of term {raft.term} "
                          f"committed {index} (term {term}) but {n.node} lacks it and "
                          f"{granting} of voters {sorted(voters)} would elect it")

    def _check_snapshot_point(self, node: int, index: int, term: int) -> None:
        if index > len(self.committed):
            self.fail(f"{node} holds a snapshot at {index} beyond anything seen committed "
                      f"({len(self.committed)})")
        want = self.committed[index - 1]
        if want.term != term:
            self.fail(f"{node} snapshot at {index} has term {term}, committed entry is {want}")

    # --- apply -----------------------------------------------------------------------

    def on_apply(self, node: int, index: int, data: bytes) -> None:
        applied = self.applied
        self.stats.applied += 1
        if index <= len(applied):
            if applied[index - 1] != data:
                self.fail(f"state machine safety: {node} applied {data!r} at {index}, "
                          f"another node applied {applied[index - 1]!r}")
        elif index == len(applied) + 1:
            applied.append(data)
        else:
            self.fail(f"{node} applied index {index} past anything applied anywhere "
                      f"({len(applied)})")
        if index > len(self.committed):
            self.fail(f"{node} applied index {index} that no node has seen committed "
                      f"({len(self.committed)})")

    def on_snapshot_installed(self, node: int, meta: SnapshotMeta,
                              image: Sequence[bytes]) -> None:
        """`node` replaced its state machine by `image` (indexes 1..meta.index)."""
        self.stats.snapshots_installed += 1
        if len(image) != meta.index:
            self.fail(f"{node} got a snapshot image of {len(image)} entries at index "
                      f"{meta.index}")
        self._check_snapshot_point(node, meta.index, meta.term)
        for i, data in enumerate(image, start=1):
            self.on_apply(node, i, data)

    # --- reads -----------------------------------------------------------------------

    def on_ack(self, index: int) -> None:
        """A client saw its write applied at `index`."""
        self.acked_index_max = max(self.acked_index_max, index)

    def on_read_state(self, node: int, index: int, floor: int) -> None:
        """A ReadIndex issued when `floor` was the highest acknowledged write returned `index`."""
        self.stats.reads_checked += 1
        if index < floor:
            self.fail(f"linearizability: {node} got read index {index} below write {floor} "
                      "acknowledged before the read began")

"""The contract of the Raft WAL, and the checks both implementations share.

The WAL is what a member reads once at boot and writes on every Ready: hard
state, log entries and the metadata of the latest snapshot. The Raft core keeps
its log in memory, so the WAL needs no random access API beyond `load()`.

Validation lives here, not in the implementations, so that `SqliteWal` (the
real thing) and `MemoryWal` (the simulator's twin) cannot drift apart: both
turn a `save()` call into a `SavePlan` with `plan_save()` (check BEFORE the
write) and both run `check_boot_state()` on what they read back (check AFTER
the read). A failed check is a programmer error or corruption, so it is an
AssertionError that crashes the member (TIGER_STYLE), never a quiet fix-up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cluster.messages import NONE, Entry, HardState, SnapshotMeta


@dataclass(frozen=True, slots=True)
class BootState:
    """Everything a member needs from the WAL to rebuild its Raft core.

    `entries` are exactly the entries strictly after `snapshot_meta.index`,
    contiguous; `snapshot_meta.index <= hard_state.commit <= last index`.
    """

    hard_state: HardState
    snapshot_meta: SnapshotMeta
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class WalStatistics:
    """A point-in-time summary, cheap enough for a status page."""

    entries: int
    first_index: int
    last_index: int
    entries_bytes: int  # payload bytes of the stored entries
    file_bytes: int  # on-disk footprint (0 for the in-memory twin)
    saves: int  # save() calls that committed since open


class RaftWal(Protocol):
    """Durable home of hard state, log entries and snapshot metadata.

    Index vocabulary follows etcd's raft.Storage: `first_index()` is
    `snapshot_meta.index + 1` even when no entry is stored, and
    `last_index()` is the last entry's index, or the snapshot's when the log
    is empty. Every method is synchronous and must be called from one
    thread at a time (the wal actor runs it in a worker thread).
    """

    def load(self) -> BootState:
        """Read back the whole durable state (used once, at boot)."""
        ...

    def save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot_meta: SnapshotMeta | None = None,
    ) -> None:
        """Persist one Ready in ONE transaction, DURABLE (FSYNCED) ON RETURN.

        The snapshot metadata is applied first, then the entries, then the
        hard state. A newer snapshot replaces the stored one and deletes
        every entry at or below its index; entries after it survive only
        if the stored entry at the snapshot's index has the snapshot's term
        (otherwise they belong to another history, as in etcd raft's
        restore). Entries starting at index i first delete every stored
        entry with index >= i (Raft conflict truncation).

        Raises:
            AssertionError: the call would break a Raft invariant (gap,
                decreasing term, rewriting a committed entry, ...); nothing
                is written.
        """
        ...

    def compact(self, index: int) -> None:
        """Drop entries with index <= `index`; they must be covered by the snapshot.

        Because `save()` already drops what a newer snapshot covers, this is
        idempotent housekeeping: the tail kept for slow followers lives in
        the core's in-memory log, as in etcd, whose WAL replays only the
        entries after the latest snapshot at boot.
        """
        ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def get_meta(self, key: str) -> str | None:
        """Member identity (member_id, cluster_id, name) kept next to the log."""
        ...

    def set_meta(self, key: str, value: str) -> None:
        """Durably set one identity value (its own transaction)."""
        ...

    def statistics(self) -> WalStatistics: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SavePlan:
    """The writes one validated `save()` performs, in this order.

    1. If `snapshot_meta` is set: replace the stored one, then delete all
       entries (`drop_all`) or those <= `snapshot_meta.index`.
    2. If `truncate_from` is set: delete entries >= it.
    3. Insert `append`.
    4. If `hard_state` is set: replace the stored one.
    The `*_after` fields describe the state once the plan has run, so the
    implementations can refresh their caches without reading back.
    """

    snapshot_meta: SnapshotMeta | None
    drop_all: bool
    truncate_from: int | None
    append: tuple[Entry, ...]
    hard_state: HardState | None
    snapshot_after: SnapshotMeta
    hard_state_after: HardState
    last_index_after: int
    last_term_after: int


def plan_save(
    *,
    stored_hard_state: HardState,
    stored_snapshot: SnapshotMeta,
    stored_last_index: int,
    term_at: Callable[[int], int | None],
    hard_state: HardState | None,
    entries: Sequence[Entry],
    snapshot_meta: SnapshotMeta | None,
) -> SavePlan:
    """Validate one save against the stored state and say what to write.

    Args:
        term_at: term of the stored entry at an index, or None when that
            index is not stored (it is only asked about indexes inside
            (stored snapshot index, stored last index]).

    Raises:
        AssertionError: the save would break an invariant.
    """
    new_snapshot: SnapshotMeta | None = None
    drop_all = False
    base = stored_snapshot
    last_index = stored_last_index
    # Terms of stored entries we may still need after the snapshot step.
    keep_stored = True
    if snapshot_meta is not None:
        assert snapshot_meta.index >= stored_snapshot.index, (
            f"snapshot {snapshot_meta.index} older than stored {stored_snapshot.index}"
        )
        if snapshot_meta.index == stored_snapshot.index:
            assert snapshot_meta == stored_snapshot, "two different snapshots at one index"
        else:
            assert snapshot_meta.term >= stored_snapshot.term, "snapshot term went backwards"
            new_snapshot = snapshot_meta
            base = snapshot_meta
            matches = (
                snapshot_meta.index <= stored_last_index
                and term_at(snapshot_meta.index) == snapshot_meta.term
            )
            if matches:
                last_index = stored_last_index
            else:
                drop_all = True
                keep_stored = False
                last_index = snapshot_meta.index

    def term_after_snapshot(index: int) -> int | None:
        if index == base.index:
            return base.term
        if keep_stored and base.index < index <= last_index:
            return term_at(index)
        return None

    truncate_from: int | None = None
    last_term = term_after_snapshot(last_index)
    assert last_term is not None, f"no term known for last index {last_index}"
    if entries:
        first = entries[0].index
        assert base.index < first <= last_index + 1, (
            f"entries start at {first}; the log holds ({base.index}, {last_index}]"
        )
        prev_term = term_after_snapshot(first - 1)
        assert prev_term is not None
        check_entries(entries, prev_index=first - 1, prev_term=prev_term)
        if first <= last_index:
            truncate_from = first
            # Never rewrite a committed entry with another term. By Log
            # Matching, agreeing at the highest overlapped committed index
            # means agreeing at every lower one.
            overlap = min(stored_hard_state.commit, last_index, entries[-1].index)
            if overlap >= first:
                assert term_at(overlap) == entries[overlap - first].term, (
                    f"save would rewrite committed entry {overlap}"
                )
        last_index = entries[-1].index
        last_term = entries[-1].term

    hs_after = stored_hard_state
    if hard_state is not None:
        check_hard_state_step(stored_hard_state, hard_state)
        hs_after = hard_state
    check_shape(hs_after, base, last_index, last_term)
    return SavePlan(
        snapshot_meta=new_snapshot,
        drop_all=drop_all,
        truncate_from=truncate_from,
        append=tuple(entries),
        hard_state=hard_state,
        snapshot_after=base,
        hard_state_after=hs_after,
        last_index_after=last_index,
        last_term_after=last_term,
    )


def check_entries(entries: Sequence[Entry], *, prev_index: int, prev_term: int) -> None:
    """Entries follow `prev_index` contiguously with non-decreasing terms."""
    index, term = prev_index, prev_term
    for e in entries:
        assert e.index == index + 1, f"entry {e.index} does not follow {index}"
        assert e.term >= term, f"entry {e.index} term {e.term} < previous term {term}"
        assert isinstance(e.data, bytes), f"entry {e.index} data is not bytes"
        index, term = e.index, e.term


def check_hard_state_step(old: HardState, new: HardState) -> None:
    """Term and commit never go back; one vote per term."""
    assert new.term >= old.term, f"term went backwards: {old.term} -> {new.term}"
    assert new.commit >= old.commit, f"commit went backwards: {old.commit} -> {new.commit}"
    if new.term == old.term and old.vote != NONE:
        assert new.vote == old.vote, f"vote changed within term {new.term}"


def check_shape(hs: HardState, snapshot: SnapshotMeta, last_index: int, last_term: int) -> None:
    """Whole-state invariants, the ones etcd raft checks when it boots."""
    assert snapshot.index <= hs.commit <= last_index, (
        f"commit {hs.commit} outside [{snapshot.index}, {last_index}]"
    )
    assert last_term <= hs.term, f"entry term {last_term} above current term {hs.term}"


def check_boot_state(boot: BootState) -> None:
    """Check AFTER the read: what came off disk is a log Raft can start from."""
    check_entries(boot.entries, prev_index=boot.snapshot_meta.index,
                  prev_term=boot.snapshot_meta.term)
    last = boot.entries[-1] if boot.entries else None
    last_index = last.index if last else boot.snapshot_meta.index
    last_term = last.term if last else boot.snapshot_meta.term
    check_shape(boot.hard_state, boot.snapshot_meta, last_index, last_term)

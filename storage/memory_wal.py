"""In-memory twin of `SqliteWal` for the deterministic simulator.

Same contract, same checks (`storage.protocols.plan_save`), no disk: a
simulated crash keeps exactly what `save()` had committed when it returned,
which is what `crash_copy()` hands to the restarted member. A save is
all-or-nothing: the new state is built aside and swapped in as the last
step, so an exception part-way (including one raised by the
`fault_before_commit` hook) leaves the previous state, like a rolled-back
SQLite transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import final

from cluster.messages import Entry, HardState, SnapshotMeta
from storage.protocols import (
    BootState,
    WalStatistics,
    check_boot_state,
    plan_save,
)


@final
class MemoryWal:
    """A `RaftWal` held in Python objects; durable means "save() returned"."""

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot = SnapshotMeta()
        # _entries[k] has index _snapshot.index + 1 + k (contiguous by construction).
        self._entries: list[Entry] = []
        self._meta: dict[str, str] = {}
        self._saves = 0
        self._closed = False
        self.fault_before_commit: Callable[[], None] | None = None
        """Simulator hook: called after a save is staged, before it commits.

        Raise from it to model a crash or a disk error in the middle of a
        save; the WAL then keeps its previous state.
        """

    # --- RaftWal ---------------------------------------------------------------

    def load(self) -> BootState:
        self._check_open()
        boot = BootState(
            hard_state=self._hard_state,
            snapshot_meta=self._snapshot,
            entries=tuple(self._entries),
        )
        check_boot_state(boot)
        return boot

    def save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot_meta: SnapshotMeta | None = None,
    ) -> None:
        self._check_open()
        plan = plan_save(
            stored_hard_state=self._hard_state,
            stored_snapshot=self._snapshot,
            stored_last_index=self.last_index(),
            term_at=self._term_at,
            hard_state=hard_state,
            entries=entries,
            snapshot_meta=snapshot_meta,
        )
        # Stage every change on copies; only the swap below makes them "durable".
        staged = self._entries
        base = self._snapshot.index
        if plan.snapshot_meta is not None:
            staged = [] if plan.drop_all else staged[plan.snapshot_meta.index - base:]
            base = plan.snapshot_meta.index
        if plan.truncate_from is not None:
            staged = staged[: plan.truncate_from - base - 1]
        if plan.append:
            staged = [*staged, *plan.append]
        assert len(staged) == plan.last_index_after - plan.snapshot_after.index
        if self.fault_before_commit is not None:
            self.fault_before_commit()
        self._entries = staged
        self._snapshot = plan.snapshot_after
        self._hard_state = plan.hard_state_after
        self._saves += 1

    def compact(self, index: int) -> None:
        self._check_open()
        assert 0 <= index <= self._snapshot.index, (
            f"compact({index}) beyond snapshot {self._snapshot.index} would lose entries"
        )
        # Entries at or below the snapshot index are never stored (save() drops
        # them), so there is nothing left to remove.

    def first_index(self) -> int:
        return self._snapshot.index + 1

    def last_index(self) -> int:
        return self._snapshot.index + len(self._entries)

    def get_meta(self, key: str) -> str | None:
        self._check_open()
        return self._meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        self._check_open()
        assert isinstance(key, str)
        assert isinstance(value, str)
        self._meta = {**self._meta, key: value}

    def statistics(self) -> WalStatistics:
        return WalStatistics(
            entries=len(self._entries),
            first_index=self.first_index(),
            last_index=self.last_index(),
            entries_bytes=sum(len(e.data) for e in self._entries),
            file_bytes=0,
            saves=self._saves,
        )

    def close(self) -> None:
        self._closed = True

    # --- simulator hooks -------------------------------------------------------

    def crash_copy(self) -> MemoryWal:
        """A fresh WAL holding exactly the durable state, as a restarted member sees it.

        Works on a closed WAL too: a crashed member's WAL is "closed" by the
        crash, and its successor reads what had reached the disk.
        """
        copy = MemoryWal()
        copy._hard_state = self._hard_state
        copy._snapshot = self._snapshot
        copy._entries = list(self._entries)
        copy._meta = dict(self._meta)
        return copy

    # --- internals -------------------------------------------------------------

    def _term_at(self, index: int) -> int | None:
        if index == self._snapshot.index:
            return self._snapshot.term
        k = index - self._snapshot.index - 1
        if 0 <= k < len(self._entries):
            return self._entries[k].term
        return None

    def _check_open(self) -> None:
        assert not self._closed, "MemoryWal used after close()"

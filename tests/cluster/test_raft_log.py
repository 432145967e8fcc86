"""RaftLog as tables: term lookup, up-to-date comparison, append/conflict, compaction."""

from __future__ import annotations

import pytest

from cluster.messages import Entry
from cluster.raft_log import RaftLog


def E(index: int, term: int) -> Entry:
    return Entry(index, term, data=b"%d/%d" % (index, term))


def log_of(*terms: int, snap: tuple[int, int] = (0, 0), commit: int = 0) -> RaftLog:
    """A log with a snapshot at `snap` (index, term) followed by entries of `terms`."""
    si, st = snap
    return RaftLog(si, st, [E(si + 1 + i, t) for i, t in enumerate(terms)], commit)


def pairs(log: RaftLog) -> list[tuple[int, int]]:
    if log.last_index() < log.first_index():
        return []
    return [(e.index, e.term) for e in log.slice(log.first_index(), log.last_index() + 1,
                                                 1 << 30, 1 << 30)]


# --- reading -------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "want"), [
    (2, None),  # compacted
    (3, 2),  # the snapshot point itself
    (4, 2),
    (6, 3),
    (7, None),  # beyond the log
])
def test_term(index: int, want: int | None) -> None:
    log = log_of(2, 3, 3, snap=(3, 2))
    assert log.term(index) == want


def test_empty_log_indexes() -> None:
    log = log_of()
    assert (log.first_index(), log.last_index(), log.last_term()) == (1, 0, 0)
    assert log.term(0) == 0


def test_indexes_after_snapshot() -> None:
    log = log_of(snap=(10, 4))
    assert (log.first_index(), log.last_index(), log.last_term()) == (11, 10, 4)
    assert log.committed == 10
    assert log.applied == 10
    assert log.stable_index == 10


@pytest.mark.parametrize(("last_index", "last_term", "want"), [
    # Our log: last entry (3, 2).
    (2, 1, False),
    (3, 1, False),
    (4, 1, False),  # a longer log with an older last term is less up to date
    (2, 2, False),
    (3, 2, True),
    (4, 2, True),
    (1, 3, True),  # a newer last term wins whatever the length
])
def test_is_up_to_date(last_index: int, last_term: int, want: bool) -> None:
    assert log_of(1, 2, 2).is_up_to_date(last_index, last_term) is want


@pytest.mark.parametrize(("lo", "hi", "bytes_max", "count_max", "want"), [
    (1, 4, 1 << 20, 100, [1, 2, 3]),
    (2, 4, 1 << 20, 100, [2, 3]),
    (1, 10, 1 << 20, 100, [1, 2, 3, 4]),  # clipped at the end of the log
    (1, 4, 1 << 20, 2, [1, 2]),  # count limit
    (1, 4, 1, 100, [1]),  # at least one entry even over the byte limit
    (1, 4, 7, 100, [1, 2]),  # each entry is 3 bytes of data ("1/1")
])
def test_slice(lo: int, hi: int, bytes_max: int, count_max: int, want: list[int]) -> None:
    log = log_of(1, 1, 1, 1)
    assert [e.index for e in log.slice(lo, hi, bytes_max, count_max)] == want


def test_slice_below_first_index_is_a_bug() -> None:
    log = log_of(1, snap=(5, 1))
    with pytest.raises(AssertionError):
        log.slice(5, 7, 1 << 20, 100)


@pytest.mark.parametrize(("index", "term", "want"), [
    # Log terms by index: 1:1 2:1 3:2 4:3 5:3 6:5
    (6, 5, (6, 5)),
    (6, 4, (5, 3)),  # skip the whole term-5 tail
    (6, 3, (5, 3)),
    (6, 2, (3, 2)),
    (6, 1, (2, 1)),
    (6, 0, (0, 0)),
    (9, 3, (5, 3)),  # index beyond the log starts at our last index
    (4, 2, (3, 2)),
])
def test_find_conflict_by_term(index: int, term: int, want: tuple[int, int]) -> None:
    assert log_of(1, 1, 2, 3, 3, 5).find_conflict_by_term(index, term) == want


def test_find_conflict_by_term_stops_at_snapshot() -> None:
    assert log_of(4, 4, snap=(5, 3)).find_conflict_by_term(7, 2) == (5, 3)


# --- writing -------------------------------------------------------------------------


@pytest.mark.parametrize(("prev", "ents", "commit", "want_last", "want", "want_commit"), [
    # Mismatched previous entry: rejected, nothing changes.
    ((3, 2), [], 3, None, [(1, 1), (2, 2), (3, 3)], 1),
    ((4, 3), [], 3, None, [(1, 1), (2, 2), (3, 3)], 1),
    # Matching, nothing new: commit follows, bounded by what the message covers.
    ((3, 3), [], 3, 3, [(1, 1), (2, 2), (3, 3)], 3),
    ((2, 2), [], 3, 2, [(1, 1), (2, 2), (3, 3)], 2),
    # Appends at the end.
    ((3, 3), [(4, 4)], 4, 4, [(1, 1), (2, 2), (3, 3), (4, 4)], 4),
    # Entries already present are not truncated (stale/duplicate AppendEntries).
    ((1, 1), [(2, 2)], 2, 2, [(1, 1), (2, 2), (3, 3)], 2),
    # A conflict truncates the suffix from the first differing index.
    ((1, 1), [(2, 4)], 2, 2, [(1, 1), (2, 4)], 2),
    ((1, 1), [(2, 2), (3, 4), (4, 4)], 4, 4, [(1, 1), (2, 2), (3, 4), (4, 4)], 4),
    ((2, 2), [(3, 4)], 0, 3, [(1, 1), (2, 2), (3, 4)], 1),  # commit never moves back
])
def test_maybe_append(prev: tuple[int, int], ents: list[tuple[int, int]], commit: int,
                      want_last: int | None, want: list[tuple[int, int]],
                      want_commit: int) -> None:
    log = log_of(1, 2, 3, commit=1)
    last = log.maybe_append(prev[0], prev[1], commit, [E(i, t) for i, t in ents])
    assert last == want_last
    assert pairs(log) == want
    assert log.committed == want_commit


def test_maybe_append_conflicting_with_committed_entry_is_a_bug() -> None:
    log = log_of(1, 2, 3, commit=2)
    with pytest.raises(AssertionError):
        log.maybe_append(1, 1, 3, [E(2, 4)])


def test_append_truncation_marks_entries_unstable() -> None:
    log = log_of(1, 1, 1)
    assert log.unstable_entries() == []
    log.append([E(2, 2)])
    assert [(e.index, e.term) for e in log.unstable_entries()] == [(2, 2)]
    assert log.stable_index == 1


def test_append_with_gap_is_a_bug() -> None:
    log = log_of(1)
    with pytest.raises(AssertionError):
        log.append([E(3, 1)])


def test_stable_to_ignores_a_stale_term() -> None:
    """A persist acknowledgement for entries since replaced must not mark the new ones stable."""
    log = log_of(1)
    log.append([E(2, 2), E(3, 2)])
    log.append([E(3, 3)])  # replaced before the first write was acknowledged
    log.stable_to(3, 2)
    assert log.stable_index == 1
    log.stable_to(3, 3)
    assert log.stable_index == 3


def test_commit_to_never_decreases_and_never_passes_the_log() -> None:
    log = log_of(1, 1, 1, commit=2)
    log.commit_to(1)
    assert log.committed == 2
    log.commit_to(3)
    assert log.committed == 3
    with pytest.raises(AssertionError):
        log.commit_to(4)


@pytest.mark.parametrize(("applied", "commit", "count_max", "want"), [
    (0, 3, 100, [1, 2, 3]),
    (1, 3, 100, [2, 3]),
    (3, 3, 100, []),
    (0, 3, 2, [1, 2]),
])
def test_next_committed_entries(applied: int, commit: int, count_max: int,
                                want: list[int]) -> None:
    log = log_of(1, 1, 1, 1, commit=commit)
    log.applied = applied
    assert [e.index for e in log.next_committed_entries(count_max)] == want


def test_applied_never_passes_commit() -> None:
    log = log_of(1, 1, commit=1)
    with pytest.raises(AssertionError):
        log.applied_to(2)


# --- compaction and snapshots ---------------------------------------------------------


def test_compact_drops_prefix_and_keeps_terms() -> None:
    log = log_of(1, 1, 2, 2, commit=4)
    log.applied = 4
    log.compact(3)
    assert (log.first_index(), log.last_index()) == (4, 4)
    assert log.term(3) == 2
    assert log.term(2) is None
    assert pairs(log) == [(4, 2)]


def test_compact_is_idempotent_below_the_snapshot() -> None:
    log = log_of(1, 1, snap=(5, 1), commit=7)
    log.applied = 7
    log.compact(4)
    assert log.first_index() == 6


def test_compact_beyond_applied_is_a_bug() -> None:
    log = log_of(1, 1, commit=2)
    log.applied = 1
    with pytest.raises(AssertionError):
        log.compact(2)


def test_restore_replaces_everything() -> None:
    log = log_of(1, 1, 2, commit=1)
    log.restore(10, 4)
    assert (log.first_index(), log.last_index(), log.last_term()) == (11, 10, 4)
    assert (log.committed, log.applied, log.stable_index) == (10, 10, 10)
    assert log.unstable_entries() == []


def test_boot_rejects_commit_beyond_log() -> None:
    with pytest.raises(AssertionError):
        RaftLog(0, 0, [E(1, 1)], commit=2)


def test_boot_rejects_entries_not_following_snapshot() -> None:
    with pytest.raises(AssertionError):
        RaftLog(5, 1, [E(7, 1)], commit=0)

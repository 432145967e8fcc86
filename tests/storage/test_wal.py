"""Both WAL implementations pass the same behaviour tests.

`reopen` models a restart: SqliteWal closes and opens the file again,
MemoryWal hands over its `crash_copy()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.messages import ConfState, Entry, EntryType, HardState, SnapshotMeta
from storage.memory_wal import MemoryWal
from storage.protocols import BootState, RaftWal
from storage.wal import SqliteWal


class Harness:
    """Opens a WAL of one kind and can "restart" it."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.path = tmp_path / "wal.db"
        self.wal: RaftWal = self._open_fresh()

    def _open_fresh(self) -> RaftWal:
        return SqliteWal(self.path) if self.kind == "sqlite" else MemoryWal()

    def reopen(self) -> RaftWal:
        if isinstance(self.wal, MemoryWal):
            copy = self.wal.crash_copy()
            self.wal.close()
            self.wal = copy
        else:
            self.wal.close()
            self.wal = SqliteWal(self.path)
        return self.wal

    def set_fault(self, fault: Callable[[], None] | None) -> None:
        assert isinstance(self.wal, (SqliteWal, MemoryWal))
        self.wal.fault_before_commit = fault


@pytest.fixture(params=["sqlite", "memory"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(request.param, tmp_path)
    yield h
    h.wal.close()


def ents(lo: int, hi: int, term: int) -> list[Entry]:
    """Entries lo..hi inclusive, all at `term`, with recognisable payloads."""
    return [Entry(index=i, term=term, data=f"t{term}i{i}".encode()) for i in range(lo, hi + 1)]


def test_fresh_wal_boots_empty(harness: Harness) -> None:
    boot = harness.wal.load()
    assert boot == BootState(HardState(), SnapshotMeta(), ())
    assert (harness.wal.first_index(), harness.wal.last_index()) == (1, 0)


def test_round_trip_keeps_entries_and_hard_state(harness: Harness) -> None:
    wal = harness.wal
    batch = [*ents(1, 3, 1), Entry(index=4, term=1, type=EntryType.CONF_CHANGE, data=b"\x00cc")]
    wal.save(HardState(term=1, vote=7, commit=2), batch)
    boot = harness.reopen().load()
    assert boot.hard_state == HardState(term=1, vote=7, commit=2)
    assert boot.entries == tuple(batch)
    assert (harness.wal.first_index(), harness.wal.last_index()) == (1, 4)


def test_conflicting_append_truncates_the_tail(harness: Harness) -> None:
    wal = harness.wal
    wal.save(HardState(term=2, commit=2), [*ents(1, 2, 1), *ents(3, 6, 2)])
    wal.save(HardState(term=3, commit=2), ents(4, 5, 3))
    boot = harness.reopen().load()
    assert [(e.index, e.term) for e in boot.entries] == [
        (1, 1), (2, 1), (3, 2), (4, 3), (5, 3),
    ]
    assert harness.wal.last_index() == 5


def test_hard_state_only_save_keeps_entries(harness: Harness) -> None:
    wal = harness.wal
    wal.save(HardState(term=1), ents(1, 3, 1))
    wal.save(HardState(term=1, commit=3), [])
    wal.save(HardState(term=4, vote=2, commit=3), ())
    boot = harness.reopen().load()
    assert boot.hard_state == HardState(term=4, vote=2, commit=3)
    assert len(boot.entries) == 3


def test_newer_snapshot_replaces_meta_and_drops_covered_entries(harness: Harness) -> None:
    wal = harness.wal
    wal.save(HardState(term=2, commit=8), [*ents(1, 4, 1), *ents(5, 10, 2)])
    meta = SnapshotMeta(index=6, term=2, conf=ConfState(voters=frozenset({1, 2, 3})))
    wal.save(None, [], meta)
    boot = harness.reopen().load()
    assert boot.snapshot_meta == meta
    assert [e.index for e in boot.entries] == [7, 8, 9, 10]
    assert (harness.wal.first_index(), harness.wal.last_index()) == (7, 10)


def test_snapshot_from_another_history_drops_every_entry(harness: Harness) -> None:
    wal = harness.wal
    wal.save(HardState(term=2, commit=3), [*ents(1, 3, 1), *ents(4, 9, 2)])
    meta = SnapshotMeta(index=6, term=3, conf=ConfState(voters=frozenset({1})))
    wal.save(HardState(term=3, commit=7), ents(7, 7, 3), meta)
    boot = harness.reopen().load()
    assert boot.snapshot_meta == meta
    assert [(e.index, e.term) for e in boot.entries] == [(7, 3)]


def test_snapshot_beyond_the_log_installs_an_empty_log(harness: Harness) -> None:
    wal = harness.wal
    wal.save(HardState(term=1, commit=2), ents(1, 2, 1))
    meta = SnapshotMeta(index=50, term=4)
    wal.save(HardState(term=4, commit=50), [], meta)
    boot = harness.reopen().load()
    assert boot.entries == ()
    assert (harness.wal.first_index(), harness.wal.last_index()) == (51, 50)
    harness.wal.save(None, ents(51, 52, 4))
    assert harness.wal.last_index() == 52


def test_compact_within_the_snapshot_keeps_the_log(harness: Harness) -> None:
    wal = harness.wal
    wal.save(HardState(term=1, commit=10), ents(1, 10, 1))
    wal.save(None, [], SnapshotMeta(index=8, term=1))
    wal.compact(5)
    wal.compact(8)
    assert [e.index for e in harness.reopen().load().entries] == [9, 10]


def test_compact_beyond_the_snapshot_is_refused(harness: Harness) -> None:
    harness.wal.save(HardState(term=1, commit=10), ents(1, 10, 1))
    with pytest.raises(AssertionError, match="beyond snapshot"):
        harness.wal.compact(5)


def test_interrupted_save_leaves_the_previous_state(harness: Harness) -> None:
    wal = harness.wal
    wal.save(HardState(term=1, commit=1), ents(1, 3, 1))
    before = wal.load()

    def crash() -> None:
        raise OSError("disk on fire")

    harness.set_fault(crash)
    with pytest.raises(OSError, match="disk on fire"):
        wal.save(HardState(term=2, vote=3, commit=2), ents(2, 6, 2), SnapshotMeta(1, 1))
    harness.set_fault(None)
    assert wal.load() == before
    assert wal.last_index() == 3
    assert harness.reopen().load() == before
    # The WAL is still usable after the failed save.
    harness.wal.save(HardState(term=2, commit=3), ents(4, 4, 2))
    assert harness.wal.last_index() == 4


def test_member_identity_survives_restart(harness: Harness) -> None:
    wal = harness.wal
    assert wal.get_meta("member_id") is None
    wal.set_meta("member_id", "1234")
    wal.set_meta("name", "m1")
    wal.set_meta("name", "m2")
    wal = harness.reopen()
    assert (wal.get_meta("member_id"), wal.get_meta("name")) == ("1234", "m2")


def test_statistics_count_entries_and_bytes(harness: Harness) -> None:
    wal = harness.wal
    wal.save(HardState(term=1), [Entry(1, 1, data=b"abc"), Entry(2, 1, data=b"de")])
    stats = wal.statistics()
    assert (stats.entries, stats.first_index, stats.last_index) == (2, 1, 2)
    assert stats.entries_bytes == 5
    assert stats.saves == 1


@pytest.mark.parametrize(
    ("setup", "bad_save", "message"),
    [
        pytest.param(ents(1, 2, 1), lambda w: w.save(None, ents(4, 4, 1)), "entries start",
                     id="gap"),
        pytest.param(ents(1, 2, 1), lambda w: w.save(None, [*ents(3, 3, 1), *ents(5, 5, 1)]),
                     "does not follow", id="non-contiguous batch"),
        pytest.param(ents(1, 2, 2), lambda w: w.save(None, ents(3, 3, 1)), "term",
                     id="decreasing term"),
        pytest.param(ents(1, 2, 2), lambda w: w.save(HardState(term=1), []), "term went back",
                     id="hard state term backwards"),
        pytest.param(ents(1, 2, 2), lambda w: w.save(HardState(term=2, vote=1, commit=5), []),
                     "commit 5 outside", id="commit beyond log"),
        pytest.param(ents(1, 2, 2), lambda w: w.save(None, ents(3, 3, 9)), "above current term",
                     id="entry term above hard state term"),
        pytest.param(ents(1, 2, 2), lambda w: w.save(HardState(term=2, vote=9), []),
                     "vote changed", id="second vote in one term"),
        pytest.param(ents(1, 2, 2), lambda w: w.save(None, [], SnapshotMeta(1, 1)),
                     "commit 0 outside", id="snapshot beyond commit"),
    ],
)
def test_invalid_saves_are_refused_and_write_nothing(
    harness: Harness, setup: list[Entry], bad_save: Callable[[RaftWal], None], message: str
) -> None:
    wal = harness.wal
    wal.save(HardState(term=2, vote=1), setup)
    before = wal.load()
    with pytest.raises(AssertionError, match=message):
        bad_save(wal)
    assert harness.reopen().load() == before


def test_rewriting_a_committed_entry_is_refused(harness: Harness) -> None:
    wal = harness.wal
    wal.save(HardState(term=2, commit=3), ents(1, 5, 1))
    with pytest.raises(AssertionError, match="rewrite committed entry 2"):
        wal.save(None, ents(2, 2, 2))
    # Re-sending identical committed entries is harmless and allowed.
    wal.save(None, ents(3, 6, 1))
    assert wal.last_index() == 6


def test_memory_crash_copy_is_independent() -> None:
    wal = MemoryWal()
    wal.save(HardState(term=1), ents(1, 2, 1))
    copy = wal.crash_copy()
    wal.save(HardState(term=1), ents(3, 4, 1))
    assert copy.last_index() == 2
    assert wal.last_index() == 4


def test_sqlite_wal_uses_wal_journal_and_full_sync(tmp_path: Path) -> None:
    wal = SqliteWal(tmp_path / "wal.db")
    try:
        conn = wal._db.conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        wal.close()


@pytest.mark.parametrize("batch", [1, 10, 100])
def test_sqlite_save_throughput(tmp_path: Path, batch: int) -> None:
    """Informative micro-benchmark (no timing assert): small Ready batches, 100-byte entries."""
    wal = SqliteWal(tmp_path / "wal.db")
    saves, index, term = 0, 0, 1
    payload = b"x" * 100
    start = time.perf_counter()
    while time.perf_counter() - start < 0.5:
        entries = [Entry(index + k, term, data=payload) for k in range(1, batch + 1)]
        index += batch
        wal.save(HardState(term=term, commit=index - batch), entries)
        saves += 1
    elapsed = time.perf_counter() - start
    wal.close()
    print(f"\nSqliteWal batch={batch}: {saves / elapsed:,.0f} saves/s, "
          f"{saves * batch / elapsed:,.0f} entries/s")
    assert SqliteWal(tmp_path / "wal.db").last_index() == index


_op = st.one_of(
    st.tuples(st.just("append"), st.integers(-4, 1), st.integers(0, 4), st.integers(0, 5)),
    st.tuples(st.just("hard_state"), st.integers(0, 5), st.integers(0, 3), st.integers(0, 12)),
    st.tuples(st.just("snapshot"), st.integers(0, 12), st.integers(0, 5), st.just(0)),
    st.tuples(st.just("restart"), st.just(0), st.just(0), st.just(0)),
)


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(_op, max_size=25))
def test_sqlite_and_memory_agree_on_random_histories(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, int, int]]
) -> None:
    """Differential check: whatever one accepts, refuses or stores, so does the other."""
    sqlite = Harness("sqlite", tmp_path_factory.mktemp("wal"))
    memory = Harness("memory", tmp_path_factory.mktemp("wal"))
    for kind, a, b, c in ops:
        outcomes = []
        for h in (sqlite, memory):
            wal = h.wal
            hs = wal.load().hard_state
            try:
                if kind == "append":
                    first = wal.last_index() + a
                    wal.save(None, ents(first, first + b - 1, c))
                elif kind == "hard_state":
                    wal.save(HardState(term=hs.term + a, vote=b, commit=c), [])
                elif kind == "snapshot":
                    wal.save(None, [], SnapshotMeta(index=a, term=b))
                else:
                    h.reopen()
                outcomes.append("ok")
            except AssertionError:
                outcomes.append("refused")
        assert outcomes[0] == outcomes[1], (kind, a, b, c)
        assert sqlite.wal.load() == memory.wal.load()
    sqlite.wal.close()

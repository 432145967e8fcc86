"""Exactly-once apply, crash atomicity, replica hashes, backup/restore, throughput."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from cluster.errors import CompactedError, FutureRevisionError
from cluster.kv import (
    CompactionRequest,
    DeleteRangeRequest,
    LeaseGrantRequest,
    PutRequest,
    RangeRequest,
    Request,
    TxnRequest,
)
from storage import mvcc_write
from storage.mvcc import MvccStore
from tests.storage.mvcc_helpers import Feeder, history

WORKLOAD: list[Request] = [
    PutRequest(b"a", b"1"),
    PutRequest(b"b", b"2"),
    LeaseGrantRequest(ttl=30, id=5),
    PutRequest(b"c", b"3", lease=5),
    TxnRequest(success=(PutRequest(b"a", b"4"), DeleteRangeRequest(b"b"))),
    PutRequest(b"d", b"5", lease=99),  # fails: lease not found
    CompactionRequest(revision=3),
    PutRequest(b"a", b"6"),
]


def _everything(store: MvccStore) -> tuple[object, ...]:
    kvs = store.range(RangeRequest(key=b"\0", range_end=b"\0")).kvs
    return (store.revision, store.compact_revision, store.applied_index, kvs,
            store.leases(), history(store))


def test_replaying_applied_entries_after_reopen_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    entries = list(enumerate(WORKLOAD, start=1))
    store = MvccStore(path)
    first = store.apply(entries)
    assert all(r is not None for r in first)
    before = _everything(store)
    store.close()

    store = MvccStore(path)
    try:
        assert _everything(store) == before
        assert store.apply(entries) == [None] * len(entries)
        assert _everything(store) == before
    finally:
        store.close()


def test_a_batch_straddling_the_applied_index_applies_only_the_new_tail(tmp_path: Path) -> None:
    store = MvccStore(tmp_path / "state.db")
    try:
        store.apply([(1, PutRequest(b"a", b"1")), (2, PutRequest(b"a", b"2"))])
        results = store.apply([(2, PutRequest(b"a", b"2")), (3, PutRequest(b"a", b"3"))])
        assert results[0] is None
        assert results[1].revision == 4  # type: ignore[union-attr]
        assert store.range(RangeRequest(key=b"a")).kvs[0].version == 3
        assert store.applied_index == 3
    finally:
        store.close()


def test_a_crash_inside_a_batch_leaves_nothing_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The applied index is written in the same transaction as the state."""
    path = tmp_path / "state.db"
    store = MvccStore(path)
    store.apply([(1, PutRequest(b"a", b"1"))])
    before = _everything(store)
    real_put = mvcc_write.BatchWriter._put

    def put_then_die(self: mvcc_write.BatchWriter, req: PutRequest) -> object:
        if req.key == b"boom":
            raise RuntimeError("simulated crash in the middle of a batch")
        return real_put(self, req)

    monkeypatch.setattr(mvcc_write.BatchWriter, "_put", put_then_die)
    with pytest.raises(RuntimeError):
        store.apply([(2, PutRequest(b"b", b"1")), (3, PutRequest(b"boom", b"1"))])
    assert _everything(store) == before
    store.close()
    monkeypatch.undo()

    store = MvccStore(path)
    try:
        assert _everything(store) == before
        store.apply([(2, PutRequest(b"b", b"1")), (3, PutRequest(b"boom", b"1"))])
        assert store.applied_index == 3
        assert store.revision == 4
    finally:
        store.close()


def test_two_stores_fed_the_same_entries_have_the_same_hash(tmp_path: Path) -> None:
    stores = [MvccStore(tmp_path / f"m{i}.db") for i in range(2)]
    try:
        for s in stores:
            s.apply(list(enumerate(WORKLOAD, start=1)))
        assert stores[0].hash_kv() == stores[1].hash_kv()
        assert stores[0].hash_kv(4) == stores[1].hash_kv(4)
        assert stores[0].hash_kv()[1] == 3
        stores[1].apply([(100, PutRequest(b"a", b"diverged"))])
        stores[0].apply([(100, PutRequest(b"a", b"6"))])
        assert stores[0].hash_kv() != stores[1].hash_kv()
    finally:
        for s in stores:
            s.close()


def test_hash_at_a_past_revision_is_the_hash_taken_then(tmp_path: Path) -> None:
    store = MvccStore(tmp_path / "state.db")
    try:
        f = Feeder(store)
        f.batch(PutRequest(b"a", b"1"), PutRequest(b"b", b"1"))
        then = store.hash_kv()
        f.batch(PutRequest(b"a", b"2"), DeleteRangeRequest(b"b"))
        assert store.hash_kv(3) == then
        with pytest.raises(FutureRevisionError):
            store.hash_kv(6)
        f.batch(CompactionRequest(revision=4))
        with pytest.raises(CompactedError):
            store.hash_kv(3)
    finally:
        store.close()


def test_backup_then_restore_gives_the_same_store(tmp_path: Path) -> None:
    store = MvccStore(tmp_path / "state.db")
    store.apply(list(enumerate(WORKLOAD, start=1)))
    snapshot = tmp_path / "snapshots" / "snap.db"
    snapshot.parent.mkdir()
    store.backup_to(snapshot)
    expected, expected_hash = _everything(store), store.hash_kv()
    store.apply([(50, PutRequest(b"after", b"backup"))])
    store.close()
    assert not snapshot.with_name("snap.db-wal").exists()

    (tmp_path / "other").mkdir()
    restored = MvccStore.restore(snapshot, tmp_path / "other" / "state.db")
    try:
        assert _everything(restored) == expected
        assert restored.hash_kv() == expected_hash
        assert restored.apply([(8, PutRequest(b"x", b"1"))]) == [None]
    finally:
        restored.close()

    # Restoring over an existing store replaces its contents.
    replaced = MvccStore.restore(snapshot, tmp_path / "state.db")
    try:
        assert _everything(replaced) == expected
    finally:
        replaced.close()


def test_reads_proceed_while_an_apply_holds_the_write_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The applier may run in a worker thread; readers see the last committed state."""
    store = MvccStore(tmp_path / "state.db")
    store.apply([(1, PutRequest(b"a", b"old"))])
    inside, release = threading.Event(), threading.Event()
    real_put = mvcc_write.BatchWriter._put

    def slow_put(self: mvcc_write.BatchWriter, req: PutRequest) -> object:
        result = real_put(self, req)
        inside.set()
        assert release.wait(10)
        return result

    monkeypatch.setattr(mvcc_write.BatchWriter, "_put", slow_put)
    worker = threading.Thread(target=store.apply, args=([(2, PutRequest(b"a", b"new"))],))
    worker.start()
    try:
        assert inside.wait(10)
        result = store.range(RangeRequest(key=b"a"))
        assert (result.kvs[0].value, result.revision) == (b"old", 2)
    finally:
        release.set()
        worker.join()
    assert store.range(RangeRequest(key=b"a")).kvs[0].value == b"new"
    store.close()


def test_put_throughput_in_batches_of_100(tmp_path: Path) -> None:
    """Informative only: prints puts/s for batches of 100 small puts (no assertion on speed)."""
    store = MvccStore(tmp_path / "state.db")
    try:
        total, batch_size = 20_000, 100
        index = 0
        start = time.perf_counter()
        for base in range(0, total, batch_size):
            entries = []
            for i in range(base, base + batch_size):
                index += 1
                entries.append((index, PutRequest(b"bench/%08d" % (i % 5000), b"v" * 32)))
            store.apply(entries)
        elapsed = time.perf_counter() - start
        print(f"\nmvcc apply: {total / elapsed:,.0f} puts/s in batches of {batch_size}"
              f" ({elapsed * 1e6 / total:.1f} us/put)")
        assert store.revision == total + 1
    finally:
        store.close()

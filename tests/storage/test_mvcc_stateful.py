"""MvccStore against a plain-Python model of etcd's MVCC (hypothesis stateful test).

The model keeps a full copy of the live key space after every revision, which
is the simplest possible reading of etcd's semantics: a read at revision R sees
that copy, compaction only forbids reads below it. The store must agree on every
result, every revision, every error, across random batching, reopening the
file and replaying already-applied entries.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from cluster.errors import CompactedError, EtcdliteError, FutureRevisionError
from cluster.kv import (
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    KeyValue,
    PutRequest,
    RangeRequest,
    Request,
    TxnRequest,
)
from storage.mvcc import MvccStore

KEYS = st.sampled_from([b"a", b"ab", b"b", b"c", b"\xff"])
ENDS = st.sampled_from([b"", b"\0", b"b", b"c", b"d"])
VALUES = st.binary(max_size=3)


def _in_range(k: bytes, key: bytes, end: bytes) -> bool:
    if not end:
        return k == key
    return key <= k and (end == b"\0" or k < end)


class MvccModel:
    """etcd's MVCC semantics, naively."""

    def __init__(self) -> None:
        self.revision = 1
        self.compact_revision = 0
        self.live: dict[bytes, KeyValue] = {}
        self.at: dict[int, dict[bytes, KeyValue]] = {1: {}}

    def _commit(self) -> None:
        self.revision += 1
        self.at[self.revision] = dict(self.live)

    def _put(self, key: bytes, value: bytes, rev: int) -> None:
        old = self.live.get(key)
        self.live[key] = KeyValue(key, value, old.create_revision if old else rev, rev,
                                  old.version + 1 if old else 1)

    def _delete(self, key: bytes, end: bytes) -> bool:
        hit = [k for k in self.live if _in_range(k, key, end)]
        for k in hit:
            del self.live[k]
        return bool(hit)

    def apply(self, req: Request) -> type[EtcdliteError] | int:
        """The error type the request must fail with, or the revision after it."""
        match req:
            case PutRequest():
                self._put(req.key, req.value, self.revision + 1)
                self._commit()
            case DeleteRangeRequest():
                if self._delete(req.key, req.range_end):
                    self._commit()
            case TxnRequest():
                (cmp,) = req.compare
                current = self.live.get(cmp.key)
                ok = (current.version if current else 0) == cmp.value
                (op,) = req.success if ok else req.failure
                if isinstance(op, PutRequest):
                    self._put(op.key, op.value, self.revision + 1)
                    self._commit()
                elif isinstance(op, DeleteRangeRequest) and self._delete(op.key, op.range_end):
                    self._commit()
            case CompactionRequest():
                if req.revision <= self.compact_revision:
                    return CompactedError
                if req.revision > self.revision:
                    return FutureRevisionError
                self.compact_revision = req.revision
        return self.revision

    def range(self, key: bytes, end: bytes, revision: int) -> type[EtcdliteError] | list[KeyValue]:
        if revision > self.revision:
            return FutureRevisionError
        if 0 < revision < self.compact_revision:
            return CompactedError
        state = self.at[revision or self.revision]
        return [state[k] for k in sorted(state) if _in_range(k, key, end)]


PUTS = st.builds(PutRequest, key=KEYS, value=VALUES)
DELETES = st.builds(DeleteRangeRequest, key=KEYS, range_end=ENDS)
TXNS = st.builds(
    lambda ck, version, then, otherwise: TxnRequest(
        compare=(Compare(ck, CompareTarget.VERSION, CompareResult.EQUAL, version),),
        success=(then,), failure=(otherwise,),
    ),
    KEYS, st.integers(0, 2), st.one_of(PUTS, DELETES), st.one_of(PUTS, DELETES),
)
COMPACTIONS = st.builds(CompactionRequest, revision=st.integers(0, 30))
REQUESTS = st.one_of(PUTS, PUTS, DELETES, TXNS, COMPACTIONS)


class MvccMachine(RuleBasedStateMachine):
    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.path = directory / "state.db"
        self.store = MvccStore(self.path)
        self.model = MvccModel()
        self.index = 0
        self.last_batch: list[tuple[int, Request | None]] = []

    @initialize()
    def start(self) -> None:
        assert self.store.revision == 1

    @rule(reqs=st.lists(st.one_of(REQUESTS, st.none()), min_size=1, max_size=6))
    def apply_batch(self, reqs: list[Request | None]) -> None:
        batch = []
        for req in reqs:
            self.index += 1
            batch.append((self.index, req))
        results = self.store.apply(batch)
        for (_, req), result in zip(batch, results, strict=True):
            if req is None:
                assert result is None
                continue
            expected = self.model.apply(req)
            if isinstance(expected, int):
                assert not isinstance(result, EtcdliteError), (req, result)
                assert result is not None
                assert result.revision == expected, (req, result)
            else:
                assert type(result) is expected, (req, result)
        self.last_batch = batch

    @rule(key=KEYS, end=ENDS, data=st.data())
    def read(self, key: bytes, end: bytes, data: st.DataObject) -> None:
        revision = data.draw(st.integers(0, self.model.revision + 1), label="revision")
        expected = self.model.range(key, end, revision)
        try:
            got: object = list(self.store.range(RangeRequest(key, end, revision=revision)).kvs)
        except EtcdliteError as err:
            got = type(err)
        assert got == expected, (key, end, revision)

    @precondition(lambda self: bool(self.last_batch))
    @rule()
    def replay_last_batch(self) -> None:
        assert self.store.apply(self.last_batch) == [None] * len(self.last_batch)

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = MvccStore(self.path)

    @invariant()
    def counters_agree(self) -> None:
        assert self.store.revision == self.model.revision
        assert self.store.compact_revision == self.model.compact_revision
        assert self.store.applied_index == self.index

    @invariant()
    def every_readable_revision_agrees(self) -> None:
        for rev in range(max(1, self.model.compact_revision), self.model.revision + 1):
            got = list(self.store.range(RangeRequest(b"\0", b"\0", revision=rev)).kvs)
            assert got == self.model.range(b"\0", b"\0", rev), rev

    def teardown(self) -> None:
        self.store.close()


def test_store_matches_the_mvcc_model(tmp_path: Path) -> None:
    counter = itertools.count()

    def fresh() -> MvccMachine:
        directory = tmp_path / f"run{next(counter)}"
        directory.mkdir()
        return MvccMachine(directory)

    run_state_machine_as_test(
        fresh, settings=settings(max_examples=60, stateful_step_count=25, deadline=None)
    )

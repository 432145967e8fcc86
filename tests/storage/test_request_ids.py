"""A proposal appended twice (duplicated MsgProp) is applied once, on every replica alike."""

from __future__ import annotations

from pathlib import Path

from cluster.kv import PutRequest, RangeRequest
from storage.mvcc import MvccStore


def test_a_repeated_request_id_is_applied_once(tmp_path: Path) -> None:
    store = MvccStore(tmp_path / "state.db")
    put = PutRequest(key=b"k", value=b"v")
    results = store.apply([(1, put), (2, put), (3, PutRequest(key=b"k", value=b"w"))],
                          request_ids=[77, 77, 78])
    assert results[1] is None
    assert store.revision == 3  # two writes, not three
    assert store.range(RangeRequest(key=b"k")).kvs[0].version == 2


def test_request_ids_survive_a_restart(tmp_path: Path) -> None:
    store = MvccStore(tmp_path / "state.db")
    store.apply([(1, PutRequest(key=b"k", value=b"v"))], request_ids=[5])
    store.close()
    again = MvccStore(tmp_path / "state.db")
    assert again.apply([(2, PutRequest(key=b"k", value=b"v"))], request_ids=[5]) == [None]
    assert again.revision == 2

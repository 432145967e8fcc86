"""WatchHub (actors/watch.py) over a real MvccStore, in one trio run with a fake clock.

These pin the member side of `watch_poll` without processes: answering at
once from history, parking until a matching apply, progress on timeout,
whole revisions under `limit`, filters, compaction and the parking cap.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from actors.wait import AppliedIndex
from actors.watch import WatchHub
from cluster import kv, limits
from cluster.errors import BadRequestError, CompactedError, UnavailableError
from storage.mvcc import MvccStore


class FakeMember:
    """What the hub uses of cluster.member.Member, plus a way to apply writes."""

    def __init__(self, path: Path) -> None:
        self.mvcc = MvccStore(path)
        self.applied = AppliedIndex(self.mvcc.applied_index)
        self._index = self.mvcc.applied_index

    def header(self, revision: int = 0) -> dict[str, int]:
        return {"cluster_id": 1, "member_id": 1, "revision": revision or self.mvcc.revision,
                "raft_term": 1}

    def apply(self, *requests: kv.Request) -> int:
        batch = []
        for r in requests:
            self._index += 1
            batch.append((self._index, r))
        self.mvcc.apply(batch)
        self.applied.set(self._index)
        return self.mvcc.revision

    def put(self, key: str, value: str = "v") -> int:
        return self.apply(kv.PutRequest(key=key.encode(), value=value.encode()))

    def delete(self, key: str) -> int:
        return self.apply(kv.DeleteRangeRequest(key=key.encode()))


@pytest.fixture
def member(tmp_path: Path) -> Iterator[FakeMember]:
    m = FakeMember(tmp_path / "state.db")
    yield m
    m.mvcc.close()


def poll_body(key: str, **args: Any) -> dict[str, Any]:
    return {"op": "watch_poll", "key": key.encode(), **args}


def keys_of(reply: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [(e["type"], e["kv"]["key"].decode(), e["kv"]["mod_revision"])
            for e in reply["events"]]


async def test_from_now_fixes_the_start_and_delivers_nothing(member: FakeMember) -> None:
    member.put("a")
    hub = WatchHub(member, member.applied, "m1")
    reply = await hub.poll(poll_body("a", start_revision=0, timeout_ms=5000))
    assert reply["events"] == []
    assert reply["header"]["revision"] == 2
    assert reply["next_revision"] == 3


async def test_history_is_answered_at_once_with_next_revision_past_the_header(
        member: FakeMember) -> None:
    member.put("a", "1")
    member.put("b", "1")
    member.put("a", "2")
    hub = WatchHub(member, member.applied, "m1")
    reply = await hub.poll(poll_body("a", start_revision=1, timeout_ms=5000))
    assert keys_of(reply) == [("put", "a", 2), ("put", "a", 4)]
    assert reply["header"]["revision"] == 4
    assert reply["next_revision"] == 5


async def test_parked_poll_wakes_on_a_matching_apply_only(
        member: FakeMember, autojump_clock: trio.testing.MockClock) -> None:
    hub = WatchHub(member, member.applied, "m1")
    replies: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)

        async def watcher() -> None:
            replies.append(await hub.poll(poll_body("k", start_revision=2, timeout_ms=30000)))

        nursery.start_soon(watcher)
        await trio.sleep(1)
        assert hub.statistics().waiting == 1
        member.put("other")  # revision 2, another key: no wake-up
        await trio.sleep(1)
        assert replies == []
        assert hub.statistics().wakeups == 0
        member.put("k")  # revision 3
        await trio.sleep(0.001)
        assert len(replies) == 1
        nursery.cancel_scope.cancel()
    assert keys_of(replies[0]) == [("put", "k", 3)]
    assert replies[0]["next_revision"] == 4
    assert hub.statistics().waiting == 0


async def test_timeout_answers_empty_progress_at_the_current_revision(
        member: FakeMember, autojump_clock: trio.testing.MockClock) -> None:
    member.put("x")
    hub = WatchHub(member, member.applied, "m1")
    start = trio.current_time()
    reply = await hub.poll(poll_body("k", start_revision=3, timeout_ms=2000))
    assert trio.current_time() - start == pytest.approx(2.0)
    assert reply["events"] == []
    assert reply["header"]["revision"] == 2
    assert reply["next_revision"] == 3  # never behind the start


async def test_limit_never_splits_a_revision(member: FakeMember) -> None:
    member.put("p/0")
    txn = kv.TxnRequest(compare=(), success=tuple(
        kv.PutRequest(key=f"p/{i}".encode(), value=b"t") for i in (1, 2, 3)), failure=())
    txn_rev = member.apply(txn)
    member.put("p/4")
    hub = WatchHub(member, member.applied, "m1")
    reply = await hub.poll(poll_body("p/", range_end=b"p0", start_revision=1, limit=2))
    assert [r for _, _, r in keys_of(reply)] == [2, txn_rev, txn_rev, txn_rev]
    assert reply["next_revision"] == txn_rev + 1
    rest = await hub.poll(poll_body("p/", range_end=b"p0", start_revision=txn_rev + 1, limit=2))
    assert keys_of(rest) == [("put", "p/4", txn_rev + 1)]


async def test_filters_and_prev_kv(member: FakeMember) -> None:
    member.put("k", "1")
    member.put("k", "2")
    member.delete("k")
    hub = WatchHub(member, member.applied, "m1")
    puts = await hub.poll(poll_body("k", start_revision=1, filters=["nodelete"], prev_kv=True))
    assert [(e["type"], e["kv"]["value"], e["prev_kv"] and e["prev_kv"]["value"])
            for e in puts["events"]] == [("put", b"1", None), ("put", b"2", b"1")]
    deletes = await hub.poll(poll_body("k", start_revision=1, filters=["noput"], prev_kv=True))
    assert [(e["type"], e["prev_kv"]["value"]) for e in deletes["events"]] == [("delete", b"2")]
    assert deletes["events"][0]["kv"]["mod_revision"] == 4


async def test_compacted_start_revision_reports_the_compact_revision(member: FakeMember) -> None:
    for i in range(5):
        member.put("k", str(i))
    member.apply(kv.CompactionRequest(revision=4))
    hub = WatchHub(member, member.applied, "m1")
    with pytest.raises(CompactedError) as info:
        await hub.poll(poll_body("k", start_revision=3))
    assert info.value.compact_revision == 4
    assert info.value.to_wire()["compact_revision"] == 4
    reply = await hub.poll(poll_body("k", start_revision=4))
    assert [r for _, _, r in keys_of(reply)] == [4, 5, 6]


async def test_polls_over_the_parking_cap_are_refused(
        member: FakeMember, autojump_clock: trio.testing.MockClock) -> None:
    hub = WatchHub(member, member.applied, "m1", waiting_max=2)
    async with trio.open_nursery() as nursery:
        for _ in range(2):
            nursery.start_soon(hub.poll, poll_body("k", start_revision=2, timeout_ms=10000))
        await trio.sleep(1)
        with pytest.raises(UnavailableError):
            await hub.poll(poll_body("k", start_revision=2, timeout_ms=10000))
        # A poll with something to deliver is never refused: it does not park.
        member.put("k")
        assert keys_of(await hub.poll(poll_body("k", start_revision=2)))
    assert hub.statistics().refused == 1


@pytest.mark.parametrize("args", [
    {"key": b""}, {"key": "text"}, {"key": b"k", "start_revision": -1},
    {"key": b"k", "filters": ["nothing"]}, {"key": b"k", "prev_kv": 1},
    {"key": b"k", "bogus": 1},
])
async def test_malformed_polls_are_bad_requests(member: FakeMember, args: dict[str, Any]) -> None:
    hub = WatchHub(member, member.applied, "m1")
    with pytest.raises(BadRequestError):
        await hub.poll({"op": "watch_poll", **args})


async def test_a_reply_over_the_byte_budget_ends_at_a_revision_boundary(
        member: FakeMember, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "watch_reply_bytes_max", 2500)
    big = "x" * 1000
    first = member.apply(kv.TxnRequest(compare=(), success=tuple(
        kv.PutRequest(key=f"b/{i}".encode(), value=big.encode()) for i in range(4)), failure=()))
    second = member.put("b/5", big)
    member.put("b/6", big)
    member.put("b/7", big)
    hub = WatchHub(member, member.applied, "m1")
    reply = await hub.poll(poll_body("b/", range_end=b"b0", start_revision=first))
    # The first revision goes whole even though it alone is over the budget.
    assert [r for _, _, r in keys_of(reply)] == [first] * 4
    assert reply["next_revision"] == second
    rest = await hub.poll(poll_body("b/", range_end=b"b0", start_revision=second))
    assert [r for _, _, r in keys_of(rest)] == [second, second + 1]
    assert rest["next_revision"] == second + 2


async def test_polls_asking_the_same_thing_share_one_read(
        member: FakeMember, autojump_clock: trio.testing.MockClock) -> None:
    hub = WatchHub(member, member.applied, "m1")
    replies: list[dict[str, Any]] = []

    async def watcher() -> None:
        replies.append(await hub.poll(poll_body("hot", start_revision=2, timeout_ms=30000)))

    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        for _ in range(5):
            nursery.start_soon(watcher)
        await trio.sleep(1)
        member.put("hot")
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert [keys_of(r) for r in replies] == [[("put", "hot", 2)]] * 5
    assert hub.statistics().reads == 2  # one before parking, one after the wake-up

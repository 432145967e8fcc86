"""The attribute publisher on a virtual clock: waits to join, retries, publishes once."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import trio

from actors.applier import decode_proposal
from actors.member_publish import AttributePublisher, needs_publishing
from actors.wait import AppliedIndex
from cluster.errors import NoLeaderError
from cluster.kv import MemberAttrRequest
from storage.members import MemberRecord

ATTRS = MemberAttrRequest(member_id=4, name="m4", client_urls=("tcp://h:1",),
                          etcd_client_urls=("http://h:2",))
UNSTARTED = MemberRecord(4, "", ("tcp://h:3",), (), False)
STARTED = dataclasses.replace(UNSTARTED, name="m4", client_urls=("tcp://h:1",),
                              etcd_client_urls=("http://h:2",))


@pytest.mark.parametrize(("record", "expected"), [
    pytest.param(None, False, id="not-joined-yet"),
    pytest.param(UNSTARTED, True, id="added-by-etcd-member-add"),
    pytest.param(dataclasses.replace(STARTED, etcd_client_urls=()), True,
                 id="record-lacks-the-etcd-endpoint"),
    pytest.param(STARTED, False, id="already-published"),
])
def test_needs_publishing(record: MemberRecord | None, expected: bool) -> None:
    assert needs_publishing(record, ATTRS) is expected


class FakeCluster:
    """An applied membership that proposals change (after a refusal, if asked)."""

    def __init__(self, records: list[MemberRecord], refusals: int = 0) -> None:
        self.records = records
        self.applied = AppliedIndex(1)
        self.refusals = refusals
        self.proposed: list[Any] = []

    def apply(self, records: list[MemberRecord]) -> None:
        self.records = records
        self.applied.set(self.applied.index + 1)

    async def propose_entry(self, make_data: Callable[[int], bytes]) -> Any:
        _, request = decode_proposal(make_data(99))
        self.proposed.append(request)
        if self.refusals:
            self.refusals -= 1
            raise NoLeaderError("no leader")
        await trio.sleep(0.01)
        self.apply([dataclasses.replace(UNSTARTED, name=request.name,
                                        client_urls=request.client_urls,
                                        etcd_client_urls=request.etcd_client_urls)])
        return self.records

    def publisher(self) -> AttributePublisher:
        return AttributePublisher(attrs=ATTRS, members=lambda: self.records,
                                  applied=self.applied, propose_entry=self.propose_entry,
                                  retry_s=1.0)


async def test_publishes_after_joining_and_retries_without_a_leader(autojump_clock: Any
                                                                    ) -> None:
    cluster = FakeCluster([], refusals=2)
    publisher = cluster.publisher()
    async with trio.open_nursery() as nursery:
        await nursery.start(publisher.run)
        await trio.sleep(5)
        assert cluster.proposed == []  # not in the applied membership yet: nothing to say
        cluster.apply([UNSTARTED])
        await trio.sleep(1.5)
        assert cluster.proposed == [ATTRS] * 2  # refused twice, one retry_s apart
        assert not publisher.published
        await trio.sleep(1.0)
        assert cluster.proposed == [ATTRS] * 3
        assert publisher.published
        assert cluster.records == [STARTED]
        await trio.sleep(10)
        assert len(cluster.proposed) == 3  # done: the record matches
        nursery.cancel_scope.cancel()


async def test_a_member_whose_record_matches_proposes_nothing(autojump_clock: Any) -> None:
    cluster = FakeCluster([STARTED])
    publisher = cluster.publisher()
    async with trio.open_nursery() as nursery:
        await nursery.start(publisher.run)
        cluster.apply([STARTED])
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert cluster.proposed == []
    assert not publisher.published

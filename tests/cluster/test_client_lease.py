"""Keep-alive helpers against a fake member: renew every TTL/3, stop on close, report loss."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from cluster.client import AsyncClient, Client
from cluster.client_lease import call_timeout_s, renew_interval_s
from cluster.errors import ErrorCode
from tests.e2e.harness import wait_until
from tests.fake_member import FakeMember, Script, running


@pytest.fixture
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeMember]:
    with running(Path(tmp_path_factory.mktemp("fl")), 1) as members:
        yield members[0]


@pytest.mark.parametrize(("ttl", "interval"), [(1, 0.5), (3, 1.0), (60, 20.0)])
def test_renewal_interval_is_a_third_of_the_ttl_with_a_floor(ttl: int,
                                                              interval: float) -> None:
    assert renew_interval_s(ttl) == interval


def test_one_renewal_never_takes_longer_than_the_interval() -> None:
    assert call_timeout_s(60, 5.0) == 5.0
    assert call_timeout_s(3, 5.0) == 1.0


def test_keepalive_renews_until_closed(fake: FakeMember) -> None:
    seen: list[int] = []
    with Client([fake.address]) as c:
        lease = c.lease_grant(1)
        with c.lease_keepalive(lease.id, on_renew=lambda r: seen.append(r.ttl)) as ka:
            assert ka.wait_first(5)
            assert ka.alive
            wait_until(lambda: ka.renewals >= 3, 5, "three renewals")
        count = fake.ops().count("lease_keepalive")
        assert not ka.lost
    assert seen[:3] == [1, 1, 1]
    assert fake.ops().count("lease_keepalive") == count  # closed: no more renewals


def test_keepalive_reports_a_lease_the_cluster_no_longer_has(fake: FakeMember) -> None:
    with Client([fake.address]) as c:
        lease = c.lease_grant(5)
        fake.script("lease_keepalive", Script(error=ErrorCode.LEASE_NOT_FOUND))
        ka = c.lease_keepalive(lease.id)
        assert ka.wait_lost(5)
        assert ka.lost
        assert not ka.alive
        assert ka.error is not None
        assert ka.error.code is ErrorCode.LEASE_NOT_FOUND
        ka.close()


def test_keepalive_retries_through_a_failover(fake: FakeMember) -> None:
    with Client([fake.address]) as c:
        lease = c.lease_grant(1)
        fake.script("lease_keepalive", Script(error=ErrorCode.NO_LEADER, times=3))
        with c.lease_keepalive(lease.id) as ka:
            wait_until(lambda: ka.renewals >= 1, 5, "a renewal after the failover")
            assert not ka.lost


async def test_async_keepalive_renews_in_a_task(fake: FakeMember) -> None:
    async with AsyncClient([fake.address]) as c:
        lease = await c.lease_grant(1)
        renewed = trio.Event()

        def on_renew(_result: object) -> None:
            if ka.renewals >= 3:
                renewed.set()

        ka = c.lease_keepalive(lease.id, on_renew=on_renew)
        async with ka:
            assert ka.renewals == 1  # started() comes after the first renewal
            with trio.fail_after(5):
                await renewed.wait()
            assert ka.alive
        assert ka.done.is_set()


async def test_async_keepalive_stops_when_the_lease_is_gone(fake: FakeMember) -> None:
    async with AsyncClient([fake.address]) as c:
        lease = await c.lease_grant(5)
        fake.script("lease_keepalive", Script(error=ErrorCode.LEASE_NOT_FOUND))
        async with c.lease_keepalive(lease.id) as ka:
            with trio.fail_after(5):
                await ka.done.wait()
            assert ka.lost

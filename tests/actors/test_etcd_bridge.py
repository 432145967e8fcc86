"""The trio <-> asyncio bridge of the etcd API, with a fake dispatch (no member)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from actors.etcd_bridge import TrioBridge
from cluster.errors import LeaseNotFoundError, NotLeaderError, UnavailableError


async def _on_asyncio(fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run `fn` on a fresh asyncio loop in a worker thread, as the gRPC server does."""
    return await trio.to_thread.run_sync(lambda: asyncio.run(fn()))


async def test_a_call_is_answered_by_dispatch_on_the_trio_loop() -> None:
    seen: list[bool] = []

    async def dispatch(body: dict[str, Any]) -> dict[str, Any]:
        seen.append(trio.lowlevel.current_task() is not None)
        return {"echo": body["op"]}

    bridge = TrioBridge(dispatch)
    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        assert await _on_asyncio(lambda: bridge.call({"op": "range"})) == {"echo": "range"}
        nursery.cancel_scope.cancel()
    assert seen == [True]
    assert bridge.statistics().calls == 1


async def test_typed_errors_cross_unchanged() -> None:
    async def dispatch(_body: dict[str, Any]) -> dict[str, Any]:
        raise LeaseNotFoundError("lease not found")

    bridge = TrioBridge(dispatch)
    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        with pytest.raises(LeaseNotFoundError):
            await _on_asyncio(lambda: bridge.call({"op": "lease_revoke"}))
        nursery.cancel_scope.cancel()


async def test_an_abandoned_call_cancels_its_trio_task() -> None:
    cancelled = trio.Event()

    async def dispatch(_body: dict[str, Any]) -> dict[str, Any]:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    bridge = TrioBridge(dispatch)

    async def give_up() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(bridge.call({"op": "watch_poll"}), 0.2)

    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        await _on_asyncio(give_up)
        with trio.fail_after(5):
            await cancelled.wait()
        nursery.cancel_scope.cancel()


async def test_leader_only_ops_are_forwarded_and_others_are_not() -> None:
    async def dispatch(_body: dict[str, Any]) -> dict[str, Any]:
        raise NotLeaderError("not leader")

    async def forward(body: dict[str, Any]) -> dict[str, Any]:
        return {"forwarded": body["op"]}

    bridge = TrioBridge(dispatch, forward=forward)
    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        assert await _on_asyncio(lambda: bridge.call({"op": "move_leader"})) == \
            {"forwarded": "move_leader"}
        with pytest.raises(NotLeaderError):
            await _on_asyncio(lambda: bridge.call({"op": "put"}))
        nursery.cancel_scope.cancel()


async def test_calls_over_the_cap_are_refused_at_once() -> None:
    release = trio.Event()

    async def dispatch(_body: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {}

    bridge = TrioBridge(dispatch, calls_max=2)

    async def three() -> list[Any]:
        first = asyncio.ensure_future(bridge.call({"op": "a"}))
        second = asyncio.ensure_future(bridge.call({"op": "b"}))
        await asyncio.sleep(0)
        with pytest.raises(UnavailableError):
            await bridge.call({"op": "c"})
        token.run_sync_soon(release.set)
        return list(await asyncio.gather(first, second))

    token = trio.lowlevel.current_trio_token()
    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        assert await _on_asyncio(three) == [{}, {}]
        assert bridge.statistics().refused == 1
        nursery.cancel_scope.cancel()

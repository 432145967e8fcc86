"""Carries native requests from the etcd API's asyncio thread onto the member's trio loop.

The gRPC server (grpcio's asyncio flavour) and the HTTP gateway run on an
asyncio loop in a thread of their own, because grpcio cannot run under trio.
Every call they serve becomes one native request map that must be answered by
`ClientServer._dispatch` on the trio loop, exactly as if it had come over nng:
this module is the only crossing between the two loops.

HOW a call crosses: the asyncio side creates a future and asks trio (through the
TrioToken, `run_sync_soon`, which never blocks the asyncio loop) to start a task
in the bridge's nursery; the task awaits `_dispatch` and hands the outcome back
with `loop.call_soon_threadsafe`. Two wake-ups per call, no thread per call, so
a watch or keep-alive stream that waits for minutes costs one parked trio task.

WHY a task per call rather than a fixed pool of workers (the native server's
shape): gRPC calls may wait for a long time (watch long-polls, blocked lock
waits), and a fixed pool would let them starve short calls. The number of calls
in flight is bounded instead (`calls_max`); over it a call is refused at once
with etcd's "too many requests", so memory stays bounded.

CANCELLATION: when a gRPC call ends early (the client went away, a watch was
cancelled) its asyncio task is cancelled, and the bridge cancels the trio task
too, so a parked watch poll does not linger until its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, final

import trio

from cluster.errors import EtcdliteError, InternalError, NotLeaderError, UnavailableError

log = logging.getLogger("etcdlite.etcd")

Dispatch = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

bridge_calls_max = 4096
"""Calls the etcd API may have in flight on the trio side at once (each holds a task)."""

FORWARD_ON_NOT_LEADER = frozenset(
    {"member_add", "member_remove", "member_update", "member_promote", "move_leader"})
"""Ops only the leader can make; etcd forwards them to the leader, so the bridge does
too (through the native protocol), instead of failing the call on a follower."""


@dataclass(frozen=True, slots=True)
class BridgeStatistics:
    calls: int
    in_flight: int
    refused: int
    failed: int


@final
class _Call:
    """One call crossing the bridge. Created on the asyncio thread; `scope` and
    `cancelled` are touched only on the trio thread."""

    __slots__ = ("body", "cancelled", "future", "loop", "scope")

    def __init__(self, body: dict[str, Any], loop: asyncio.AbstractEventLoop,
                 future: asyncio.Future[dict[str, Any]]) -> None:
        self.body = body
        self.loop = loop
        self.future = future
        self.scope: trio.CancelScope | None = None
        self.cancelled = False

    def resolve(self, result: dict[str, Any] | None, error: BaseException | None) -> None:
        """Trio thread: hand the outcome to the waiting asyncio task."""
        with contextlib.suppress(RuntimeError):  # the asyncio loop is already closed
            self.loop.call_soon_threadsafe(_settle, self.future, result, error)

    def cancel(self) -> None:
        """Trio thread: the asyncio side gave up; stop the work if it started."""
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()


def _settle(future: asyncio.Future[dict[str, Any]], result: dict[str, Any] | None,
            error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert result is not None
        future.set_result(result)


@final
class TrioBridge:
    """Runs native requests for the asyncio side.

    Args:
        dispatch: `ClientServer._dispatch`: one native request map -> reply map.
        forward: sends a native request to the leader (`LeaderProxy.forward`), for
            the ops in FORWARD_ON_NOT_LEADER that reach a follower.
        calls_max: calls allowed in flight at once.
    """

    def __init__(self, dispatch: Dispatch, forward: Dispatch | None = None,
                 calls_max: int = bridge_calls_max) -> None:
        self._dispatch = dispatch
        self._forward = forward
        self._calls_max = calls_max
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        # Touched only on the asyncio thread:
        self._in_flight = 0
        self._calls = self._refused = 0
        # Touched only on the trio thread:
        self._failed = 0

    def statistics(self) -> BridgeStatistics:
        return BridgeStatistics(self._calls, self._in_flight, self._refused, self._failed)

    # --- trio side --------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> NoReturn:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()
        raise AssertionError("etcd bridge should never complete")

    def _spawn(self, call: _Call) -> None:
        if call.cancelled:
            return
        assert self._nursery is not None
        self._nursery.start_soon(self._serve, call)

    async def _serve(self, call: _Call) -> None:
        if call.cancelled:
            return
        with trio.CancelScope() as scope:
            call.scope = scope
            try:
                result = await self._answer(call.body)
            except EtcdliteError as exc:
                self._failed += 1
                call.resolve(None, exc)
                return
            except AssertionError:
                raise  # a broken invariant must take the member down loudly
            except Exception:  # a bug in one call must not take the member down
                self._failed += 1
                log.exception("internal error serving an etcd API call")
                call.resolve(None, InternalError("internal error"))
                return
            call.resolve(result, None)

    async def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self._dispatch(body)
        except NotLeaderError:
            if self._forward is None or body.get("op") not in FORWARD_ON_NOT_LEADER:
                raise
            return await self._forward(body)

    # --- asyncio side -----------------------------------------------------------------

    async def call(self, body: dict[str, Any]) -> dict[str, Any]:
        """Serve one native request on the trio loop; await its reply map.

        Raises:
            EtcdliteError: the typed error the member answered with, or
                UnavailableError when the bridge is full or the member stopping.
        """
        if self._token is None:
            raise UnavailableError("member is starting")
        if self._in_flight >= self._calls_max:
            self._refused += 1
            raise UnavailableError("too many requests")
        loop = asyncio.get_running_loop()
        call = _Call(body, loop, loop.create_future())
        self._calls += 1
        self._in_flight += 1
        try:
            try:
                self._token.run_sync_soon(self._spawn, call)
            except trio.RunFinishedError:
                raise UnavailableError("member is stopping") from None
            try:
                return await call.future
            except asyncio.CancelledError:
                with contextlib.suppress(trio.RunFinishedError):
                    self._token.run_sync_soon(call.cancel)
                raise
        finally:
            self._in_flight -= 1

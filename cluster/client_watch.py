"""Client side of watch, I/O part: `Watch` (blocking iterator) and `AsyncWatch` (trio).

Both drive a `cluster.client_watch_state.WatchState` with long-polls and
differ only in how bytes travel. Each watch has its OWN socket rather than
the client's: a poll parks on the member for up to `poll_timeout_s`, and the
blocking client's REQ socket carries one request at a time, so sharing it
would stall every other call. A watch keeps retrying, endpoint after
endpoint, until it is canceled or its history is compacted (etcd's watch
never gives up either); only the first poll, made when the watch is created,
is bounded by the client's deadline, so that a watch on a dead cluster fails
at once instead of hanging.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections import deque
from types import TracebackType
from typing import Any

import pynng
import trio

from cluster.client_replies import decode_reply
from cluster.client_transport import is_connected, new_req_socket
from cluster.client_watch_state import WatchResponse, WatchState
from cluster.errors import EtcdliteError, TimeoutError_, UnavailableError

reply_slack_s_min = 2.0
"""Added to the poll's own wait before a reply counts as missing (member busy, GC...)."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, pynng.Timeout | trio.TooSlowError):
        return "no reply in time"
    return f"connection lost before the reply ({exc})"


class _SyncLink:
    """One REQ socket to the watch's current endpoint; `close()` may come from any thread
    and interrupts a parked poll."""

    def __init__(self) -> None:
        self._sock: pynng.Req0 | None = None
        self._endpoint = ""

    def exchange(self, endpoint: str, frame: bytes, timeout_s: float) -> dict[str, Any]:
        sock = self._socket(endpoint, timeout_s)
        ms = max(1, int(timeout_s * 1000))
        sock.send_timeout = ms
        sock.recv_timeout = ms
        try:
            sock.send(frame)
        except pynng.NNGException as exc:
            self.close()
            raise UnavailableError(f"{endpoint}: send failed: {exc}") from None
        try:
            raw = sock.recv()
        except pynng.NNGException as exc:
            self.close()
            raise TimeoutError_(f"{endpoint}: {_reason(exc)}") from None
        return decode_reply(raw)

    def _socket(self, endpoint: str, timeout_s: float) -> pynng.Req0:
        sock = self._sock
        if sock is not None and (self._endpoint != endpoint or not is_connected(sock)):
            self.close()
            sock = None
        if sock is None:
            sock = new_req_socket(timeout_s)
            try:
                sock.dial(endpoint, block=True)
            except pynng.NNGException as exc:
                sock.close()
                raise UnavailableError(f"{endpoint}: cannot connect: {exc}") from None
            self._sock, self._endpoint = sock, endpoint
        return sock

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


class Watch:
    """A blocking iterator of `WatchResponse`; made by `Client.watch()`.

    Iterate it (`for resp in watch:`), stop it with `cancel()` (from any
    thread; a parked poll is interrupted) or by leaving its `with` block.
    Iteration ends after `cancel()` or after the canceled response that
    reports a compacted start revision.

    Raises (from the constructor):
        UnavailableError / TimeoutError_: no endpoint answered the first poll
            within the client's deadline.
    """

    def __init__(self, state: WatchState, timeout_s: float) -> None:
        self._state = state
        self._timeout_s = timeout_s
        self._link = _SyncLink()
        self._pending: deque[WatchResponse] = deque()
        self._stop = threading.Event()
        try:
            self._first_poll()
        except BaseException:
            self._link.close()
            raise

    @property
    def watch_id(self) -> int:
        return self._state.watch_id

    @property
    def next_revision(self) -> int:
        """The revision the next poll asks from: every event before it has been received."""
        return self._state.next_revision

    def _first_poll(self) -> None:
        """Fix the start ("from now") and fetch what history already holds, without
        waiting: the watch is established when the constructor returns."""
        state = self._state
        deadline = time.monotonic() + self._timeout_s
        attempt_s = self._timeout_s / len(state.endpoints)
        while True:
            try:
                body = self._link.exchange(state.endpoint, state.frame(0), attempt_s)
            except EtcdliteError as exc:
                outcome = state.on_failure(exc)
                if isinstance(outcome, WatchResponse):
                    self._pending.append(outcome)
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise
                self._stop.wait(min(outcome, remaining))
                continue
            response = state.on_reply(body, first=True)
            if response is not None:
                self._pending.append(response)
            return

    def __iter__(self) -> Watch:
        return self

    def __next__(self) -> WatchResponse:
        state = self._state
        while True:
            if self._pending:
                return self._pending.popleft()
            if state.canceled or self._stop.is_set():
                self._link.close()
                raise StopIteration
            poll_s = state.poll_timeout_s
            try:
                body = self._link.exchange(
                    state.endpoint, state.frame(poll_s),
                    poll_s + max(reply_slack_s_min, self._timeout_s))
            except EtcdliteError as exc:
                if self._stop.is_set():
                    continue
                outcome = state.on_failure(exc)
                if isinstance(outcome, WatchResponse):
                    return outcome
                if outcome:
                    self._stop.wait(outcome)  # backoff between rounds; cancel() cuts it short
                continue
            if self._stop.is_set():
                continue  # canceled while the reply was on its way: deliver nothing more
            response = state.on_reply(body)
            if response is not None:
                return response

    def cancel(self) -> None:
        """Stop the watch: iteration ends (a parked poll is abandoned)."""
        self._stop.set()
        self._pending.clear()
        self._link.close()

    close = cancel

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cancel()


class _AsyncLink:
    """The trio twin of `_SyncLink`: one socket, one context per poll."""

    def __init__(self) -> None:
        self._sock: pynng.Req0 | None = None
        self._endpoint = ""

    async def exchange(self, endpoint: str, frame: bytes, timeout_s: float) -> dict[str, Any]:
        deadline = trio.current_time() + timeout_s
        sock = await self._socket(endpoint, timeout_s)
        ctx = sock.new_context()
        try:
            try:
                with trio.fail_at(deadline):
                    await ctx.asend(frame)
            except (pynng.NNGException, trio.TooSlowError) as exc:
                self.close()
                raise UnavailableError(f"{endpoint}: send failed: {exc!r}") from None
            try:
                with trio.fail_at(deadline):
                    raw = await ctx.arecv()
            except (pynng.NNGException, trio.TooSlowError) as exc:
                self.close()
                raise TimeoutError_(f"{endpoint}: {_reason(exc)}") from None
        finally:
            with contextlib.suppress(pynng.Closed):  # cancel() may have closed the socket
                ctx.close()
        return decode_reply(raw)

    async def _socket(self, endpoint: str, timeout_s: float) -> pynng.Req0:
        sock = self._sock
        if sock is not None and (self._endpoint != endpoint or not is_connected(sock)):
            self.close()
            sock = None
        if sock is None:
            sock = new_req_socket(timeout_s)
            try:
                # A blocking dial reports "refused" at once; a thread keeps trio responsive.
                await trio.to_thread.run_sync(functools.partial(sock.dial, endpoint, block=True))
            except pynng.NNGException as exc:
                sock.close()
                raise UnavailableError(f"{endpoint}: cannot connect: {exc}") from None
            self._sock, self._endpoint = sock, endpoint
        return sock

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


class AsyncWatch:
    """The trio twin of `Watch`, made by `AsyncClient.watch()`.

    Use `async with client.watch(...) as w: async for resp in w: ...`; entering
    the block makes the first poll (so the start revision is fixed there), or
    the first `__anext__` does if the block is not used. `cancel()` ends the
    iteration, from any task.
    """

    def __init__(self, state: WatchState, timeout_s: float) -> None:
        self._state = state
        self._timeout_s = timeout_s
        self._link = _AsyncLink()
        self._pending: deque[WatchResponse] = deque()
        self._started = False
        self._stopped = False

    @property
    def watch_id(self) -> int:
        return self._state.watch_id

    @property
    def next_revision(self) -> int:
        return self._state.next_revision

    async def start(self) -> None:
        """Make the first poll now (idempotent); see `Watch` for what it fixes."""
        if self._started:
            return
        self._started = True
        state = self._state
        deadline = trio.current_time() + self._timeout_s
        attempt_s = self._timeout_s / len(state.endpoints)
        while True:
            try:
                body = await self._link.exchange(state.endpoint, state.frame(0), attempt_s)
            except EtcdliteError as exc:
                outcome = state.on_failure(exc)
                if isinstance(outcome, WatchResponse):
                    self._pending.append(outcome)
                    return
                remaining = deadline - trio.current_time()
                if remaining <= 0:
                    raise
                await trio.sleep(min(outcome, remaining))
                continue
            response = state.on_reply(body, first=True)
            if response is not None:
                self._pending.append(response)
            return

    def __aiter__(self) -> AsyncWatch:
        return self

    async def __anext__(self) -> WatchResponse:
        await self.start()
        state = self._state
        while True:
            if self._pending:
                return self._pending.popleft()
            if state.canceled or self._stopped:
                self._link.close()
                raise StopAsyncIteration
            poll_s = state.poll_timeout_s
            try:
                body = await self._link.exchange(
                    state.endpoint, state.frame(poll_s),
                    poll_s + max(reply_slack_s_min, self._timeout_s))
            except EtcdliteError as exc:
                if self._stopped:
                    continue
                outcome = state.on_failure(exc)
                if isinstance(outcome, WatchResponse):
                    return outcome
                await trio.sleep(outcome)  # backoff between rounds, not synchronisation
                continue
            if self._stopped:
                continue
            response = state.on_reply(body)
            if response is not None:
                return response

    def cancel(self) -> None:
        """Stop the watch: iteration ends (a parked poll is abandoned)."""
        self._stopped = True
        self._pending.clear()
        self._link.close()

    async def aclose(self) -> None:
        self.cancel()

    async def __aenter__(self) -> AsyncWatch:
        try:
            await self.start()
        except BaseException:
            self.cancel()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.cancel()

"""How client requests travel: endpoints, nng sockets, failover and the retry rule.

RETRY RULE (docs/protocol.md, "Retrying"):

- A READ (range, status, member_list, and the lease queries keepalive,
  timetolive and leases, which a repeat cannot harm) is sent again,
  to the next endpoint, after any failure that says nothing about the data:
  connection refused, send failure, no reply in time, or an `unavailable`,
  `timeout`, `no_leader` or `not_leader` reply. It keeps going round the
  endpoints until the call's deadline (`timeout_s`).
- A WRITE (put, delete, txn, compact, lease grant/revoke) is sent again ONLY when it
  definitely did not reach a member: the connection was refused, the send
  itself failed, or the member answered `no_leader`/`not_leader` (it refuses
  those before proposing). A write whose reply did not come in time, or whose
  member answered `unavailable`/`timeout`, may have been applied: the client
  raises (`TimeoutError_` when no reply came) and never re-sends it blindly.

nng's REQ socket has its own retry timer that re-sends a request on its own;
it is switched off (`resend_time=-1`). A socket also refuses any connection
after its first: nng re-dials a dropped connection, and REQ implementations
may re-send a pending request on the new one. So the only re-sends are the
ones decided here. (The nng bundled with pynng 0.9 fails a pending request
with ConnectionReset when its connection drops, which the rule treats like
a missing reply.)

Whatever fails, the client moves its "current endpoint" on to the next one,
so the following call starts where things last worked.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pynng
import trio

from cluster.client_replies import decode_reply
from cluster.errors import (
    BadRequestError,
    ErrorCode,
    EtcdliteError,
    TimeoutError_,
    UnavailableError,
)

DEFAULT_ENDPOINTS = ("tcp://127.0.0.1:2378", "tcp://127.0.0.1:22378", "tcp://127.0.0.1:32378")
"""Native client endpoints of `python supervisor.py --members 3` (DESIGN.md, ports)."""

ENDPOINTS_ENV = "ETCDLITE_ENDPOINTS"

reply_bytes_max = 256 * 1024 * 1024
"""Largest reply frame accepted; nng's own default (1 MiB) would silently drop big ranges."""

attempt_s_min = 0.05
"""A retry is not started with less time left than this: near the deadline it could
only turn a clear answer (say `no_leader`) into an indeterminate timeout."""

retry_backoff_s_min = 0.02
retry_backoff_s_max = 0.5
"""Pause after every endpoint failed once, so a dead cluster is not hammered in a loop."""

_RETRY_ANY = frozenset({ErrorCode.NO_LEADER, ErrorCode.NOT_LEADER})
"""Refused before proposing: safe to send again, even for a write."""

_RETRY_READ = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT})
"""The member may have proposed it: only a read may be sent again."""


def resolve_endpoints(endpoints: Sequence[str] | str | None) -> tuple[str, ...]:
    """The endpoint list to use: given, else $ETCDLITE_ENDPOINTS, else the local cluster.

    A bare `host:port` means `tcp://host:port`, as etcdctl users type it.
    """
    if endpoints is None:
        endpoints = os.environ.get(ENDPOINTS_ENV) or DEFAULT_ENDPOINTS
    if isinstance(endpoints, str):
        endpoints = endpoints.split(",")
    resolved = tuple(_normalize(e) for e in endpoints if e.strip())
    if not resolved:
        raise BadRequestError("no endpoints given")
    return resolved


def _normalize(endpoint: str) -> str:
    endpoint = endpoint.strip()
    return endpoint if "://" in endpoint else f"tcp://{endpoint}"


class NotSent(Exception):
    """The request definitely did not reach a member (refused, bad address, send failed)."""


class NoReply(Exception):
    """The request was sent but no reply came in time: a write's outcome is unknown."""


@dataclass
class EndpointRing:
    """The endpoints in order plus the one to try first; shared by all calls of a client."""

    endpoints: tuple[str, ...]
    current: int = 0

    def order(self) -> list[str]:
        """Every endpoint once, starting from the current one."""
        n = len(self.endpoints)
        return [self.endpoints[(self.current + i) % n] for i in range(n)]

    def failed(self, endpoint: str) -> None:
        """Move past `endpoint` if it is still the current one."""
        if self.endpoints[self.current] == endpoint:
            self.current = (self.current + 1) % len(self.endpoints)


@dataclass
class Attempts:
    """The retry decisions of one call, free of I/O so both transports share them.

    Usage: `endpoint()` / `attempt_timeout()` before each attempt, then either
    return the reply or pass the failure to `failed()`, which raises the
    final error or returns how long to pause before the next attempt.
    """

    ring: EndpointRing
    read: bool
    timeout_s: float
    pinned: str | None = None
    deadline: float = field(init=False)
    _tries: int = field(default=0, init=False)
    _backoff_s: float = field(default=retry_backoff_s_min, init=False)
    _order: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.timeout_s
        self._order = [self.pinned] if self.pinned is not None else self.ring.order()

    def endpoint(self) -> str:
        return self._order[self._tries % len(self._order)]

    def attempt_timeout(self) -> float:
        """A write gets the whole remaining time (its timeout is final anyway); a read
        gets a share, so one hung member cannot eat the deadline of the others."""
        remaining = max(self.deadline - time.monotonic(), 0.001)
        if not self.read or len(self._order) == 1:
            return remaining
        return min(remaining, self.timeout_s / len(self._order))

    def failed(self, endpoint: str, exc: Exception) -> float:
        """Decide what one failure means; returns the pause before retrying.

        Raises:
            EtcdliteError: the failure is final (not retryable, or the deadline passed).
        """
        final, retry = self._classify(endpoint, exc)
        if self.pinned is None:
            self.ring.failed(endpoint)
        self._tries += 1
        remaining = self.deadline - time.monotonic()
        if not retry or self.pinned is not None or remaining < attempt_s_min:
            raise final from exc
        if self._tries % len(self._order):
            return 0.0  # the rest of this round first: other endpoints may be fine
        pause = min(self._backoff_s, remaining - attempt_s_min)
        self._backoff_s = min(self._backoff_s * 2, retry_backoff_s_max)
        return pause

    def _classify(self, endpoint: str, exc: Exception) -> tuple[EtcdliteError, bool]:
        if isinstance(exc, NotSent):
            return UnavailableError(f"{endpoint}: {exc}"), True
        if isinstance(exc, NoReply):
            if self.read:
                return TimeoutError_(f"{endpoint}: {exc}"), True
            return TimeoutError_(
                f"{endpoint}: {exc}; the write may or may not have been applied"
            ), False
        assert isinstance(exc, EtcdliteError), exc
        return exc, exc.code in _RETRY_ANY or (self.read and exc.code in _RETRY_READ)


def new_req_socket(timeout_s: float) -> pynng.Req0:
    """A REQ socket that never re-sends by itself and accepts only its first connection."""
    ms = max(1, int(timeout_s * 1000))
    sock = pynng.Req0(resend_time=-1, recv_timeout=ms, send_timeout=ms)
    sock.recv_max_size = reply_bytes_max
    connected = False

    def first_pipe_only(pipe: pynng.Pipe) -> None:
        # A later pipe is nng re-dialing after a drop; a pending request could
        # travel again on it, so it is refused and the client decides instead.
        nonlocal connected
        if connected:
            pipe.close()
        connected = True

    sock.add_pre_pipe_connect_cb(first_pipe_only)
    return sock


def _no_reply_reason(exc: BaseException) -> str:
    if isinstance(exc, pynng.Timeout | trio.TooSlowError):
        return "no reply in time"
    return f"connection lost before the reply ({exc})"


def is_connected(sock: pynng.Socket) -> bool:
    return bool(sock.pipes)


class SyncTransport:
    """Blocking request/reply over one `pynng.Req0` per endpoint, opened lazily.

    The socket-level REQ state machine allows one outstanding request, so a
    lock serialises calls; the client can be shared between threads.
    """

    def __init__(self, endpoints: tuple[str, ...], timeout_s: float) -> None:
        self.ring = EndpointRing(endpoints)
        self.timeout_s = timeout_s
        self._sockets: dict[str, pynng.Req0] = {}
        self._lock = threading.Lock()

    def request(
        self, frame: bytes, *, read: bool, pinned: str | None = None
    ) -> tuple[dict[str, Any], str]:
        """Send `frame` per the retry rule.

        Returns:
            The successful reply body and the endpoint that answered.

        Raises:
            EtcdliteError: the member's typed error, or Unavailable/Timeout per the rule.
        """
        with self._lock:
            attempts = Attempts(self.ring, read, self.timeout_s, pinned)
            while True:
                endpoint = attempts.endpoint()
                try:
                    raw = self._exchange(endpoint, frame, attempts.attempt_timeout())
                    return decode_reply(raw), endpoint
                except (NotSent, NoReply, EtcdliteError) as exc:
                    pause = attempts.failed(endpoint, exc)
                if pause:
                    time.sleep(pause)  # backoff between rounds, not synchronisation

    def _exchange(self, endpoint: str, frame: bytes, timeout_s: float) -> bytes:
        sock = self._socket(endpoint, timeout_s)
        ms = max(1, int(timeout_s * 1000))
        sock.send_timeout = ms
        sock.recv_timeout = ms
        try:
            sock.send(frame)
        except pynng.NNGException as exc:
            self._drop(endpoint)
            raise NotSent(f"send failed: {exc}") from None
        try:
            return sock.recv()
        except pynng.NNGException as exc:
            # Closing discards the request inside nng, so it cannot go out later.
            self._drop(endpoint)
            raise NoReply(_no_reply_reason(exc)) from None

    def _socket(self, endpoint: str, timeout_s: float) -> pynng.Req0:
        sock = self._sockets.get(endpoint)
        if sock is not None and not is_connected(sock):
            self._drop(endpoint)  # the member went away since the last call
            sock = None
        if sock is None:
            sock = new_req_socket(timeout_s)
            try:
                sock.dial(endpoint, block=True)
            except pynng.NNGException as exc:
                sock.close()
                raise NotSent(f"cannot connect: {exc}") from None
            self._sockets[endpoint] = sock
        return sock

    def _drop(self, endpoint: str) -> None:
        sock = self._sockets.pop(endpoint, None)
        if sock is not None:
            sock.close()

    def close(self) -> None:
        with self._lock:
            for endpoint in list(self._sockets):
                self._drop(endpoint)


class AsyncTransport:
    """The trio twin of `SyncTransport`: same sockets, same `Attempts` rule.

    Each request uses its own nng context, so concurrent tasks can have
    requests in flight on one socket. A failed request closes only its
    context (which discards it inside nng); the socket is replaced once its
    connection is gone.
    """

    def __init__(self, endpoints: tuple[str, ...], timeout_s: float) -> None:
        self.ring = EndpointRing(endpoints)
        self.timeout_s = timeout_s
        self._sockets: dict[str, pynng.Req0] = {}
        self._connect_lock = trio.Lock()

    async def request(
        self, frame: bytes, *, read: bool, pinned: str | None = None
    ) -> tuple[dict[str, Any], str]:
        """Send `frame` per the retry rule; see `SyncTransport.request`."""
        attempts = Attempts(self.ring, read, self.timeout_s, pinned)
        while True:
            endpoint = attempts.endpoint()
            try:
                raw = await self._exchange(endpoint, frame, attempts.attempt_timeout())
                return decode_reply(raw), endpoint
            except (NotSent, NoReply, EtcdliteError) as exc:
                pause = attempts.failed(endpoint, exc)
            if pause:
                await trio.sleep(pause)  # backoff between rounds, not synchronisation

    async def _exchange(self, endpoint: str, frame: bytes, timeout_s: float) -> bytes:
        deadline = trio.current_time() + timeout_s
        sock = await self._socket(endpoint, timeout_s)
        ctx = sock.new_context()
        try:
            try:
                with trio.fail_at(deadline):
                    await ctx.asend(frame)
            except pynng.NNGException as exc:
                raise NotSent(f"send failed: {exc}") from None
            except trio.TooSlowError:
                # Cancelling a send races with nng handing it to the connection,
                # so this one is treated as possibly delivered.
                raise NoReply("send did not complete in time") from None
            try:
                with trio.fail_at(deadline):
                    return await ctx.arecv()
            except (pynng.NNGException, trio.TooSlowError) as exc:
                raise NoReply(_no_reply_reason(exc)) from None
        finally:
            ctx.close()

    async def _socket(self, endpoint: str, timeout_s: float) -> pynng.Req0:
        async with self._connect_lock:
            sock = self._sockets.get(endpoint)
            if sock is not None and not is_connected(sock):
                self._sockets.pop(endpoint).close()
                sock = None
            if sock is None:
                sock = new_req_socket(timeout_s)
                try:
                    # A blocking dial reports "refused" at once; a thread keeps trio responsive.
                    await trio.to_thread.run_sync(
                        functools.partial(sock.dial, endpoint, block=True)
                    )
                except pynng.NNGException as exc:
                    sock.close()
                    raise NotSent(f"cannot connect: {exc}") from None
                self._sockets[endpoint] = sock
            return sock

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

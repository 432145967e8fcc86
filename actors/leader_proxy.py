"""Forward a client request to the leader's native endpoint and relay its reply.

Some requests only the leader can answer, because only the leader keeps the
state they ask about: lease keep-alives and lease time-to-live (the lessor's
deadlines live on the leader alone, as in etcd). A follower that receives one
sends it on over nng REQ/REP to the leader's native client endpoint (the same
protocol a client speaks, docs/protocol.md) and hands back what the leader
said: the leader's result fields and header, or the leader's typed error.

FORWARDED frames carry `"fwd": 1`. A member that gets a forwarded request
while not leader answers `not_leader` instead of forwarding again, so two
members with different ideas of who leads (for a moment, around an election)
cannot bounce a request back and forth. `not_leader` is a reply clients retry.

Sockets: a small pool of `pynng.Req0` per leader URL, opened on first use
with a blocking dial (so "refused" is known at once, `unavailable`), each
used through one nng context per request so many requests are in flight on
one socket. nng's own REQ re-send timer is off: a request is sent once and
bounded by the member's request timeout. Pools of URLs that are no longer
the leader's are closed when the leader changes.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, final

import pynng
import trio

from actors.auth import TOKEN_FIELD, current_token
from cluster import codec
from cluster.errors import (
    EtcdliteError,
    InternalError,
    NoLeaderError,
    TimeoutError_,
    UnavailableError,
    error_from_wire,
)
from cluster.messages import NONE

log = logging.getLogger("etcdlite.proxy")

leader_proxy_sockets = 2
"""Req0 sockets per leader URL; each carries many concurrent requests (one context each)."""

forwarded_reply_bytes_max = 64 * 1024 * 1024
"""Largest reply accepted from the leader (a time-to-live listing many keys can be big)."""

FORWARDED = "fwd"
"""Frame field marking a request a member already forwarded once."""


@dataclass(frozen=True, slots=True)
class ProxyStatistics:
    forwarded: int
    failed: int
    sockets: int


def is_forwarded(body: dict[str, Any]) -> bool:
    return bool(body.get(FORWARDED))


def strip_forwarded(body: dict[str, Any]) -> dict[str, Any]:
    """The request as the client sent it (the marker is not an argument of any op)."""
    return {k: v for k, v in body.items() if k != FORWARDED}


@final
class LeaderProxy:
    """Relays requests to whichever member currently leads.

    Args:
        leader_id: the member this member believes leads (NONE if unknown).
        client_url_of: member id -> native client URL (None if unknown); a
            function rather than a table so membership changes are seen.
        timeout_s: deadline of one forwarded request (the member's request timeout).
    """

    def __init__(self, *, leader_id: Callable[[], int],
                 client_url_of: Callable[[int], str | None], timeout_s: float,
                 pool_size: int = leader_proxy_sockets) -> None:
        assert pool_size >= 1
        self._leader_id = leader_id
        self._client_url_of = client_url_of
        self._timeout_s = timeout_s
        self._pool_size = pool_size
        self._pools: dict[str, list[pynng.Req0]] = {}
        self._turn = itertools.count()
        self._connect_lock = trio.Lock()
        self._forwarded = 0
        self._failed = 0

    def statistics(self) -> ProxyStatistics:
        return ProxyStatistics(self._forwarded, self._failed,
                               sum(len(p) for p in self._pools.values()))

    async def forward(self, body: dict[str, Any]) -> dict[str, Any]:
        """Send `body` (a decoded request) to the leader; return its result fields.

        Returns:
            The leader's success reply without the envelope ("v", "ok"), header
            included, ready for the server to send back unchanged.

        Raises:
            NoLeaderError: no leader is known, or its address is not.
            UnavailableError: the leader's endpoint refused the connection.
            TimeoutError_: no reply within the deadline (or the connection dropped).
            EtcdliteError: the typed error the leader answered with.
        """
        leader = self._leader_id()
        if leader == NONE:
            raise NoLeaderError("no leader; try again or another endpoint")
        url = self._client_url_of(leader)
        if url is None:
            raise NoLeaderError(f"leader {leader:x} has no known client URL")
        # The auth gate took the client's token off `body`; the leader checks it again.
        token = current_token.get()
        auth = {TOKEN_FIELD: token} if token is not None else {}
        frame = codec.encode_frame({**strip_forwarded(body), **auth, FORWARDED: 1})
        try:
            with trio.fail_after(self._timeout_s):
                raw = await self._exchange(url, frame)
        except trio.TooSlowError:
            self._failed += 1
            raise TimeoutError_(f"leader {leader:x} did not answer in time") from None
        except EtcdliteError:
            self._failed += 1
            raise
        self._forwarded += 1
        reply = codec.decode_frame(raw)
        if reply.get("ok") is True:
            return {k: v for k, v in reply.items() if k not in ("v", "ok")}
        if reply.get("ok") is False:
            raise error_from_wire(reply.get("error"))
        raise InternalError("malformed reply from the leader")

    async def _exchange(self, url: str, frame: bytes) -> bytes:
        sock = await self._socket(url)
        ctx = sock.new_context()
        try:
            try:
                await ctx.asend(frame)
            except pynng.NNGException as exc:
                self._discard(url, sock)
                raise UnavailableError(f"cannot send to the leader at {url}: {exc}") from None
            try:
                raw: bytes = await ctx.arecv()
                return raw
            except pynng.NNGException as exc:
                self._discard(url, sock)
                raise TimeoutError_(f"connection to the leader at {url} lost: {exc}") from None
        finally:
            ctx.close()

    async def _socket(self, url: str) -> pynng.Req0:
        """A connected socket of `url`'s pool, round robin; dials when the pool is short."""
        async with self._connect_lock:
            for other in [u for u in self._pools if u != url]:
                self._close_pool(other)  # the leader moved: its old sockets are dead weight
            pool = self._pools.setdefault(url, [])
            for sock in [s for s in pool if not s.pipes]:
                self._discard(url, sock)  # the connection went away since last use
            if len(pool) < self._pool_size:
                pool.append(await self._dial(url))
            return pool[next(self._turn) % len(pool)]

    async def _dial(self, url: str) -> pynng.Req0:
        # No nng send/recv timeouts: the deadline is the caller's trio scope, and an
        # nng timeout on one context would look like a broken socket to `_exchange`.
        sock = pynng.Req0(resend_time=-1)
        sock.recv_max_size = forwarded_reply_bytes_max
        try:
            # A blocking dial reports "refused" at once; a thread keeps trio responsive.
            await trio.to_thread.run_sync(functools.partial(sock.dial, url, block=True))
        except pynng.NNGException as exc:
            sock.close()
            raise UnavailableError(f"cannot connect to the leader at {url}: {exc}") from None
        log.debug("proxy connected to leader endpoint %s", url)
        return sock

    def _discard(self, url: str, sock: pynng.Req0) -> None:
        pool = self._pools.get(url)
        if pool is not None and sock in pool:
            pool.remove(sock)
        sock.close()

    def _close_pool(self, url: str) -> None:
        for sock in self._pools.pop(url, []):
            sock.close()

    def close(self) -> None:
        for url in list(self._pools):
            self._close_pool(url)

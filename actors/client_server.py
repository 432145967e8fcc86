"""Serves the native client protocol (docs/protocol.md) on an nng REP socket.

A fixed pool of REP contexts serves requests concurrently, with no task
spawned per request. Each request is decoded, validated and then either
read locally (serializable), read behind a ReadIndex barrier
(linearizable), or proposed to Raft and answered once this member has
applied it. Bad input always gets a typed error reply; the member keeps
serving.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import pynng
import trio

from actors.applier import encode_proposal
from actors.auth import AuthGate, current_auth
from actors.auth_ops import AuthService
from actors.events import Propose, RaftInput
from actors.read_barrier import ReadBarrier
from actors.wait import WaitRegistry
from cluster import codec, kv, limits
from cluster.auth_token import token_ttl_s as token_ttl_default_s
from cluster.errors import (
    EtcdliteError,
    InternalError,
    NoLeaderError,
    RequestTooLargeError,
    TimeoutError_,
    UnknownOperationError,
)
from cluster.messages import NONE, EntryType

log = logging.getLogger("etcdlite.server")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    requests: int
    errors: int
    malformed: int


class ClientServer:
    def __init__(self, *, url: str, member: Any, inbox: trio.MemorySendChannel[RaftInput],
                 waits: WaitRegistry, barrier: ReadBarrier, max_request_bytes: int,
                 max_txn_ops: int, request_timeout_s: float,
                 token_ttl_s: int = token_ttl_default_s) -> None:
        self._url = url
        self._member = member  # cluster.member.Member: status/header/mvcc accessors
        self._inbox = inbox
        self._waits = waits
        self._barrier = barrier
        self._max_request_bytes = max_request_bytes
        self._max_txn_ops = max_txn_ops
        self._request_timeout_s = request_timeout_s
        # Request ids must be unique across restarts of this member: random high bits.
        self._ids = itertools.count((random.Random(os.urandom(8)).getrandbits(31) << 32) + 1)
        self._requests = self._errors = self._malformed = 0
        self._extra_ops: dict[str, Handler] = {}
        # The server authenticates every request, so it owns the gate and the auth ops.
        self.auth = AuthGate(member.mvcc.path, lease_keys=member.mvcc.lease_keys,
                             barrier=barrier.wait)
        self.auth_service = AuthService(gate=self.auth, propose_entry=self.propose_entry,
                                        read_barrier=barrier.wait, header=member.header,
                                        token_ttl_s=token_ttl_s)
        self.auth_service.register(self)

    def statistics(self) -> ServerStatistics:
        return ServerStatistics(self._requests, self._errors, self._malformed)

    def add_operation(self, op: str, handler: Handler) -> None:
        """Let other modules serve ops that are not plain KV (members, maintenance)."""
        self._extra_ops[op] = handler

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> NoReturn:
        # Frames a bit over the limit are read so they can be refused with a typed error.
        recv_max = max(4 * self._max_request_bytes, 16 * 1024 * 1024)
        with pynng.Rep0(recv_max_size=recv_max) as sock:
            sock.listen(self._url)
            try:
                async with trio.open_nursery() as nursery:
                    for _ in range(limits.client_contexts):
                        nursery.start_soon(self._serve_context, sock.new_context())
                    task_status.started()
            finally:
                self.auth.close()
        raise AssertionError("client server should never complete")

    async def _serve_context(self, ctx: pynng.Context) -> None:
        with ctx:
            while True:
                frame = await ctx.arecv()
                reply = await self.handle_frame(frame)
                await ctx.asend(reply)

    async def handle_frame(self, frame: bytes) -> bytes:
        """Turn one request frame into one reply frame; never raises for bad input."""
        self._requests += 1
        try:
            if len(frame) > self._max_request_bytes + limits.client_frame_bytes_max_slack:
                raise RequestTooLargeError(
                    f"request is {len(frame)} bytes, limit is {self._max_request_bytes}")
            body = codec.decode_frame(frame)
            result = await self._dispatch(body)
            return codec.encode_frame({"ok": True, **result})
        except EtcdliteError as exc:
            self._errors += 1
            if exc.code.value in ("bad_request", "unsupported_version", "unknown_operation"):
                self._malformed += 1
            return codec.encode_frame({"ok": False, "error": exc.to_wire()})
        except AssertionError:
            raise  # a broken invariant must crash the member loudly
        except Exception:  # a bug in one request must not take the member down
            self._errors += 1
            log.exception("internal error serving a request")
            return codec.encode_frame({"ok": False, "error": InternalError(
                "internal error").to_wire()})

    async def _dispatch(self, body: dict[str, Any]) -> dict[str, Any]:
        op = body.get("op")
        if not isinstance(op, str):
            raise UnknownOperationError(f"unknown operation {op!r}")
        ctx = await self.auth.admit(op, body)  # takes the token off; raises if not allowed
        extra = self._extra_ops.get(op)
        if extra is not None:
            return await extra(body)
        request = kv.parse_request(body, max_txn_ops=self._max_txn_ops)
        if isinstance(request, kv.RangeRequest):
            return await self._range(request)
        if request.op not in kv.LOG_OPS:
            raise UnknownOperationError(f"operation {op!r} is not served by this member yet")
        await self.auth.check_request(ctx, request, fresh=False)  # the applier checks again
        return await self.propose(request)

    async def _range(self, request: kv.RangeRequest) -> dict[str, Any]:
        if not request.serializable:
            await self._barrier.wait()
        ctx = current_auth.get()
        if ctx is not None:  # after the barrier: honours auth changes committed before it
            await self.auth.check_request(ctx, request, fresh=True)
        result = self._member.mvcc.range(request)
        return {"header": self._member.header(), **kv.result_to_wire(result)}

    async def propose(self, request: Any) -> dict[str, Any]:
        """Put `request` through the log and answer with this member's apply result.

        A request served for a client (an auth context is set) is proposed as
        `Authed`, so the applier checks its permissions at its own Raft index.
        """
        request = self._member.prepare_proposal(request)
        ctx = current_auth.get()
        if ctx is not None:
            request = ctx.wrap(request)
        result = await self.propose_entry(lambda rid: encode_proposal(rid, request))
        return {"header": self._member.header(getattr(result, "revision", 0)),
                **kv.result_to_wire(result)}

    async def propose_entry(self, make_data: Callable[[int], bytes],
                            entry_type: EntryType = EntryType.NORMAL) -> Any:
        """Propose one log entry and wait for this member to apply it.

        `make_data` gets the request id the applier will report the result under.
        """
        if self._member.leader_id() == NONE:
            raise NoLeaderError("no leader; try again or another endpoint")
        rid = next(self._ids)
        slot = self._waits.register(rid)
        await self._inbox.send(Propose(rid, make_data(rid), entry_type))
        ok, result = await self._waits.wait(rid, slot, self._request_timeout_s)
        if not ok:
            raise TimeoutError_("request timed out; it may or may not have been applied")
        if isinstance(result, EtcdliteError):
            raise result
        return result

"""The torture workload: concurrent trio clients on a few keys, every op recorded.

Each client is a trio task with its own `AsyncClient` (so each fails over on
its own) looping over a random mix of linearizable and serializable gets,
puts of unique values (some with a lease), deletes, compare-and-set (a txn:
value == expected -> put, else get), multi-key put txns, multi-key read txns,
lease grants and revokes. A small key set keeps keys contended, which is
where linearizability bugs live. Watchers follow the whole key prefix from
revision 1 with prev_kv and record every response.

Timestamps come from one clock (`time.monotonic()`), taken just before the
request is sent and just after the answer (or the error) arrives. After an
indeterminate op a client continues under a new process id (Jepsen's rule:
the old "process" may still have that op in flight forever).
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from cluster.client_async import AsyncClient
from cluster.client_requests import Compare
from cluster.client_requests import Op as TxnOp
from cluster.client_types import KeyValue, RangeResult
from cluster.client_watch_state import WatchResponse
from cluster.errors import EtcdliteError
from cluster.torture.history import (
    KV,
    F,
    History,
    Op,
    Outcome,
    WatchDelivery,
    WatchEvent,
    outcome_of,
)

PREFIX = "t/"


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    keys: int = 6
    clients: int = 6
    watchers: int = 2
    timeout_s: float = 2.0
    lease_ttl_s: int = 3600  # never expires during a run: expiry would be a write nobody made
    mix: tuple[tuple[F | str, int], ...] = (
        (F.GET, 22), ("sget", 10), (F.PUT, 20), ("lput", 5), (F.DELETE, 5), (F.CAS, 15),
        (F.TXN, 7), (F.MGET, 8), (F.GRANT, 3), (F.REVOKE, 2))


def key_name(i: int) -> str:
    return f"{PREFIX}k{i}"


def _kv(key: str, kv: KeyValue | None) -> KV:
    if kv is None:
        return KV(key, None)
    return KV(key, kv.value.decode(), kv.mod_revision, kv.lease)


@dataclass
class Recorder:
    """Collects ops and watch deliveries; ids and process ids are handed out here."""

    history: History
    clients: int
    _next_id: int = 0
    _next_process: int = 0
    leases: list[int] = field(default_factory=list)
    last_value: dict[str, str] = field(default_factory=dict)

    def new_process(self) -> int:
        self._next_process += 1
        return self._next_process

    def add(self, **fields: Any) -> Op:
        op = Op(id=self._next_id, **fields)
        self._next_id += 1
        self.history.ops.append(op)
        return op


class EndpointBook:
    """The cluster's client endpoints right now. Membership churn replaces members (a
    removed member never comes back), so clients and watchers move to the new list."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = list(urls)
        self.version = 0
        self.changed = trio.Event()

    def update(self, urls: list[str]) -> None:
        if list(urls) != self.urls:
            self.urls = list(urls)
            self.version += 1
            self.changed.set()
            self.changed = trio.Event()

    def client(self, rng: random.Random, timeout_s: float) -> AsyncClient:
        order = list(self.urls)
        rng.shuffle(order)  # clients start on different members
        return AsyncClient(order, timeout_s=timeout_s)


class Client:
    """One workload client: a process id, a socket set and a random stream."""

    def __init__(self, rec: Recorder, book: EndpointBook, cfg: WorkloadConfig,
                 rng: random.Random) -> None:
        self.rec = rec
        self.cfg = cfg
        self.rng = rng
        self.process = rec.new_process()
        self.book = book
        self.version = book.version
        self.client = book.client(rng, cfg.timeout_s)
        self.seq = 0

    def value(self) -> str:
        self.seq += 1
        return f"p{self.process}.{self.seq}"

    def key(self) -> str:
        return key_name(self.rng.randrange(self.cfg.keys))

    async def run_until(self, stop_at: float) -> None:
        kinds = [k for k, _ in self.cfg.mix]
        weights = [w for _, w in self.cfg.mix]
        try:
            while time.monotonic() < stop_at:
                if self.version != self.book.version:
                    self.client.close()
                    self.version = self.book.version
                    self.client = self.book.client(self.rng, self.cfg.timeout_s)
                kind = self.rng.choices(kinds, weights)[0]
                await self.one(kind)
        finally:
            self.client.close()

    async def one(self, kind: F | str, key: str | None = None) -> Op:
        """Run one op of `kind` (on `key`, else a random one) and record it; the runner
        uses it for the final reads too."""
        c, rng = self.client, self.rng
        key = key or self.key()
        f: F
        call: Callable[[], Awaitable[dict[str, Any]]]
        fields: dict[str, Any] = {}
        if kind in (F.GET, "sget"):
            f, serializable = F.GET, kind == "sget"
            fields["serializable"] = serializable

            async def call() -> dict[str, Any]:
                r = await c.get(key, serializable=serializable)
                return {"reads": (_kv(key, r.kv),), "revision": r.header.revision,
                        "member": r.header.member_id}
        elif kind in (F.PUT, "lput"):
            f, value = F.PUT, self.value()
            lease = rng.choice(self.rec.leases) if kind == "lput" and self.rec.leases else 0
            fields["writes"] = (KV(key, value, lease=lease),)

            async def call() -> dict[str, Any]:
                r = await c.put(key, value, lease=lease)
                return {"revision": r.header.revision}
        elif kind is F.DELETE:
            f = F.DELETE
            fields["writes"] = (KV(key, None),)

            async def call() -> dict[str, Any]:
                r = await c.delete(key)
                return {"revision": r.header.revision, "deleted": r.deleted}
        elif kind is F.CAS:
            f, new = F.CAS, self.value()
            expected = self.rec.last_value.get(key, "none")
            fields |= {"writes": (KV(key, new),), "expected": expected}

            async def call() -> dict[str, Any]:
                r = await c.txn([Compare.value(key, "=", expected)], [TxnOp.put(key, new)],
                                [TxnOp.get(key)])
                out: dict[str, Any] = {"revision": r.header.revision, "succeeded": r.succeeded}
                if not r.succeeded:
                    got = r.responses[0]
                    assert isinstance(got, RangeResult)
                    out["reads"] = (_kv(key, got.kv),)
                return out
        elif kind is F.TXN:
            f = F.TXN
            keys = rng.sample(range(self.cfg.keys), k=min(3, self.cfg.keys))
            writes = tuple(KV(key_name(i), self.value()) for i in sorted(keys))
            fields["writes"] = writes

            async def call() -> dict[str, Any]:
                r = await c.txn([], [TxnOp.put(w.key, w.value or "") for w in writes], [])
                return {"revision": r.header.revision}
        elif kind is F.MGET:
            f = F.MGET
            keys = sorted(rng.sample(range(self.cfg.keys), k=min(3, self.cfg.keys)))

            async def call() -> dict[str, Any]:
                r = await c.txn([], [TxnOp.get(key_name(i)) for i in keys], [])
                reads = []
                for i, got in zip(keys, r.responses, strict=True):
                    assert isinstance(got, RangeResult)
                    reads.append(_kv(key_name(i), got.kv))
                return {"reads": tuple(reads), "revision": r.header.revision}
        elif kind is F.GRANT:
            f = F.GRANT

            async def call() -> dict[str, Any]:
                r = await c.lease_grant(self.cfg.lease_ttl_s)
                self.rec.leases.append(r.id)
                return {"lease": r.id, "revision": r.header.revision}
        elif kind is F.REVOKE:
            if not self.rec.leases:
                return await self.one(F.GET)
            f = F.REVOKE
            lease = self.rec.leases.pop(rng.randrange(len(self.rec.leases)))
            fields["lease"] = lease

            async def call() -> dict[str, Any]:
                r = await c.lease_revoke(lease)
                return {"revision": r.header.revision}
        else:
            raise AssertionError(f"unknown op kind {kind!r}")
        return await self._record(f, fields, call)

    async def _record(self, f: F, fields: dict[str, Any],
                      call: Callable[[], Awaitable[dict[str, Any]]]) -> Op:
        invoke_s = time.monotonic()
        try:
            result = await call()
        except EtcdliteError as exc:
            outcome = outcome_of(exc)
            op = self.rec.add(process=self.process, f=f, invoke_s=invoke_s,
                              complete_s=time.monotonic(), outcome=outcome,
                              error=f"{exc.code.value}: {exc.message}"[:200], **fields)
            if outcome is Outcome.INFO:
                self.process = self.rec.new_process()
            return op
        op = self.rec.add(process=self.process, f=f, invoke_s=invoke_s,
                          complete_s=time.monotonic(), outcome=Outcome.OK,
                          **(fields | result))
        for kv in (*op.writes, *op.reads):
            if kv.value is not None:
                self.rec.last_value[kv.key] = kv.value
        return op


def _event(resp_event: Any, revision: int) -> WatchEvent:
    kv, prev = resp_event.kv, resp_event.prev_kv
    deleted = resp_event.type.value == "delete"
    return WatchEvent(
        revision=revision, type=resp_event.type.value, key=kv.key.decode(),
        value=None if deleted else kv.value.decode(), create_revision=kv.create_revision,
        version=kv.version, lease=kv.lease,
        prev_value=None if prev is None else prev.value.decode(),
        prev_mod_revision=0 if prev is None else prev.mod_revision)


class Watcher:
    """Follows the whole key prefix from revision 1 (prev_kv on) and records every response."""

    def __init__(self, wid: int, rec: Recorder, book: EndpointBook, timeout_s: float,
                 rng: random.Random) -> None:
        self.wid = wid
        self.rec = rec
        self.book = book
        self.rng = rng
        self.timeout_s = timeout_s
        self.next_revision = 1
        self.progressed = trio.Event()
        self._done = False

    async def run(self) -> None:
        """Until cancelled by the runner (after it has caught up with the final revision).

        The watch client fails over by itself once started; only its first poll can
        fail (no member answered in time), and then the watch is simply started again
        from where it stands, which keeps the stream continuous. When membership
        changes, the watch is restarted the same way on the new endpoints."""
        while not self._done:
            client = self.book.client(self.rng, self.timeout_s)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._restart_on_change, nursery.cancel_scope)
                    await self._follow(client)
                    self._done = True
                    nursery.cancel_scope.cancel()
            finally:
                client.close()

    async def _restart_on_change(self, scope: trio.CancelScope) -> None:
        await self.book.changed.wait()
        scope.cancel()

    async def _follow(self, client: AsyncClient) -> None:
        while True:
            try:
                async with client.watch(PREFIX, prefix=True, start_revision=self.next_revision,
                                        prev_kv=True, watch_id=self.wid) as w:
                    async for resp in w:
                        self._record(resp)
                        self.next_revision = w.next_revision
                        self.progressed.set()
                        self.progressed = trio.Event()
                        if resp.canceled:
                            return
                return
            except EtcdliteError:
                await trio.sleep(0.5)

    def _record(self, resp: WatchResponse) -> None:
        events = tuple(_event(e, e.kv.mod_revision) for e in resp.events)
        self.rec.history.watches.append(WatchDelivery(
            watcher=self.wid, received_s=time.monotonic(), header_revision=resp.header.revision,
            events=events, canceled=resp.canceled))

    async def wait_caught_up(self, revision: int, timeout_s: float) -> bool:
        with trio.move_on_after(timeout_s):
            while self.next_revision <= revision:
                await self.progressed.wait()
            return True
        return False

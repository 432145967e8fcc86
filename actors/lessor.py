"""The lease actor: times leases on the leader, revokes expired ones, answers keep-alives.

Leases live in the MVCC store on every member (granted TTL, checkpointed
remaining TTL, attached keys), put there by the log like any write. Their
*timing* lives here, on the leader only, as in etcd's lessor: followers never
expire anything, they forward keep-alive, time-to-live and lease listings to
the leader (`actors.leader_proxy`).

- BECOMING LEADER (`_sync_role`, checked before every request and every
  round): load every stored lease and give it the deadline now + max(TTL,
  min TTL), where TTL is the checkpointed remaining TTL if any, else the
  granted TTL, and min TTL is etcd's 1.5 x election timeout. A leader change
  therefore only ever extends a lease (see `cluster.lease_schedule`).
- GRANT: a TTL below the minimum (rounded up to whole seconds) is raised to
  it before the grant is proposed, as etcd does, so every member stores the
  raised value. The leader starts timing its own grants at once; grants
  made through a follower are picked up by a keep-alive/time-to-live that
  asks for them or by the periodic re-sync with the store (every
  `sync_interval_s`), counting from that moment: late, never early.
- EXPIRY: every `check_interval_s` the leader proposes `lease_revoke` for
  leases past their deadline, at most `revoke_rate_per_s` per second (etcd's
  1000/s), each retried after one request timeout until a revoke is applied.
- CHECKPOINTS (chosen: on, etcd's 5-minute interval by default): leases
  whose granted TTL exceeds the interval get their remaining TTL proposed
  as `lease_checkpoint` once per interval, so a leader change resumes their
  countdown instead of restarting it. A keep-alive on a checkpointed lease
  first proposes a checkpoint of 0 ("use the granted TTL") and answers only
  once it is applied, so a stale checkpoint can never cut a renewed lease
  short after a leader change. `_checkpoint_lock` keeps checkpoints and
  those clears in log order. Leases kept alive more often than the interval
  are never checkpointed at all.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, final

import trio

from actors.leader_proxy import LeaderProxy, is_forwarded, strip_forwarded
from cluster import kv
from cluster.errors import EtcdliteError, LeaseNotFoundError, NotLeaderError
from cluster.lease_schedule import LeaseSchedule, StoredLease
from cluster.messages import Role

log = logging.getLogger("etcdlite.lease")

lease_checkpoint_interval_s_default = 300.0
"""etcd's default lease checkpoint interval (5 minutes)."""

CHECKPOINT_INTERVAL_ENV = "ETCDLITE_LEASE_CHECKPOINT_INTERVAL_S"

lease_check_interval_s = 0.25
"""How often the leader looks for expired leases and due checkpoints."""

lease_sync_interval_s = 1.0
"""How often the leader re-reads the store for leases granted or revoked elsewhere."""

lease_sync_rows_per_s = 20_000
"""Above this many leases per `lease_sync_interval_s`, the re-sync runs less often."""

lease_revoke_rate_per_s = 1000
"""etcd's leaseRevokeRate: expired leases revoked per second, at most."""

lease_revokes_in_flight_max = 1000
"""Revoke proposals outstanding at once; more wait for the next round."""

lease_checkpoints_per_round_max = 1000
"""Checkpoint proposals started per round (etcd batches 1000 per proposal)."""


class LeaseStore(Protocol):
    """What the lessor reads from the MVCC store (`storage.mvcc.MvccStore`)."""

    def lease_get(self, lease_id: int) -> Any: ...

    def leases(self) -> list[Any]: ...

    def lease_keys(self, lease_id: int) -> list[bytes]: ...


Propose = Callable[[Any], Awaitable[dict[str, Any]]]
Forward = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class LessorStatistics:
    primary: bool
    leases_timed: int
    keepalives: int
    revokes_proposed: int
    revokes_applied: int
    checkpoints_proposed: int
    promotions: int


def _stored(record: Any) -> StoredLease:
    return StoredLease(record.id, record.granted_ttl, record.remaining_ttl)


@final
class Lessor:
    """Leader-only lease timing plus the lease operations of the client protocol.

    Args:
        store: the member's MVCC store (lease records and keys).
        propose: puts a request through the log (`ClientServer.propose`).
        forward: sends a request to the leader (`LeaderProxy.forward`).
        role: this member's Raft role and term, read fresh on every call.
        header: the reply header (`Member.header`).
        read_barrier: waits until local state is linearizable (ReadIndex).
        min_ttl_s: etcd's minimum lease TTL, 1.5 x election timeout.
        retry_s: wait before re-proposing a revoke that was not applied.
    """

    def __init__(self, *, store: LeaseStore, propose: Propose, forward: Forward,
                 role: Callable[[], tuple[Role, int]],
                 header: Callable[[], dict[str, int]],
                 read_barrier: Callable[[], Awaitable[None]], min_ttl_s: float,
                 retry_s: float, name: str,
                 checkpoint_interval_s: float = lease_checkpoint_interval_s_default,
                 check_interval_s: float = lease_check_interval_s,
                 sync_interval_s: float = lease_sync_interval_s,
                 revoke_rate_per_s: int = lease_revoke_rate_per_s,
                 on_close: Callable[[], None] | None = None) -> None:
        self._store = store
        self._on_close = on_close
        self._propose = propose
        self._forward = forward
        self._role = role
        self._header = header
        self._read_barrier = read_barrier
        self.min_ttl_s = min_ttl_s
        self.grant_ttl_min = max(1, math.ceil(min_ttl_s))
        self._retry_s = retry_s
        self._name = name
        self._check_interval_s = check_interval_s
        self._sync_interval_s = sync_interval_s
        self._revokes_per_round = max(1, int(revoke_rate_per_s * check_interval_s))
        self._schedule = LeaseSchedule(checkpoint_interval_s=checkpoint_interval_s)
        self._primary_term = 0  # the term we lead and time leases in; 0 = not leader
        self._next_sync = 0.0
        self._revoking: set[int] = set()
        self._checkpoint_lock = trio.Lock()
        self._keepalives = self._revokes = self._revoked = self._checkpoints = 0
        self._promotions = 0

    def statistics(self) -> LessorStatistics:
        return LessorStatistics(self._primary_term != 0, len(self._schedule), self._keepalives,
                                self._revokes, self._revoked, self._checkpoints,
                                self._promotions)

    def register(self, server: Any) -> None:
        """Serve the lease operations of docs/protocol.md on `server` (a ClientServer)."""
        server.add_operation("lease_grant", self.grant)
        server.add_operation("lease_revoke", self.revoke)
        server.add_operation("lease_keepalive", self.keepalive)
        server.add_operation("lease_timetolive", self.timetolive)
        server.add_operation("lease_leases", self.leases)

    # --- leadership ------------------------------------------------------------------

    def _sync_role(self) -> bool:
        """Promote on a new leader term, demote on losing it; True while leader."""
        role, term = self._role()
        if role is Role.LEADER:
            if self._primary_term != term:
                now = trio.current_time()
                records = [_stored(r) for r in self._store.leases()]
                self._schedule.promote(now, records, self.min_ttl_s)
                self._primary_term = term
                self._next_sync = now + self._sync_interval_s
                self._promotions += 1
                log.info("%s lessor promoted at term %d with %d leases", self._name, term,
                         len(records))
            return True
        if self._primary_term:
            self._schedule.clear()
            self._primary_term = 0
            log.info("%s lessor demoted", self._name)
        return False

    def _timed(self, lease_id: int, record: Any) -> None:
        """Make sure a stored lease is timed (granted through a follower, say)."""
        if lease_id not in self._schedule:
            self._schedule.add(trio.current_time(), _stored(record), self.min_ttl_s)

    async def _record(self, lease_id: int) -> Any:
        """The stored lease, waiting for local state to catch up before saying "none"."""
        record = self._store.lease_get(lease_id)
        if record is None:
            # A grant acknowledged by another member may not be applied here yet.
            await self._read_barrier()
            record = self._store.lease_get(lease_id)
        return record

    # --- client operations -----------------------------------------------------------

    async def grant(self, body: dict[str, Any]) -> dict[str, Any]:
        req = kv.parse_request(strip_forwarded(body))
        assert isinstance(req, kv.LeaseGrantRequest)
        if req.ttl < self.grant_ttl_min:
            req = kv.LeaseGrantRequest(ttl=self.grant_ttl_min, id=req.id)
        result = await self._propose(req)
        if self._sync_role():
            self._schedule.add(trio.current_time(), StoredLease(result["id"], result["ttl"]))
        return result

    async def revoke(self, body: dict[str, Any]) -> dict[str, Any]:
        req = kv.parse_request(strip_forwarded(body))
        assert isinstance(req, kv.LeaseRevokeRequest)
        try:
            result = await self._propose(req)
        except LeaseNotFoundError:
            self._schedule.remove(req.id)
            raise
        self._schedule.remove(req.id)
        return result

    async def _leader_only(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """None when this member leads (answer locally), else the leader's answer."""
        if self._sync_role():
            return None
        if is_forwarded(body):
            raise NotLeaderError("this member is not the leader (forwarded request)")
        return await self._forward(body)

    async def keepalive(self, body: dict[str, Any]) -> dict[str, Any]:
        forwarded = await self._leader_only(body)
        if forwarded is not None:
            return forwarded
        req = kv.parse_request(strip_forwarded(body))
        assert isinstance(req, kv.LeaseKeepAliveRequest)
        record = await self._record(req.id)
        if record is None or not self._sync_role():
            self._schedule.remove(req.id)
            raise LeaseNotFoundError("lease not found")
        self._timed(req.id, record)
        renewed = self._schedule.renew(trio.current_time(), req.id)
        if renewed is None:
            raise LeaseNotFoundError("lease expired")
        ttl, stale_checkpoint = renewed
        if stale_checkpoint:
            await self._clear_checkpoint(req.id)
        self._keepalives += 1
        return {"header": self._header(), "id": req.id, "ttl": ttl}

    async def _clear_checkpoint(self, lease_id: int) -> None:
        try:
            async with self._checkpoint_lock:
                await self._propose(kv.LeaseCheckpointRequest(id=lease_id, remaining_ttl=0))
        except LeaseNotFoundError:
            self._schedule.remove(lease_id)
            raise
        except EtcdliteError:
            self._schedule.mark_checkpointed(lease_id)  # still stale: the next renew retries
            raise

    async def timetolive(self, body: dict[str, Any]) -> dict[str, Any]:
        forwarded = await self._leader_only(body)
        if forwarded is not None:
            return forwarded
        req = kv.parse_request(strip_forwarded(body))
        assert isinstance(req, kv.LeaseTimeToLiveRequest)
        record = await self._record(req.id)
        if record is None or not self._sync_role():
            return {"header": self._header(), "id": req.id, "ttl": -1, "granted_ttl": 0,
                    "keys": []}
        self._timed(req.id, record)
        remaining = self._schedule.remaining(trio.current_time(), req.id)
        # Whole seconds, truncated, as etcd reports them; -1 once expired.
        ttl = int(remaining) if remaining is not None and remaining > 0 else -1
        keys = self._store.lease_keys(req.id) if req.keys else []
        return {"header": self._header(), "id": req.id, "ttl": ttl,
                "granted_ttl": record.granted_ttl, "keys": keys}

    async def leases(self, body: dict[str, Any]) -> dict[str, Any]:
        forwarded = await self._leader_only(body)
        if forwarded is not None:
            return forwarded
        kv.parse_request(strip_forwarded(body))
        return {"header": self._header(), "leases": [r.id for r in self._store.leases()]}

    # --- the leader's rounds ---------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> NoReturn:
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    if self._sync_role():
                        self._round(nursery)
                    # Pacing, not synchronisation: leases are timed in whole seconds.
                    await trio.sleep(self._check_interval_s)
        finally:
            if self._on_close is not None:
                self._on_close()
        raise AssertionError("lessor should never complete")

    def _round(self, nursery: trio.Nursery) -> None:
        now = trio.current_time()
        if now >= self._next_sync:
            self._schedule.sync(now, [_stored(r) for r in self._store.leases()], self.min_ttl_s)
            # The re-sync reads every lease: spread it out when there are very many.
            self._next_sync = now + max(self._sync_interval_s,
                                        len(self._schedule) / lease_sync_rows_per_s)
        room = min(self._revokes_per_round, lease_revokes_in_flight_max - len(self._revoking))
        for lease_id in self._schedule.expired(now, max(0, room), self._retry_s):
            if lease_id not in self._revoking:
                self._revoking.add(lease_id)
                nursery.start_soon(self._revoke_expired, lease_id)
        if not self._checkpoint_lock.locked():
            nursery.start_soon(self._checkpoint_due)

    async def _revoke_expired(self, lease_id: int) -> None:
        self._revokes += 1
        try:
            await self._propose(kv.LeaseRevokeRequest(id=lease_id))
            self._revoked += 1
            log.info("%s revoked expired lease %x", self._name, lease_id)
        except LeaseNotFoundError:
            pass  # revoked by someone else meanwhile
        except EtcdliteError as exc:
            # Not applied (no leader, timeout): `expired` offers it again after retry_s.
            log.warning("%s revoke of expired lease %x failed: %s", self._name, lease_id, exc)
            return
        finally:
            self._revoking.discard(lease_id)
        self._schedule.remove(lease_id)

    async def _checkpoint_due(self) -> None:
        async with self._checkpoint_lock:
            due = self._schedule.due_checkpoints(trio.current_time(),
                                                 lease_checkpoints_per_round_max)
            if not due:
                return
            async with trio.open_nursery() as nursery:
                for lease_id, remaining in due:
                    nursery.start_soon(self._checkpoint, lease_id, remaining)

    async def _checkpoint(self, lease_id: int, remaining: int) -> None:
        self._checkpoints += 1
        try:
            await self._propose(kv.LeaseCheckpointRequest(id=lease_id, remaining_ttl=remaining))
        except EtcdliteError as exc:
            log.debug("%s checkpoint of lease %x failed: %s", self._name, lease_id, exc)


def lessor_for_member(member: Any, server: Any, barrier: Any, request_timeout_s: float
                      ) -> Lessor:
    """Build the lessor (and its leader proxy) of a `cluster.member.Member` and register
    the lease operations on its client server.

    The checkpoint interval can be changed with $ETCDLITE_LEASE_CHECKPOINT_INTERVAL_S
    (seconds; "0" or "off" disables checkpoints), mainly for tests.
    """
    proxy = LeaderProxy(leader_id=member.leader_id, client_url_of=member.client_url_of,
                        timeout_s=request_timeout_s)

    def role() -> tuple[Role, int]:
        node = member.node
        return (node.view.role, node.view.term) if node is not None else (Role.FOLLOWER, 0)

    lessor = Lessor(
        store=member.mvcc, propose=server.propose, forward=proxy.forward, role=role,
        header=member.header, read_barrier=barrier.wait,
        min_ttl_s=1.5 * member.cfg.cluster.election_timeout_ms / 1000,
        retry_s=request_timeout_s, name=member.name,
        checkpoint_interval_s=checkpoint_interval_from_env(os.environ),
        on_close=proxy.close)
    lessor.register(server)
    return lessor


def checkpoint_interval_from_env(env: Mapping[str, str]) -> float:
    raw = env.get(CHECKPOINT_INTERVAL_ENV, "").strip().lower()
    if not raw:
        return lease_checkpoint_interval_s_default
    if raw in ("0", "off"):
        return math.inf
    value = float(raw)
    if not value > 0:
        raise ValueError(f"{CHECKPOINT_INTERVAL_ENV} must be > 0 seconds, got {raw!r}")
    return value

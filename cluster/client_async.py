"""The trio twin of `cluster.client.Client`: the same methods, as coroutines.

Requests are built by `cluster.client_requests`/`cluster.client_calls` and
replies parsed by `cluster.client_replies`, exactly as for `Client`; only the
transport (`AsyncTransport`: pynng `asend`/`arecv` under trio) differs, and it
applies the same retry rule (see `cluster.client_transport`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import TracebackType
from typing import TypeVar

from cluster import client_calls as calls
from cluster import client_maintenance as maint
from cluster.client_auth import Credentials
from cluster.client_calls import Call
from cluster.client_lease import AsyncLeaseKeepAlive, RenewCallback
from cluster.client_requests import (
    Compare,
    KeyLike,
    Op,
    check_timeout,
    delete_args,
    put_args,
    range_args,
    txn_args,
)
from cluster.client_transport import AsyncTransport, resolve_endpoints
from cluster.client_types import (
    CompactResult,
    DeleteResult,
    LeaseGrantResult,
    LeaseKeepAliveResult,
    LeaseLeasesResult,
    LeaseRevokeResult,
    LeaseTimeToLiveResult,
    MemberListResult,
    PutResult,
    RangeResult,
    ResponseHeader,
    SortOrder,
    SortTarget,
    Status,
    TxnResult,
)
from cluster.client_watch import AsyncWatch
from cluster.client_watch_state import new_watch_state, poll_timeout_s_default
from cluster.errors import EtcdliteError

R = TypeVar("R")


class AsyncClient:
    """trio client for an etcdlite cluster: `Client`'s methods as coroutines.

    Args:
        endpoints: native client addresses (`tcp://host:port`, `ipc:///path`, or
            bare `host:port`). None means $ETCDLITE_ENDPOINTS (comma separated)
            or, failing that, the default local cluster (`DEFAULT_ENDPOINTS`).
        timeout_s: overall deadline of each call, retries included.

    Sockets are opened lazily, one per endpoint, on first use; each request
    uses its own nng context, so many tasks may call concurrently. Deadlines
    are `trio.fail_after` scopes; cancelling a call abandons its request
    (a cancelled write may still have been applied). Use `async with`.
    """

    def __init__(self, endpoints: Sequence[str] | None = None, *, timeout_s: float = 5.0,
                 user: str | None = None, password: str | None = None) -> None:
        self.endpoints = resolve_endpoints(endpoints)
        self.timeout_s = check_timeout(timeout_s)
        # `user` "name" or "name:password" (etcdctl's --user); see cluster.client_auth.
        self.credentials = Credentials(user, password)
        self._transport = AsyncTransport(self.endpoints, self.timeout_s)

    @property
    def current_endpoint(self) -> str:
        """The endpoint the next call tries first (it moves on after a failure)."""
        ring = self._transport.ring
        return ring.endpoints[ring.current]

    async def _send(self, call: Call[R], pinned: str | None) -> R:
        call = self.credentials.with_token(call)
        body, endpoint = await self._transport.request(call.frame(), read=call.read, pinned=pinned)
        return call.parse(body, endpoint)

    async def _login(self) -> None:
        try:
            token: str | EtcdliteError = await self._send(self.credentials.login_call(), None)
        except EtcdliteError as exc:
            token = exc
        self.credentials.took(token)

    async def _run(self, call: Call[R], pinned: str | None = None) -> R:
        """One call, with a token when the client has credentials (renewed once on
        "invalid auth token", cluster.client_auth)."""
        if self.credentials.needs_token():
            await self._login()
        try:
            return await self._send(call, pinned)
        except EtcdliteError as exc:
            if not self.credentials.should_renew(exc):
                raise
        self.credentials.forget()
        await self._login()
        return await self._send(call, pinned)

    async def get(
        self,
        key: KeyLike,
        *,
        range_end: KeyLike | None = None,
        prefix: bool = False,
        from_key: bool = False,
        limit: int = 0,
        revision: int = 0,
        serializable: bool = False,
        keys_only: bool = False,
        count_only: bool = False,
        sort_order: SortOrder | str | None = None,
        sort_target: SortTarget | str | None = None,
        min_mod_revision: int = 0,
        max_mod_revision: int = 0,
        min_create_revision: int = 0,
        max_create_revision: int = 0,
    ) -> RangeResult:
        """Read one key, or a range: `[key, range_end)`, every key under `prefix`,
        or every key >= key (`from_key`). A read: retried on any endpoint until the deadline.

        Raises:
            CompactedError / FutureRevisionError: `revision` is outside the kept history.
        """
        return await self._run(calls.range_call(range_args(
            key, range_end=range_end, prefix=prefix, from_key=from_key, limit=limit,
            revision=revision, serializable=serializable, keys_only=keys_only,
            count_only=count_only, sort_order=sort_order, sort_target=sort_target,
            min_mod_revision=min_mod_revision, max_mod_revision=max_mod_revision,
            min_create_revision=min_create_revision, max_create_revision=max_create_revision,
        )))

    async def put(
        self,
        key: KeyLike,
        value: KeyLike,
        *,
        lease: int = 0,
        prev_kv: bool = False,
        ignore_value: bool = False,
        ignore_lease: bool = False,
    ) -> PutResult:
        """Write one key. A write: see the module docstring for when it is retried.

        Raises:
            TimeoutError_: no reply in time; the put may or may not have been applied.
            LeaseNotFoundError: `lease` does not exist.
        """
        return await self._run(calls.put_call(put_args(
            key, value, lease=lease, prev_kv=prev_kv, ignore_value=ignore_value,
            ignore_lease=ignore_lease,
        )))

    async def delete(
        self,
        key: KeyLike,
        *,
        range_end: KeyLike | None = None,
        prefix: bool = False,
        from_key: bool = False,
        prev_kv: bool = False,
    ) -> DeleteResult:
        """Delete one key or a range (same range options as `get`). A write."""
        return await self._run(calls.delete_call(delete_args(
            key, range_end=range_end, prefix=prefix, from_key=from_key, prev_kv=prev_kv,
        )))

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]
    ) -> TxnResult:
        """If every compare holds run `success`, else `failure`, atomically at one revision.
        A write, even when both branches only read."""
        return await self._run(calls.txn_call(txn_args(compare, success, failure)))

    async def compact(self, revision: int, physical: bool = False) -> CompactResult:
        """Discard history at or below `revision` (the latest version of live keys stays)."""
        return await self._run(calls.compact_call(revision, physical))

    async def lease_grant(self, ttl: int, id: int = 0) -> LeaseGrantResult:
        """Create a lease of `ttl` seconds; `id=0` lets the cluster choose the id."""
        return await self._run(calls.lease_grant_call(ttl, id))

    async def lease_revoke(self, id: int) -> LeaseRevokeResult:
        """End a lease now, deleting every key attached to it."""
        return await self._run(calls.lease_revoke_call(id))

    async def lease_keepalive_once(self, id: int) -> LeaseKeepAliveResult:
        """Refresh a lease once (callers loop themselves, e.g. every ttl/3 seconds)."""
        return await self._run(calls.lease_keepalive_call(id))

    def lease_keepalive(self, id: int, *, on_renew: RenewCallback | None = None
                        ) -> AsyncLeaseKeepAlive:
        """Keep lease `id` alive from a task, renewing every TTL/3:
        `async with c.lease_keepalive(lease_id) as ka: ...` (or `nursery.start(ka.run)`)."""
        return AsyncLeaseKeepAlive(self, id, on_renew=on_renew)

    async def lease_timetolive(self, id: int, keys: bool = False) -> LeaseTimeToLiveResult:
        """Remaining TTL of a lease (-1 if gone), optionally with its attached keys."""
        return await self._run(calls.lease_timetolive_call(id, keys))

    async def lease_leases(self) -> LeaseLeasesResult:
        """Ids of every live lease."""
        return await self._run(calls.lease_leases_call())

    async def status(self, endpoint: str | None = None) -> Status:
        """The status of one member: the given `endpoint` (one attempt, no failover),
        or whichever endpoint answers first (a read: retried until the deadline)."""
        pinned = None if endpoint is None else resolve_endpoints([endpoint])[0]
        return await self._run(calls.status_call(), pinned)

    async def member_list(self) -> MemberListResult:
        """Every member of the cluster. A read."""
        return await self._run(calls.member_list_call())

    async def member_add(self, name: str, peer_urls: Sequence[str],
                   client_urls: Sequence[str] = (), *, is_learner: bool = False
                   ) -> MemberListResult:
        """Add a member (as a learner with `is_learner`); `.member` is the new one."""
        return await self._run(calls.member_add_call(name, list(peer_urls), list(client_urls),
                                                     is_learner))

    async def member_remove(self, member_id: int) -> MemberListResult:
        """Remove a member (the leader too: it steps down once the removal is applied)."""
        return await self._run(calls.member_remove_call(member_id))

    async def member_promote(self, member_id: int) -> MemberListResult:
        """Make a caught-up learner a voter (refused while it lags the leader)."""
        return await self._run(calls.member_promote_call(member_id))

    async def member_update(self, member_id: int, peer_urls: Sequence[str]) -> MemberListResult:
        """Change a member's peer URLs."""
        return await self._run(calls.member_update_call(member_id, list(peer_urls)))

    async def move_leader(self, target: int) -> ResponseHeader:
        """Hand leadership to voter `target` (etcd's MoveLeader); returns once it leads."""
        return await self._run(calls.move_leader_call(target))

    def watch(
        self,
        key: KeyLike,
        *,
        range_end: KeyLike | None = None,
        prefix: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        filters: Sequence[str] = (),
        progress_notify: bool = False,
        watch_id: int | None = None,
        poll_timeout_s: float = poll_timeout_s_default,
    ) -> AsyncWatch:
        """`Client.watch` for trio: `async with client.watch("k") as w: async for r in w:`.
        The first poll is made on entering the block (or at the first `__anext__`).
        With credentials, it sends the token of earlier calls (see `authenticate`)."""
        return AsyncWatch(new_watch_state(
            self.endpoints, key, range_end=range_end, prefix=prefix,
            start_revision=start_revision, prev_kv=prev_kv, filters=filters,
            progress_notify=progress_notify, watch_id=watch_id, poll_timeout_s=poll_timeout_s,
            auth_token=self.credentials.token,
        ), self.timeout_s)

    async def authenticate(self) -> None:
        """Get a token now (calls do it on their own). `watch` is not a coroutine, so
        a watch uses the token earlier calls got: with credentials, call this first."""
        self.credentials.forget()
        await self._login()

    # --- maintenance (cluster.client_maintenance) --------------------------------------

    async def alarm_list(self) -> maint.AlarmResponse:
        """Every active alarm with the member that raised it. A read."""
        return await self._run(maint.alarm_list_call())

    async def alarm_disarm(self, member_id: int = 0, alarm: str = "NONE"
                           ) -> maint.AlarmResponse:
        """Clear alarms through the log (0 / "NONE": any member / any type)."""
        return await self._run(maint.alarm_disarm_call(member_id, alarm))

    async def defragment(self, endpoint: str) -> maint.DefragmentResult:
        """Rewrite one member's state.db without free pages (see `Client.defragment`)."""
        return await self._run(maint.defragment_call(), resolve_endpoints([endpoint])[0])

    async def hash_kv(self, endpoint: str, revision: int = 0) -> maint.HashKVResult:
        """One member's hash of its MVCC history at `revision` (0 = current)."""
        return await self._run(maint.hash_kv_call(revision), resolve_endpoints([endpoint])[0])

    async def health(self, endpoint: str, timeout_ms: int = 0) -> maint.HealthResult:
        """Whether one member has a leader, serves a linearizable read and has no alarm."""
        return await self._run(maint.health_call(timeout_ms), resolve_endpoints([endpoint])[0])

    async def snapshot_save(self, path: str | os.PathLike[str], endpoint: str | None = None,
                            fmt: str = "etcdlite") -> maint.SnapshotInfo:
        """Save a checked copy of one member's state.db to `path` (see `Client`)."""
        pinned = None if endpoint is None else resolve_endpoints([endpoint])[0]
        return await maint.save_snapshot_async(self._run, path, pinned, fmt)

    def close(self) -> None:
        """Close every socket; the client must not be used afterwards."""
        self._transport.close()

    async def aclose(self) -> None:
        """Async spelling of `close()` for `async with` and trio's resource conventions."""
        self.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

"""The native etcdlite client: a blocking API over nng REQ/REP and CBOR (docs/protocol.md).

Example:
    with Client(["tcp://127.0.0.1:2378"]) as c:
        c.put("greeting", "hello")
        print(c.get("greeting").value_str)
        c.txn([Compare.value("greeting", "=", "hello")], [Op.put("seen", "1")], [])

`AsyncClient` (cluster.client_async, re-exported here) has the same methods
as coroutines for trio. Both build requests in `cluster.client_requests`,
pair them with parsers in `cluster.client_calls`, and differ only in their
transport (`cluster.client_transport`), which also documents the retry rule:
reads are retried on every endpoint until the deadline; writes are retried
only when they certainly did not reach a member, and a write whose reply
timed out raises `TimeoutError_` (it may have been applied).

Every method raises a subclass of `cluster.errors.EtcdliteError`: the
member's own error (CompactedError, LeaseNotFoundError, ...), `UnavailableError`
when no endpoint could be reached, `TimeoutError_` when the deadline passed,
`InternalError` for a reply that breaks the protocol, `BadRequestError` for
arguments rejected before sending.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import TracebackType
from typing import TypeVar

from cluster import client_calls as calls
from cluster import client_maintenance as maint
from cluster.client_async import AsyncClient
from cluster.client_auth import Credentials
from cluster.client_auth_ops import AuthOps
from cluster.client_calls import Call
from cluster.client_lease import LeaseKeepAlive, RenewCallback
from cluster.client_requests import (
    Compare,
    KeyLike,
    Op,
    check_timeout,
    delete_args,
    prefix_range_end,
    put_args,
    range_args,
    txn_args,
)
from cluster.client_transport import (
    DEFAULT_ENDPOINTS,
    SyncTransport,
    resolve_endpoints,
)
from cluster.client_types import (
    CompactResult,
    DeleteResult,
    KeyValue,
    LeaseGrantResult,
    LeaseKeepAliveResult,
    LeaseLeasesResult,
    LeaseRevokeResult,
    LeaseTimeToLiveResult,
    Member,
    MemberListResult,
    PutResult,
    RangeResult,
    ResponseHeader,
    SortOrder,
    SortTarget,
    Status,
    TxnResult,
)
from cluster.client_watch import AsyncWatch, Watch
from cluster.client_watch_state import (
    Event,
    EventType,
    WatchResponse,
    new_watch_state,
    poll_timeout_s_default,
)
from cluster.errors import EtcdliteError

__all__ = [
    "DEFAULT_ENDPOINTS", "AsyncClient", "AsyncWatch", "Client", "CompactResult", "Compare",
    "DeleteResult", "Event", "EventType",
    "KeyLike", "KeyValue", "LeaseGrantResult", "LeaseKeepAliveResult", "LeaseLeasesResult",
    "LeaseRevokeResult", "LeaseTimeToLiveResult", "Member", "MemberListResult", "Op",
    "PutResult", "RangeResult", "ResponseHeader", "SortOrder", "SortTarget", "Status",
    "TxnResult", "Watch", "WatchResponse", "prefix_range_end", "resolve_endpoints",
]

R = TypeVar("R")


class Client:
    """Blocking client for an etcdlite cluster.

    Args:
        endpoints: native client addresses (`tcp://host:port`, `ipc:///path`, or
            bare `host:port`). None means $ETCDLITE_ENDPOINTS (comma separated)
            or, failing that, the default local cluster (`DEFAULT_ENDPOINTS`).
        timeout_s: overall deadline of each call, retries included.

    Sockets are opened lazily, one per endpoint, on first use. The client is
    safe to share between threads (calls are serialised). Close it with
    `close()` or use it as a context manager.
    """

    def __init__(self, endpoints: Sequence[str] | None = None, *, timeout_s: float = 5.0,
                 user: str | None = None, password: str | None = None) -> None:
        self.endpoints = resolve_endpoints(endpoints)
        self.timeout_s = check_timeout(timeout_s)
        # `user` "name" or "name:password" (etcdctl's --user); see cluster.client_auth.
        self.credentials = Credentials(user, password)
        self._transport = SyncTransport(self.endpoints, self.timeout_s)

    @property
    def current_endpoint(self) -> str:
        """The endpoint the next call tries first (it moves on after a failure)."""
        ring = self._transport.ring
        return ring.endpoints[ring.current]

    def _send(self, call: Call[R], pinned: str | None) -> R:
        call = self.credentials.with_token(call)
        body, endpoint = self._transport.request(call.frame(), read=call.read, pinned=pinned)
        return call.parse(body, endpoint)

    def _login(self) -> None:
        try:
            token: str | EtcdliteError = self._send(self.credentials.login_call(), None)
        except EtcdliteError as exc:
            token = exc
        self.credentials.took(token)

    def _run(self, call: Call[R], pinned: str | None = None) -> R:
        """One call, with a token when the client has credentials (renewed once on
        "invalid auth token", cluster.client_auth)."""
        if self.credentials.needs_token():
            self._login()
        try:
            return self._send(call, pinned)
        except EtcdliteError as exc:
            if not self.credentials.should_renew(exc):
                raise
        self.credentials.forget()
        self._login()
        return self._send(call, pinned)

    def get(
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
        return self._run(calls.range_call(range_args(
            key, range_end=range_end, prefix=prefix, from_key=from_key, limit=limit,
            revision=revision, serializable=serializable, keys_only=keys_only,
            count_only=count_only, sort_order=sort_order, sort_target=sort_target,
            min_mod_revision=min_mod_revision, max_mod_revision=max_mod_revision,
            min_create_revision=min_create_revision, max_create_revision=max_create_revision,
        )))

    def put(
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
        return self._run(calls.put_call(put_args(
            key, value, lease=lease, prev_kv=prev_kv, ignore_value=ignore_value,
            ignore_lease=ignore_lease,
        )))

    def delete(
        self,
        key: KeyLike,
        *,
        range_end: KeyLike | None = None,
        prefix: bool = False,
        from_key: bool = False,
        prev_kv: bool = False,
    ) -> DeleteResult:
        """Delete one key or a range (same range options as `get`). A write."""
        return self._run(calls.delete_call(delete_args(
            key, range_end=range_end, prefix=prefix, from_key=from_key, prev_kv=prev_kv,
        )))

    def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]
    ) -> TxnResult:
        """If every compare holds run `success`, else `failure`, atomically at one revision.
        A write, even when both branches only read."""
        return self._run(calls.txn_call(txn_args(compare, success, failure)))

    def compact(self, revision: int, physical: bool = False) -> CompactResult:
        """Discard history at or below `revision` (the latest version of live keys stays)."""
        return self._run(calls.compact_call(revision, physical))

    def lease_grant(self, ttl: int, id: int = 0) -> LeaseGrantResult:
        """Create a lease of `ttl` seconds; `id=0` lets the cluster choose the id."""
        return self._run(calls.lease_grant_call(ttl, id))

    def lease_revoke(self, id: int) -> LeaseRevokeResult:
        """End a lease now, deleting every key attached to it."""
        return self._run(calls.lease_revoke_call(id))

    def lease_keepalive_once(self, id: int) -> LeaseKeepAliveResult:
        """Refresh a lease once (callers loop themselves, e.g. every ttl/3 seconds)."""
        return self._run(calls.lease_keepalive_call(id))

    def lease_keepalive(self, id: int, *, on_renew: RenewCallback | None = None
                        ) -> LeaseKeepAlive:
        """Keep lease `id` alive from a background thread, renewing every TTL/3, until
        the returned helper is closed (`with c.lease_keepalive(lease_id) as ka: ...`).
        See `cluster.client_lease` for what `ka.alive` and `ka.lost` mean."""
        return LeaseKeepAlive(self.endpoints, self.timeout_s, id, on_renew=on_renew)

    def lease_timetolive(self, id: int, keys: bool = False) -> LeaseTimeToLiveResult:
        """Remaining TTL of a lease (-1 if gone), optionally with its attached keys."""
        return self._run(calls.lease_timetolive_call(id, keys))

    def lease_leases(self) -> LeaseLeasesResult:
        """Ids of every live lease."""
        return self._run(calls.lease_leases_call())

    def status(self, endpoint: str | None = None) -> Status:
        """The status of one member: the given `endpoint` (one attempt, no failover),
        or whichever endpoint answers first (a read: retried until the deadline)."""
        pinned = None if endpoint is None else resolve_endpoints([endpoint])[0]
        return self._run(calls.status_call(), pinned)

    def member_list(self) -> MemberListResult:
        """Every member of the cluster. A read."""
        return self._run(calls.member_list_call())

    def member_add(self, name: str, peer_urls: Sequence[str],
                   client_urls: Sequence[str] = (), *, is_learner: bool = False
                   ) -> MemberListResult:
        """Add a member (as a learner with `is_learner`); `.member` is the new one."""
        return self._run(calls.member_add_call(name, list(peer_urls), list(client_urls),
                                                     is_learner))

    def member_remove(self, member_id: int) -> MemberListResult:
        """Remove a member (the leader too: it steps down once the removal is applied)."""
        return self._run(calls.member_remove_call(member_id))

    def member_promote(self, member_id: int) -> MemberListResult:
        """Make a caught-up learner a voter (refused while it lags the leader)."""
        return self._run(calls.member_promote_call(member_id))

    def member_update(self, member_id: int, peer_urls: Sequence[str]) -> MemberListResult:
        """Change a member's peer URLs."""
        return self._run(calls.member_update_call(member_id, list(peer_urls)))

    def move_leader(self, target: int) -> ResponseHeader:
        """Hand leadership to voter `target` (etcd's MoveLeader); returns once it leads."""
        return self._run(calls.move_leader_call(target))

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
    ) -> Watch:
        """Watch a key or range from `start_revision` (0 = from now): an iterator of
        `WatchResponse`, ordered, each event once, none missing, resumed on another
        endpoint when its member fails (cluster.client_watch). `filters`: "noput",
        "nodelete". The first poll is made here, within the client's deadline.

        Raises:
            UnavailableError / TimeoutError_: no endpoint answered the first poll.
        """
        return Watch(new_watch_state(
            self.endpoints, key, range_end=range_end, prefix=prefix,
            start_revision=start_revision, prev_kv=prev_kv, filters=filters,
            progress_notify=progress_notify, watch_id=watch_id, poll_timeout_s=poll_timeout_s,
            auth_token=self._watch_token(),
        ), self.timeout_s)

    @property
    def auth(self) -> AuthOps:
        """Users, roles, permissions and the auth switch (cluster.client_auth_ops)."""
        return AuthOps(self._run)

    def authenticate(self) -> None:
        """Get a new token now (calls do it on their own when the client has a user)."""
        self.credentials.forget()
        self._login()

    def _watch_token(self) -> str | None:
        """A watch keeps the token it starts with: members accept it on watch polls
        after it expires (as an etcd watch stream keeps its token)."""
        if self.credentials.needs_token():
            self._login()
        return self.credentials.token

    # --- maintenance (cluster.client_maintenance) --------------------------------------

    def alarm_list(self) -> maint.AlarmResponse:
        """Every active alarm (NOSPACE, CORRUPT) with the member that raised it. A read."""
        return self._run(maint.alarm_list_call())

    def alarm_disarm(self, member_id: int = 0, alarm: str = "NONE") -> maint.AlarmResponse:
        """Clear alarms through the log (0 / "NONE": any member / any type); returns the
        alarms cleared. Free space first (compact, defragment) or NOSPACE comes back."""
        return self._run(maint.alarm_disarm_call(member_id, alarm))

    def defragment(self, endpoint: str) -> maint.DefragmentResult:
        """Rewrite one member's state.db without free pages. It applies no write until
        done (reads go on), so defragment members one at a time."""
        return self._run(maint.defragment_call(), resolve_endpoints([endpoint])[0])

    def hash_kv(self, endpoint: str, revision: int = 0) -> maint.HashKVResult:
        """One member's hash of its MVCC history at `revision` (0 = current): members
        that agree hash equal at the same revision and compact revision."""
        return self._run(maint.hash_kv_call(revision), resolve_endpoints([endpoint])[0])

    def health(self, endpoint: str, timeout_ms: int = 0) -> maint.HealthResult:
        """Whether one member has a leader, serves a linearizable read in time and has
        no alarm; `.reason` says why not."""
        return self._run(maint.health_call(timeout_ms), resolve_endpoints([endpoint])[0])

    def snapshot_save(self, path: str | os.PathLike[str], endpoint: str | None = None,
                      fmt: str = "etcdlite") -> maint.SnapshotInfo:
        """Save a consistent copy of one member's state.db to `path`, checked against
        its sha256 (written to `<path>.part` first, renamed when complete).
        `fmt="etcd"` saves it as etcd's bbolt backend file instead, for etcd's tools."""
        pinned = None if endpoint is None else resolve_endpoints([endpoint])[0]
        return maint.save_snapshot(self._run, path, pinned, fmt)

    def close(self) -> None:
        """Close every socket; the client must not be used afterwards."""
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

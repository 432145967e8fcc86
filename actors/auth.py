"""Authentication and permission checks where requests are SERVED (the auth gate).

Every native request, and so every gRPC/HTTP call (they become native requests),
passes `AuthGate.admit` first, in `ClientServer._dispatch`: it takes the optional
`auth_token` field off the request, verifies the token (cluster/auth_token.py),
and applies the op's policy:

- open: status, health, member_list, authenticate, auth_status, as in etcd;
- any authenticated user: KV (range, put, delete_range, txn: permissions
  checked per key by `check_request`), watch_poll (READ on the watched range,
  at every poll), leases (grant/keep-alive/time-to-live/list; a revoke needs
  WRITE on every attached key, checked at apply), user_get / role_get (the
  handler allows one's own user and roles);
- everything else (compaction, alarms, defragment, hash, snapshots, member
  changes, move-leader, auth management): the root role only.

With auth disabled the gate lets everything through and ignores tokens.

RACES, and which ones are accepted:
- Writes are checked here only to fail fast; the authoritative check runs at
  apply, against the auth state of the entry's own Raft index
  (storage/auth_check.py), so a revoke committed before a write is applied is
  honoured by every member.
- Reads are served locally, so they are checked here, against this member's
  applied auth state. A linearizable read is checked AFTER its ReadIndex
  barrier, so it honours every auth change committed before the read began. A
  serializable read, and each watch poll, may run on a member that has not
  applied a just-committed revoke yet: for that apply lag (normally
  milliseconds) the old permissions still allow it. etcd accepts the same for
  serializable reads.
- A watch is checked at every poll, so a revoke ends a running watch within
  one poll (etcd checks only when the watch is created). A watch outlives its
  token, though, as in etcd (a gRPC watch stream keeps the token it was opened
  with): a watch poll accepts an EXPIRED token as long as it is genuine and its
  user's credentials have not changed since it was issued. Lease keep-alive
  streams likewise (STREAM_OPS).

The gate reads the auth revision from state.db on every request (one indexed
row, a few µs) and reloads users and roles only when it moved.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, final

from cluster.auth_perms import UserPerms
from cluster.auth_token import verify_token
from cluster.auth_types import INVALID_AUTH_TOKEN, PERMISSION_DENIED, USER_EMPTY, Authed
from cluster.errors import (
    AuthError,
    BadRequestError,
    InvalidAuthTokenError,
    PermissionDeniedError,
)
from storage.auth import META_AUTH_REVISION, AuthView, load_view
from storage.auth_check import check_kv

TOKEN_FIELD = "auth_token"
"""The request field that carries the token (not `token`: snapshot_chunk/end already
use that name for the snapshot being fetched)."""

OPEN_OPS = frozenset({"status", "health", "member_list", "authenticate", "auth_status"})
"""Served without a token even when auth is enabled (etcd's Status, health, MemberList)."""

USER_OPS = frozenset({
    "range", "put", "delete_range", "txn", "watch_poll",
    "lease_grant", "lease_revoke", "lease_keepalive", "lease_timetolive", "lease_leases",
    "user_get", "role_get",
})
"""Any authenticated user; finer checks follow (per key, at apply, in the handler).
Any op in neither set needs the root role."""

STREAM_OPS = frozenset({"watch_poll", "lease_keepalive"})
"""What etcd serves on long-lived streams, which keep the token they were opened with:
these accept an expired (but genuine, not superseded) token."""

_reader_busy_timeout_ms = 5000


@dataclass(frozen=True, slots=True)
class AuthContext:
    """Who sent the request being served. `user` "" = no token (or auth disabled)."""

    enabled: bool
    user: str = ""
    token_revision: int = 0
    perms: UserPerms | None = None

    def wrap(self, request: Any) -> Authed:
        """The request as proposed to the log, so the applier can check it."""
        return Authed(request, self.user, self.token_revision)


current_auth: ContextVar[AuthContext | None] = ContextVar("etcdlite_auth", default=None)
"""The context of the request this task serves; None in the member's own tasks
(lease expiry, alarms, compaction), whose proposals are not checked."""

current_token: ContextVar[str | None] = ContextVar("etcdlite_auth_token", default=None)
"""The raw token of the request being served: a request forwarded to the leader
(actors/leader_proxy.py) carries it on, and the leader checks it again."""


@final
class AuthGate:
    """Serve-time authentication for one member, over its own state.db connection."""

    def __init__(self, state_path: Path | str, *, clock: Callable[[], float] = time.time,
                 lease_keys: Callable[[int], list[bytes]] | None = None,
                 barrier: Callable[[], Awaitable[None]] | None = None) -> None:
        self._conn = sqlite3.connect(str(state_path), isolation_level=None,
                                     check_same_thread=False)
        self._conn.execute(f"PRAGMA busy_timeout={_reader_busy_timeout_ms}")
        self.clock = clock
        self._lease_keys = lease_keys or (lambda _id: [])
        self._barrier = barrier
        self._view = AuthView(revision=-1)
        self.denied = 0

    def close(self) -> None:
        self._conn.close()

    def view(self) -> AuthView:
        """The applied auth state; reloaded only when the auth revision moved."""
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE name = ?",
                                     (META_AUTH_REVISION,)).fetchone()
        except sqlite3.OperationalError:  # state.db not created/migrated yet
            return AuthView()
        revision = int(row[0]) if row else 0
        if revision != self._view.revision:
            self._conn.execute("BEGIN")
            try:
                self._view = load_view(self._conn)
            finally:
                self._conn.execute("COMMIT")
        return self._view

    async def admit(self, op: str, body: dict[str, Any]) -> AuthContext:
        """Authenticate one request and apply its op's policy; removes the token field.

        A refusal is never based on stale state: before refusing, the gate waits for
        a linearizable read barrier (this member has applied everything committed
        when the request arrived) and decides again. So right after `auth_disable`,
        a role grant or a password change, every member serves accordingly, not
        only the one that proposed it. Acceptances need no barrier: writes are
        checked again at apply, reads after their own barrier.

        Raises:
            AuthError: auth is enabled and the request has no token (etcd's
                "user name is empty").
            InvalidAuthTokenError: the token is forged, expired, or older than a
                change to its user's credentials.
            PermissionDeniedError: the op needs the root role, or (watch_poll)
                READ on its range.
            BadRequestError: the token field is not a string.
        """
        token = body.pop(TOKEN_FIELD, None)
        if token is not None and not isinstance(token, str):
            raise BadRequestError(f"'{TOKEN_FIELD}' must be a string")
        current_token.set(token)
        try:
            return self._admit(op, body, token)
        except (AuthError, InvalidAuthTokenError, PermissionDeniedError):
            if self._barrier is None:
                raise
            await self._barrier()  # raises no_leader/timeout: then that is the answer
            return self._admit(op, body, token)

    def _admit(self, op: str, body: dict[str, Any], token: str | None) -> AuthContext:
        view = self.view()
        if not view.enabled or op in OPEN_OPS:
            ctx = AuthContext(enabled=view.enabled)
            current_auth.set(ctx)
            return ctx
        ctx = self._resolve(view, token, expired_ok=op in STREAM_OPS)
        current_auth.set(ctx)
        if ctx.perms is None:
            raise AuthError(USER_EMPTY)
        if op == "watch_poll":
            key, end = body.get("key"), body.get("range_end", b"")
            # Malformed fields are left to the op's own parser, which refuses them.
            if isinstance(key, bytes) and isinstance(end, bytes) and not ctx.perms.can_read(
                    key, end):
                self._deny()
        elif op not in USER_OPS and not ctx.perms.is_root:
            self._deny()
        return ctx

    def _resolve(self, view: AuthView, token: str | None, *, expired_ok: bool = False
                 ) -> AuthContext:
        if token is None:
            return AuthContext(enabled=True)
        claims = verify_token(view.secret, token, 0.0 if expired_ok else self.clock())
        user = view.users.get(claims.user) if claims is not None else None
        if claims is None or user is None or claims.revision < user.cred_revision:
            raise InvalidAuthTokenError(INVALID_AUTH_TOKEN)
        return AuthContext(enabled=True, user=user.name, token_revision=claims.revision,
                           perms=view.perms(user))

    def _deny(self) -> None:
        self.denied += 1
        raise PermissionDeniedError(PERMISSION_DENIED)

    async def check_request(self, ctx: AuthContext, request: Any, *, fresh: bool) -> None:
        """Check a KV request's keys against the user's CURRENT permissions (looked up
        again, so a read checked after its ReadIndex barrier sees every auth change
        committed before it). `fresh`: the caller just passed a barrier (or serves a
        serializable read, which may be stale by definition); otherwise a refusal is
        confirmed after a barrier first, as in `admit`.

        Raises:
            AuthError: auth is on (it may have been switched on since the request was
                admitted) and the request carries no token ("user name is empty").
            InvalidAuthTokenError: the token does not verify against the current state.
            PermissionDeniedError: not allowed.
        """
        try:
            self._check_request(ctx, request)
        except (AuthError, InvalidAuthTokenError, PermissionDeniedError):
            if fresh or self._barrier is None:
                raise
            await self._barrier()
            self._check_request(ctx, request)

    def _check_request(self, ctx: AuthContext, request: Any) -> None:
        view = self.view()
        if not view.enabled:
            return
        if not ctx.enabled:
            # Admitted while auth was off on this member, and it is on now: a read
            # that waited for its barrier has applied an AuthEnable committed before
            # it, so the request is judged anew, token and all, as etcd would.
            ctx = self._resolve(view, current_token.get())
        if not ctx.user:
            raise AuthError(USER_EMPTY)
        user = view.users.get(ctx.user)
        if user is None:
            self._deny()
        assert user is not None
        try:
            check_kv(view.perms(user), request, self._lease_keys)
        except PermissionDeniedError:
            self.denied += 1
            raise

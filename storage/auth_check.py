"""Permission checks at APPLY time, inside the apply transaction.

WHY here and not (only) where the request was received: a write is served on
one member and applied later on all of them. Between the two, the auth state
can change (a permission revoked, the user deleted, auth enabled). Checking
against the auth state as of the entry's own Raft index makes the outcome the
same on every member and closes that window exactly: a write committed after
a revoke is refused, everywhere. (etcd checks at apply too, in its
authApplierV3; where etcd refuses every entry proposed under an older auth
revision with "revision of auth store is old", etcdlite re-checks the entry
against the current state instead, and refuses only when the user's
credentials changed since their token was issued.)

The server still checks before proposing, to fail fast without a log entry;
that check is advisory, this one is authoritative.
"""

from __future__ import annotations

import sqlite3
from typing import Any, final

from cluster.alarm_types import AlarmRequest
from cluster.auth_perms import UserPerms
from cluster.auth_types import (
    AUTH_OLD_REVISION,
    AUTH_REQUEST_TYPES,
    PERMISSION_DENIED,
    USER_EMPTY,
    USER_NOT_FOUND,
    Authed,
    User,
)
from cluster.errors import AuthError, InvalidAuthTokenError, PermissionDeniedError
from cluster.kv_types import (
    DeleteRangeRequest,
    LeaseGrantRequest,
    PutRequest,
    RangeRequest,
    TxnRequest,
)
from storage.auth import auth_enabled, get_user, perms_of_user

_ADMIN_CLASSES = (*AUTH_REQUEST_TYPES.values(), AlarmRequest)


def check_kv(perms: UserPerms, req: Any, lease_keys: Any) -> None:
    """Raise PermissionDeniedError unless `perms` allow this KV request (etcd's rules:
    put needs WRITE on its key, READ too with prev_kv, and WRITE on every key already
    attached to its lease; delete needs WRITE on its range, READ too with prev_kv;
    a txn needs READ on every compare and everything each op in either branch needs,
    nested txns included; lease revoke needs WRITE on every attached key).

    `lease_keys(id)` lists the keys attached to a lease.
    """
    ok = True
    match req:
        case RangeRequest():
            ok = perms.can_read(req.key, req.range_end)
        case PutRequest():
            ok = perms.can_write(req.key) and (not req.prev_kv or perms.can_read(req.key))
            if ok and req.lease:
                ok = all(perms.can_write(k) for k in lease_keys(req.lease))
        case DeleteRangeRequest():
            ok = perms.can_write(req.key, req.range_end) and (
                not req.prev_kv or perms.can_read(req.key, req.range_end))
        case TxnRequest():
            ok = all(perms.can_read(c.key, c.range_end) for c in req.compare)
            for op in (*req.success, *req.failure):
                if ok:
                    check_kv(perms, op, lease_keys)
        case _:
            if getattr(req, "op", "") == "lease_revoke":
                ok = all(perms.can_write(k) for k in lease_keys(req.id))
            elif not isinstance(req, LeaseGrantRequest):
                ok = perms.is_root  # compaction, alarms, anything else: admin only
    if not ok:
        raise PermissionDeniedError(PERMISSION_DENIED)


@final
class ApplyAuth:
    """The auth side of one apply batch: reads the enabled flag once, caches users'
    permissions, and starts over whenever an auth request of the batch applies."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._enabled = False
        self._users: dict[str, tuple[User, UserPerms] | None] = {}
        self.refresh()

    def refresh(self) -> None:
        self._enabled = auth_enabled(self._conn)
        self._users.clear()

    def _lookup(self, name: str) -> tuple[User, UserPerms] | None:
        if name not in self._users:
            user = get_user(self._conn, name)
            self._users[name] = None if user is None else (user, perms_of_user(self._conn, user))
        return self._users[name]

    def _lease_keys(self, lease_id: int) -> list[bytes]:
        return [bytes(k) for (k,) in self._conn.execute(
            "SELECT key FROM kv_latest WHERE lease = ? AND lease != 0", (lease_id,))]

    def check(self, authed: Authed) -> None:
        """Raise the typed error etcd would apply this entry with, or return.

        Raises:
            AuthError: no user name (USER_EMPTY), or an admin request by a user
                that no longer exists (USER_NOT_FOUND).
            InvalidAuthTokenError: the user's password changed, or the user was
                re-created, after the token was issued.
            PermissionDeniedError: the user's roles do not allow it.
        """
        if not self._enabled:
            return
        if not authed.user:
            raise AuthError(USER_EMPTY)
        req = authed.request
        found = self._lookup(authed.user)
        admin = isinstance(req, _ADMIN_CLASSES)
        if found is None:
            if admin:
                raise AuthError(USER_NOT_FOUND)
            raise PermissionDeniedError(PERMISSION_DENIED)
        user, perms = found
        if authed.token_revision < user.cred_revision:
            raise InvalidAuthTokenError(AUTH_OLD_REVISION)
        if admin:
            if not perms.is_root:
                raise PermissionDeniedError(PERMISSION_DENIED)
            return
        check_kv(perms, req, self._lease_keys)

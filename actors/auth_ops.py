"""The native auth operations (docs/protocol.md "Authentication"): authenticate, users, roles.

Changes go through the Raft log as the requests of cluster/auth_types.py, wrapped
with who asked (`Authed`), and the applier checks that they come from the root
role once auth is enabled (etcd's needAdminPermission). Reads (user_get,
user_list, role_get, role_list, auth_status, authenticate) are served from this
member's applied auth state after a linearizable ReadIndex barrier, so a user
added a moment ago on another member can log in here at once (etcd sends these
through its log for the same reason).

bcrypt runs in a worker thread (cost 10, etcd's default --bcrypt-cost: ~0.1 s
here), so hashing and checking passwords never stall the member's event loop.
Passwords are hashed on the member that receives them, before proposing: the
log, snapshots and every member hold only the hash.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any, final

import bcrypt
import trio

from actors.applier import encode_proposal
from actors.auth import AuthContext, AuthGate, current_auth
from cluster.auth_token import SECRET_BYTES, issue_token, token_ttl_s
from cluster.auth_types import (
    AUTH_FAILED,
    AUTH_NOT_ENABLED,
    PERMISSION_DENIED,
    ROLE_EMPTY,
    ROLE_NOT_FOUND,
    USER_EMPTY,
    USER_NOT_FOUND,
    AuthDisableRequest,
    AuthEnableRequest,
    AuthRequest,
    AuthResult,
    PermType,
    RoleAddRequest,
    RoleDeleteRequest,
    RoleGrantPermissionRequest,
    RoleRevokePermissionRequest,
    UserAddRequest,
    UserChangePasswordRequest,
    UserDeleteRequest,
    UserGrantRoleRequest,
    UserRevokeRoleRequest,
)
from cluster.errors import AuthError, BadRequestError, PermissionDeniedError

bcrypt_cost = 10
"""etcd's default --bcrypt-cost."""

password_bytes_max = 72
"""bcrypt only reads 72 bytes of a password; longer ones are refused, not cut."""

ProposeEntry = Callable[[Callable[[int], bytes]], Awaitable[Any]]


class _Args:
    """Strict arguments of one auth op: known names only, right types."""

    def __init__(self, op: str, body: dict[str, Any], allowed: set[str]) -> None:
        extra = set(body) - allowed - {"op", "v"}
        if extra:
            raise BadRequestError(f"{op}: unknown argument(s) {sorted(extra)}")
        self._op, self._body = op, body

    def str_(self, name: str) -> str:
        value = self._body.get(name, "")
        if not isinstance(value, str):
            raise BadRequestError(f"{self._op}: '{name}' must be a string")
        return value

    def bytes_(self, name: str) -> bytes:
        value = self._body.get(name, b"")
        if not isinstance(value, bytes):
            raise BadRequestError(f"{self._op}: '{name}' must be bytes")
        return value

    def bool_(self, name: str) -> bool:
        value = self._body.get(name, False)
        if not isinstance(value, bool):
            raise BadRequestError(f"{self._op}: '{name}' must be a boolean")
        return value


def _hash(password: str) -> bytes:
    raw = password.encode()
    if len(raw) > password_bytes_max:
        raise BadRequestError(f"password is longer than {password_bytes_max} bytes")
    return bcrypt.hashpw(raw, bcrypt.gensalt(bcrypt_cost))


def _check_password(password: str, hashed: bytes) -> bool:
    raw = password.encode()
    return len(raw) <= password_bytes_max and bcrypt.checkpw(raw, hashed)


@final
class AuthService:
    """Serves the auth ops for one member (registered on its ClientServer)."""

    def __init__(self, *, gate: AuthGate, propose_entry: ProposeEntry,
                 read_barrier: Callable[[], Awaitable[None]],
                 header: Callable[..., dict[str, int]],
                 token_ttl_s: int = token_ttl_s) -> None:
        self._gate = gate
        self._token_ttl_s = token_ttl_s
        self._propose_entry = propose_entry
        self._read_barrier = read_barrier
        self._header = header
        self.authentications = 0

    def register(self, server: Any) -> None:
        for op, handler in self._handlers().items():
            server.add_operation(op, handler)

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]]:
        return {
            "authenticate": self.authenticate, "auth_status": self.auth_status,
            "auth_enable": self.auth_enable, "auth_disable": self.auth_disable,
            "user_add": self.user_add, "user_get": self.user_get, "user_list": self.user_list,
            "user_delete": self.user_delete, "user_change_password": self.user_change_password,
            "user_grant_role": self.user_grant_role, "user_revoke_role": self.user_revoke_role,
            "role_add": self.role_add, "role_get": self.role_get, "role_list": self.role_list,
            "role_delete": self.role_delete,
            "role_grant_permission": self.role_grant_permission,
            "role_revoke_permission": self.role_revoke_permission,
        }

    async def _propose(self, req: AuthRequest) -> dict[str, Any]:
        ctx = current_auth.get() or AuthContext(enabled=False)
        result = await self._propose_entry(lambda rid: encode_proposal(rid, ctx.wrap(req)))
        assert isinstance(result, AuthResult), result
        return {"header": self._header(), "auth_revision": result.auth_revision}

    # --- authentication ----------------------------------------------------------------

    async def authenticate(self, body: dict[str, Any]) -> dict[str, Any]:
        a = _Args("authenticate", body, {"name", "password"})
        name, password = a.str_("name"), a.str_("password")
        await self._read_barrier()
        view = self._gate.view()
        if not view.enabled:
            raise AuthError(AUTH_NOT_ENABLED)
        user = view.users.get(name)
        if user is None or user.no_password or not await trio.to_thread.run_sync(
                _check_password, password, user.password_hash):
            raise AuthError(AUTH_FAILED)
        self.authentications += 1
        token = issue_token(view.secret, name, view.revision, self._gate.clock(),
                            ttl_s=self._token_ttl_s)
        return {"header": self._header(), "token": token}

    async def auth_status(self, body: dict[str, Any]) -> dict[str, Any]:
        _Args("auth_status", body, set())
        await self._read_barrier()
        view = self._gate.view()
        return {"header": self._header(), "enabled": view.enabled,
                "auth_revision": view.revision}

    async def auth_enable(self, body: dict[str, Any]) -> dict[str, Any]:
        _Args("auth_enable", body, set())
        return await self._propose(AuthEnableRequest(secret=os.urandom(SECRET_BYTES)))

    async def auth_disable(self, body: dict[str, Any]) -> dict[str, Any]:
        _Args("auth_disable", body, set())
        return await self._propose(AuthDisableRequest())

    # --- users -------------------------------------------------------------------------

    async def user_add(self, body: dict[str, Any]) -> dict[str, Any]:
        a = _Args("user_add", body, {"name", "password", "no_password"})
        name, no_password = a.str_("name"), a.bool_("no_password")
        if not name:
            raise AuthError(USER_EMPTY)
        hashed = b"" if no_password else await trio.to_thread.run_sync(
            _hash, a.str_("password"))
        return await self._propose(UserAddRequest(name, hashed, no_password))

    async def user_get(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _Args("user_get", body, {"name"}).str_("name")
        await self._read_barrier()
        view = self._gate.view()
        self._admin_or(view.enabled and self._me() == name)
        user = view.users.get(name)
        if user is None:
            raise AuthError(USER_NOT_FOUND)
        return {"header": self._header(), "name": name, "roles": list(user.roles)}

    async def user_list(self, body: dict[str, Any]) -> dict[str, Any]:
        _Args("user_list", body, set())
        await self._read_barrier()
        return {"header": self._header(), "users": sorted(self._gate.view().users)}

    async def user_delete(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _Args("user_delete", body, {"name"}).str_("name")
        return await self._propose(UserDeleteRequest(name))

    async def user_change_password(self, body: dict[str, Any]) -> dict[str, Any]:
        a = _Args("user_change_password", body, {"name", "password"})
        name = a.str_("name")
        if name not in self._gate.view().users:  # fail before paying for bcrypt
            raise AuthError(USER_NOT_FOUND)
        hashed = await trio.to_thread.run_sync(_hash, a.str_("password"))
        return await self._propose(UserChangePasswordRequest(name, hashed))

    async def user_grant_role(self, body: dict[str, Any]) -> dict[str, Any]:
        a = _Args("user_grant_role", body, {"name", "role"})
        return await self._propose(UserGrantRoleRequest(a.str_("name"), a.str_("role")))

    async def user_revoke_role(self, body: dict[str, Any]) -> dict[str, Any]:
        a = _Args("user_revoke_role", body, {"name", "role"})
        return await self._propose(UserRevokeRoleRequest(a.str_("name"), a.str_("role")))

    # --- roles -------------------------------------------------------------------------

    async def role_add(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _Args("role_add", body, {"name"}).str_("name")
        if not name:
            raise AuthError(ROLE_EMPTY)
        return await self._propose(RoleAddRequest(name))

    async def role_get(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _Args("role_get", body, {"name"}).str_("name")
        await self._read_barrier()
        view = self._gate.view()
        me = view.users.get(self._me())
        self._admin_or(view.enabled and me is not None and name in me.roles)
        perms = view.roles.get(name)
        if perms is None:
            raise AuthError(ROLE_NOT_FOUND)
        return {"header": self._header(), "name": name, "perms": [
            {"perm_type": p.perm_type.value, "key": p.key, "range_end": p.range_end}
            for p in perms]}

    async def role_list(self, body: dict[str, Any]) -> dict[str, Any]:
        _Args("role_list", body, set())
        await self._read_barrier()
        return {"header": self._header(), "roles": sorted(self._gate.view().roles)}

    async def role_delete(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _Args("role_delete", body, {"name"}).str_("name")
        return await self._propose(RoleDeleteRequest(name))

    async def role_grant_permission(self, body: dict[str, Any]) -> dict[str, Any]:
        a = _Args("role_grant_permission", body, {"name", "perm_type", "key", "range_end"})
        try:
            perm_type = PermType(a.str_("perm_type").upper())
        except ValueError:
            raise BadRequestError("role_grant_permission: 'perm_type' must be one of "
                                  "READ/WRITE/READWRITE") from None
        return await self._propose(RoleGrantPermissionRequest(
            a.str_("name"), perm_type, a.bytes_("key"), a.bytes_("range_end")))

    async def role_revoke_permission(self, body: dict[str, Any]) -> dict[str, Any]:
        a = _Args("role_revoke_permission", body, {"name", "key", "range_end"})
        return await self._propose(RoleRevokePermissionRequest(
            a.str_("name"), a.bytes_("key"), a.bytes_("range_end")))

    # --- helpers -----------------------------------------------------------------------

    @staticmethod
    def _me() -> str:
        ctx = current_auth.get()
        return ctx.user if ctx is not None else ""

    @staticmethod
    def _admin_or(allowed: bool) -> None:
        """user_get/role_get: the gate let any user in; root, or the subject itself."""
        ctx = current_auth.get()
        if ctx is None or not ctx.enabled or allowed:
            return
        if ctx.perms is None or not ctx.perms.is_root:
            raise PermissionDeniedError(PERMISSION_DENIED)

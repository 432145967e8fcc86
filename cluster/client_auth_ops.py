"""User, role and auth management for the blocking client: `client.auth.user_add(...)`.

Each method is one native auth op (docs/protocol.md "Authentication"); changes
go through the Raft log and need the root role once auth is enabled. Reads
(`user_get`, `role_list`, `status` ...) are linearizable. Errors are typed:
`AuthError` with etcd's text ("etcdserver: user name already exists"),
`PermissionDeniedError`, `InvalidAuthTokenError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, final

from cluster.client_calls import Call
from cluster.client_requests import KeyLike, key_range

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class RolePermission:
    perm_type: str  # READ / WRITE / READWRITE
    key: bytes
    range_end: bytes


@dataclass(frozen=True, slots=True)
class AuthStatus:
    enabled: bool
    auth_revision: int


def _revision(body: dict[str, Any], _endpoint: str) -> int:
    return int(body.get("auth_revision", 0))


@final
class AuthOps:
    """The auth ops of one client (`Client.auth`); `run` is the client's call runner."""

    def __init__(self, run: Callable[[Call[Any]], Any]) -> None:
        self._run = run

    def _change(self, op: str, **args: Any) -> int:
        """A change through the log; returns the auth revision after it."""
        return int(self._run(Call(op, args, _revision, read=False)))

    def _read(self, op: str, parse: Callable[[dict[str, Any]], R], **args: Any) -> R:
        result: R = self._run(Call(op, args, lambda body, _e: parse(body), read=True))
        return result

    def status(self) -> AuthStatus:
        return self._read("auth_status", lambda b: AuthStatus(bool(b["enabled"]),
                                                              int(b["auth_revision"])))

    def enable(self) -> int:
        """Refused unless user "root" exists with role "root" (etcd's rule)."""
        return self._change("auth_enable")

    def disable(self) -> int:
        return self._change("auth_disable")

    def user_add(self, name: str, password: str = "", *, no_password: bool = False) -> int:
        return self._change("user_add", name=name, password=password, no_password=no_password)

    def user_get(self, name: str) -> list[str]:
        """The user's roles."""
        return self._read("user_get", lambda b: list(b["roles"]), name=name)

    def user_list(self) -> list[str]:
        return self._read("user_list", lambda b: list(b["users"]))

    def user_delete(self, name: str) -> int:
        return self._change("user_delete", name=name)

    def user_change_password(self, name: str, password: str) -> int:
        return self._change("user_change_password", name=name, password=password)

    def user_grant_role(self, name: str, role: str) -> int:
        return self._change("user_grant_role", name=name, role=role)

    def user_revoke_role(self, name: str, role: str) -> int:
        return self._change("user_revoke_role", name=name, role=role)

    def role_add(self, name: str) -> int:
        return self._change("role_add", name=name)

    def role_get(self, name: str) -> list[RolePermission]:
        return self._read("role_get", lambda b: [
            RolePermission(p["perm_type"], p["key"], p["range_end"]) for p in b["perms"]],
            name=name)

    def role_list(self) -> list[str]:
        return self._read("role_list", lambda b: list(b["roles"]))

    def role_delete(self, name: str) -> int:
        return self._change("role_delete", name=name)

    def role_grant_permission(self, name: str, perm_type: str, key: KeyLike,
                              range_end: KeyLike | None = None, *, prefix: bool = False,
                              from_key: bool = False) -> int:
        """Allow READ, WRITE or READWRITE on a key, [key, range_end), a prefix or
        every key from `key` on."""
        k, end = key_range(key, range_end, prefix, from_key)
        return self._change("role_grant_permission", name=name, perm_type=perm_type.upper(),
                            key=k, range_end=end)

    def role_revoke_permission(self, name: str, key: KeyLike,
                               range_end: KeyLike | None = None, *, prefix: bool = False,
                               from_key: bool = False) -> int:
        k, end = key_range(key, range_end, prefix, from_key)
        return self._change("role_revoke_permission", name=name, key=k, range_end=end)

"""Authentication and RBAC: the requests that change auth state, and the auth context of a request.

etcd v3's model: users (name, bcrypt password hash, roles), roles (name, key
permissions), one cluster-wide "enabled" flag and an auth revision that every
change bumps. All of it is applied state in state.db (storage/auth.py): it
changes only through these requests in the Raft log, so every member agrees on
it at every Raft index and it travels in snapshots.

Passwords never enter the log: the member that receives `user_add` or
`user_change_password` hashes the password with bcrypt (random salt) BEFORE
proposing, as etcd does, so every member applies the same hash. Likewise
`auth_enable` carries the token-signing secret the proposer drew; the first
enable stores it, later ones keep the stored one (cluster/auth_token.py).

`Authed` wraps a client request on its way through the log with who sent it
(user name, "" without a token) and the auth revision the user's token was
issued at, so the applier can check permissions against the auth state of the
entry's own Raft index (storage/auth_check.py). Internal proposals (lease
expiry, checkpoints, alarms raised by a member, auto-compaction) are not
wrapped: members act for the cluster, not for a user.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeAlias

ROOT_USER = "root"
ROOT_ROLE = "root"

# etcd's error texts (etcdserver/api/v3rpc/rpctypes/error.go): clients match on them.
ROOT_USER_NOT_EXIST = "etcdserver: root user does not exist"
ROOT_ROLE_NOT_EXIST = "etcdserver: root user does not have root role"
USER_ALREADY_EXIST = "etcdserver: user name already exists"
USER_EMPTY = "etcdserver: user name is empty"
USER_NOT_FOUND = "etcdserver: user name not found"
ROLE_ALREADY_EXIST = "etcdserver: role name already exists"
ROLE_NOT_FOUND = "etcdserver: role name not found"
ROLE_EMPTY = "etcdserver: role name is empty"
AUTH_FAILED = "etcdserver: authentication failed, invalid user ID or password"
PERMISSION_DENIED = "etcdserver: permission denied"
ROLE_NOT_GRANTED = "etcdserver: role is not granted to the user"
PERMISSION_NOT_GRANTED = "etcdserver: permission is not granted to the role"
AUTH_NOT_ENABLED = "etcdserver: authentication is not enabled"
INVALID_AUTH_TOKEN = "etcdserver: invalid auth token"
INVALID_AUTH_MGMT = "etcdserver: invalid auth management"
AUTH_OLD_REVISION = "etcdserver: revision of auth store is old"


class PermType(enum.StrEnum):
    """etcd's authpb.Permission.Type, by name (READ=0, WRITE=1, READWRITE=2 in protobuf)."""

    READ = "READ"
    WRITE = "WRITE"
    READWRITE = "READWRITE"


@dataclass(frozen=True, slots=True)
class Permission:
    """A key permission of a role. `range_end` b"" = the key alone, b"\\0" = every key
    from `key` on, else [key, range_end): the same convention as a range request."""

    perm_type: PermType
    key: bytes
    range_end: bytes = b""


@dataclass(frozen=True, slots=True)
class User:
    """A user as stored. `password_hash` is bcrypt's output (b"" for no_password users);
    `cred_revision` is the auth revision of the last change to who the user is (added,
    password changed): tokens issued before it are no longer valid."""

    name: str
    password_hash: bytes = b""
    no_password: bool = False
    roles: tuple[str, ...] = ()
    cred_revision: int = 0


# --- log requests ---------------------------------------------------------------------
# Every one of them is admin-only once auth is enabled (etcd's needAdminPermission),
# checked at apply against the Authed wrapper's user.


@dataclass(frozen=True, slots=True)
class AuthEnableRequest:
    op: ClassVar[str] = "auth_enable"
    secret: bytes = b""


@dataclass(frozen=True, slots=True)
class AuthDisableRequest:
    op: ClassVar[str] = "auth_disable"


@dataclass(frozen=True, slots=True)
class UserAddRequest:
    op: ClassVar[str] = "user_add"
    name: str
    password_hash: bytes = b""
    no_password: bool = False


@dataclass(frozen=True, slots=True)
class UserDeleteRequest:
    op: ClassVar[str] = "user_delete"
    name: str


@dataclass(frozen=True, slots=True)
class UserChangePasswordRequest:
    op: ClassVar[str] = "user_change_password"
    name: str
    password_hash: bytes


@dataclass(frozen=True, slots=True)
class UserGrantRoleRequest:
    op: ClassVar[str] = "user_grant_role"
    name: str
    role: str


@dataclass(frozen=True, slots=True)
class UserRevokeRoleRequest:
    op: ClassVar[str] = "user_revoke_role"
    name: str
    role: str


@dataclass(frozen=True, slots=True)
class RoleAddRequest:
    op: ClassVar[str] = "role_add"
    name: str


@dataclass(frozen=True, slots=True)
class RoleDeleteRequest:
    op: ClassVar[str] = "role_delete"
    name: str


@dataclass(frozen=True, slots=True)
class RoleGrantPermissionRequest:
    op: ClassVar[str] = "role_grant_permission"
    name: str
    perm_type: PermType
    key: bytes
    range_end: bytes = b""


@dataclass(frozen=True, slots=True)
class RoleRevokePermissionRequest:
    op: ClassVar[str] = "role_revoke_permission"
    name: str
    key: bytes
    range_end: bytes = b""


AuthRequest: TypeAlias = (
    AuthEnableRequest | AuthDisableRequest | UserAddRequest | UserDeleteRequest
    | UserChangePasswordRequest | UserGrantRoleRequest | UserRevokeRoleRequest
    | RoleAddRequest | RoleDeleteRequest | RoleGrantPermissionRequest
    | RoleRevokePermissionRequest
)

AUTH_REQUEST_TYPES: dict[str, type[AuthRequest]] = {
    cls.op: cls for cls in (
        AuthEnableRequest, AuthDisableRequest, UserAddRequest, UserDeleteRequest,
        UserChangePasswordRequest, UserGrantRoleRequest, UserRevokeRoleRequest,
        RoleAddRequest, RoleDeleteRequest, RoleGrantPermissionRequest,
        RoleRevokePermissionRequest)
}
"""Log op name -> request class (the applier decodes auth entries with it)."""


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Result of an applied auth request: the auth revision after it (the MVCC revision
    never changes for auth requests, as in etcd)."""

    auth_revision: int = 0
    revision: int = 0


@dataclass(frozen=True, slots=True)
class Authed:
    """A client request in the log, with who proposed it (see the module docstring).

    `user` "" = sent without a token; `token_revision` = the auth revision the
    token was issued at (0 without a token).
    """

    request: Any
    user: str
    token_revision: int = 0

    @property
    def op(self) -> str:
        return str(self.request.op)


def auth_request_to_wire(req: AuthRequest) -> dict[str, Any]:
    """The canonical map of an auth log request (every field present)."""
    out: dict[str, Any] = {"op": req.op}
    for f in fields(req):
        name = f.name
        value = getattr(req, name)
        out[name] = value.value if isinstance(value, enum.Enum) else value
    return out


def auth_request_from_wire(body: dict[str, Any]) -> AuthRequest:
    """Rebuild an auth log request; ValueError on anything malformed.

    Strict like cluster.kv_parse: a committed entry must never reach the applier
    with a wrongly typed field.
    """
    cls = AUTH_REQUEST_TYPES.get(body.get("op"))  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"not an auth request: {body.get('op')!r}")
    names = [f.name for f in fields(cls)]
    extra = set(body) - set(names) - {"op"}
    if extra:
        raise ValueError(f"{cls.op}: unknown field(s) {sorted(extra)}")
    kwargs: dict[str, Any] = {}
    for name in names:
        if name not in body:
            continue
        value = body[name]
        if name == "perm_type":
            value = PermType(value)
        elif name in ("name", "role"):
            if not isinstance(value, str):
                raise ValueError(f"{cls.op}: '{name}' must be a string")
        elif name == "no_password":
            if not isinstance(value, bool):
                raise ValueError(f"{cls.op}: '{name}' must be a boolean")
        elif not isinstance(value, bytes):
            raise ValueError(f"{cls.op}: '{name}' must be bytes")
        kwargs[name] = value
    return cls(**kwargs)

"""The auth tables of state.db: users, roles, permissions, the enabled flag and auth revision.

Applied state like alarms (storage/alarms.py): changed only inside the apply
transaction by `apply_auth`, in log order, so every member holds the same auth
state at every Raft index, and snapshots carry it. `meta` holds two values:
`auth_enabled` (0/1) and `auth_revision`, which every successful change bumps
(etcd's auth revision; AuthEnable bumps it too here, so that a reader can key
its cache on the revision alone). The MVCC revision never moves for auth.

Layout:
- `auth_users`: name, bcrypt hash (b"" for a no_password user), no_password,
  cred_revision (the auth revision of the user's creation or last password
  change: tokens issued before it are refused, cluster/auth_token.py).
- `auth_user_roles`: (user, role) pairs. Granting the role "root" needs no
  role row, as in etcd.
- `auth_roles`, `auth_permissions` (role, key, range_end) -> perm_type.
- `auth_secret`: the one token-signing secret, stored by the first AuthEnable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cluster.auth_perms import UserPerms, user_perms
from cluster.auth_types import (
    INVALID_AUTH_MGMT,
    PERMISSION_NOT_GRANTED,
    ROLE_ALREADY_EXIST,
    ROLE_EMPTY,
    ROLE_NOT_FOUND,
    ROLE_NOT_GRANTED,
    ROOT_ROLE,
    ROOT_ROLE_NOT_EXIST,
    ROOT_USER,
    ROOT_USER_NOT_EXIST,
    USER_ALREADY_EXIST,
    USER_EMPTY,
    USER_NOT_FOUND,
    AuthDisableRequest,
    AuthEnableRequest,
    AuthRequest,
    AuthResult,
    Permission,
    PermType,
    RoleAddRequest,
    RoleDeleteRequest,
    RoleGrantPermissionRequest,
    RoleRevokePermissionRequest,
    User,
    UserAddRequest,
    UserChangePasswordRequest,
    UserDeleteRequest,
    UserGrantRoleRequest,
    UserRevokeRoleRequest,
)
from cluster.errors import AuthError

META_AUTH_ENABLED = "auth_enabled"
META_AUTH_REVISION = "auth_revision"

AUTH_TABLES_SQL = (
    "CREATE TABLE IF NOT EXISTS auth_users (name TEXT PRIMARY KEY NOT NULL,"
    " password_hash BLOB NOT NULL, no_password INTEGER NOT NULL,"
    " cred_revision INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS auth_user_roles (user TEXT NOT NULL, role TEXT NOT NULL,"
    " PRIMARY KEY (user, role)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS auth_roles (name TEXT PRIMARY KEY NOT NULL)",
    "CREATE TABLE IF NOT EXISTS auth_permissions (role TEXT NOT NULL, key BLOB NOT NULL,"
    " range_end BLOB NOT NULL, perm_type TEXT NOT NULL, PRIMARY KEY (role, key, range_end))"
    " WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS auth_secret (id INTEGER PRIMARY KEY CHECK (id = 1),"
    " secret BLOB NOT NULL)",
    # etcd starts its auth store at revision 1.
    f"INSERT OR IGNORE INTO meta (name, value) VALUES ('{META_AUTH_ENABLED}', 0)",
    f"INSERT OR IGNORE INTO meta (name, value) VALUES ('{META_AUTH_REVISION}', 1)",
)


def _meta(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
    return 0 if row is None else int(row[0])


def auth_revision(conn: sqlite3.Connection) -> int:
    return _meta(conn, META_AUTH_REVISION)


def auth_enabled(conn: sqlite3.Connection) -> bool:
    return bool(_meta(conn, META_AUTH_ENABLED))


def get_user(conn: sqlite3.Connection, name: str) -> User | None:
    row = conn.execute("SELECT password_hash, no_password, cred_revision FROM auth_users"
                       " WHERE name = ?", (name,)).fetchone()
    if row is None:
        return None
    roles = tuple(r for (r,) in conn.execute(
        "SELECT role FROM auth_user_roles WHERE user = ? ORDER BY role", (name,)))
    return User(name=name, password_hash=bytes(row[0]), no_password=bool(row[1]),
                roles=roles, cred_revision=int(row[2]))


def role_exists(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM auth_roles WHERE name = ?", (name,)).fetchone() is not None


def role_permissions(conn: sqlite3.Connection, name: str) -> tuple[Permission, ...]:
    """A role's permissions sorted by (key, range_end), as etcd lists them."""
    return tuple(Permission(PermType(t), bytes(k), bytes(e)) for k, e, t in conn.execute(
        "SELECT key, range_end, perm_type FROM auth_permissions WHERE role = ?"
        " ORDER BY key, range_end", (name,)))


def perms_of_user(conn: sqlite3.Connection, user: User) -> UserPerms:
    return user_perms(user.roles, {r: role_permissions(conn, r) for r in user.roles})


# --- apply -----------------------------------------------------------------------------


def apply_auth(conn: sqlite3.Connection, req: AuthRequest) -> AuthResult:
    """Apply one auth request inside the open apply transaction; bumps the auth revision.

    Raises:
        AuthError: refused with etcd's text; the caller rolls back to its savepoint.
    """
    revision = auth_revision(conn)
    changed = _APPLY[type(req)](conn, req, revision + 1)
    if changed:
        revision += 1
        conn.execute("UPDATE meta SET value = ? WHERE name = ?", (revision, META_AUTH_REVISION))
    return AuthResult(auth_revision=revision)


def _enable(conn: sqlite3.Connection, req: AuthEnableRequest, _rev: int) -> bool:
    if auth_enabled(conn):
        return False  # etcd: already enabled is a no-op, not an error
    root = get_user(conn, ROOT_USER)
    if root is None:
        raise AuthError(ROOT_USER_NOT_EXIST)
    if ROOT_ROLE not in root.roles:
        raise AuthError(ROOT_ROLE_NOT_EXIST)
    if req.secret:
        conn.execute("INSERT OR IGNORE INTO auth_secret (id, secret) VALUES (1, ?)",
                     (req.secret,))
    conn.execute("UPDATE meta SET value = 1 WHERE name = ?", (META_AUTH_ENABLED,))
    return True


def _disable(conn: sqlite3.Connection, _req: AuthDisableRequest, _rev: int) -> bool:
    if not auth_enabled(conn):
        return False
    conn.execute("UPDATE meta SET value = 0 WHERE name = ?", (META_AUTH_ENABLED,))
    return True


def _require_user(conn: sqlite3.Connection, name: str) -> User:
    user = get_user(conn, name)
    if user is None:
        raise AuthError(USER_NOT_FOUND)
    return user


def _user_add(conn: sqlite3.Connection, req: UserAddRequest, rev: int) -> bool:
    if not req.name:
        raise AuthError(USER_EMPTY)
    if get_user(conn, req.name) is not None:
        raise AuthError(USER_ALREADY_EXIST)
    conn.execute("INSERT INTO auth_users (name, password_hash, no_password, cred_revision)"
                 " VALUES (?, ?, ?, ?)",
                 (req.name, b"" if req.no_password else req.password_hash,
                  int(req.no_password), rev))
    return True


def _user_delete(conn: sqlite3.Connection, req: UserDeleteRequest, _rev: int) -> bool:
    if auth_enabled(conn) and req.name == ROOT_USER:
        raise AuthError(INVALID_AUTH_MGMT)
    _require_user(conn, req.name)
    conn.execute("DELETE FROM auth_users WHERE name = ?", (req.name,))
    conn.execute("DELETE FROM auth_user_roles WHERE user = ?", (req.name,))
    return True


def _user_change_password(conn: sqlite3.Connection, req: UserChangePasswordRequest,
                          rev: int) -> bool:
    _require_user(conn, req.name)
    conn.execute("UPDATE auth_users SET password_hash = ?, no_password = 0, cred_revision = ?"
                 " WHERE name = ?", (req.password_hash, rev, req.name))
    return True


def _user_grant_role(conn: sqlite3.Connection, req: UserGrantRoleRequest, _rev: int) -> bool:
    _require_user(conn, req.name)
    if req.role != ROOT_ROLE and not role_exists(conn, req.role):
        raise AuthError(ROLE_NOT_FOUND)
    added = conn.execute("INSERT OR IGNORE INTO auth_user_roles (user, role) VALUES (?, ?)",
                         (req.name, req.role)).rowcount
    return bool(added)  # granting a role twice is ignored, as in etcd


def _user_revoke_role(conn: sqlite3.Connection, req: UserRevokeRoleRequest, _rev: int) -> bool:
    if auth_enabled(conn) and req.name == ROOT_USER and req.role == ROOT_ROLE:
        raise AuthError(INVALID_AUTH_MGMT)
    _require_user(conn, req.name)
    gone = conn.execute("DELETE FROM auth_user_roles WHERE user = ? AND role = ?",
                        (req.name, req.role)).rowcount
    if not gone:
        raise AuthError(ROLE_NOT_GRANTED)
    return True


def _role_add(conn: sqlite3.Connection, req: RoleAddRequest, _rev: int) -> bool:
    if not req.name:
        raise AuthError(ROLE_EMPTY)
    if role_exists(conn, req.name):
        raise AuthError(ROLE_ALREADY_EXIST)
    conn.execute("INSERT INTO auth_roles (name) VALUES (?)", (req.name,))
    return True


def _role_delete(conn: sqlite3.Connection, req: RoleDeleteRequest, _rev: int) -> bool:
    if auth_enabled(conn) and req.name == ROOT_ROLE:
        raise AuthError(INVALID_AUTH_MGMT)
    if not role_exists(conn, req.name):
        raise AuthError(ROLE_NOT_FOUND)
    conn.execute("DELETE FROM auth_roles WHERE name = ?", (req.name,))
    conn.execute("DELETE FROM auth_permissions WHERE role = ?", (req.name,))
    conn.execute("DELETE FROM auth_user_roles WHERE role = ?", (req.name,))
    return True


def _role_grant(conn: sqlite3.Connection, req: RoleGrantPermissionRequest, _rev: int) -> bool:
    if not role_exists(conn, req.name):
        raise AuthError(ROLE_NOT_FOUND)
    # Same (key, range_end) again updates the type, as etcd's RoleGrantPermission does.
    conn.execute("INSERT INTO auth_permissions (role, key, range_end, perm_type)"
                 " VALUES (?, ?, ?, ?) ON CONFLICT (role, key, range_end)"
                 " DO UPDATE SET perm_type = excluded.perm_type",
                 (req.name, req.key, req.range_end, req.perm_type.value))
    return True


def _role_revoke(conn: sqlite3.Connection, req: RoleRevokePermissionRequest, _rev: int) -> bool:
    if not role_exists(conn, req.name):
        raise AuthError(ROLE_NOT_FOUND)
    gone = conn.execute("DELETE FROM auth_permissions WHERE role = ? AND key = ?"
                        " AND range_end = ?", (req.name, req.key, req.range_end)).rowcount
    if not gone:
        raise AuthError(PERMISSION_NOT_GRANTED)
    return True


_APPLY: dict[type, Callable[[sqlite3.Connection, Any, int], bool]] = {
    AuthEnableRequest: _enable, AuthDisableRequest: _disable, UserAddRequest: _user_add,
    UserDeleteRequest: _user_delete, UserChangePasswordRequest: _user_change_password,
    UserGrantRoleRequest: _user_grant_role, UserRevokeRoleRequest: _user_revoke_role,
    RoleAddRequest: _role_add, RoleDeleteRequest: _role_delete,
    RoleGrantPermissionRequest: _role_grant, RoleRevokePermissionRequest: _role_revoke,
}


# --- a whole view, for the member that serves requests ---------------------------------


@dataclass(slots=True)
class AuthView:
    """All auth state at one auth revision, read in one transaction (small: users and
    roles number in the tens, so the server keeps it in memory and rereads it only when
    the revision moves). `perms` memoizes merged permissions per user."""

    enabled: bool = False
    revision: int = 0
    secret: bytes = b""
    users: dict[str, User] = field(default_factory=dict)
    roles: dict[str, tuple[Permission, ...]] = field(default_factory=dict)
    _perms: dict[str, UserPerms] = field(default_factory=dict)

    def perms(self, user: User) -> UserPerms:
        got = self._perms.get(user.name)
        if got is None:
            got = self._perms[user.name] = user_perms(user.roles, self.roles)
        return got


def load_view(conn: sqlite3.Connection) -> AuthView:
    """Read the whole auth state (call inside a read transaction for one snapshot)."""
    row = conn.execute("SELECT secret FROM auth_secret WHERE id = 1").fetchone()
    view = AuthView(enabled=auth_enabled(conn), revision=auth_revision(conn),
                    secret=bytes(row[0]) if row else b"")
    roles_of: dict[str, list[str]] = {}
    for user, role in conn.execute("SELECT user, role FROM auth_user_roles ORDER BY user, role"):
        roles_of.setdefault(user, []).append(role)
    for name, pw, no_pw, cred in conn.execute(
            "SELECT name, password_hash, no_password, cred_revision FROM auth_users"):
        view.users[name] = User(name, bytes(pw), bool(no_pw), tuple(roles_of.get(name, ())),
                                int(cred))
    for (name,) in conn.execute("SELECT name FROM auth_roles"):
        view.roles[name] = role_permissions(conn, name)
    return view

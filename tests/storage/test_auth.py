"""Auth as applied state: users/roles/permissions in state.db, checks at apply time."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.auth_types import (
    AUTH_OLD_REVISION,
    INVALID_AUTH_MGMT,
    PERMISSION_NOT_GRANTED,
    ROLE_NOT_FOUND,
    ROLE_NOT_GRANTED,
    ROOT_ROLE_NOT_EXIST,
    ROOT_USER_NOT_EXIST,
    USER_ALREADY_EXIST,
    USER_EMPTY,
    USER_NOT_FOUND,
    AuthDisableRequest,
    Authed,
    AuthEnableRequest,
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
from cluster.errors import AuthError, InvalidAuthTokenError, PermissionDeniedError
from cluster.kv import (
    CompactionRequest,
    Compare,
    CompareTarget,
    DeleteRangeRequest,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    PutRequest,
    RangeRequest,
    TxnRequest,
)
from storage.auth import auth_enabled, auth_revision, get_user, load_view
from storage.mvcc import MvccStore
from tests.storage.mvcc_helpers import Feeder


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MvccStore]:
    s = MvccStore(tmp_path / "state.db")
    yield s
    s.close()


@pytest.fixture
def feed(store: MvccStore) -> Feeder:
    return Feeder(store)


def conn_of(store: MvccStore) -> sqlite3.Connection:
    return sqlite3.connect(str(store.path))


def rev(store: MvccStore) -> int:
    with conn_of(store) as c:
        return auth_revision(c)


def setup_root(feed: Feeder) -> None:
    feed.one(UserAddRequest("root", b"hash"))
    feed.one(UserGrantRoleRequest("root", "root"))


def enable(feed: Feeder) -> None:
    setup_root(feed)
    feed.one(AuthEnableRequest(secret=b"s" * 32))


def as_(user: str, req: Any, token_revision: int = 10**6) -> Authed:
    return Authed(req, user, token_revision)


def test_enable_is_refused_without_root_user_then_without_root_role(feed: Feeder) -> None:
    assert feed.fail(AuthEnableRequest()).message == ROOT_USER_NOT_EXIST
    feed.one(UserAddRequest("root", b"hash"))
    assert feed.fail(AuthEnableRequest()).message == ROOT_ROLE_NOT_EXIST
    feed.one(UserGrantRoleRequest("root", "root"))  # the root role needs no role row
    feed.one(AuthEnableRequest(secret=b"x" * 32))
    with conn_of(feed.store) as c:
        assert auth_enabled(c)
        assert load_view(c).secret == b"x" * 32


def test_every_change_bumps_the_auth_revision_and_refusals_do_not(feed: Feeder) -> None:
    store = feed.store
    assert rev(store) == 1
    mvcc_revision = store.revision
    result = feed.one(UserAddRequest("alice", b"h"))
    assert isinstance(result, AuthResult)
    assert result.auth_revision == rev(store) == 2
    assert feed.fail(UserAddRequest("alice", b"h")).message == USER_ALREADY_EXIST
    assert feed.fail(UserAddRequest("", b"h")).message == USER_EMPTY
    assert rev(store) == 2
    feed.one(RoleAddRequest("app"))
    feed.one(UserGrantRoleRequest("alice", "app"))
    feed.one(UserGrantRoleRequest("alice", "app"))  # twice: ignored, no bump (etcd)
    assert rev(store) == 4
    assert feed.fail(UserGrantRoleRequest("bob", "app")).message == USER_NOT_FOUND
    assert feed.fail(UserGrantRoleRequest("alice", "nope")).message == ROLE_NOT_FOUND
    assert feed.fail(UserRevokeRoleRequest("alice", "other")).message == ROLE_NOT_GRANTED
    feed.one(RoleGrantPermissionRequest("app", PermType.READ, b"app/", b"app0"))
    assert feed.fail(RoleRevokePermissionRequest("app", b"x")).message == PERMISSION_NOT_GRANTED
    assert store.revision == mvcc_revision, "auth changes never move the MVCC revision"


def test_role_delete_takes_the_role_from_every_user(feed: Feeder) -> None:
    feed.one(UserAddRequest("alice", b"h"))
    feed.one(RoleAddRequest("app"))
    feed.one(UserGrantRoleRequest("alice", "app"))
    feed.one(RoleDeleteRequest("app"))
    with conn_of(feed.store) as c:
        user = get_user(c, "alice")
    assert user is not None
    assert user.roles == ()


def test_root_is_protected_while_auth_is_enabled(feed: Feeder) -> None:
    enable(feed)
    root = lambda r: as_("root", r)  # noqa: E731
    assert feed.fail(root(UserDeleteRequest("root"))).message == INVALID_AUTH_MGMT
    assert feed.fail(root(UserRevokeRoleRequest("root", "root"))).message == INVALID_AUTH_MGMT
    feed.one(root(AuthDisableRequest()))
    feed.one(UserRevokeRoleRequest("root", "root"))  # allowed once disabled


def test_checks_are_skipped_while_auth_is_disabled(feed: Feeder) -> None:
    feed.one(as_("", PutRequest(key=b"k", value=b"v")))
    feed.one(as_("nobody", CompactionRequest(revision=2)))


def test_no_user_fails_user_empty_once_enabled(feed: Feeder) -> None:
    enable(feed)
    assert feed.fail(as_("", PutRequest(key=b"k"))).message == USER_EMPTY
    # Internal proposals (not Authed) are the cluster's own: never checked.
    feed.one(PutRequest(key=b"k"))


@pytest.fixture
def app_user(feed: Feeder) -> Feeder:
    """Auth enabled; alice may read app/ (prefix) and read-write data/ from-key."""
    feed.one(UserAddRequest("alice", b"h"))
    feed.one(RoleAddRequest("app"))
    feed.one(RoleGrantPermissionRequest("app", PermType.READ, b"app/", b"app0"))
    feed.one(RoleGrantPermissionRequest("app", PermType.READWRITE, b"data/", b"\0"))
    feed.one(UserGrantRoleRequest("alice", "app"))
    enable(feed)
    return feed


@pytest.mark.parametrize(("req", "allowed"), [
    (RangeRequest(key=b"app/x"), True),
    (RangeRequest(key=b"app/", range_end=b"app0"), True),
    (RangeRequest(key=b"app/", range_end=b"app1"), False),
    (RangeRequest(key=b"bother"), False),  # before data/: not covered
    (RangeRequest(key=b"data/", range_end=b"\0"), True),
    (RangeRequest(key=b"\0", range_end=b"\0"), False),
    (PutRequest(key=b"app/x"), False),
    (PutRequest(key=b"data/x"), True),
    (PutRequest(key=b"zzz"), True),  # from-key: every key after data/
    (DeleteRangeRequest(key=b"data/", range_end=b"data0", prev_kv=True), True),
    (DeleteRangeRequest(key=b"app/x"), False),
    (TxnRequest(compare=(Compare(b"app/x", CompareTarget.VERSION),),
                success=(PutRequest(key=b"data/a"),)), True),
    (TxnRequest(compare=(Compare(b"bsecret", CompareTarget.VERSION),),
                success=(PutRequest(key=b"data/a"),)), False),
    (TxnRequest(failure=(TxnRequest(success=(PutRequest(key=b"app/y"),)),)), False),
    (LeaseGrantRequest(ttl=10, id=7), True),
    (CompactionRequest(revision=1), False),
])
def test_permissions_are_checked_at_apply(app_user: Feeder, req: Any, allowed: bool) -> None:
    (result,) = app_user.batch(as_("alice", req))
    if allowed:
        assert not isinstance(result, PermissionDeniedError), result
    else:
        assert isinstance(result, PermissionDeniedError), result


def test_lease_revoke_needs_write_on_every_attached_key(app_user: Feeder) -> None:
    feed = app_user
    feed.one(LeaseGrantRequest(ttl=60, id=5))
    feed.one(PutRequest(key=b"app/locked", lease=5))  # internal: unchecked
    assert isinstance(feed.fail(as_("alice", LeaseRevokeRequest(id=5))), PermissionDeniedError)
    # Nor may alice attach her keys to that lease (she could not revoke it).
    assert isinstance(feed.fail(as_("alice", PutRequest(key=b"data/x", lease=5))),
                      PermissionDeniedError)
    feed.one(as_("root", LeaseRevokeRequest(id=5)))


def test_a_revoke_earlier_in_the_same_batch_is_honoured(app_user: Feeder) -> None:
    results = app_user.batch(
        as_("alice", PutRequest(key=b"data/1")),
        as_("root", RoleRevokePermissionRequest("app", b"data/", b"\0")),
        as_("alice", PutRequest(key=b"data/2")),
    )
    assert not isinstance(results[0], Exception)
    assert isinstance(results[2], PermissionDeniedError)


def test_admin_requests_need_the_root_role(app_user: Feeder) -> None:
    feed = app_user
    assert isinstance(feed.fail(as_("alice", RoleAddRequest("x"))), PermissionDeniedError)
    assert feed.fail(as_("ghost", RoleAddRequest("x"))).message == USER_NOT_FOUND
    feed.one(as_("root", RoleAddRequest("x")))


def test_a_password_change_invalidates_older_tokens_at_apply(app_user: Feeder) -> None:
    feed = app_user
    issued_at = rev(feed.store)
    feed.one(as_("alice", PutRequest(key=b"data/1"), issued_at))
    feed.one(as_("root", UserChangePasswordRequest("alice", b"new")))
    err = feed.fail(as_("alice", PutRequest(key=b"data/2"), issued_at))
    assert isinstance(err, InvalidAuthTokenError)
    assert err.message == AUTH_OLD_REVISION
    feed.one(as_("alice", PutRequest(key=b"data/2"), rev(feed.store)))


def test_auth_state_survives_a_snapshot_and_reopen(app_user: Feeder, tmp_path: Path) -> None:
    app_user.store.backup_to(tmp_path / "snap.db")
    restored = MvccStore.restore(tmp_path / "snap.db", tmp_path / "other.db")
    try:
        with conn_of(restored) as c:
            view = load_view(c)
        assert view.enabled
        assert view.users["alice"].roles == ("app",)
        assert view.perms(view.users["alice"]).can_read(b"app/z")
        assert view.secret == b"s" * 32
    finally:
        restored.close()


def test_a_schema_2_store_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    MvccStore(path).close()
    with sqlite3.connect(str(path)) as c:
        for table in ("auth_users", "auth_user_roles", "auth_roles", "auth_permissions",
                      "auth_secret"):
            c.execute(f"DROP TABLE {table}")
        c.execute("DELETE FROM meta WHERE name LIKE 'auth_%'")
        c.execute("UPDATE meta SET value = 2 WHERE name = 'schema_version'")
    store = MvccStore(path)
    try:
        Feeder(store).one(UserAddRequest("u", b"h"))
        assert rev(store) == 2
    finally:
        store.close()


def test_refused_requests_leave_no_trace(app_user: Feeder) -> None:
    with pytest.raises(AssertionError):
        app_user.one(as_("alice", PutRequest(key=b"app/x")))
    assert app_user.get(b"app/x") is None
    assert isinstance(AuthError("x"), Exception)

"""The serve-time auth gate against a real state.db: what it decides before and after
auth changes that the member applies while a request is in flight."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.auth import AuthGate
from cluster.auth_token import issue_token
from cluster.auth_types import (
    USER_EMPTY,
    AuthEnableRequest,
    PermType,
    RoleAddRequest,
    RoleGrantPermissionRequest,
    UserAddRequest,
    UserGrantRoleRequest,
)
from cluster.errors import AuthError, PermissionDeniedError
from cluster.kv import PutRequest, RangeRequest
from storage.mvcc import MvccStore
from tests.storage.mvcc_helpers import Feeder

SECRET = b"s" * 32


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MvccStore]:
    """root (root role) and alice (READ on app/), auth still off."""
    s = MvccStore(tmp_path / "state.db")
    feed = Feeder(s)
    feed.one(UserAddRequest("root", b"hash"))
    feed.one(UserGrantRoleRequest("root", "root"))
    feed.one(RoleAddRequest("app"))
    feed.one(RoleGrantPermissionRequest("app", PermType.READ, b"app/", b"app0"))
    feed.one(UserAddRequest("alice", b"hash"))
    feed.one(UserGrantRoleRequest("alice", "app"))
    yield s
    s.close()


def _token(gate: AuthGate, user: str) -> str:
    return issue_token(SECRET, user, gate.view().revision, time.time())


async def test_a_read_admitted_before_auth_enable_is_judged_anew_after_its_barrier(
        store: MvccStore) -> None:
    gate = AuthGate(store.path)
    try:
        anonymous = await gate.admit("range", {"key": b"app/x"})
        assert not anonymous.enabled
        Feeder(store).one(AuthEnableRequest(secret=SECRET))  # applied meanwhile
        with pytest.raises(AuthError) as empty:
            await gate.check_request(anonymous, RangeRequest(b"app/x"), fresh=True)
        assert empty.value.message == USER_EMPTY
    finally:
        gate.close()


async def test_a_token_sent_while_auth_was_off_is_verified_once_it_is_on(
        store: MvccStore) -> None:
    gate = AuthGate(store.path)
    try:
        token = _token(gate, "alice")  # signed with the secret the enable will store
        ctx = await gate.admit("range", {"key": b"app/x", "auth_token": token})
        assert not ctx.enabled
        Feeder(store).one(AuthEnableRequest(secret=SECRET))
        # After the barrier the token is what counts: alice may READ app/ only.
        await gate.check_request(ctx, RangeRequest(b"app/x"), fresh=True)
        with pytest.raises(PermissionDeniedError):
            await gate.check_request(ctx, RangeRequest(b"other"), fresh=True)
        with pytest.raises(PermissionDeniedError):
            await gate.check_request(ctx, PutRequest(b"app/x", b"v"), fresh=True)
    finally:
        gate.close()

"""Client side of authentication: credentials, the current token, and when to renew it.

A client made with `user`/`password` authenticates lazily, on its first call,
and then sends the token with every request (`auth_token`, docs/protocol.md). A
token is valid on every member for the cluster's auth-token-ttl (300 s); when a
member answers "invalid auth token" (expired, or the password changed) or "user
name is empty" (auth was enabled after the client started), the client
authenticates again and retries the call ONCE. If auth is not enabled the client
sends no token, as clientv3 does. The auth ops themselves
(cluster/client_auth_ops.py) are plain calls like any other.
"""

from __future__ import annotations

from typing import Any

from cluster.auth_types import AUTH_NOT_ENABLED, USER_EMPTY
from cluster.client_calls import Call
from cluster.errors import AuthError, EtcdliteError, InvalidAuthTokenError

TOKEN_FIELD = "auth_token"
"""The request field that carries the token (actors/auth.py)."""


def authenticate_call(name: str, password: str) -> Call[str]:
    """`authenticate`: a read (changes nothing), so it may go to any member."""
    return Call("authenticate", {"name": name, "password": password},
                lambda body, _endpoint: str(body["token"]), read=True)


def split_user(user: str, password: str | None) -> tuple[str, str]:
    """etcdctl's `--user name[:password]`: the password after the first colon."""
    if password is None and ":" in user:
        user, password = user.split(":", 1)
    return user, password or ""


class Credentials:
    """What a client knows about its own authentication (no I/O here)."""

    def __init__(self, user: str | None, password: str | None) -> None:
        self.user, self.password = split_user(user, password) if user else ("", "")
        self.token: str | None = None
        self.auth_disabled = False

    @property
    def enabled(self) -> bool:
        return bool(self.user)

    def needs_token(self) -> bool:
        return self.enabled and self.token is None and not self.auth_disabled

    def login_call(self) -> Call[str]:
        return authenticate_call(self.user, self.password)

    def took(self, outcome: str | EtcdliteError) -> None:
        """Record an authenticate outcome; re-raise real failures (wrong password)."""
        if isinstance(outcome, str):
            self.token, self.auth_disabled = outcome, False
        elif isinstance(outcome, AuthError) and outcome.message == AUTH_NOT_ENABLED:
            self.token, self.auth_disabled = None, True
        else:
            raise outcome

    def should_renew(self, exc: EtcdliteError) -> bool:
        """True if `exc` means "authenticate again and retry" (once)."""
        if not self.enabled:
            return False
        if isinstance(exc, InvalidAuthTokenError):
            return True
        return isinstance(exc, AuthError) and exc.message == USER_EMPTY

    def forget(self) -> None:
        self.token, self.auth_disabled = None, False

    def with_token(self, call: Call[Any]) -> Call[Any]:
        if self.token is None or call.op == "authenticate":
            return call
        return Call(call.op, {**call.args, TOKEN_FIELD: self.token}, call.parse, call.read)

"""Auth tokens that every member accepts: HMAC-signed (user, auth revision, expiry).

WHY not etcd's "simple" tokens as such: etcd's simple token is a random string
that only the member which issued it knows (kept in that member's memory), yet
clients send it to whichever member they talk to, and etcdlite's Python client
and etcdctl both spread requests over endpoints. A token that every member can
check without shared memory must carry its own proof, so an etcdlite token is

    base64url(user) "." auth_revision "." expiry_unix_s "." base64url(HMAC-SHA256)

signed with a 32-byte cluster-wide secret. The secret is drawn by the member
that proposes the first AuthEnable and travels in that log entry, so every
member stores the same one in state.db (and snapshots carry it); it is never
sent to clients. It lives as long as the cluster: anyone who can read a
member's data directory could forge tokens, but could read every key anyway.

What it keeps of etcd's semantics:
- TTL: a token expires `token_ttl_s` (etcd's simple-token default, 300 s) after
  it was issued. Unlike etcd, use does not extend it (the token is not server
  state); clients re-authenticate on "invalid auth token", which clientv3, the
  etcdlite client and etcdctl do.
- Invalidation: the token names the auth revision it was issued at; a user's
  `cred_revision` moves when their password changes or the user is deleted and
  re-created, and tokens issued before that are refused (etcd invalidates a
  user's simple tokens on the same events). Role and permission changes need no
  invalidation: permissions are looked up afresh on every request.
- Clock: expiry uses wall-clock time, so members' clocks must agree to within a
  small fraction of the TTL (NTP), as with etcd's JWT tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

token_ttl_s = 300
"""etcd's default TTL of simple tokens (--auth-token-ttl)."""

SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user: str
    revision: int
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, payload.encode("ascii"), hashlib.sha256).digest())


def issue_token(secret: bytes, user: str, revision: int, now_s: float,
                ttl_s: int = token_ttl_s) -> str:
    """A token for `user`, issued at auth revision `revision`, valid `ttl_s` from `now_s`."""
    assert secret, "tokens need the cluster's secret (stored by the first AuthEnable)"
    payload = f"{_b64(user.encode())}.{revision}.{int(now_s) + ttl_s}"
    return f"{payload}.{_mac(secret, payload)}"


def verify_token(secret: bytes, token: str, now_s: float) -> TokenClaims | None:
    """The claims of a genuine, unexpired token; None for anything else.

    Constant-time MAC comparison; never raises on garbage input. `now_s` 0 skips
    the expiry check (what long-lived streams need, actors/auth.py).
    """
    if not secret or not isinstance(token, str) or not token.isascii() \
            or token.count(".") != 3:
        return None
    payload, _, mac = token.rpartition(".")
    if not hmac.compare_digest(mac.encode("ascii", "replace"),
                               _mac(secret, payload).encode("ascii")):
        return None
    user_b64, revision, expires = payload.split(".")
    try:
        claims = TokenClaims(_unb64(user_b64).decode(), int(revision), int(expires))
    except (ValueError, UnicodeDecodeError):
        return None
    if claims.expires_at <= now_s:
        return None
    return claims

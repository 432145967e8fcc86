"""Typed errors shared by the member, the client library and the CLI.

Every error that crosses the wire is `{"code": <ErrorCode>, "message": str}`;
the client turns the code back into the matching exception class, so callers
can `except CompactedError` instead of parsing text. Codes follow etcd's
error names where etcd has one.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    BAD_REQUEST = "bad_request"  # malformed frame, wrong type, unknown field value
    UNKNOWN_OPERATION = "unknown_operation"
    REQUEST_TOO_LARGE = "request_too_large"
    UNSUPPORTED_VERSION = "unsupported_version"
    COMPACTED = "compacted"
    FUTURE_REVISION = "future_revision"
    NO_SPACE = "no_space"
    NOT_LEADER = "not_leader"
    NO_LEADER = "no_leader"
    LEASE_NOT_FOUND = "lease_not_found"
    LEASE_EXISTS = "lease_exists"
    TOO_MANY_OPS = "too_many_ops"
    DUPLICATE_KEY = "duplicate_key"
    KEY_NOT_FOUND = "key_not_found"
    PERMISSION_DENIED = "permission_denied"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    MEMBER_NOT_FOUND = "member_not_found"
    MEMBER_EXISTS = "member_exists"
    AUTH = "auth"  # auth management refused / authentication failed; etcd's text
    INVALID_AUTH_TOKEN = "invalid_auth_token"  # token bad, expired or older than a change
    INTERNAL = "internal"


class EtcdliteError(Exception):
    """Base of every typed error; `code` is what travels on the wire."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.code.value)
        self.message = message or self.code.value

    def to_wire(self) -> dict[str, str | int]:
        return {"code": self.code.value, "message": self.message}


class BadRequestError(EtcdliteError):
    code = ErrorCode.BAD_REQUEST


class UnknownOperationError(EtcdliteError):
    code = ErrorCode.UNKNOWN_OPERATION


class RequestTooLargeError(EtcdliteError):
    code = ErrorCode.REQUEST_TOO_LARGE


class UnsupportedVersionError(EtcdliteError):
    code = ErrorCode.UNSUPPORTED_VERSION


class CompactedError(EtcdliteError):
    """`compact_revision` (0 = not told) lets a watcher report where history now starts,
    like etcd's WatchResponse.compact_revision."""

    code = ErrorCode.COMPACTED

    def __init__(self, message: str = "", compact_revision: int = 0) -> None:
        super().__init__(message)
        self.compact_revision = compact_revision

    def to_wire(self) -> dict[str, str | int]:
        wire = super().to_wire()
        if self.compact_revision:
            wire["compact_revision"] = self.compact_revision
        return wire


class FutureRevisionError(EtcdliteError):
    code = ErrorCode.FUTURE_REVISION


class NoSpaceError(EtcdliteError):
    code = ErrorCode.NO_SPACE


class NotLeaderError(EtcdliteError):
    code = ErrorCode.NOT_LEADER


class NoLeaderError(EtcdliteError):
    code = ErrorCode.NO_LEADER


class LeaseNotFoundError(EtcdliteError):
    code = ErrorCode.LEASE_NOT_FOUND


class LeaseExistsError(EtcdliteError):
    code = ErrorCode.LEASE_EXISTS


class TooManyOpsError(EtcdliteError):
    code = ErrorCode.TOO_MANY_OPS


class DuplicateKeyError(EtcdliteError):
    code = ErrorCode.DUPLICATE_KEY


class KeyNotFoundError(EtcdliteError):
    code = ErrorCode.KEY_NOT_FOUND


class PermissionDeniedError(EtcdliteError):
    code = ErrorCode.PERMISSION_DENIED


class TimeoutError_(EtcdliteError):
    code = ErrorCode.TIMEOUT


class UnavailableError(EtcdliteError):
    code = ErrorCode.UNAVAILABLE


class MemberNotFoundError(EtcdliteError):
    code = ErrorCode.MEMBER_NOT_FOUND


class MemberExistsError(EtcdliteError):
    code = ErrorCode.MEMBER_EXISTS


class AuthError(EtcdliteError):
    """An auth request refused (user exists, role not found, root missing, no user
    name, wrong password ...); the message is etcd's text (cluster.auth_types)."""

    code = ErrorCode.AUTH


class InvalidAuthTokenError(EtcdliteError):
    """The token is malformed, expired, or older than a change to its user, or the
    auth state changed under a request: authenticate again and retry."""

    code = ErrorCode.INVALID_AUTH_TOKEN


class InternalError(EtcdliteError):
    code = ErrorCode.INTERNAL


_BY_CODE: dict[str, type[EtcdliteError]] = {
    cls.code.value: cls
    for cls in (
        BadRequestError, UnknownOperationError, RequestTooLargeError, UnsupportedVersionError,
        CompactedError, FutureRevisionError, NoSpaceError, NotLeaderError, NoLeaderError,
        LeaseNotFoundError, LeaseExistsError, TooManyOpsError, DuplicateKeyError,
        KeyNotFoundError, PermissionDeniedError, TimeoutError_, UnavailableError,
        MemberNotFoundError, MemberExistsError, AuthError, InvalidAuthTokenError,
        InternalError,
    )
}


def error_from_wire(payload: object) -> EtcdliteError:
    """Rebuild the typed exception from an error map; unknown codes become InternalError."""
    if not isinstance(payload, dict):
        return InternalError(f"malformed error payload: {payload!r}")
    code = payload.get("code")
    message = payload.get("message")
    cls = _BY_CODE.get(code, InternalError) if isinstance(code, str) else InternalError
    text = message if isinstance(message, str) else ""
    compact = payload.get("compact_revision")
    if cls is CompactedError and isinstance(compact, int) and not isinstance(compact, bool):
        return CompactedError(text, compact)
    return cls(text)

"""Native error codes -> etcd's gRPC status codes and messages.

etcd clients match on the status code AND the exact message text (clientv3's
rpctypes turns "etcdserver: mvcc: required revision has been compacted" back
into ErrCompacted; etcdctl prints the text), so the messages here are etcd's
own strings, not etcdlite's. Where a native error has no etcd counterpart the
native message is passed on behind etcd's "etcdserver: " prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from cluster import auth_types as at
from cluster.errors import ErrorCode, EtcdliteError


@dataclass(frozen=True, slots=True)
class EtcdStatus(Exception):
    """A gRPC status to end a call with (also what the HTTP gateway turns into JSON)."""

    code: grpc.StatusCode
    message: str

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


COMPACTED_MESSAGE = "etcdserver: mvcc: required revision has been compacted"

_BY_CODE: dict[ErrorCode, tuple[grpc.StatusCode, str | None]] = {
    ErrorCode.COMPACTED: (grpc.StatusCode.OUT_OF_RANGE, COMPACTED_MESSAGE),
    ErrorCode.FUTURE_REVISION: (grpc.StatusCode.OUT_OF_RANGE,
                                "etcdserver: mvcc: required revision is a future revision"),
    ErrorCode.LEASE_NOT_FOUND: (grpc.StatusCode.NOT_FOUND,
                                "etcdserver: requested lease not found"),
    ErrorCode.LEASE_EXISTS: (grpc.StatusCode.FAILED_PRECONDITION,
                             "etcdserver: lease already exists"),
    ErrorCode.NO_SPACE: (grpc.StatusCode.RESOURCE_EXHAUSTED,
                         "etcdserver: mvcc: database space exceeded"),
    ErrorCode.REQUEST_TOO_LARGE: (grpc.StatusCode.INVALID_ARGUMENT,
                                  "etcdserver: request is too large"),
    ErrorCode.TOO_MANY_OPS: (grpc.StatusCode.INVALID_ARGUMENT,
                             "etcdserver: too many operations in txn request"),
    ErrorCode.DUPLICATE_KEY: (grpc.StatusCode.INVALID_ARGUMENT,
                              "etcdserver: duplicate key given in txn request"),
    ErrorCode.NO_LEADER: (grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader"),
    ErrorCode.NOT_LEADER: (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: not leader"),
    ErrorCode.TIMEOUT: (grpc.StatusCode.UNAVAILABLE, "etcdserver: request timed out"),
    ErrorCode.KEY_NOT_FOUND: (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key not found"),
    ErrorCode.PERMISSION_DENIED: (grpc.StatusCode.PERMISSION_DENIED,
                                  "etcdserver: permission denied"),
    ErrorCode.MEMBER_NOT_FOUND: (grpc.StatusCode.NOT_FOUND, "etcdserver: member not found"),
    ErrorCode.MEMBER_EXISTS: (grpc.StatusCode.FAILED_PRECONDITION, None),
    ErrorCode.UNAVAILABLE: (grpc.StatusCode.UNAVAILABLE, None),
    ErrorCode.BAD_REQUEST: (grpc.StatusCode.INVALID_ARGUMENT, None),
    ErrorCode.UNKNOWN_OPERATION: (grpc.StatusCode.UNIMPLEMENTED, None),
    ErrorCode.UNSUPPORTED_VERSION: (grpc.StatusCode.INTERNAL, None),
    ErrorCode.INTERNAL: (grpc.StatusCode.INTERNAL, None),
}

# Native bad_request messages that etcd has a fixed text for (matched by prefix).
_BAD_REQUEST_TEXT = (
    ("key is not provided", "etcdserver: key is not provided"),
    ("value is provided", "etcdserver: value is provided"),
    ("lease is provided", "etcdserver: lease is provided"),
    ("lease TTL too large", "etcdserver: too large lease TTL"),
    ("can only promote a learner member which is in sync",
     "etcdserver: can only promote a learner member which is in sync with leader"),
    ("can only promote a learner member",
     "etcdserver: can only promote a learner member"),
)

# Auth errors carry etcd's text already; the gRPC code is etcd's for that text
# (rpctypes/error.go). Any other auth text is FAILED_PRECONDITION.
_AUTH_CODES: dict[str, grpc.StatusCode] = {
    at.USER_EMPTY: grpc.StatusCode.INVALID_ARGUMENT,
    at.ROLE_EMPTY: grpc.StatusCode.INVALID_ARGUMENT,
    at.AUTH_FAILED: grpc.StatusCode.INVALID_ARGUMENT,
    at.INVALID_AUTH_MGMT: grpc.StatusCode.INVALID_ARGUMENT,
    at.AUTH_OLD_REVISION: grpc.StatusCode.INVALID_ARGUMENT,
    at.INVALID_AUTH_TOKEN: grpc.StatusCode.UNAUTHENTICATED,
    at.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
}


def status_for(exc: EtcdliteError) -> EtcdStatus:
    """The gRPC status etcd would end the same failed call with."""
    if exc.code in (ErrorCode.AUTH, ErrorCode.INVALID_AUTH_TOKEN):
        return EtcdStatus(_AUTH_CODES.get(exc.message, grpc.StatusCode.FAILED_PRECONDITION),
                          exc.message)
    code, text = _BY_CODE.get(exc.code, (grpc.StatusCode.UNKNOWN, None))
    if text is not None:
        return EtcdStatus(code, text)
    message = exc.message
    if exc.code is ErrorCode.BAD_REQUEST:
        for prefix, etcd_text in _BAD_REQUEST_TEXT:
            if message.startswith(prefix):
                message = etcd_text
                break
        if message.startswith("etcdserver: can only promote"):
            code = grpc.StatusCode.FAILED_PRECONDITION
    if exc.code is ErrorCode.MEMBER_EXISTS:
        message = ("etcdserver: Peer URLs already exists" if "peer URL" in message
                   else "etcdserver: member ID already exist")
    if not message.startswith("etcdserver: "):
        message = f"etcdserver: {message}"
    return EtcdStatus(code, message)

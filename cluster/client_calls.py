"""One `Call` per protocol operation: op name, argument map, reply parser, read or write.

This is the single place that pairs an operation with its parser and its
retry class, so `Client` and `AsyncClient` cannot drift apart: each of their
methods is "build a Call here, hand it to the transport, parse".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cluster import client_replies as replies
from cluster.client_requests import non_negative
from cluster.client_types import (
    CompactResult,
    DeleteResult,
    LeaseGrantResult,
    LeaseKeepAliveResult,
    LeaseLeasesResult,
    LeaseRevokeResult,
    LeaseTimeToLiveResult,
    MemberListResult,
    PutResult,
    RangeResult,
    ResponseHeader,
    Status,
    TxnResult,
)
from cluster.codec import encode_frame

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Call(Generic[R]):
    """Everything a transport needs to run one operation, independent of sync/async I/O.

    `read` marks operations that change nothing (range, status, member_list):
    the transport may send them again to any member. Writes get the stricter
    retry rule documented in `cluster.client_transport`.
    """

    op: str
    args: dict[str, Any]
    parse: Callable[[dict[str, Any], str], R]
    read: bool

    def frame(self) -> bytes:
        """The encoded request frame (the envelope adds the protocol version)."""
        return encode_frame({"op": self.op, **self.args})


def range_call(args: dict[str, Any]) -> Call[RangeResult]:
    return Call("range", args, replies.parse_range, read=True)


def put_call(args: dict[str, Any]) -> Call[PutResult]:
    return Call("put", args, replies.parse_put, read=False)


def delete_call(args: dict[str, Any]) -> Call[DeleteResult]:
    return Call("delete_range", args, replies.parse_delete, read=False)


def txn_call(args: dict[str, Any]) -> Call[TxnResult]:
    # A txn whose branches only read is still sent as a write: which branch
    # runs is decided by the member, so the client cannot know it is read-only.
    return Call("txn", args, replies.parse_txn, read=False)


def compact_call(revision: int, physical: bool) -> Call[CompactResult]:
    args: dict[str, Any] = {
        "revision": non_negative(revision, "revision"), "physical": bool(physical),
    }
    return Call("compact", args, replies.parse_compact, read=False)


def lease_grant_call(ttl: int, lease_id: int) -> Call[LeaseGrantResult]:
    args = {"ttl": non_negative(ttl, "ttl"), "id": non_negative(lease_id, "id")}
    return Call("lease_grant", args, replies.parse_lease_grant, read=False)


def lease_revoke_call(lease_id: int) -> Call[LeaseRevokeResult]:
    args = {"id": non_negative(lease_id, "id")}
    return Call("lease_revoke", args, replies.parse_lease_revoke, read=False)


def lease_keepalive_call(lease_id: int) -> Call[LeaseKeepAliveResult]:
    # Safe to send again (docs/protocol.md, "Retrying"): a second renew only
    # moves the deadline to "now + TTL" once more, it never shortens a lease.
    args = {"id": non_negative(lease_id, "id")}
    return Call("lease_keepalive", args, replies.parse_lease_keepalive, read=True)


def lease_timetolive_call(lease_id: int, keys: bool) -> Call[LeaseTimeToLiveResult]:
    args = {"id": non_negative(lease_id, "id"), "keys": bool(keys)}
    return Call("lease_timetolive", args, replies.parse_lease_timetolive, read=True)


def lease_leases_call() -> Call[LeaseLeasesResult]:
    return Call("lease_leases", {}, replies.parse_lease_leases, read=True)


def status_call() -> Call[Status]:
    return Call("status", {}, replies.parse_status, read=True)


def member_list_call() -> Call[MemberListResult]:
    return Call("member_list", {}, replies.parse_member_list, read=True)


def member_add_call(name: str, peer_urls: list[str], client_urls: list[str],
                    is_learner: bool) -> Call[MemberListResult]:
    args = {"name": name, "peer_urls": peer_urls, "client_urls": client_urls,
            "is_learner": is_learner}
    return Call("member_add", args, replies.parse_member_list, read=False)


def member_remove_call(member_id: int) -> Call[MemberListResult]:
    return Call("member_remove", {"id": member_id}, replies.parse_member_list, read=False)


def member_promote_call(member_id: int) -> Call[MemberListResult]:
    return Call("member_promote", {"id": member_id}, replies.parse_member_list, read=False)


def member_update_call(member_id: int, peer_urls: list[str]) -> Call[MemberListResult]:
    return Call("member_update", {"id": member_id, "peer_urls": peer_urls},
                replies.parse_member_list, read=False)


def move_leader_call(target: int) -> Call[ResponseHeader]:
    return Call("move_leader", {"target": target}, replies.parse_header_only, read=False)

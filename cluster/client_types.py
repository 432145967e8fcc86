"""Result values returned by the native client (`cluster.client`).

These are plain frozen dataclasses so callers can compare, hash and print
them, and so the sync and async clients return exactly the same things.
Keys and values stay `bytes` (etcd keys are bytes, not text); the `*_str`
properties exist only because most keys in practice are UTF-8 and typing
`.decode()` everywhere is noise.

The data model's own values (`KeyValue`, `SortOrder`, `SortTarget`) are the
member's (cluster/kv_types.py), re-exported here; the results below differ from
the member-side ones in carrying the answering member's `ResponseHeader`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster.kv_types import KeyValue, SortOrder, SortTarget

__all__ = [
    "CompactResult", "DeleteResult", "KeyValue", "LeaseGrantResult", "LeaseKeepAliveResult",
    "LeaseLeasesResult", "LeaseRevokeResult", "LeaseTimeToLiveResult", "Member",
    "MemberListResult", "PutResult", "RangeResult", "ResponseHeader", "SortOrder",
    "SortTarget", "Status", "TxnResult",
]


@dataclass(frozen=True, slots=True)
class ResponseHeader:
    """Who answered and at which point of history (etcd's ResponseHeader)."""

    cluster_id: int
    member_id: int
    revision: int
    raft_term: int


@dataclass(frozen=True, slots=True)
class RangeResult:
    """Answer to `get`: the matching kvs, whether more exist past `limit`, the total count."""

    header: ResponseHeader
    kvs: tuple[KeyValue, ...]
    more: bool
    count: int

    @property
    def kv(self) -> KeyValue | None:
        """The first kv, or None: the common case of a single-key get."""
        return self.kvs[0] if self.kvs else None

    @property
    def value_str(self) -> str | None:
        """The first kv's value as text, or None when the key does not exist."""
        return self.kvs[0].value_str if self.kvs else None


@dataclass(frozen=True, slots=True)
class PutResult:
    """Answer to `put`; `prev_kv` is set only when asked for and the key existed."""

    header: ResponseHeader
    prev_kv: KeyValue | None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """Answer to `delete`; `prev_kvs` is filled only when asked for."""

    header: ResponseHeader
    deleted: int
    prev_kvs: tuple[KeyValue, ...]


@dataclass(frozen=True, slots=True)
class TxnResult:
    """Answer to `txn`: which branch ran and one result per op of that branch.

    Nested results carry no header on the wire; the client gives each of them
    the transaction's header so every result type keeps a non-optional header.
    """

    header: ResponseHeader
    succeeded: bool
    responses: tuple[TxnResponse, ...]


TxnResponse = RangeResult | PutResult | DeleteResult | TxnResult
"""What one op of a transaction branch produced, in op order."""


@dataclass(frozen=True, slots=True)
class CompactResult:
    """Answer to `compact` (only the header: compaction has no other output)."""

    header: ResponseHeader


@dataclass(frozen=True, slots=True)
class LeaseGrantResult:
    """A granted lease: its id (chosen by the cluster when 0 was asked) and TTL in seconds."""

    header: ResponseHeader
    id: int
    ttl: int


@dataclass(frozen=True, slots=True)
class LeaseRevokeResult:
    """Answer to `lease_revoke` (only the header)."""

    header: ResponseHeader


@dataclass(frozen=True, slots=True)
class LeaseKeepAliveResult:
    """A refreshed lease and its new TTL in seconds."""

    header: ResponseHeader
    id: int
    ttl: int


@dataclass(frozen=True, slots=True)
class LeaseTimeToLiveResult:
    """Remaining life of a lease; `ttl == -1` means expired or never existed."""

    header: ResponseHeader
    id: int
    ttl: int
    granted_ttl: int
    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class LeaseLeasesResult:
    """Every live lease id."""

    header: ResponseHeader
    leases: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Status:
    """One member's view of itself and the cluster, plus the endpoint that answered."""

    header: ResponseHeader
    endpoint: str
    member_id: int
    name: str
    role: str
    leader: int
    term: int
    commit_index: int
    applied_index: int
    revision: int
    compact_revision: int
    db_size: int
    version: str
    voters: tuple[int, ...]
    is_learner: bool
    db_size_in_use: int = 0
    errors: tuple[str, ...] = ()  # active alarms, e.g. "memberID:2a alarm:NOSPACE"


@dataclass(frozen=True, slots=True)
class Member:
    """One member of the cluster as the membership records it."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool


@dataclass(frozen=True, slots=True)
class MemberListResult:
    """Answer to `member_list`."""

    header: ResponseHeader
    members: tuple[Member, ...]
    member: Member | None = None  # the member a member_add created

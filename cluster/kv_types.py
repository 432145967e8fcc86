"""Value types of the key-value API: requests, results and the stored KeyValue.

These are the shapes of docs/protocol.md as frozen dataclasses, so that the
server, the Raft log, the applier and the client library all speak the same
typed vocabulary; `cluster/kv_parse.py` and `cluster/kv_results.py` convert
them to and from wire maps. Import them through `cluster.kv`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from cluster.alarm_types import AlarmRequest, AlarmResult


class SortOrder(enum.StrEnum):
    NONE = "none"
    ASCEND = "ascend"
    DESCEND = "descend"


class SortTarget(enum.StrEnum):
    KEY = "key"
    VERSION = "version"
    CREATE = "create"
    MOD = "mod"
    VALUE = "value"


class CompareTarget(enum.StrEnum):
    VERSION = "version"
    CREATE = "create"
    MOD = "mod"
    VALUE = "value"
    LEASE = "lease"


class CompareResult(enum.StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    LESS = "<"
    GREATER = ">"


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One version of a key as stored (etcd's mvccpb.KeyValue); the client returns it too."""

    key: bytes
    value: bytes = b""
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    lease: int = 0

    @property
    def key_str(self) -> str:
        """The key decoded as UTF-8 (undecodable bytes are replaced, not raised): most
        keys are text in practice, and `.decode()` everywhere is noise."""
        return self.key.decode("utf-8", errors="replace")

    @property
    def value_str(self) -> str:
        """The value decoded as UTF-8 (undecodable bytes are replaced, not raised)."""
        return self.value.decode("utf-8", errors="replace")


# --- requests -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RangeRequest:
    """Read keys in [key, range_end); range_end b"" = key alone, b"\\0" = every key >= key."""

    op: ClassVar[str] = "range"
    key: bytes
    range_end: bytes = b""
    limit: int = 0
    revision: int = 0
    serializable: bool = False
    keys_only: bool = False
    count_only: bool = False
    sort_order: SortOrder = SortOrder.NONE
    sort_target: SortTarget = SortTarget.KEY
    min_mod_revision: int = 0
    max_mod_revision: int = 0
    min_create_revision: int = 0
    max_create_revision: int = 0


@dataclass(frozen=True, slots=True)
class PutRequest:
    op: ClassVar[str] = "put"
    key: bytes
    value: bytes = b""
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False
    ignore_lease: bool = False


@dataclass(frozen=True, slots=True)
class DeleteRangeRequest:
    op: ClassVar[str] = "delete_range"
    key: bytes
    range_end: bytes = b""
    prev_kv: bool = False


@dataclass(frozen=True, slots=True)
class Compare:
    """One guard of a txn; `value` is bytes for target VALUE and an int otherwise."""

    key: bytes
    target: CompareTarget = CompareTarget.VERSION
    result: CompareResult = CompareResult.EQUAL
    value: int | bytes = 0
    range_end: bytes = b""


@dataclass(frozen=True, slots=True)
class TxnRequest:
    op: ClassVar[str] = "txn"
    compare: tuple[Compare, ...] = ()
    success: tuple[RequestOp, ...] = ()
    failure: tuple[RequestOp, ...] = ()


RequestOp: TypeAlias = RangeRequest | PutRequest | DeleteRangeRequest | TxnRequest
"""One operation of a txn branch. A plain union rather than a wrapper class:
the request type itself already says which member of etcd's oneof it is."""


@dataclass(frozen=True, slots=True)
class CompactionRequest:
    op: ClassVar[str] = "compact"
    revision: int
    physical: bool = False


@dataclass(frozen=True, slots=True)
class LeaseGrantRequest:
    """Grant a lease. In the Raft log `id` is never 0: the proposer picks it first,
    so that every member applies the same id."""

    op: ClassVar[str] = "lease_grant"
    ttl: int
    id: int = 0


@dataclass(frozen=True, slots=True)
class LeaseRevokeRequest:
    """Revoke a lease and delete its keys; also what the lease actor proposes on expiry."""

    op: ClassVar[str] = "lease_revoke"
    id: int


@dataclass(frozen=True, slots=True)
class LeaseCheckpointRequest:
    """Internal (never from clients): persist a lease's remaining TTL so that a new
    leader does not restart the countdown from the full TTL."""

    op: ClassVar[str] = "lease_checkpoint"
    id: int
    remaining_ttl: int


@dataclass(frozen=True, slots=True)
class LeaseKeepAliveRequest:
    op: ClassVar[str] = "lease_keepalive"
    id: int


@dataclass(frozen=True, slots=True)
class LeaseTimeToLiveRequest:
    op: ClassVar[str] = "lease_timetolive"
    id: int
    keys: bool = False


@dataclass(frozen=True, slots=True)
class LeaseLeasesRequest:
    op: ClassVar[str] = "lease_leases"


@dataclass(frozen=True, slots=True)
class StatusRequest:
    op: ClassVar[str] = "status"


@dataclass(frozen=True, slots=True)
class MemberListRequest:
    op: ClassVar[str] = "member_list"


@dataclass(frozen=True, slots=True)
class MemberAttrRequest:
    """Internal (never from clients): a member publishes its own name and client URLs
    once it has joined, as etcd's member attribute update does. A member added by
    etcd's MemberAdd is known only by id and peer URLs until then ("unstarted").
    Applied to the members table (storage.members); the revision does not change."""

    op: ClassVar[str] = "member_attr"
    member_id: int
    name: str
    client_urls: tuple[str, ...] = ()
    etcd_client_urls: tuple[str, ...] = ()


Request: TypeAlias = (
    RangeRequest | PutRequest | DeleteRangeRequest | TxnRequest | CompactionRequest
    | LeaseGrantRequest | LeaseRevokeRequest | LeaseCheckpointRequest
    | LeaseKeepAliveRequest | LeaseTimeToLiveRequest | LeaseLeasesRequest
    | StatusRequest | MemberListRequest | AlarmRequest | MemberAttrRequest
)

LOG_OPS: frozenset[str] = frozenset(
    {"put", "delete_range", "txn", "compact", "lease_grant", "lease_revoke", "lease_checkpoint",
     "alarm", "member_attr"}
)
"""Operations that change state and therefore travel through the Raft log."""

INTERNAL_OPS: frozenset[str] = frozenset({"lease_checkpoint", "alarm", "member_attr"})
"""Log operations that only members propose; `parse_request` refuses them from clients.
(Clients send `alarm` too, but to the member's maintenance handler, which proposes it.)"""


# --- results --------------------------------------------------------------------
# `revision` is the store revision right after the operation: the server puts it
# in the reply header. It is not part of the result's own wire fields.


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: tuple[KeyValue, ...] = ()
    more: bool = False
    count: int = 0
    revision: int = 0


@dataclass(frozen=True, slots=True)
class PutResult:
    prev_kv: KeyValue | None = None
    revision: int = 0


@dataclass(frozen=True, slots=True)
class DeleteRangeResult:
    deleted: int = 0
    prev_kvs: tuple[KeyValue, ...] = ()
    revision: int = 0


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool = False
    responses: tuple[ResponseOp, ...] = ()
    revision: int = 0


ResponseOp: TypeAlias = RangeResult | PutResult | DeleteRangeResult | TxnResult


@dataclass(frozen=True, slots=True)
class CompactionResult:
    revision: int = 0


@dataclass(frozen=True, slots=True)
class LeaseGrantResult:
    id: int = 0
    ttl: int = 0
    revision: int = 0


@dataclass(frozen=True, slots=True)
class LeaseRevokeResult:
    revision: int = 0


@dataclass(frozen=True, slots=True)
class LeaseCheckpointResult:
    revision: int = 0


@dataclass(frozen=True, slots=True)
class LeaseKeepAliveResult:
    id: int = 0
    ttl: int = 0
    revision: int = 0


@dataclass(frozen=True, slots=True)
class LeaseTimeToLiveResult:
    """`ttl` is -1 when the lease is expired or unknown, as in etcd."""

    id: int = 0
    ttl: int = -1
    granted_ttl: int = 0
    keys: tuple[bytes, ...] = ()
    revision: int = 0


@dataclass(frozen=True, slots=True)
class LeaseLeasesResult:
    leases: tuple[int, ...] = ()
    revision: int = 0


Result: TypeAlias = (
    RangeResult | PutResult | DeleteRangeResult | TxnResult | CompactionResult
    | LeaseGrantResult | LeaseRevokeResult | LeaseCheckpointResult
    | LeaseKeepAliveResult | LeaseTimeToLiveResult | LeaseLeasesResult | AlarmResult
)


def prefix_range_end(key: bytes) -> bytes:
    """The range_end that selects every key starting with `key` (etcd's GetPrefixRangeEnd).

    The last byte below 0xff is incremented and everything after it dropped; a
    key made only of 0xff bytes (or empty) has no upper bound, so b"\\0" ("to the
    end of the key space") is returned.
    """
    end = bytearray(key)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


def txn_is_read_only(txn: TxnRequest) -> bool:
    """True if no branch (nested ones included) can write: such a txn may skip the log."""
    for op in (*txn.success, *txn.failure):
        if isinstance(op, PutRequest | DeleteRangeRequest):
            return False
        if isinstance(op, TxnRequest) and not txn_is_read_only(op):
            return False
    return True

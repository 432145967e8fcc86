"""Validating decoded request maps into typed requests, and back.

The server validates a client frame here once; the validated request is then
turned back into a canonical map (`request_to_wire`) for the Raft log, so that
every member applies byte-identical input. Validation is strict (real bools,
real ints, real bytes, no unknown arguments): a member must never reach the
applier with something SQLite or the MVCC code would choke on, because a
committed entry that crashes the applier would crash every member forever.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

from cluster import codec
from cluster.alarm_types import AlarmAction, AlarmRequest, AlarmType
from cluster.errors import (
    BadRequestError,
    DuplicateKeyError,
    TooManyOpsError,
    UnknownOperationError,
)
from cluster.kv_types import (
    INTERNAL_OPS,
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    LeaseCheckpointRequest,
    LeaseGrantRequest,
    LeaseKeepAliveRequest,
    LeaseLeasesRequest,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
    MemberAttrRequest,
    MemberListRequest,
    PutRequest,
    RangeRequest,
    Request,
    RequestOp,
    SortOrder,
    SortTarget,
    StatusRequest,
    TxnRequest,
)
from cluster.limits import txn_ops_max_default

INT64_MAX = 2**63 - 1
"""Every integer must fit SQLite's INTEGER (etcd uses int64 throughout)."""

LEASE_TTL_MAX_S = 9_000_000_000
"""etcd's MaxLeaseTTL; a larger ttl is refused (ErrLeaseTTLTooLarge)."""

_ENVELOPE_KEYS = frozenset({"op", "v"})
_E = TypeVar("_E", bound=enum.Enum)


class _Args:
    """The arguments of one op, consumed one by one; leftovers are an error."""

    __slots__ = ("_args", "_where")

    def __init__(self, where: str, args: Any) -> None:
        if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
            raise BadRequestError(f"{where}: arguments must be a map with string keys")
        self._where = where
        self._args = dict(args)

    def _pop(self, name: str) -> Any:
        return self._args.pop(name, None)

    def bytes_(self, name: str, *, required: bool = False, default: bytes = b"") -> bytes:
        value = self._pop(name)
        if value is None:
            if required:
                raise BadRequestError(f"{self._where}: missing '{name}'")
            return default
        if not isinstance(value, bytes):
            raise BadRequestError(f"{self._where}: '{name}' must be bytes")
        return value

    def int_(
        self, name: str, *, required: bool = False, minimum: int | None = 0, default: int = 0
    ) -> int:
        value = self._pop(name)
        if value is None:
            if required:
                raise BadRequestError(f"{self._where}: missing '{name}'")
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            raise BadRequestError(f"{self._where}: '{name}' must be an integer")
        low = -INT64_MAX - 1 if minimum is None else minimum
        if not low <= value <= INT64_MAX:
            raise BadRequestError(f"{self._where}: '{name}' out of range ({value})")
        return value

    def bool_(self, name: str) -> bool:
        value = self._pop(name)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise BadRequestError(f"{self._where}: '{name}' must be a boolean")
        return value

    def enum_(self, name: str, cls: type[_E], default: _E) -> _E:
        value = self._pop(name)
        if value is None:
            return default
        try:
            return cls(value)
        except ValueError:
            allowed = "/".join(str(m.value) for m in cls)
            raise BadRequestError(f"{self._where}: '{name}' must be one of {allowed}") from None

    def list_(self, name: str) -> list[Any]:
        value = self._pop(name)
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            raise BadRequestError(f"{self._where}: '{name}' must be a list")
        return list(value)

    def raw(self, name: str) -> Any:
        return self._pop(name)

    def done(self) -> None:
        if self._args:
            raise BadRequestError(f"{self._where}: unknown argument(s) {sorted(self._args)}")


def _key(a: _Args) -> bytes:
    key = a.bytes_("key", required=True)
    if not key:
        # etcd refuses an empty key for range, put and delete ("key is not provided").
        raise BadRequestError("key is not provided")
    return key


def _parse_range(a: _Args) -> RangeRequest:
    return RangeRequest(
        key=_key(a), range_end=a.bytes_("range_end"), limit=a.int_("limit"),
        revision=a.int_("revision"), serializable=a.bool_("serializable"),
        keys_only=a.bool_("keys_only"), count_only=a.bool_("count_only"),
        sort_order=a.enum_("sort_order", SortOrder, SortOrder.NONE),
        sort_target=a.enum_("sort_target", SortTarget, SortTarget.KEY),
        min_mod_revision=a.int_("min_mod_revision"), max_mod_revision=a.int_("max_mod_revision"),
        min_create_revision=a.int_("min_create_revision"),
        max_create_revision=a.int_("max_create_revision"),
    )


def _parse_put(a: _Args) -> PutRequest:
    req = PutRequest(
        key=_key(a), value=a.bytes_("value"), lease=a.int_("lease"), prev_kv=a.bool_("prev_kv"),
        ignore_value=a.bool_("ignore_value"), ignore_lease=a.bool_("ignore_lease"),
    )
    if req.ignore_value and req.value:
        raise BadRequestError("value is provided (ignore_value is set)")
    if req.ignore_lease and req.lease:
        raise BadRequestError("lease is provided (ignore_lease is set)")
    return req


def _parse_delete(a: _Args) -> DeleteRangeRequest:
    return DeleteRangeRequest(
        key=_key(a), range_end=a.bytes_("range_end"), prev_kv=a.bool_("prev_kv")
    )


def _parse_compare(raw: Any) -> Compare:
    a = _Args("compare", raw)
    key = a.bytes_("key", required=True)
    range_end = a.bytes_("range_end")
    target = a.enum_("target", CompareTarget, CompareTarget.VERSION)
    result = a.enum_("result", CompareResult, CompareResult.EQUAL)
    is_value = target is CompareTarget.VALUE
    value: int | bytes = a.bytes_("value") if is_value else a.int_("value", minimum=None)
    a.done()
    return Compare(key=key, target=target, result=result, value=value, range_end=range_end)


def _parse_op(raw: Any, max_txn_ops: int) -> RequestOp:
    if not isinstance(raw, dict) or len(raw) != 1:
        raise BadRequestError("a txn operation must be a map with exactly one key")
    ((name, args),) = raw.items()
    a = _Args(f"txn {name}", args)
    req: RequestOp
    if name == "range":
        req = _parse_range(a)
    elif name == "put":
        req = _parse_put(a)
    elif name == "delete_range":
        req = _parse_delete(a)
    elif name == "txn":
        req = _parse_txn(a, max_txn_ops)
    else:
        raise BadRequestError(f"txn operation must be range/put/delete_range/txn, not {name!r}")
    a.done()
    return req


def _parse_txn(a: _Args, max_txn_ops: int) -> TxnRequest:
    compares, success, failure = a.list_("compare"), a.list_("success"), a.list_("failure")
    a.done()
    if max(len(compares), len(success), len(failure)) > max_txn_ops:
        raise TooManyOpsError(f"too many operations in txn request (max {max_txn_ops})")
    return TxnRequest(
        compare=tuple(_parse_compare(c) for c in compares),
        success=tuple(_parse_op(op, max_txn_ops) for op in success),
        failure=tuple(_parse_op(op, max_txn_ops) for op in failure),
    )


# A delete interval: (key, end) with end None meaning "no upper bound", end == key + b"\0"
# for a single key. Puts are points.
_Interval = tuple[bytes, bytes | None]


def _delete_interval(d: DeleteRangeRequest) -> _Interval:
    if not d.range_end:
        return (d.key, d.key + b"\0")
    if d.range_end == b"\0":
        return (d.key, None)
    return (d.key, d.range_end)


def _hits(intervals: list[_Interval], key: bytes) -> bool:
    return any(lo <= key and (hi is None or key < hi) for lo, hi in intervals)


def check_duplicate_keys(ops: tuple[RequestOp, ...]) -> tuple[set[bytes], list[_Interval]]:
    """Refuse a txn branch that writes a key twice, as etcd does (ErrDuplicateKey).

    Two puts of one key, or a put inside a deleted range, anywhere in the branch or
    in the branches of nested txns, are ambiguous. The success and failure branches
    of one nested txn exclude each other, so they may put the same key. Overlapping
    deletes are fine. Returns the puts and deletes of the branch for the caller's level.
    """
    dels = [_delete_interval(op) for op in ops if isinstance(op, DeleteRangeRequest)]
    puts: set[bytes] = set()
    for op in ops:
        if not isinstance(op, TxnRequest):
            continue
        puts_then, dels_then = check_duplicate_keys(op.success)
        puts_else, dels_else = check_duplicate_keys(op.failure)
        for key in puts_then:
            if key in puts or _hits(dels, key):
                raise DuplicateKeyError("duplicate key given in txn request")
            puts.add(key)
        for key in puts_else:
            if (key in puts and key not in puts_then) or _hits(dels, key):
                raise DuplicateKeyError("duplicate key given in txn request")
            puts.add(key)
        dels.extend(dels_then)
        dels.extend(dels_else)
    for op in ops:
        if isinstance(op, PutRequest):
            if op.key in puts or _hits(dels, op.key):
                raise DuplicateKeyError("duplicate key given in txn request")
            puts.add(op.key)
    return puts, dels


def _parse_top_txn(a: _Args, max_txn_ops: int) -> TxnRequest:
    txn = _parse_txn(a, max_txn_ops)
    check_duplicate_keys(txn.success)
    check_duplicate_keys(txn.failure)
    return txn


def _parse_compact(a: _Args) -> CompactionRequest:
    return CompactionRequest(revision=a.int_("revision", required=True),
                             physical=a.bool_("physical"))


def _parse_lease_grant(a: _Args) -> LeaseGrantRequest:
    ttl = a.int_("ttl", required=True)
    if ttl > LEASE_TTL_MAX_S:
        raise BadRequestError(f"lease TTL too large (max {LEASE_TTL_MAX_S})")
    return LeaseGrantRequest(ttl=ttl, id=a.int_("id"))


def _strings(a: _Args, name: str) -> tuple[str, ...]:
    values = a.list_(name)
    if not all(isinstance(v, str) for v in values):
        raise BadRequestError(f"member_attr: '{name}' must be a list of strings")
    return tuple(values)


def _parse_member_attr(a: _Args) -> MemberAttrRequest:
    name = a.raw("name")
    if not isinstance(name, str):
        raise BadRequestError("member_attr: 'name' must be a string")
    return MemberAttrRequest(member_id=a.int_("member_id", required=True, minimum=1),
                             name=name, client_urls=_strings(a, "client_urls"),
                             etcd_client_urls=_strings(a, "etcd_client_urls"))


_OP_PARSERS: dict[str, Callable[[_Args], Request]] = {
    "range": _parse_range,
    "put": _parse_put,
    "delete_range": _parse_delete,
    "txn": lambda a: _parse_top_txn(a, txn_ops_max_default),  # parse_request passes its bound
    "compact": _parse_compact,
    "lease_grant": _parse_lease_grant,
    "lease_revoke": lambda a: LeaseRevokeRequest(id=a.int_("id", required=True)),
    "lease_checkpoint": lambda a: LeaseCheckpointRequest(
        id=a.int_("id", required=True), remaining_ttl=a.int_("remaining_ttl", required=True)
    ),
    "lease_keepalive": lambda a: LeaseKeepAliveRequest(id=a.int_("id", required=True)),
    "lease_timetolive": lambda a: LeaseTimeToLiveRequest(
        id=a.int_("id", required=True), keys=a.bool_("keys")
    ),
    "lease_leases": lambda a: LeaseLeasesRequest(),
    "status": lambda a: StatusRequest(),
    "member_list": lambda a: MemberListRequest(),
    "member_attr": lambda a: _parse_member_attr(a),
    "alarm": lambda a: AlarmRequest(
        action=a.enum_("action", AlarmAction, AlarmAction.GET), member_id=a.int_("member_id"),
        alarm=a.enum_("alarm", AlarmType, AlarmType.NONE),
    ),
}

_TAKES_ID = frozenset(
    {"lease_grant", "lease_revoke", "lease_checkpoint", "lease_keepalive", "lease_timetolive"}
)


def parse_request(
    body: dict[str, Any], *, max_txn_ops: int = txn_ops_max_default, allow_internal: bool = False
) -> Request:
    """Validate a decoded wire map into a typed request.

    Args:
        body: the frame map; "op" selects the operation, "v" is ignored, and "id"
            is ignored except by the lease operations, where it is the lease id.
        max_txn_ops: etcd's --max-txn-ops, per txn branch (and for compares).
        allow_internal: accept member-only operations (lease_checkpoint); the
            server leaves this False so that clients cannot forge them.

    Raises:
        BadRequestError: not a map, wrong-typed/missing/unknown argument, bad enum
            string, negative revision or limit, empty key.
        UnknownOperationError: the op is not one this member serves.
        TooManyOpsError: a txn branch has more than `max_txn_ops` operations.
        DuplicateKeyError: a txn branch writes one key twice.
    """
    if not isinstance(body, dict):
        raise BadRequestError("request must be a map")
    op = body.get("op")
    if not isinstance(op, str):
        raise BadRequestError("request needs a string 'op'")
    parser = _OP_PARSERS.get(op)
    if parser is None or (op in INTERNAL_OPS and not allow_internal):
        raise UnknownOperationError(f"unknown operation {op!r}")
    skip = _ENVELOPE_KEYS if op in _TAKES_ID else _ENVELOPE_KEYS | {"id"}
    a = _Args(op, {k: v for k, v in body.items() if k not in skip})
    req = _parse_top_txn(a, max_txn_ops) if op == "txn" else parser(a)
    a.done()
    return req


def request_from_wire(body: dict[str, Any]) -> Request:
    """Parse a request read back from the Raft log.

    Everything in the log was validated by the proposer; the txn-ops bound is
    not re-applied, because a member started with a different --max-txn-ops must
    still apply the same committed entries.
    """
    return parse_request(body, max_txn_ops=INT64_MAX, allow_internal=True)


def _args_to_wire(req: Request) -> dict[str, Any]:
    if isinstance(req, TxnRequest):
        return {
            "compare": [_compare_to_wire(c) for c in req.compare],
            "success": [{op.op: _args_to_wire(op)} for op in req.success],
            "failure": [{op.op: _args_to_wire(op)} for op in req.failure],
        }
    out: dict[str, Any] = {}
    for f in fields(req):
        value = getattr(req, f.name)
        out[f.name] = value.value if isinstance(value, enum.Enum) else value
    return out


def _compare_to_wire(c: Compare) -> dict[str, Any]:
    return {"key": c.key, "range_end": c.range_end, "target": c.target.value,
            "result": c.result.value, "value": c.value}


def request_to_wire(req: Request) -> dict[str, Any]:
    """The canonical map of a request (every argument present), the inverse of parse_request."""
    return {"op": req.op, **_args_to_wire(req)}


def encode_request(req: Request) -> bytes:
    """Canonical CBOR of a request: the data of a Raft log entry."""
    return codec.dumps(request_to_wire(req))


def decode_request(data: bytes) -> Request:
    """Rebuild a request from a log entry's data (see `request_from_wire`)."""
    return request_from_wire(codec.loads(data))

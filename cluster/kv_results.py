"""Results to reply maps and back (the result fields of docs/protocol.md).

The server calls `result_to_wire` and adds `ok` and `header` itself; the client
library calls the `*_from_wire` functions on the whole reply map and gets the
same frozen dataclasses the member produced, with `revision` taken from the
header when there is one (nested txn responses carry no header). A reply that
does not have the documented shape raises InternalError: it is the member's
fault, not the caller's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cluster.alarm_types import AlarmResult
from cluster.errors import InternalError
from cluster.kv_types import (
    CompactionResult,
    DeleteRangeResult,
    KeyValue,
    LeaseCheckpointResult,
    LeaseGrantResult,
    LeaseKeepAliveResult,
    LeaseLeasesResult,
    LeaseRevokeResult,
    LeaseTimeToLiveResult,
    PutResult,
    RangeResult,
    ResponseOp,
    Result,
    TxnResult,
)


def kv_to_wire(kv: KeyValue) -> dict[str, Any]:
    return {
        "key": kv.key, "value": kv.value, "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision, "version": kv.version, "lease": kv.lease,
    }


def _response_op_to_wire(r: ResponseOp) -> dict[str, Any]:
    name = {RangeResult: "range", PutResult: "put", DeleteRangeResult: "delete_range",
            TxnResult: "txn"}[type(r)]
    return {name: result_to_wire(r)}


def result_to_wire(result: Result) -> dict[str, Any]:
    """The result fields of a reply, without `v`, `ok` and `header`."""
    match result:
        case RangeResult():
            return {"kvs": [kv_to_wire(kv) for kv in result.kvs], "more": result.more,
                    "count": result.count}
        case PutResult():
            return {"prev_kv": None if result.prev_kv is None else kv_to_wire(result.prev_kv)}
        case DeleteRangeResult():
            return {"deleted": result.deleted,
                    "prev_kvs": [kv_to_wire(kv) for kv in result.prev_kvs]}
        case TxnResult():
            return {"succeeded": result.succeeded,
                    "responses": [_response_op_to_wire(r) for r in result.responses]}
        case LeaseGrantResult() | LeaseKeepAliveResult():
            return {"id": result.id, "ttl": result.ttl}
        case LeaseTimeToLiveResult():
            return {"id": result.id, "ttl": result.ttl, "granted_ttl": result.granted_ttl,
                    "keys": list(result.keys)}
        case LeaseLeasesResult():
            return {"leases": list(result.leases)}
        case CompactionResult() | LeaseRevokeResult() | LeaseCheckpointResult():
            return {}
        case AlarmResult():
            return {"alarms": [{"member_id": a.member_id, "alarm": a.alarm.value}
                               for a in result.alarms]}
    raise AssertionError(f"not a result: {result!r}")


# --- reverse direction (client side) ---------------------------------------------


def _get(d: Any, name: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(d, dict):
        raise InternalError(f"malformed reply: expected a map holding '{name}'")
    value = d.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InternalError(f"malformed reply: '{name}' is {type(value).__name__}")
    return value


def _revision(d: Any) -> int:
    header = d.get("header") if isinstance(d, dict) else None
    if isinstance(header, dict) and isinstance(header.get("revision"), int):
        return int(header["revision"])
    return 0


def kv_from_wire(d: Any) -> KeyValue:
    return KeyValue(
        key=_get(d, "key", bytes), value=_get(d, "value", bytes),
        create_revision=_get(d, "create_revision", int), mod_revision=_get(d, "mod_revision", int),
        version=_get(d, "version", int), lease=_get(d, "lease", int),
    )


def range_result_from_wire(d: Any) -> RangeResult:
    return RangeResult(
        kvs=tuple(kv_from_wire(kv) for kv in _get(d, "kvs", list)),
        more=_get(d, "more", bool), count=_get(d, "count", int), revision=_revision(d),
    )


def put_result_from_wire(d: Any) -> PutResult:
    prev = d.get("prev_kv") if isinstance(d, dict) else None
    return PutResult(prev_kv=None if prev is None else kv_from_wire(prev), revision=_revision(d))


def delete_range_result_from_wire(d: Any) -> DeleteRangeResult:
    return DeleteRangeResult(
        deleted=_get(d, "deleted", int),
        prev_kvs=tuple(kv_from_wire(kv) for kv in _get(d, "prev_kvs", list)),
        revision=_revision(d),
    )


def _response_op_from_wire(d: Any) -> ResponseOp:
    if not isinstance(d, dict) or len(d) != 1:
        raise InternalError("malformed reply: a txn response must be a one-key map")
    ((name, body),) = d.items()
    parse = _RESPONSE_OP_PARSERS.get(name)
    if parse is None:
        raise InternalError(f"malformed reply: unknown txn response {name!r}")
    return parse(body)


def txn_result_from_wire(d: Any) -> TxnResult:
    return TxnResult(
        succeeded=_get(d, "succeeded", bool),
        responses=tuple(_response_op_from_wire(r) for r in _get(d, "responses", list)),
        revision=_revision(d),
    )


_RESPONSE_OP_PARSERS: dict[str, Callable[[Any], ResponseOp]] = {
    "range": range_result_from_wire,
    "put": put_result_from_wire,
    "delete_range": delete_range_result_from_wire,
    "txn": txn_result_from_wire,
}


def lease_grant_result_from_wire(d: Any) -> LeaseGrantResult:
    return LeaseGrantResult(id=_get(d, "id", int), ttl=_get(d, "ttl", int), revision=_revision(d))


def lease_keepalive_result_from_wire(d: Any) -> LeaseKeepAliveResult:
    return LeaseKeepAliveResult(id=_get(d, "id", int), ttl=_get(d, "ttl", int),
                                revision=_revision(d))


def lease_timetolive_result_from_wire(d: Any) -> LeaseTimeToLiveResult:
    keys = d.get("keys") if isinstance(d, dict) else None
    return LeaseTimeToLiveResult(
        id=_get(d, "id", int), ttl=_get(d, "ttl", int), granted_ttl=_get(d, "granted_ttl", int),
        keys=tuple(keys or ()), revision=_revision(d),
    )


def lease_leases_result_from_wire(d: Any) -> LeaseLeasesResult:
    return LeaseLeasesResult(leases=tuple(_get(d, "leases", list)), revision=_revision(d))


def result_from_wire(op: str, d: Any) -> Result:
    """Rebuild the result of operation `op` from its reply map."""
    if op == "compact":
        return CompactionResult(revision=_revision(d))
    if op == "lease_revoke":
        return LeaseRevokeResult(revision=_revision(d))
    if op == "lease_checkpoint":
        return LeaseCheckpointResult(revision=_revision(d))
    parsers: dict[str, Callable[[Any], Result]] = {
        **_RESPONSE_OP_PARSERS,
        "lease_grant": lease_grant_result_from_wire,
        "lease_keepalive": lease_keepalive_result_from_wire,
        "lease_timetolive": lease_timetolive_result_from_wire,
        "lease_leases": lease_leases_result_from_wire,
    }
    if op not in parsers:
        raise InternalError(f"no result shape for operation {op!r}")
    return parsers[op](d)

"""Reply side of the native client: check and turn protocol maps into result values.

Shared by `Client` and `AsyncClient`. A reply that does not match
docs/protocol.md is a bug on the member's side (or a stranger on the port),
never the caller's fault, so every shape problem becomes `InternalError`
rather than a KeyError or TypeError deep inside user code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cluster.client_types import (
    CompactResult,
    DeleteResult,
    KeyValue,
    LeaseGrantResult,
    LeaseKeepAliveResult,
    LeaseLeasesResult,
    LeaseRevokeResult,
    LeaseTimeToLiveResult,
    Member,
    MemberListResult,
    PutResult,
    RangeResult,
    ResponseHeader,
    Status,
    TxnResponse,
    TxnResult,
)
from cluster.codec import decode_frame
from cluster.errors import EtcdliteError, InternalError, error_from_wire

_MISSING = object()


def decode_reply(raw: bytes) -> dict[str, Any]:
    """Decode one reply frame and return its body when `ok` is true.

    Raises:
        EtcdliteError: the typed error the member reported (`ok: false`).
        InternalError: the frame is not a protocol reply at all.
    """
    try:
        body = decode_frame(raw)
    except EtcdliteError as exc:
        raise InternalError(f"malformed reply: {exc.message}") from None
    ok = body.get("ok")
    if ok is True:
        return body
    if ok is False:
        raise error_from_wire(body.get("error"))
    raise InternalError("malformed reply: 'ok' must be a bool")


def _field(m: dict[str, Any], name: str, kind: type, default: Any = _MISSING) -> Any:
    """Fetch one field with its expected type; bool is not accepted where int is meant."""
    value = m.get(name, _MISSING)
    if value is _MISSING or (value is None and default is None):
        if default is _MISSING:
            raise InternalError(f"malformed reply: missing {name!r}")
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InternalError(f"malformed reply: {name!r} has type {type(value).__name__}")
    return value


def _map(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InternalError(f"malformed reply: {what} must be a map")
    return value


def _list(m: dict[str, Any], name: str) -> list[Any]:
    return _field(m, name, list, default=[])


def _ints(values: list[Any], what: str) -> tuple[int, ...]:
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise InternalError(f"malformed reply: {what} must hold ints")
    return tuple(values)


def parse_header(reply: dict[str, Any]) -> ResponseHeader:
    h = _map(reply.get("header"), "header")
    return ResponseHeader(
        cluster_id=_field(h, "cluster_id", int),
        member_id=_field(h, "member_id", int),
        revision=_field(h, "revision", int),
        raft_term=_field(h, "raft_term", int),
    )


def parse_kv(w: object) -> KeyValue:
    m = _map(w, "kv")
    return KeyValue(
        key=_field(m, "key", bytes),
        value=_field(m, "value", bytes, default=b""),  # absent with keys_only
        create_revision=_field(m, "create_revision", int),
        mod_revision=_field(m, "mod_revision", int),
        version=_field(m, "version", int),
        lease=_field(m, "lease", int, default=0),
    )


def _range(m: dict[str, Any], header: ResponseHeader) -> RangeResult:
    return RangeResult(
        header=header,
        kvs=tuple(parse_kv(w) for w in _list(m, "kvs")),
        more=_field(m, "more", bool, default=False),
        count=_field(m, "count", int),
    )


def _put(m: dict[str, Any], header: ResponseHeader) -> PutResult:
    prev = _field(m, "prev_kv", dict, default=None)
    return PutResult(header=header, prev_kv=None if prev is None else parse_kv(prev))


def _delete(m: dict[str, Any], header: ResponseHeader) -> DeleteResult:
    return DeleteResult(
        header=header,
        deleted=_field(m, "deleted", int),
        prev_kvs=tuple(parse_kv(w) for w in _list(m, "prev_kvs")),
    )


def _txn(m: dict[str, Any], header: ResponseHeader) -> TxnResult:
    responses: list[TxnResponse] = []
    for w in _list(m, "responses"):
        one = _map(w, "txn response")
        if len(one) != 1:
            raise InternalError("malformed reply: a txn response holds exactly one result")
        ((kind, inner),) = one.items()
        parser = _NESTED.get(kind)
        if parser is None:
            raise InternalError(f"malformed reply: unknown txn response {kind!r}")
        responses.append(parser(_map(inner, kind), header))
    succeeded = _field(m, "succeeded", bool)
    return TxnResult(header=header, succeeded=succeeded, responses=tuple(responses))


_NESTED: dict[str, Callable[[dict[str, Any], ResponseHeader], TxnResponse]] = {
    "range": _range, "put": _put, "delete_range": _delete, "txn": _txn}


def parse_range(reply: dict[str, Any], endpoint: str) -> RangeResult:
    return _range(reply, parse_header(reply))


def parse_put(reply: dict[str, Any], endpoint: str) -> PutResult:
    return _put(reply, parse_header(reply))


def parse_delete(reply: dict[str, Any], endpoint: str) -> DeleteResult:
    return _delete(reply, parse_header(reply))


def parse_txn(reply: dict[str, Any], endpoint: str) -> TxnResult:
    return _txn(reply, parse_header(reply))


def parse_compact(reply: dict[str, Any], endpoint: str) -> CompactResult:
    return CompactResult(header=parse_header(reply))


def parse_lease_grant(reply: dict[str, Any], endpoint: str) -> LeaseGrantResult:
    return LeaseGrantResult(
        header=parse_header(reply), id=_field(reply, "id", int), ttl=_field(reply, "ttl", int)
    )


def parse_lease_revoke(reply: dict[str, Any], endpoint: str) -> LeaseRevokeResult:
    return LeaseRevokeResult(header=parse_header(reply))


def parse_lease_keepalive(reply: dict[str, Any], endpoint: str) -> LeaseKeepAliveResult:
    return LeaseKeepAliveResult(
        header=parse_header(reply), id=_field(reply, "id", int), ttl=_field(reply, "ttl", int)
    )


def parse_lease_timetolive(reply: dict[str, Any], endpoint: str) -> LeaseTimeToLiveResult:
    keys = _list(reply, "keys")
    if not all(isinstance(k, bytes) for k in keys):
        raise InternalError("malformed reply: lease keys must be bytes")
    return LeaseTimeToLiveResult(
        header=parse_header(reply),
        id=_field(reply, "id", int),
        ttl=_field(reply, "ttl", int),
        granted_ttl=_field(reply, "granted_ttl", int, default=0),
        keys=tuple(keys),
    )


def parse_lease_leases(reply: dict[str, Any], endpoint: str) -> LeaseLeasesResult:
    return LeaseLeasesResult(
        header=parse_header(reply), leases=_ints(_list(reply, "leases"), "leases")
    )


def parse_status(reply: dict[str, Any], endpoint: str) -> Status:
    return Status(
        header=parse_header(reply),
        endpoint=endpoint,
        member_id=_field(reply, "member_id", int),
        name=_field(reply, "name", str, default=""),
        role=_field(reply, "role", str),
        leader=_field(reply, "leader", int),
        term=_field(reply, "term", int),
        commit_index=_field(reply, "commit_index", int),
        applied_index=_field(reply, "applied_index", int),
        revision=_field(reply, "revision", int),
        compact_revision=_field(reply, "compact_revision", int, default=0),
        db_size=_field(reply, "db_size", int, default=0),
        version=_field(reply, "version", str, default=""),
        voters=_ints(_list(reply, "voters"), "voters"),
        is_learner=_field(reply, "is_learner", bool, default=False),
        db_size_in_use=_field(reply, "db_size_in_use", int, default=0),
        errors=_strs(reply, "errors"),
    )


def _strs(m: dict[str, Any], name: str) -> tuple[str, ...]:
    values = _list(m, name)
    if not all(isinstance(v, str) for v in values):
        raise InternalError(f"malformed reply: {name!r} must hold strings")
    return tuple(values)


def _member(w: Any) -> Member:
    m = _map(w, "member")
    return Member(
        id=_field(m, "id", int),
        name=_field(m, "name", str, default=""),
        peer_urls=_strs(m, "peer_urls"),
        client_urls=_strs(m, "client_urls"),
        is_learner=_field(m, "is_learner", bool, default=False),
    )


def parse_member_list(reply: dict[str, Any], endpoint: str) -> MemberListResult:
    members = tuple(_member(w) for w in _list(reply, "members"))
    added = _member(reply["member"]) if reply.get("member") is not None else None
    return MemberListResult(header=parse_header(reply), members=members, member=added)


def parse_header_only(reply: dict[str, Any], endpoint: str) -> ResponseHeader:
    return parse_header(reply)

"""Request validation, canonical request maps, result maps, prefix ends."""

from __future__ import annotations

from typing import Any

import pytest

from cluster.errors import (
    BadRequestError,
    DuplicateKeyError,
    EtcdliteError,
    TooManyOpsError,
    UnknownOperationError,
)
from cluster.kv import (
    CompactionRequest,
    CompactionResult,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResult,
    KeyValue,
    LeaseCheckpointRequest,
    LeaseGrantRequest,
    LeaseGrantResult,
    LeaseKeepAliveRequest,
    LeaseLeasesRequest,
    LeaseLeasesResult,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
    LeaseTimeToLiveResult,
    MemberAttrRequest,
    MemberListRequest,
    PutRequest,
    PutResult,
    RangeRequest,
    RangeResult,
    Request,
    Result,
    SortOrder,
    SortTarget,
    StatusRequest,
    TxnRequest,
    TxnResult,
    decode_request,
    delete_range_result_from_wire,
    encode_request,
    kv_from_wire,
    kv_to_wire,
    parse_request,
    prefix_range_end,
    put_result_from_wire,
    range_result_from_wire,
    request_from_wire,
    request_to_wire,
    result_from_wire,
    result_to_wire,
    txn_is_read_only,
    txn_result_from_wire,
)

NESTED = TxnRequest(
    compare=(Compare(b"k", CompareTarget.VALUE, CompareResult.NOT_EQUAL, b"v", b"z"),
             Compare(b"k", CompareTarget.MOD, CompareResult.LESS, -1)),
    success=(PutRequest(b"a", b"1", lease=3, prev_kv=True),
             TxnRequest(success=(DeleteRangeRequest(b"b", b"c"),),
                        failure=(RangeRequest(b"x", limit=2),))),
    failure=(RangeRequest(b"a", b"\0", sort_order=SortOrder.DESCEND,
                          sort_target=SortTarget.VALUE, keys_only=True, max_mod_revision=9),),
)

EVERY_REQUEST: list[Request] = [
    RangeRequest(b"a", b"b", limit=1, revision=2, serializable=True, count_only=True,
                 min_mod_revision=1, min_create_revision=2, max_create_revision=3),
    PutRequest(b"k", b"", ignore_value=True, ignore_lease=True),
    DeleteRangeRequest(b"k", b"\0", prev_kv=True),
    NESTED,
    CompactionRequest(7, physical=True),
    LeaseGrantRequest(ttl=10, id=5),
    LeaseRevokeRequest(id=5),
    LeaseCheckpointRequest(id=5, remaining_ttl=3),
    LeaseKeepAliveRequest(id=5),
    LeaseTimeToLiveRequest(id=5, keys=True),
    LeaseLeasesRequest(),
    StatusRequest(),
    MemberListRequest(),
]


@pytest.mark.parametrize("req", EVERY_REQUEST, ids=lambda r: r.op)
def test_request_survives_the_log_round_trip(req: Request) -> None:
    wire = request_to_wire(req)
    assert wire["op"] == req.op
    assert request_from_wire(wire) == req
    assert decode_request(encode_request(req)) == req
    assert encode_request(req) == encode_request(request_from_wire(wire))


def test_envelope_keys_are_ignored_and_defaults_filled() -> None:
    req = parse_request({"v": 1, "id": 99, "op": "put", "key": b"k"})
    assert req == PutRequest(b"k", b"")
    assert parse_request({"v": 1, "op": "lease_revoke", "id": 4}) == LeaseRevokeRequest(id=4)


@pytest.mark.parametrize(
    "body",
    [
        {"op": 3},
        {"key": b"k"},
        {"op": "put"},
        {"op": "put", "key": b""},
        {"op": "range", "key": b""},
        {"op": "delete_range", "key": b""},
        {"op": "put", "key": "text"},
        {"op": "put", "key": b"k", "value": "text"},
        {"op": "put", "key": b"k", "lease": True},
        {"op": "put", "key": b"k", "prev_kv": 1},
        {"op": "put", "key": b"k", "value": b"v", "ignore_value": True},
        {"op": "put", "key": b"k", "lease": 3, "ignore_lease": True},
        {"op": "put", "key": b"k", "extra": 1},
        {"op": "range", "key": b"k", "limit": -1},
        {"op": "range", "key": b"k", "revision": -2},
        {"op": "range", "key": b"k", "revision": 2**63},
        {"op": "range", "key": b"k", "sort_order": "sideways"},
        {"op": "range", "key": b"k", "sort_target": "KEY"},
        {"op": "compact"},
        {"op": "lease_grant", "ttl": 10**10},
        {"op": "lease_grant", "ttl": -1},
        {"op": "txn", "compare": {}},
        {"op": "txn", "compare": [{"key": b"k", "target": "value", "value": 1}]},
        {"op": "txn", "compare": [{"key": b"k", "target": "version", "value": b"1"}]},
        {"op": "txn", "compare": [{"key": b"k", "result": "=="}]},
        {"op": "txn", "success": [{"put": {"key": b"k"}, "range": {"key": b"k"}}]},
        {"op": "txn", "success": [{"compact": {"revision": 1}}]},
        {"op": "txn", "success": [{"put": {"key": b""}}]},
    ],
)
def test_malformed_requests_are_bad_requests(body: dict[str, Any]) -> None:
    with pytest.raises(BadRequestError):
        parse_request(body)


def test_unknown_and_internal_operations_are_refused_from_clients() -> None:
    with pytest.raises(UnknownOperationError):
        parse_request({"op": "frobnicate"})
    internal = {"op": "lease_checkpoint", "id": 1, "remaining_ttl": 5}
    with pytest.raises(UnknownOperationError):
        parse_request(internal)
    assert parse_request(internal, allow_internal=True) == LeaseCheckpointRequest(1, 5)


def test_member_attributes_travel_the_log_but_never_come_from_clients() -> None:
    attrs = MemberAttrRequest(member_id=7, name="m4", client_urls=("tcp://h:1",),
                              etcd_client_urls=("http://h:2",))
    wire = request_to_wire(attrs)
    with pytest.raises(UnknownOperationError):
        parse_request(wire)
    assert request_from_wire(wire) == attrs
    assert decode_request(encode_request(attrs)) == attrs
    for bad in ({"name": 3}, {"client_urls": [1]}, {"member_id": 0}, {"extra": 1}):
        with pytest.raises(BadRequestError):
            request_from_wire({**wire, **bad})


def _txn(success: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"op": "txn", "success": success, **extra}


def test_too_many_ops_in_a_branch_or_in_compares() -> None:
    puts = [{"put": {"key": b"k%d" % i}} for i in range(4)]
    with pytest.raises(TooManyOpsError):
        parse_request(_txn(puts), max_txn_ops=3)
    assert isinstance(parse_request(_txn(puts), max_txn_ops=4), TxnRequest)
    compares = [{"key": b"k"}] * 4
    with pytest.raises(TooManyOpsError):
        parse_request(_txn([], compare=compares), max_txn_ops=3)
    nested = [{"txn": {"failure": puts}}]
    with pytest.raises(TooManyOpsError):
        parse_request(_txn(nested), max_txn_ops=3)
    # The log does not re-apply the bound: a member with a lower limit still applies it.
    assert isinstance(request_from_wire(request_to_wire(parse_request(_txn(puts)))), TxnRequest)


def _put(key: bytes) -> dict[str, Any]:
    return {"put": {"key": key}}


def _delete(key: bytes, end: bytes = b"") -> dict[str, Any]:
    return {"delete_range": {"key": key, "range_end": end}}


def _nested(success: list[Any], failure: list[Any] | None = None) -> dict[str, Any]:
    return {"txn": {"success": success, "failure": failure or []}}


@pytest.mark.parametrize(
    ("success", "refused"),
    [
        ([_put(b"a"), _put(b"a")], True),
        ([_put(b"a"), _delete(b"a")], True),
        ([_delete(b"a"), _put(b"a")], True),
        ([_delete(b"a", b"c"), _put(b"b")], True),
        ([_delete(b"a", b"\0"), _put(b"zz")], True),
        ([_delete(b"a", b"c"), _put(b"c")], False),
        ([_delete(b"a", b"c"), _delete(b"b", b"d")], False),
        ([_put(b"a"), _put(b"b")], False),
        ([_put(b"a"), {"range": {"key": b"a"}}], False),
        ([_nested([_put(b"a")], [_put(b"a")])], False),  # then/else exclude each other
        ([_put(b"a"), _nested([_put(b"a")])], True),
        ([_put(b"a"), _nested([], [_put(b"a")])], True),
        ([_nested([_put(b"a")]), _nested([_put(b"a")])], True),
        ([_delete(b"a"), _nested([_put(b"a")])], True),
        ([_nested([_delete(b"a", b"b")]), _put(b"a")], True),
    ],
)
def test_duplicate_keys_in_a_txn_branch(success: list[Any], refused: bool) -> None:
    if refused:
        with pytest.raises(DuplicateKeyError):
            parse_request(_txn(success))
        with pytest.raises(DuplicateKeyError):
            parse_request({"op": "txn", "failure": success})
    else:
        parse_request(_txn(success))


def test_success_and_failure_may_write_the_same_key() -> None:
    parse_request({"op": "txn", "success": [_put(b"a")], "failure": [_put(b"a")]})


@pytest.mark.parametrize(
    ("key", "end"),
    [(b"a", b"b"), (b"abc", b"abd"), (b"a\xff", b"b"), (b"a\xff\xff", b"b"),
     (b"\xff", b"\0"), (b"\xff\xff", b"\0"), (b"", b"\0"), (b"\x00", b"\x01")],
)
def test_prefix_range_end(key: bytes, end: bytes) -> None:
    assert prefix_range_end(key) == end


KV = KeyValue(b"k", b"v", 2, 3, 2, 7)
HEADER = {"cluster_id": 1, "member_id": 2, "revision": 11, "raft_term": 3}


@pytest.mark.parametrize(
    ("op", "result"),
    [
        ("range", RangeResult((KV, KeyValue(b"z")), more=True, count=5, revision=11)),
        ("put", PutResult(KV, revision=11)),
        ("put", PutResult(None, revision=11)),
        ("delete_range", DeleteRangeResult(1, (KV,), revision=11)),
        ("txn", TxnResult(True, (RangeResult((KV,), revision=0), PutResult(revision=0),
                                 TxnResult(False, (DeleteRangeResult(0, revision=0),))),
                          revision=11)),
        ("compact", CompactionResult(revision=11)),
        ("lease_grant", LeaseGrantResult(5, 10, revision=11)),
        ("lease_timetolive", LeaseTimeToLiveResult(5, 3, 10, (b"a", b"b"), revision=11)),
        ("lease_leases", LeaseLeasesResult((1, 2), revision=11)),
    ],
)
def test_result_survives_the_reply_round_trip(op: str, result: Result) -> None:
    reply = {"v": 1, "ok": True, "header": HEADER, **result_to_wire(result)}
    assert result_from_wire(op, reply) == result


def test_typed_from_wire_helpers_for_the_client() -> None:
    assert kv_from_wire(kv_to_wire(KV)) == KV
    body = result_to_wire(RangeResult((KV,), count=1))
    assert range_result_from_wire({"header": HEADER, **body}).revision == 11
    assert put_result_from_wire(result_to_wire(PutResult(KV))).prev_kv == KV
    assert delete_range_result_from_wire(result_to_wire(DeleteRangeResult(2))).deleted == 2
    assert txn_result_from_wire(result_to_wire(TxnResult(True))).succeeded is True


def test_malformed_replies_raise_a_typed_error() -> None:
    with pytest.raises(EtcdliteError):
        range_result_from_wire({"kvs": [{"key": "text"}], "more": False, "count": 1})
    with pytest.raises(EtcdliteError):
        txn_result_from_wire({"succeeded": True, "responses": [{"nope": {}}]})


def test_read_only_txn_detection() -> None:
    assert txn_is_read_only(TxnRequest(success=(RangeRequest(b"a"),)))
    assert not txn_is_read_only(NESTED)
    assert not txn_is_read_only(TxnRequest(failure=(TxnRequest(success=(PutRequest(b"a"),)),)))

"""Tables for the etcd API's pure parts: protobuf <-> native maps, and error mapping."""

from __future__ import annotations

import grpc
import pytest

from cluster import etcd_convert as cv
from cluster.errors import (
    BadRequestError,
    CompactedError,
    DuplicateKeyError,
    EtcdliteError,
    FutureRevisionError,
    KeyNotFoundError,
    LeaseNotFoundError,
    MemberExistsError,
    NoLeaderError,
    NoSpaceError,
    RequestTooLargeError,
    TimeoutError_,
    TooManyOpsError,
    UnavailableError,
)
from cluster.etcd_errors import status_for
from cluster.etcdpb import kv_pb2
from cluster.etcdpb import rpc_pb2 as pb

KV = {"key": b"k", "value": b"v", "create_revision": 2, "mod_revision": 3, "version": 2,
      "lease": 0}
HEADER = {"cluster_id": 1, "member_id": 2, "revision": 9, "raft_term": 4}


@pytest.mark.parametrize(("error", "code", "message"), [
    (CompactedError("x"), grpc.StatusCode.OUT_OF_RANGE,
     "etcdserver: mvcc: required revision has been compacted"),
    (FutureRevisionError("x"), grpc.StatusCode.OUT_OF_RANGE,
     "etcdserver: mvcc: required revision is a future revision"),
    (LeaseNotFoundError("x"), grpc.StatusCode.NOT_FOUND,
     "etcdserver: requested lease not found"),
    (NoSpaceError("x"), grpc.StatusCode.RESOURCE_EXHAUSTED,
     "etcdserver: mvcc: database space exceeded"),
    (RequestTooLargeError("x"), grpc.StatusCode.INVALID_ARGUMENT,
     "etcdserver: request is too large"),
    (TooManyOpsError("x"), grpc.StatusCode.INVALID_ARGUMENT,
     "etcdserver: too many operations in txn request"),
    (DuplicateKeyError("x"), grpc.StatusCode.INVALID_ARGUMENT,
     "etcdserver: duplicate key given in txn request"),
    (NoLeaderError("x"), grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader"),
    (TimeoutError_("x"), grpc.StatusCode.UNAVAILABLE, "etcdserver: request timed out"),
    (KeyNotFoundError("x"), grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key not found"),
    (BadRequestError("key is not provided"), grpc.StatusCode.INVALID_ARGUMENT,
     "etcdserver: key is not provided"),
    (BadRequestError("lease TTL too large (max 9)"), grpc.StatusCode.INVALID_ARGUMENT,
     "etcdserver: too large lease TTL"),
    (BadRequestError("can only promote a learner member"),
     grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: can only promote a learner member"),
    (BadRequestError("range: 'limit' must be an integer"), grpc.StatusCode.INVALID_ARGUMENT,
     "etcdserver: range: 'limit' must be an integer"),
    (MemberExistsError("peer URL already used by member 1"),
     grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: Peer URLs already exists"),
    (UnavailableError("too many requests"), grpc.StatusCode.UNAVAILABLE,
     "etcdserver: too many requests"),
])
def test_native_errors_map_to_etcds_status_and_text(
        error: EtcdliteError, code: grpc.StatusCode, message: str) -> None:
    st = status_for(error)
    assert (st.code, st.message) == (code, message)


def test_range_request_maps_every_field() -> None:
    r = pb.RangeRequest(key=b"a", range_end=b"b", limit=3, revision=7,
                        sort_order=pb.RangeRequest.DESCEND, sort_target=pb.RangeRequest.MOD,
                        serializable=True, keys_only=True, count_only=False,
                        min_mod_revision=1, max_mod_revision=2, min_create_revision=3,
                        max_create_revision=4)
    assert cv.range_args(r) == {
        "key": b"a", "range_end": b"b", "limit": 3, "revision": 7, "serializable": True,
        "keys_only": True, "count_only": False, "sort_order": "descend", "sort_target": "mod",
        "min_mod_revision": 1, "max_mod_revision": 2, "min_create_revision": 3,
        "max_create_revision": 4}


@pytest.mark.parametrize(("compare", "target", "value"), [
    (pb.Compare(key=b"k", target=pb.Compare.VERSION, version=3), "version", 3),
    (pb.Compare(key=b"k", target=pb.Compare.CREATE, create_revision=5), "create", 5),
    (pb.Compare(key=b"k", target=pb.Compare.MOD, mod_revision=6), "mod", 6),
    (pb.Compare(key=b"k", target=pb.Compare.VALUE, value=b"x"), "value", b"x"),
    (pb.Compare(key=b"k", target=pb.Compare.LEASE, lease=8), "lease", 8),
    # etcd reads the operand the target names, whatever member of the oneof is set.
    (pb.Compare(key=b"k", target=pb.Compare.MOD, version=9), "mod", 0),
])
def test_compare_operand_follows_the_target(compare: pb.Compare, target: str,
                                            value: object) -> None:
    args = cv.compare_args(compare)
    assert (args["target"], args["value"]) == (target, value)


def test_compare_results_use_native_operators() -> None:
    got = [cv.compare_args(pb.Compare(key=b"k", result=r))["result"]
           for r in (pb.Compare.EQUAL, pb.Compare.GREATER, pb.Compare.LESS,
                     pb.Compare.NOT_EQUAL)]
    assert got == ["=", ">", "<", "!="]


def test_nested_txn_round_trip() -> None:
    inner = pb.TxnRequest(success=[pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(
        key=b"d", prev_kv=True))])
    txn = pb.TxnRequest(success=[pb.RequestOp(request_put=pb.PutRequest(key=b"p", value=b"v")),
                                 pb.RequestOp(request_txn=inner)],
                        failure=[pb.RequestOp(request_range=pb.RangeRequest(key=b"r"))])
    args = cv.txn_args(txn)
    assert args["success"][0] == {"put": {"key": b"p", "value": b"v", "lease": 0,
                                          "prev_kv": False, "ignore_value": False,
                                          "ignore_lease": False}}
    assert args["success"][1] == {"txn": {"compare": [], "failure": [], "success": [
        {"delete_range": {"key": b"d", "range_end": b"", "prev_kv": True}}]}}
    assert list(args["failure"][0]) == ["range"]
    reply = {"header": HEADER, "succeeded": True, "responses": [
        {"put": {"prev_kv": None}},
        {"txn": {"succeeded": False, "responses": [
            {"range": {"kvs": [KV], "more": False, "count": 1}}]}}]}
    resp = cv.txn_response(reply)
    assert resp.header.revision == 9
    assert resp.responses[0].response_put.header.revision == 9
    assert not resp.responses[0].response_put.HasField("prev_kv")
    nested = resp.responses[1].response_txn
    assert nested.responses[0].response_range.kvs[0].value == b"v"
    assert nested.header.member_id == 0  # nested headers carry the revision only


def test_member_list_reports_etcd_client_urls_when_the_config_knows_them() -> None:
    members = {"members": [
        {"id": 1, "name": "m1", "peer_urls": ["tcp://h:2380"],
         "client_urls": ["tcp://h:2378"], "is_learner": False},
        {"id": 2, "name": "m2", "peer_urls": ["tcp://h:3380"],
         "client_urls": ["tcp://h:3378"], "is_learner": True}]}
    got = cv.members(members, lambda i: ["http://h:2379"] if i == 1 else None)
    assert [list(m.clientURLs) for m in got] == [["http://h:2379"], ["tcp://h:3378"]]
    assert [m.isLearner for m in got] == [False, True]


def test_member_list_prefers_published_etcd_urls_and_leaves_unstarted_members_bare() -> None:
    members = {"members": [
        {"id": 1, "name": "m1", "peer_urls": ["tcp://h:2380"], "client_urls": ["tcp://h:2378"],
         "is_learner": False, "etcd_client_urls": ["http://h:2379"]},
        {"id": 4, "name": "", "peer_urls": ["tcp://h:4380"], "client_urls": [],
         "is_learner": False, "etcd_client_urls": []}]}
    got = cv.members(members, lambda i: ["http://stale:1"])
    assert list(got[0].clientURLs) == ["http://h:2379"]  # the member's word beats a config
    got = cv.members(members, lambda i: None)
    assert (got[1].name, list(got[1].clientURLs)) == ("", [])  # etcdctl: "unstarted"


@pytest.mark.parametrize(("url", "native"), [
    ("http://10.0.0.1:2380", "tcp://10.0.0.1:2380"),
    ("https://h:2380", "tcp://h:2380"),
    ("unix:///tmp/p.sock", "ipc:///tmp/p.sock"),
    ("tcp://h:1", "tcp://h:1"),
])
def test_etcd_peer_urls_become_nng_urls(url: str, native: str) -> None:
    assert cv.etcd_peer_url(url) == native


def test_watch_create_becomes_a_poll_and_events_come_back() -> None:
    create = pb.WatchCreateRequest(key=b"a", range_end=b"b", prev_kv=True,
                                   filters=[pb.WatchCreateRequest.NOPUT])
    assert cv.watch_poll_args(create, 5, 100) == {
        "op": "watch_poll", "key": b"a", "range_end": b"b", "start_revision": 5,
        "prev_kv": True, "filters": ["noput"], "progress_notify": False, "timeout_ms": 100}
    event = cv.event({"type": "delete", "kv": {**KV, "value": b""}, "prev_kv": KV})
    assert event.type == kv_pb2.Event.DELETE
    assert event.prev_kv.value == b"v"
    assert not cv.event({"type": "put", "kv": KV, "prev_kv": None}).HasField("prev_kv")


def test_status_and_alarms() -> None:
    status = cv.status_response({
        "header": HEADER, "leader": 2, "commit_index": 10, "term": 4, "applied_index": 9,
        "db_size": 4096, "db_size_in_use": 2048, "errors": ["memberID:2 alarm:NOSPACE"],
        "is_learner": False})
    assert (status.version, status.raftIndex, status.raftAppliedIndex, status.dbSizeInUse) \
        == ("3.4.0", 10, 9, 2048)
    alarms = cv.alarm_response({"header": HEADER, "alarms": [
        {"member_id": 2, "alarm": "NOSPACE"}]})
    assert [(a.memberID, a.alarm) for a in alarms.alarms] == [(2, pb.NOSPACE)]
    assert cv.alarm_args(pb.AlarmRequest(action=pb.AlarmRequest.DEACTIVATE, memberID=2,
                                         alarm=pb.NOSPACE)) == {
        "action": "deactivate", "member_id": 2, "alarm": "NOSPACE"}

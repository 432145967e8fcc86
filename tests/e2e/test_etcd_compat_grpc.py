"""etcd's gRPC API spoken directly (grpcio stubs): error codes and texts, bad input,
Watch and LeaseKeepAlive stream semantics, Snapshot, forwarding to the leader, and the
server-side Lock and Election services."""

from __future__ import annotations

import hashlib
import queue
import socket
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from cluster.etcdpb import rpc_pb2 as pb
from cluster.etcdpb import rpc_pb2_grpc as rpc
from cluster.etcdpb import v3election_pb2 as el
from cluster.etcdpb import v3election_pb2_grpc as el_rpc
from cluster.etcdpb import v3lock_pb2 as lk
from cluster.etcdpb import v3lock_pb2_grpc as lk_rpc
from tests.e2e.etcd_tools import etcd_cluster
from tests.e2e.harness import ProcessCluster, wait_until

pytestmark = pytest.mark.e2e

MAX_REQUEST_BYTES = 128 * 1024


@pytest.fixture(scope="module")
def cluster() -> Iterator[ProcessCluster]:
    yield from etcd_cluster(3, max_request_bytes=MAX_REQUEST_BYTES)


@pytest.fixture
def channel(cluster: ProcessCluster) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(cluster.etcd_endpoint("m1")) as ch:
        yield ch


def _status(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def _serving(channel: grpc.Channel) -> None:
    """The member still answers after whatever the test threw at it."""
    rpc.KVStub(channel).Put(pb.PutRequest(key=b"alive", value=b"yes"), timeout=10)
    got = rpc.KVStub(channel).Range(pb.RangeRequest(key=b"alive"), timeout=10)
    assert got.kvs[0].value == b"yes"


def test_headers_name_the_member_and_the_cluster(cluster: ProcessCluster) -> None:
    headers = []
    for name in cluster.names:
        with grpc.insecure_channel(cluster.etcd_endpoint(name)) as ch:
            headers.append(rpc.ClusterStub(ch).MemberList(pb.MemberListRequest()).header)
    assert len({h.cluster_id for h in headers}) == 1
    assert [h.member_id for h in headers] == [cluster.member_id(n) for n in cluster.names]
    assert all(h.raft_term >= 1 and h.revision >= 1 for h in headers)


def test_errors_carry_etcds_codes_and_messages(channel: grpc.Channel) -> None:
    kv, lease = rpc.KVStub(channel), rpc.LeaseStub(channel)
    rev = kv.Put(pb.PutRequest(key=b"e/k", value=b"1")).header.revision
    kv.Put(pb.PutRequest(key=b"e/k", value=b"2"))
    expected = {
        "future": (grpc.StatusCode.OUT_OF_RANGE,
                   "etcdserver: mvcc: required revision is a future revision"),
        "no lease": (grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found"),
        "ops": (grpc.StatusCode.INVALID_ARGUMENT,
                "etcdserver: too many operations in txn request"),
        "dup": (grpc.StatusCode.INVALID_ARGUMENT,
                "etcdserver: duplicate key given in txn request"),
        "ignore": (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key not found"),
        "empty": (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided"),
        "compacted": (grpc.StatusCode.OUT_OF_RANGE,
                      "etcdserver: mvcc: required revision has been compacted"),
    }
    put = pb.RequestOp(request_put=pb.PutRequest(key=b"e/d", value=b"x"))
    got = {
        "future": _status(lambda: kv.Range(pb.RangeRequest(key=b"e/k", revision=10**9))),
        "no lease": _status(lambda: lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=12345))),
        "ops": _status(lambda: kv.Txn(pb.TxnRequest(success=[
            pb.RequestOp(request_put=pb.PutRequest(key=b"e/%d" % i)) for i in range(129)]))),
        "dup": _status(lambda: kv.Txn(pb.TxnRequest(success=[put, put]))),
        "ignore": _status(lambda: kv.Put(pb.PutRequest(key=b"e/none", ignore_value=True))),
        "empty": _status(lambda: kv.Range(pb.RangeRequest(key=b""))),
    }
    kv.Compact(pb.CompactionRequest(revision=rev + 1))
    got["compacted"] = _status(lambda: kv.Range(pb.RangeRequest(key=b"e/k", revision=rev)))
    assert got == expected
    assert _status(lambda: kv.Put(pb.PutRequest(key=b"e/l", lease=999))) == \
        expected["no lease"]


def test_unknown_methods_are_unimplemented_and_the_member_keeps_serving(
        channel: grpc.Channel) -> None:
    for path in ("/etcdserverpb.KV/Nope", "/etcdserverpb.Auth/AuthStatus", "/no.Such/Thing"):
        call = channel.unary_unary(path, request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
        code, _ = _status(lambda c=call: c(b"", timeout=10))
        assert code is grpc.StatusCode.UNIMPLEMENTED
    _serving(channel)


def test_malformed_protobuf_is_refused_and_the_member_keeps_serving(
        channel: grpc.Channel) -> None:
    raw = channel.unary_unary("/etcdserverpb.KV/Range", request_serializer=lambda b: b,
                              response_deserializer=lambda b: b)
    code, text = _status(lambda: raw(b"\x0a\xff\xff\xff\xff\x0f", timeout=10))
    assert code is grpc.StatusCode.INTERNAL
    assert text.startswith("grpc: error unmarshalling request")
    _serving(channel)


def test_oversized_requests_get_etcds_two_limits(channel: grpc.Channel) -> None:
    kv = rpc.KVStub(channel)
    code, text = _status(lambda: kv.Put(pb.PutRequest(key=b"big",
                                                      value=b"x" * (MAX_REQUEST_BYTES + 10))))
    assert (code, text) == (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large")
    code, _ = _status(lambda: kv.Put(pb.PutRequest(key=b"big", value=b"x" * (
        MAX_REQUEST_BYTES + 600 * 1024))))
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    _serving(channel)


def test_garbage_on_the_port_does_not_hurt_the_member(
        cluster: ProcessCluster, channel: grpc.Channel) -> None:
    host, port = cluster.etcd_endpoint("m1").split(":")
    for junk in (b"GARBAGE / FOO\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff" * 4,
                 b"\x00" * 64):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            while s.recv(4096):
                pass
    _serving(channel)


def _watch(channel: grpc.Channel) -> tuple[queue.Queue[pb.WatchRequest | None],
                                           Iterator[pb.WatchResponse]]:
    requests: queue.Queue[pb.WatchRequest | None] = queue.Queue()
    responses = rpc.WatchStub(channel).Watch(iter(requests.get, None), timeout=30)
    return requests, responses


def test_watch_stream_creates_routes_cancels_and_reports_progress(
        channel: grpc.Channel) -> None:
    kv = rpc.KVStub(channel)
    requests, responses = _watch(channel)
    requests.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(
        key=b"ws/a", prev_kv=True)))
    requests.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(
        key=b"ws/", range_end=b"ws0", filters=[pb.WatchCreateRequest.NODELETE])))
    first, second = next(responses), next(responses)
    assert (first.created, first.watch_id, second.created, second.watch_id) == (True, 0, True, 1)
    kv.Put(pb.PutRequest(key=b"ws/a", value=b"1"))
    kv.DeleteRange(pb.DeleteRangeRequest(key=b"ws/a"))
    got: dict[int, list[tuple[int, bytes]]] = {0: [], 1: []}
    while len(got[0]) < 2 or len(got[1]) < 1:
        r = next(responses)
        got[r.watch_id].extend((e.type, e.kv.key) for e in r.events)
    assert got == {0: [(0, b"ws/a"), (1, b"ws/a")], 1: [(0, b"ws/a")]}
    requests.put(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=0)))
    canceled = next(responses)
    assert (canceled.watch_id, canceled.canceled) == (0, True)
    last = kv.Put(pb.PutRequest(key=b"ws/b", value=b"2")).header.revision
    assert next(responses).events[0].kv.mod_revision == last
    requests.put(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))
    progress = next(responses)
    assert progress.watch_id == -1
    assert progress.header.revision >= last
    requests.put(None)


def test_watch_on_compacted_history_is_canceled_with_the_compact_revision(
        channel: grpc.Channel) -> None:
    kv = rpc.KVStub(channel)
    old = kv.Put(pb.PutRequest(key=b"wc/k", value=b"1")).header.revision
    now = kv.Put(pb.PutRequest(key=b"wc/k", value=b"2")).header.revision
    kv.Compact(pb.CompactionRequest(revision=now))
    requests, responses = _watch(channel)
    requests.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(
        key=b"wc/k", start_revision=old)))
    assert next(responses).created
    gone = next(responses)
    assert gone.canceled
    assert gone.compact_revision >= now
    assert gone.cancel_reason == "etcdserver: mvcc: required revision has been compacted"
    requests.put(None)


def test_lease_keepalive_stream_renews_and_says_ttl_0_for_unknown_leases(
        channel: grpc.Channel) -> None:
    lease = rpc.LeaseStub(channel)
    granted = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=30))
    answers = list(lease.LeaseKeepAlive(iter([pb.LeaseKeepAliveRequest(ID=granted.ID),
                                              pb.LeaseKeepAliveRequest(ID=424242)]),
                                        timeout=15))
    assert [(a.ID, a.TTL) for a in answers] == [(granted.ID, 30), (424242, 0)]
    leases = lease.LeaseLeases(pb.LeaseLeasesRequest())
    assert granted.ID in [s.ID for s in leases.leases]


def test_snapshot_stream_ends_with_the_sha256_of_the_db(channel: grpc.Channel) -> None:
    blobs = list(rpc.MaintenanceStub(channel).Snapshot(pb.SnapshotRequest(), timeout=30))
    data = b"".join(b.blob for b in blobs)
    assert blobs[-1].remaining_bytes == 0
    assert int.from_bytes(data[16:20], "little") == 0xED0CDAED  # bbolt's meta magic
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]


def test_move_leader_sent_to_a_follower_is_forwarded_to_the_leader(
        cluster: ProcessCluster) -> None:
    leader = cluster.wait_for_leader()
    follower = next(n for n in cluster.names if n != leader)
    with grpc.insecure_channel(cluster.etcd_endpoint(follower)) as ch:
        rpc.MaintenanceStub(ch).MoveLeader(
            pb.MoveLeaderRequest(targetID=cluster.member_id(follower)), timeout=15)
    assert wait_until(lambda: cluster.leader() == follower, 10, "the follower to lead")


def test_lock_service_queues_contenders_until_unlock(channel: grpc.Channel) -> None:
    lease = rpc.LeaseStub(channel)
    locks = lk_rpc.LockStub(channel)
    first, second = (lease.LeaseGrant(pb.LeaseGrantRequest(TTL=30)).ID for _ in range(2))
    held = locks.Lock(lk.LockRequest(name=b"svc-lock", lease=first), timeout=10)
    assert held.key == b"svc-lock/%x" % first
    waiting = locks.Lock.future(lk.LockRequest(name=b"svc-lock", lease=second), timeout=20)
    with pytest.raises(grpc.FutureTimeoutError):
        waiting.result(timeout=1.0)
    locks.Unlock(lk.UnlockRequest(key=held.key))
    assert waiting.result(timeout=10).key == b"svc-lock/%x" % second


def test_election_service_campaign_leader_proclaim_observe_resign(
        channel: grpc.Channel) -> None:
    lease = rpc.LeaseStub(channel)
    election = el_rpc.ElectionStub(channel)
    a, b = (lease.LeaseGrant(pb.LeaseGrantRequest(TTL=30)).ID for _ in range(2))
    won = election.Campaign(el.CampaignRequest(name=b"svc-el", lease=a, value=b"a"),
                            timeout=10).leader
    assert election.Leader(el.LeaderRequest(name=b"svc-el")).kv.value == b"a"
    observed = election.Observe(el.LeaderRequest(name=b"svc-el"), timeout=30)
    assert next(observed).kv.value == b"a"
    election.Proclaim(el.ProclaimRequest(leader=won, value=b"a2"))
    assert next(observed).kv.value == b"a2"
    pending = election.Campaign.future(el.CampaignRequest(name=b"svc-el", lease=b,
                                                          value=b"b"), timeout=20)
    election.Resign(el.ResignRequest(leader=won))
    assert pending.result(timeout=10).leader.key == b"svc-el/%x" % b
    assert next(observed).kv.value == b"b"
    _, text = _status(lambda: election.Proclaim(el.ProclaimRequest(leader=won,
                                                                   value=b"stale")))
    assert text == "election: not leader"
    observed.cancel()

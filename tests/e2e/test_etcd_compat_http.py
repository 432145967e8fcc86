"""etcd's HTTP/JSON gateway and its health/metrics endpoints, curl-style (urllib), on the
same port as gRPC; and what a member without quorum says on both."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from cluster.etcdpb import rpc_pb2 as pb
from cluster.etcdpb import rpc_pb2_grpc as rpc
from tests.e2e.etcd_tools import etcd_cluster
from tests.e2e.harness import ProcessCluster, wait_until

pytestmark = pytest.mark.e2e


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def call(pc: ProcessCluster, path: str, body: Any = None, name: str = "m1",
         method: str = "POST") -> tuple[int, Any]:
    """(HTTP status, decoded JSON or text) of one request, errors included."""
    url = f"http://{pc.etcd_endpoint(name)}{path}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            status, raw = resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read().decode()
    try:
        return status, json.loads(raw)
    except json.JSONDecodeError:
        return status, raw


def metrics(pc: ProcessCluster, name: str) -> dict[str, float]:
    status, text = call(pc, "/metrics", name=name, method="GET")
    assert status == 200
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


@pytest.fixture(scope="module")
def cluster() -> Iterator[ProcessCluster]:
    yield from etcd_cluster(3)


def test_kv_put_range_txn_delete_with_base64_and_int64_strings(cluster: ProcessCluster) -> None:
    status, put = call(cluster, "/v3/kv/put", {"key": b64("g/a"), "value": b64("1")})
    assert status == 200
    rev = int(put["header"]["revision"])
    assert isinstance(put["header"]["revision"], str)  # int64 as a JSON string
    call(cluster, "/v3/kv/put", {"key": b64("g/b"), "value": b64("2")})
    _, got = call(cluster, "/v3/kv/range", {"key": b64("g/"), "range_end": b64("g0")},
                  name="m2")
    assert [(unb64(kv["key"]), unb64(kv["value"])) for kv in got["kvs"]] == \
        [("g/a", "1"), ("g/b", "2")]
    assert got["count"] == "2"
    assert got["kvs"][0]["mod_revision"] == str(rev)
    _, txn = call(cluster, "/v3/kv/txn", {
        "compare": [{"key": b64("g/a"), "target": "VALUE", "result": "EQUAL",
                     "value": b64("1")}],
        "success": [{"request_put": {"key": b64("g/a"), "value": b64("one")}},
                    {"request_range": {"key": b64("g/b")}}]})
    assert txn["succeeded"] is True
    assert unb64(txn["responses"][1]["response_range"]["kvs"][0]["value"]) == "2"
    _, deleted = call(cluster, "/v3/kv/deleterange",
                      {"key": b64("g/"), "range_end": b64("g0"), "prev_kv": True})
    assert deleted["deleted"] == "2"
    assert sorted(unb64(kv["value"]) for kv in deleted["prev_kvs"]) == ["2", "one"]


def test_errors_are_json_with_the_grpc_code(cluster: ProcessCluster) -> None:
    status, err = call(cluster, "/v3/kv/range", {"key": b64("x"), "revision": "99999999"})
    assert status == 400
    assert err == {"error": "etcdserver: mvcc: required revision is a future revision",
                   "code": 11,
                   "message": "etcdserver: mvcc: required revision is a future revision"}
    status, err = call(cluster, "/v3/lease/revoke", {"ID": "1"})
    assert (status, err["code"]) == (404, 5)
    status, err = call(cluster, "/v3/kv/range", {"no_such_field": 1})
    assert (status, err["code"]) == (400, 3)
    status, _ = call(cluster, "/v3/kv/range", "not json at all")
    assert status == 400
    status, _ = call(cluster, "/v3/kv/nope", {})
    assert status == 404


def test_compaction_and_leases(cluster: ProcessCluster) -> None:
    _, put = call(cluster, "/v3/kv/put", {"key": b64("gc/k"), "value": b64("v")})
    status, _ = call(cluster, "/v3/kv/compaction", {"revision": put["header"]["revision"]})
    assert status == 200
    _, lease = call(cluster, "/v3/lease/grant", {"TTL": "60"})
    assert lease["TTL"] == "60"
    call(cluster, "/v3/kv/put", {"key": b64("gl/k"), "value": b64("v"), "lease": lease["ID"]})
    _, ttl = call(cluster, "/v3/kv/lease/timetolive", {"ID": lease["ID"], "keys": True})
    assert ttl["grantedTTL"] == "60"
    assert [unb64(k) for k in ttl["keys"]] == ["gl/k"]
    _, leases = call(cluster, "/v3/lease/leases", {})
    assert {"ID": lease["ID"]} in leases["leases"]
    assert call(cluster, "/v3/lease/revoke", {"ID": lease["ID"]})[0] == 200
    _, gone = call(cluster, "/v3/kv/range", {"key": b64("gl/k")})
    assert "kvs" not in gone


def test_cluster_and_maintenance(cluster: ProcessCluster) -> None:
    _, members = call(cluster, "/v3/cluster/member/list", {})
    assert sorted(m["name"] for m in members["members"]) == cluster.names
    assert {m["clientURLs"][0] for m in members["members"]} == \
        {f"http://{cluster.etcd_endpoint(n)}" for n in cluster.names}
    _, status = call(cluster, "/v3/maintenance/status", {}, name="m3")
    assert status["version"] == "3.4.0"
    assert status["header"]["member_id"] == str(cluster.member_id("m3"))
    _, alarms = call(cluster, "/v3/maintenance/alarm", {"action": "GET"})
    assert "alarms" not in alarms


def test_health_livez_readyz_version(cluster: ProcessCluster) -> None:
    for name in cluster.names:
        assert call(cluster, "/health", name=name, method="GET") == \
            (200, {"health": "true", "reason": ""})
        assert call(cluster, "/livez", name=name, method="GET") == (200, "ok")
        assert call(cluster, "/readyz", name=name, method="GET") == (200, "ok")
    status, version = call(cluster, "/version", method="GET")
    assert (status, version["etcdserver"], version["etcdcluster"]) == (200, "3.4.0", "3.4.0")


def test_metrics_are_prometheus_text_with_etcds_names(cluster: ProcessCluster) -> None:
    scraped = {n: metrics(cluster, n) for n in cluster.names}
    assert all(m["etcd_server_has_leader"] == 1 for m in scraped.values())
    assert sum(m["etcd_server_is_leader"] for m in scraped.values()) == 1
    for m in scraped.values():
        assert m["etcd_mvcc_db_total_size_in_bytes"] > 0
        assert m["etcd_server_proposals_committed_total"] >= \
            m["etcd_server_proposals_applied_total"] - 1
        assert m["etcd_debugging_mvcc_current_revision"] >= 1
        assert m["etcdlite_etcd_api_calls_total"] >= 1


def test_watch_streams_json_lines(cluster: ProcessCluster) -> None:
    _, now = call(cluster, "/v3/kv/range", {"key": b64("gw/k")})
    start = int(now["header"]["revision"]) + 1
    url = f"http://{cluster.etcd_endpoint('m1')}/v3/watch"
    body = json.dumps({"create_request": {"key": b64("gw/k"), "start_revision": str(start)}})
    req = urllib.request.Request(url, data=body.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=15) as stream:
        created = json.loads(stream.readline())["result"]
        assert created["created"] is True
        call(cluster, "/v3/kv/put", {"key": b64("gw/k"), "value": b64("hello")}, name="m2")
        event = json.loads(stream.readline())["result"]["events"][0]
    assert (unb64(event["kv"]["key"]), unb64(event["kv"]["value"])) == ("gw/k", "hello")


def test_a_member_without_quorum_says_so_on_grpc_and_http(make_cluster: Any) -> None:
    pc = make_cluster(3, start=False, etcd=True)
    pc.start_all()
    pc.wait_for_leader(20)
    wait_until(lambda: call(pc, "/health", name="m1", method="GET")[0] == 200, 20, "health")
    pc.kill("m2")
    pc.kill("m3")
    wait_until(lambda: call(pc, "/health", name="m1", method="GET")[0] == 503, 20,
               "/health to say 503")
    _status, health = call(pc, "/health", name="m1", method="GET")
    assert health["health"] == "false"
    assert health["reason"]
    assert call(pc, "/readyz", name="m1", method="GET")[0] == 503
    assert wait_until(lambda: metrics(pc, "m1")["etcd_server_has_leader"] == 0, 20,
                      "has_leader 0")
    with grpc.insecure_channel(pc.etcd_endpoint("m1")) as ch, \
            pytest.raises(grpc.RpcError) as info:
        rpc.KVStub(ch).Put(pb.PutRequest(key=b"q", value=b"v"), timeout=20)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    assert info.value.details() in ("etcdserver: no leader", "etcdserver: request timed out")


def _first_line(pc: ProcessCluster, path: str, body: Any) -> Any:
    url = f"http://{pc.etcd_endpoint('m1')}{path}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=15) as stream:
        return json.loads(stream.readline())


def test_keepalive_lock_and_election_over_http(cluster: ProcessCluster) -> None:
    _, lease = call(cluster, "/v3/lease/grant", {"TTL": "60"})
    alive = _first_line(cluster, "/v3/lease/keepalive", {"ID": lease["ID"]})["result"]
    assert (alive["ID"], alive["TTL"]) == (lease["ID"], "60")
    status, locked = call(cluster, "/v3/lock/lock", {"name": b64("hl"), "lease": lease["ID"]})
    assert status == 200
    assert unb64(locked["key"]) == f"hl/{int(lease['ID']):x}"
    assert call(cluster, "/v3/lock/unlock", {"key": locked["key"]})[0] == 200
    _, won = call(cluster, "/v3/election/campaign",
                  {"name": b64("he"), "lease": lease["ID"], "value": b64("me")})
    assert won["leader"]["key"] == b64(f"he/{int(lease['ID']):x}")
    _, leader = call(cluster, "/v3/election/leader", {"name": b64("he")})
    assert unb64(leader["kv"]["value"]) == "me"
    observed = _first_line(cluster, "/v3/election/observe", {"name": b64("he")})["result"]
    assert unb64(observed["kv"]["value"]) == "me"
    assert call(cluster, "/v3/election/resign", {"leader": won["leader"]})[0] == 200
    status, err = call(cluster, "/v3/election/leader", {"name": b64("he")})
    assert (status, err["message"]) == (500, "election: no leader")


def test_snapshot_streams_the_etcd_format_db_as_json_lines(cluster: ProcessCluster) -> None:
    call(cluster, "/v3/kv/put", {"key": b64("snap/k"), "value": b64("v")})
    url = f"http://{cluster.etcd_endpoint('m1')}/v3/maintenance/snapshot"
    req = urllib.request.Request(url, data=b"{}", method="POST")
    with urllib.request.urlopen(req, timeout=30) as stream:
        lines = [json.loads(line) for line in stream if line.strip()]
    results = [line["result"] for line in lines]
    data = b"".join(base64.b64decode(r.get("blob", "")) for r in results)
    remaining = [int(r.get("remaining_bytes", 0)) for r in results]
    assert remaining == sorted(remaining, reverse=True)
    assert remaining[-1] == 0
    assert int.from_bytes(data[16:20], "little") == 0xED0CDAED  # bbolt, as etcd streams
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]

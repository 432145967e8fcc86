"""Bad input gets a typed error reply and the member keeps serving (real processes)."""

from __future__ import annotations

from collections.abc import Iterator

import cbor2
import pynng
import pytest

from cluster import codec
from tests.e2e.harness import ProcessCluster

pytestmark = pytest.mark.e2e


def raw_request(pc: ProcessCluster, name: str, frame: bytes) -> dict:
    with pynng.Req0(recv_timeout=5000, send_timeout=5000,
                    recv_max_size=64 * 1024 * 1024) as sock:
        sock.dial(pc.endpoint(name), block=True)
        sock.send(frame)
        reply = cbor2.loads(sock.recv())
    assert reply["v"] == 1
    return reply


@pytest.fixture(scope="module")
def cluster() -> Iterator[ProcessCluster]:
    """One cluster for every case: each case checks the member still serves afterwards."""
    pc = ProcessCluster(3)
    try:
        pc.start_all()
        pc.wait_for_leader(15)
        yield pc
    finally:
        pc.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param(b"\xff\x00garbage", "bad_request", id="not-cbor"),
        pytest.param(b"", "bad_request", id="empty"),
        pytest.param(cbor2.dumps([1, 2, 3]), "bad_request", id="not-a-map"),
        pytest.param(cbor2.dumps({"v": 99, "op": "range", "key": b"a"}), "unsupported_version",
                     id="wrong-version"),
        pytest.param(codec.encode_frame({"op": "frobnicate"}), "unknown_operation",
                     id="unknown-op"),
        pytest.param(codec.encode_frame({"op": "put", "key": 17, "value": b"x"}), "bad_request",
                     id="key-wrong-type"),
        pytest.param(codec.encode_frame({"op": "put", "key": b"k", "value": "text"}),
                     "bad_request", id="value-wrong-type"),
        pytest.param(codec.encode_frame({"op": "range", "key": b"k", "limit": -1}),
                     "bad_request", id="negative-limit"),
        pytest.param(codec.encode_frame({"op": "put", "key": b"k", "value": b"v", "zzz": 1}),
                     "bad_request", id="unknown-field"),
        pytest.param(codec.encode_frame({"op": "put", "key": b"k",
                                         "value": b"x" * (2 * 1024 * 1024)}),
                     "request_too_large", id="value-over-max-request-bytes"),
        pytest.param(codec.encode_frame({"op": "lease_checkpoint", "id": 1, "remaining_ttl": 5}),
                     "unknown_operation", id="internal-op-from-client"),
    ],
)
def test_bad_frame_gets_typed_error_and_member_keeps_serving(
        cluster: ProcessCluster, frame: bytes, code: str) -> None:
    name = cluster.names[0]
    reply = raw_request(cluster, name, frame)
    assert reply["ok"] is False
    assert reply["error"]["code"] == code
    with cluster.client([name]) as c:
        c.put("still", "serving")
        assert c.get("still").kvs[0].value == b"serving"
    assert cluster.is_running(name)


def test_garbage_on_peer_socket_is_dropped_and_cluster_keeps_working(
        cluster: ProcessCluster) -> None:
    target = cluster.config.members[0]
    with pynng.Push0(send_timeout=2000) as sock:
        sock.dial(target.peer_url, block=True)
        for frame in (b"\x00\x01junk", cbor2.dumps({"v": 1, "from": "x", "msgs": 3}),
                      codec.encode_frame({"from": 5, "msgs": [[1, 2, 3]]}),
                      codec.encode_frame({"from": 5, "msgs": [[3, target.member_id, 5, 99, 0,
                                                                0, [], 0, False, 0, b"", None]]})):
            sock.send(frame)
    with cluster.client() as c:
        c.put("after-junk", "ok")
    for name in cluster.names:
        with cluster.client([name]) as c:
            assert c.get("after-junk").kvs[0].value == b"ok"
        assert cluster.is_running(name)
    assert "dropped" in cluster.log_path(target.name).read_text()
    # The forged message claimed term 99 from an unknown member: it must not move the term.
    assert all(cluster.status(n).term < 99 for n in cluster.names)

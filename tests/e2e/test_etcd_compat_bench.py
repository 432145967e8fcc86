"""What the etcd API costs per call compared with the native nng path (slow: run with
`python -m pytest -m slow tests/e2e/test_etcd_compat_bench.py -s`).

The same 1,000 sequential Range calls go through: the native client (nng + CBOR),
etcd's gRPC on the client port (through the port multiplexer), and gRPC straight
to grpcio's private socket (no multiplexer), each serializable (local read: pure
request overhead) and linearizable (plus a ReadIndex round).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import grpc
import pytest

from cluster.etcdpb import rpc_pb2 as pb
from cluster.etcdpb import rpc_pb2_grpc as rpc
from tests.e2e.etcd_tools import etcd_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CALLS = 1000


def _per_call_us(fn: Callable[[], object], calls: int = CALLS) -> float:
    for _ in range(50):  # warm up connections and caches
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def test_grpc_bridge_overhead_against_native_range() -> None:
    for pc in etcd_cluster(3):
        name = pc.wait_for_leader()
        socket_name = re.search(r"unix-abstract:(\S+)\)", pc.log_path(name).read_text())
        assert socket_name is not None
        results: dict[str, float] = {}
        with pc.client([name]) as native:
            native.put("bench", "x")
            results["native serializable"] = _per_call_us(
                lambda: native.get("bench", serializable=True))
            results["native linearizable"] = _per_call_us(lambda: native.get("bench"))
        for label, target in (("grpc via port", pc.etcd_endpoint(name)),
                              ("grpc direct", f"unix-abstract:{socket_name.group(1)}")):
            with grpc.insecure_channel(target) as ch:
                kv = rpc.KVStub(ch)
                ser = pb.RangeRequest(key=b"bench", serializable=True)
                lin = pb.RangeRequest(key=b"bench")
                results[f"{label} serializable"] = _per_call_us(lambda k=kv, r=ser: k.Range(r))
                results[f"{label} linearizable"] = _per_call_us(lambda k=kv, r=lin: k.Range(r))
        for label, us in results.items():
            print(f"{label:32s} {us:8.0f} us/call")
        # Loose sanity bound only: the figures are for the README, not a gate.
        assert results["grpc via port serializable"] < 20 * results["native serializable"]

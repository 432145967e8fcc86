"""etcd's gRPC services on grpcio's asyncio server, every call served by `EtcdApi`.

Handlers are registered generically by method path (no generated servicer
classes), so one wrapper gives every unary method the same treatment: size
check, call, and `EtcdStatus` -> gRPC status with etcd's code and text.

Bad input: an unknown method gets UNIMPLEMENTED from grpcio itself; a unary
body that is not the method's protobuf gets INTERNAL "grpc: error
unmarshalling request" as from etcd (a streaming one is ended by grpcio); a
request over --max-request-bytes gets INVALID_ARGUMENT "etcdserver: request is
too large", and one over that plus etcd's 512 KiB of gRPC slack is cut off by
grpcio with RESOURCE_EXHAUSTED, as etcd's own limits do. None of them reaches
the member's trio loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError

from actors.etcd_api import EtcdApi, Method
from actors.etcd_auth import call_token, token_from_metadata
from actors.etcd_locks import Concurrency
from actors.etcd_streams import WatchSession, lease_keepalive, snapshot
from cluster.etcd_errors import EtcdStatus
from cluster.etcdpb import rpc_pb2 as pb
from cluster.etcdpb import v3election_pb2 as el

grpc_overhead_bytes = 512 * 1024
"""etcd lets a gRPC message exceed --max-request-bytes by this much before gRPC
itself refuses it; between the two the member answers "request is too large"."""

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def _take_token(context: Context) -> None:
    """The call's auth token (metadata "token"), for every native request it makes."""
    call_token.set(token_from_metadata(context.invocation_metadata()))


class _Malformed:
    """What a request that is not valid protobuf deserializes to (see `_parser`)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _parser(cls: Any) -> Callable[[bytes], Any]:
    """grpcio answers a deserializer's exception with UNKNOWN; etcd (grpc-go) answers
    INTERNAL "grpc: error unmarshalling request", which the handler can only send if
    the failure reaches it as a value."""
    def parse(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except DecodeError as exc:
            return _Malformed(str(exc))

    return parse


def _unary(api: EtcdApi, method: Method) -> grpc.RpcMethodHandler:
    async def behavior(request: Any, context: Context) -> Any:
        if isinstance(request, _Malformed):
            await context.abort(grpc.StatusCode.INTERNAL,
                                f"grpc: error unmarshalling request: {request.reason}")
        _take_token(context)
        try:
            api.check_size(request)
            return await method.handler(request)
        except EtcdStatus as st:
            await context.abort(st.code, st.message)

    return grpc.unary_unary_rpc_method_handler(
        behavior, request_deserializer=_parser(method.request),
        response_serializer=method.response.SerializeToString)


def _stream_stream(behavior: Callable[[AsyncIterator[Any], Context], Awaitable[None]],
                   request: Any, response: Any) -> grpc.RpcMethodHandler:
    return grpc.stream_stream_rpc_method_handler(
        behavior, request_deserializer=request.FromString,
        response_serializer=response.SerializeToString)


def _snapshot_handler(api: EtcdApi) -> grpc.RpcMethodHandler:
    async def behavior(request: pb.SnapshotRequest, context: Context
                       ) -> AsyncIterator[pb.SnapshotResponse]:
        _take_token(context)
        try:
            async for resp in snapshot(api, request, context):
                yield resp
        except EtcdStatus as st:
            await context.abort(st.code, st.message)

    return grpc.unary_stream_rpc_method_handler(
        behavior, request_deserializer=pb.SnapshotRequest.FromString,
        response_serializer=pb.SnapshotResponse.SerializeToString)


def _observe_handler(concurrency: Concurrency) -> grpc.RpcMethodHandler:
    async def behavior(request: el.LeaderRequest, context: Context
                       ) -> AsyncIterator[el.LeaderResponse]:
        _take_token(context)
        try:
            async for resp in concurrency.observe(request):
                yield resp
        except EtcdStatus as st:
            await context.abort(st.code, st.message)

    return grpc.unary_stream_rpc_method_handler(
        behavior, request_deserializer=el.LeaderRequest.FromString,
        response_serializer=el.LeaderResponse.SerializeToString)


def _handlers(api: EtcdApi, concurrency: Concurrency) -> list[grpc.GenericRpcHandler]:
    by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}

    def add(path: str, handler: grpc.RpcMethodHandler) -> None:
        service, name = path.lstrip("/").split("/")
        by_service.setdefault(service, {})[name] = handler

    for method in [*api.methods(), *concurrency.methods()]:
        add(method.path, _unary(api, method))
    add("/v3electionpb.Election/Observe", _observe_handler(concurrency))

    async def watch(requests: AsyncIterator[pb.WatchRequest], context: Context) -> None:
        _take_token(context)
        await WatchSession(api).serve(requests, context.write)

    async def keepalive(requests: AsyncIterator[pb.LeaseKeepAliveRequest],
                        context: Context) -> None:
        _take_token(context)
        await lease_keepalive(api, requests, context)

    add("/etcdserverpb.Watch/Watch",
        _stream_stream(watch, pb.WatchRequest, pb.WatchResponse))
    add("/etcdserverpb.Lease/LeaseKeepAlive",
        _stream_stream(keepalive, pb.LeaseKeepAliveRequest, pb.LeaseKeepAliveResponse))
    add("/etcdserverpb.Maintenance/Snapshot", _snapshot_handler(api))
    return [grpc.method_handlers_generic_handler(service, methods)
            for service, methods in by_service.items()]


def make_server(api: EtcdApi, concurrency: Concurrency, *, max_request_bytes: int
                ) -> grpc.aio.Server:
    """A grpc.aio server with every etcd service (not yet bound or started).

    Must be called on the asyncio loop that will run it.
    """
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", max_request_bytes + grpc_overhead_bytes),
        ("grpc.max_send_message_length", 2**31 - 1),
        # etcd clients ping idle connections (keepalive); do not punish them for it.
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.http2.max_ping_strikes", 0),
    ])
    server.add_generic_rpc_handlers(_handlers(api, concurrency))
    return server

"""etcd's HTTP/JSON gateway, health and metrics endpoints, on aiohttp.

The JSON API is etcd's grpc-gateway shape: POST /v3/<service>/<call> with the
request message as protobuf's JSON mapping (original field names, int64 as
strings, bytes as base64), answered with the response message the same way,
or with {"error", "code", "message"} and an HTTP status derived from the
gRPC code. Each route calls the same `EtcdApi` method as the gRPC server,
so the gateway is one more translation onto the native protocol.

/v3/watch, /v3/lease/keepalive, /v3/election/observe and /v3/maintenance/snapshot
stream newline-separated {"result": <response>} objects for as long as the client
stays connected, as etcd's gateway does (a keep-alive answers its one request, a
snapshot ends after its last blob).

WHY aiohttp: a maintained, complete HTTP/1.1 server (keep-alive, chunked
bodies, malformed-request handling) that runs on the asyncio loop grpcio
already needs, and whose protocol object can take over a connection the port
multiplexer (actors.etcd_front) has already accepted and peeked at.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message

from actors.etcd_api import EtcdApi, Method
from actors.etcd_auth import AUTH_ROUTES, call_token, token_from_metadata
from actors.etcd_streams import WatchSession, snapshot
from cluster.etcd_convert import ETCD_API_VERSION
from cluster.etcd_errors import EtcdStatus
from cluster.etcdpb import rpc_pb2 as pb
from cluster.etcdpb import v3election_pb2 as el

ROUTES: dict[str, str] = {
    "/v3/kv/range": "/etcdserverpb.KV/Range",
    "/v3/kv/put": "/etcdserverpb.KV/Put",
    "/v3/kv/deleterange": "/etcdserverpb.KV/DeleteRange",
    "/v3/kv/txn": "/etcdserverpb.KV/Txn",
    "/v3/kv/compaction": "/etcdserverpb.KV/Compact",
    "/v3/lease/grant": "/etcdserverpb.Lease/LeaseGrant",
    "/v3/lease/revoke": "/etcdserverpb.Lease/LeaseRevoke",
    "/v3/kv/lease/revoke": "/etcdserverpb.Lease/LeaseRevoke",
    "/v3/lease/timetolive": "/etcdserverpb.Lease/LeaseTimeToLive",
    "/v3/kv/lease/timetolive": "/etcdserverpb.Lease/LeaseTimeToLive",
    "/v3/lease/leases": "/etcdserverpb.Lease/LeaseLeases",
    "/v3/kv/lease/leases": "/etcdserverpb.Lease/LeaseLeases",
    "/v3/cluster/member/add": "/etcdserverpb.Cluster/MemberAdd",
    "/v3/cluster/member/remove": "/etcdserverpb.Cluster/MemberRemove",
    "/v3/cluster/member/update": "/etcdserverpb.Cluster/MemberUpdate",
    "/v3/cluster/member/list": "/etcdserverpb.Cluster/MemberList",
    "/v3/cluster/member/promote": "/etcdserverpb.Cluster/MemberPromote",
    "/v3/maintenance/alarm": "/etcdserverpb.Maintenance/Alarm",
    "/v3/maintenance/status": "/etcdserverpb.Maintenance/Status",
    "/v3/maintenance/defragment": "/etcdserverpb.Maintenance/Defragment",
    "/v3/maintenance/hash": "/etcdserverpb.Maintenance/Hash",
    "/v3/maintenance/transfer-leadership": "/etcdserverpb.Maintenance/MoveLeader",
    "/v3/lock/lock": "/v3lockpb.Lock/Lock",
    "/v3/lock/unlock": "/v3lockpb.Lock/Unlock",
    "/v3/election/campaign": "/v3electionpb.Election/Campaign",
    "/v3/election/proclaim": "/v3electionpb.Election/Proclaim",
    "/v3/election/leader": "/v3electionpb.Election/Leader",
    "/v3/election/resign": "/v3electionpb.Election/Resign",
}
"""Gateway path -> gRPC method, as etcd's gateway routes them."""
ROUTES.update(AUTH_ROUTES)

# grpc-gateway's code -> HTTP status table (the v1 gateway etcd 3.4 ships).
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200, grpc.StatusCode.CANCELLED: 408, grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.FAILED_PRECONDITION: 412,
    grpc.StatusCode.ABORTED: 409, grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DATA_LOSS: 500,
}

Metrics = Callable[[], Awaitable[str]]
Produce = Callable[[Any], AsyncIterator[Message]]

disconnect_check_s = 1.0
"""How often an HTTP watch checks whether its client hung up (aiohttp does not tell)."""


def to_json(message: Message) -> str:
    """Compact JSON with the proto field names, as etcd's gateway writes it."""
    return _dumps(json_format.MessageToDict(message, preserving_proto_field_name=True))


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _json(value: object, status: int = 200) -> web.Response:
    return web.Response(text=_dumps(value), status=status, content_type="application/json")


def error_response(st: EtcdStatus) -> web.Response:
    code = st.code.value[0]
    body = {"error": st.message, "code": code, "message": st.message}
    return _json(body, _HTTP_STATUS.get(st.code, 500))


async def _parse(request: web.Request, cls: type[Message]) -> Message:
    text = await request.text()
    message = cls()
    if text.strip():
        try:
            json_format.Parse(text, message)
        except json_format.ParseError as exc:
            raise EtcdStatus(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
    return message


def _route(api: EtcdApi, method: Method) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        try:
            message = await _parse(request, method.request)
            api.check_size(message)
            return web.Response(text=to_json(await method.handler(message)),
                                content_type="application/json")
        except EtcdStatus as st:
            return error_response(st)

    return handle


def _watch_route(api: EtcdApi) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            first = await _parse(request, pb.WatchRequest)
        except EtcdStatus as st:
            return error_response(st)
        stream = web.StreamResponse(headers={"Content-Type": "application/json"})
        await stream.prepare(request)

        async def requests() -> AsyncIterator[pb.WatchRequest]:
            yield first  # type: ignore[misc]
            # Nothing more comes from an HTTP client: the stream lasts until it hangs up.
            while request.transport is not None and not request.transport.is_closing():  # noqa: ASYNC110 - aiohttp has no hang-up event
                await asyncio.sleep(disconnect_check_s)

        async def write(resp: pb.WatchResponse) -> None:
            line = '{"result":' + to_json(resp) + "}\n"
            await stream.write(line.encode())

        await WatchSession(api).serve(requests(), write)
        return stream

    return handle


def _stream_route(cls: type[Message], produce: Produce
                  ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A server-streaming call as JSON lines, for as long as the client listens."""
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            first = await _parse(request, cls)
        except EtcdStatus as st:
            return error_response(st)
        stream = web.StreamResponse(headers={"Content-Type": "application/json"})
        await stream.prepare(request)

        async def pump() -> None:
            try:
                async for resp in produce(first):
                    await stream.write(('{"result":' + to_json(resp) + "}\n").encode())
            except EtcdStatus as st:
                error = {"grpc_code": st.code.value[0], "message": st.message,
                         "http_code": _HTTP_STATUS.get(st.code, 500)}
                await stream.write((_dumps({"error": error}) + "\n").encode())

        task = asyncio.create_task(pump())
        try:
            while not task.done():
                if request.transport is None or request.transport.is_closing():
                    task.cancel()
                await asyncio.wait({task}, timeout=disconnect_check_s)
            if not task.cancelled():
                with contextlib.suppress(OSError):
                    task.result()
        finally:
            task.cancel()
        return stream

    return handle


@web.middleware
async def _auth_token(request: web.Request, handler: Any) -> web.StreamResponse:
    """etcd's gateway takes the token from the "Authorization" header; every native
    request of this call (and of the tasks it starts) carries it on."""
    call_token.set(token_from_metadata(request.headers.items()))
    response: web.StreamResponse = await handler(request)
    return response


def make_app(api: EtcdApi, *, methods: dict[str, Method], metrics: Metrics,
             version: str, observe: Produce | None = None) -> web.Application:
    """The gateway application; `methods` maps gRPC paths to methods (every service's)."""
    app = web.Application(client_max_size=api_max_body_bytes(api), middlewares=[_auth_token])
    for path, grpc_path in ROUTES.items():
        method = methods.get(grpc_path)
        if method is not None:
            app.router.add_post(path, _route(api, method))
    app.router.add_post("/v3/watch", _watch_route(api))

    async def keepalive(first: Message) -> AsyncIterator[Message]:
        assert isinstance(first, pb.LeaseKeepAliveRequest)
        yield await api.lease_keepalive_once(first.ID)

    app.router.add_post("/v3/lease/keepalive", _stream_route(pb.LeaseKeepAliveRequest,
                                                             keepalive))
    if observe is not None:
        app.router.add_post("/v3/election/observe", _stream_route(el.LeaderRequest, observe))

    async def snapshot_blobs(first: Message) -> AsyncIterator[Message]:
        assert isinstance(first, pb.SnapshotRequest)
        async for resp in snapshot(api, first):
            yield resp

    app.router.add_post("/v3/maintenance/snapshot", _stream_route(pb.SnapshotRequest,
                                                                  snapshot_blobs))

    async def health(_request: web.Request) -> web.Response:
        try:
            d = await api.native("health")
            ok, reason = bool(d["health"]), str(d.get("reason", ""))
        except EtcdStatus as st:
            ok, reason = False, st.message
        body = {"health": "true" if ok else "false", "reason": reason}
        return _json(body, 200 if ok else 503)

    async def livez(_request: web.Request) -> web.Response:
        # Alive = the member's trio loop still answers (a cheap local op).
        try:
            await api.native("status")
        except EtcdStatus as st:
            return web.Response(text=f"[-]serializable_read failed: {st.message}\n",
                                status=503)
        return web.Response(text="ok")

    async def readyz(_request: web.Request) -> web.Response:
        try:
            d = await api.native("health")
        except EtcdStatus as st:
            return web.Response(text=f"[-]data_corruption ok\n[-]linearizable_read failed: "
                                f"{st.message}\n", status=503)
        if not d["health"]:
            return web.Response(text=f"[-]linearizable_read failed: {d.get('reason')}\n",
                                status=503)
        return web.Response(text="ok")

    async def version_route(_request: web.Request) -> web.Response:
        return _json({"etcdserver": ETCD_API_VERSION, "etcdcluster": ETCD_API_VERSION,
                      "etcdlite": version})

    async def metrics_route(_request: web.Request) -> web.Response:
        return web.Response(text=await metrics(),
                            content_type="text/plain", charset="utf-8",
                            headers={"X-Prometheus-Format": "0.0.4"})

    app.router.add_get("/health", health)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/version", version_route)
    app.router.add_get("/metrics", metrics_route)
    return app


def api_max_body_bytes(api: EtcdApi) -> int:
    """JSON with base64 is ~1.4x the protobuf; let the size check say "too large"."""
    return 2 * api.max_request_bytes + 64 * 1024

"""The etcd-compatible client endpoint of one member: gRPC + HTTP/JSON on etcd_client_url.

This actor owns an asyncio event loop in a thread of its own (grpcio's server
cannot run under trio), on which run grpcio's asyncio server, the aiohttp
gateway and the port multiplexer in front of both (actors.etcd_front). Every
call they serve crosses back to this member's trio loop through the
`TrioBridge` and is answered by `ClientServer._dispatch`: the etcd API is a
translation onto the native protocol, never a second path to the state.

STARTUP: `run` starts the bridge, then the thread, and calls `started()` only
once the etcd port is bound (a port already taken fails the member loudly, as
it would fail etcd). SHUTDOWN: cancellation stops the servers on the asyncio
loop, then joins the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, NoReturn, final
from urllib.parse import urlsplit

import trio
from aiohttp import web

from actors.etcd_api import EtcdApi
from actors.etcd_bridge import TrioBridge
from actors.etcd_front import PortMux
from actors.etcd_grpc import make_server
from actors.etcd_http import make_app
from actors.etcd_locks import Concurrency
from actors.etcd_metrics import render_metrics
from actors.leader_proxy import LeaderProxy

log = logging.getLogger("etcdlite.etcd")

shutdown_grace_s = 1.0
"""In-flight gRPC calls get this long to finish when the member stops."""

thread_join_s = 10.0


@final
class EtcdGateway:
    """Serves etcd's v3 API for one member.

    Args:
        member: the `cluster.member.Member` (config, leader id, client URLs).
        dispatch: `ClientServer._dispatch`, which answers every native request.
        url: the member's etcd client URL (http://host:port) to listen on.
        max_request_bytes: etcd's --max-request-bytes.
        quota_bytes: --quota-backend-bytes (reported in /metrics).
        request_timeout_s: deadline of a request forwarded to the leader.
        version: etcdlite's version, for /version.
    """

    def __init__(self, *, member: Any, dispatch: Callable[..., Any], url: str,
                 max_request_bytes: int, quota_bytes: int, request_timeout_s: float,
                 version: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.port is None:
            raise ValueError(f"etcd client URL {url!r}: http://host:port only (no TLS)")
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port
        self._member = member
        self._proxy = LeaderProxy(leader_id=member.leader_id,
                                  client_url_of=member.client_url_of,
                                  timeout_s=request_timeout_s)
        self.bridge = TrioBridge(dispatch, forward=self._proxy.forward)
        cluster = member.cfg.cluster

        def client_urls_of(member_id: int) -> list[str] | None:
            spec = cluster.member_by_id(member_id)
            return [spec.etcd_client_url] if spec is not None and spec.etcd_client_url \
                else None

        self.api = EtcdApi(self.bridge, client_urls_of=client_urls_of,
                           max_request_bytes=max_request_bytes, member_id=member.id,
                           cluster_id=member.cluster_id)
        self._quota_bytes = quota_bytes
        self._version = version
        # The gRPC server's private socket: abstract (no file to clean up), unique.
        self.grpc_socket = f"etcdlite-{member.id:x}-{os.getpid()}-{id(self):x}"
        self.mux: PortMux | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._thread: threading.Thread | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> NoReturn:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.bridge.run)
            self._thread = threading.Thread(target=self._thread_main, daemon=True,
                                            name="etcd-api")
            self._thread.start()
            try:
                await trio.to_thread.run_sync(self._ready.wait)
                if self._startup_error is not None:
                    raise RuntimeError(f"etcd API on {self._host}:{self._port} did not start"
                                       ) from self._startup_error
                log.info("%s serving etcd API (gRPC + HTTP) on http://%s:%d "
                         "(gRPC server behind it: unix-abstract:%s)",
                         self._member.name, self._host, self._port, self.grpc_socket)
                task_status.started()
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._shutdown)
                self._proxy.close()
        raise AssertionError("etcd gateway should never complete")

    # --- the asyncio thread -----------------------------------------------------------

    def _thread_main(self) -> None:
        loop = _new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the trio side, which fails the member
            if not self._ready.is_set():
                self._startup_error = exc
            else:
                log.exception("etcd API thread failed")
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        concurrency = Concurrency(self.api)
        grpc_server = make_server(self.api, concurrency,
                                  max_request_bytes=self.api.max_request_bytes)
        grpc_server.add_insecure_port(f"unix-abstract:{self.grpc_socket}")
        await grpc_server.start()
        methods = {m.path: m for m in [*self.api.methods(), *concurrency.methods()]}
        app = make_app(self.api, methods=methods, version=self._version,
                       observe=concurrency.observe,
                       metrics=lambda: render_metrics(self.api, self.bridge, self.mux,
                                                      self._quota_bytes))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        assert runner.server is not None
        self.mux = PortMux(self.grpc_socket, runner.server)
        try:
            listener = await self.mux.listen(self._host, self._port)
        except BaseException:
            await runner.cleanup()
            await grpc_server.stop(None)
            raise
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            listener.close()
            await grpc_server.stop(shutdown_grace_s)
            await runner.shutdown()
            await runner.cleanup()

    def _shutdown(self) -> None:
        """Worker thread: ask the asyncio loop to stop its servers, then wait for it."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(thread_join_s)


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (a dependency on Linux): the gRPC and HTTP front's
    per-message work (grpcio's callbacks, the port splice) is asyncio loop overhead,
    and uvloop cut it by ~10% of the whole path (etcd benchmark put 64/8: 2,140-2,350
    vs 1,950-1,970 req/s, back to back); asyncio's own loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()

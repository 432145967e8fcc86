"""One TCP port for etcd's gRPC API and its HTTP/JSON gateway, as etcd serves them.

etcd answers gRPC and plain HTTP (gateway, /health, /metrics) on the same
client port by sniffing each new connection (cmux). grpcio owns its sockets
and cannot be handed a connection, so the multiplexer here listens on the
etcd client port itself and decides per connection from its first bytes:

- a gRPC client opens with HTTP/2's fixed connection preface
  ("PRI * HTTP/2.0..."); such a connection is spliced, byte for byte, to
  grpcio's server on a private abstract unix socket;
- anything else is HTTP/1.x, and the connection is handed to aiohttp's
  protocol object in place (asyncio's `transport.set_protocol`), so the
  gateway costs no copy at all.

The splice costs a copy per read on the asyncio loop; the README gives the
measured per-call figure. Flow control is kept: when one side's send buffer
fills, reading from the other side pauses until it drains, so a slow peer
never makes the member buffer without bound.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import cast, final

log = logging.getLogger("etcdlite.etcd")

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""What every HTTP/2 prior-knowledge (gRPC) client sends first (RFC 9113 §3.4)."""


@final
class _Pipe(asyncio.Protocol):
    """The protocol of one transport: copies what it reads there to `peer`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: asyncio.Transport | None = None
        self._pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # asyncio's or uvloop's

    def attach(self, peer: asyncio.Transport) -> None:
        self.peer = peer
        for data in self._pending:
            peer.write(data)
        self._pending.clear()

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            self._pending.append(data)
        else:
            self.peer.write(data)

    def eof_received(self) -> bool | None:
        return None  # close this side; connection_lost closes the other

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None:
            self.peer.close()  # flushes what is buffered first

    # Our transport's send buffer is full: stop reading from the side that fills it.
    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.resume_reading()


@final
class _Sniffer(asyncio.Protocol):
    """Reads just enough of a new connection to tell gRPC from HTTP/1.x."""

    def __init__(self, mux: PortMux) -> None:
        self._mux = mux
        self._transport: asyncio.Transport | None = None
        self._head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (asyncio's or uvloop's, which does not subclass it).
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._head += data
        n = min(len(self._head), len(HTTP2_PREFACE))
        if self._head[:n] != HTTP2_PREFACE[:n]:
            self._mux.to_http(self._transport, self._head)
        elif n == len(HTTP2_PREFACE):
            self._mux.to_grpc(self._transport, self._head)

    def connection_lost(self, exc: Exception | None) -> None:
        pass


@final
class PortMux:
    """Accepts on the etcd client port and routes each connection.

    Args:
        grpc_socket: the abstract unix socket name grpcio listens on (no leading NUL).
        http_protocol: makes aiohttp's protocol object for one HTTP connection.
    """

    def __init__(self, grpc_socket: str, http_protocol: Callable[[], asyncio.Protocol]) -> None:
        self._grpc_path = "\0" + grpc_socket
        self._http_protocol = http_protocol
        self._tasks: set[asyncio.Task[None]] = set()
        self.grpc_connections = 0
        self.http_connections = 0

    async def listen(self, host: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: _Sniffer(self), host, port, reuse_address=True)

    def to_http(self, transport: asyncio.Transport, head: bytes) -> None:
        self.http_connections += 1
        protocol = self._http_protocol()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(head)

    def to_grpc(self, transport: asyncio.Transport, head: bytes) -> None:
        self.grpc_connections += 1
        client = _Pipe()
        client.connection_made(transport)
        transport.set_protocol(client)
        client.data_received(head)  # held until the upstream side is connected
        transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self._connect(client, transport))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, client: _Pipe, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        try:
            # Connected by hand: uvloop cannot dial an abstract socket by path. A
            # local unix connect does not block (the listener's backlog takes it).
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self._grpc_path)
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
            upstream, up_protocol = await loop.create_unix_connection(_Pipe, sock=sock)
        except OSError as exc:
            log.warning("cannot reach the gRPC server: %s", exc)
            transport.close()
            return
        if transport.is_closing():
            upstream.close()
            return
        up_protocol.attach(transport)
        client.attach(upstream)
        transport.resume_reading()

"""The etcd port multiplexer: HTTP/2 (gRPC) connections are spliced to the gRPC socket,
everything else is handed to the HTTP protocol in place."""

from __future__ import annotations

import asyncio
import os

from actors.etcd_front import HTTP2_PREFACE, PortMux


class _Recorder(asyncio.Protocol):
    """Stands in for aiohttp: answers each read with a marker, to show it got the bytes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(b"http:" + data)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(b"grpc:" + data)
        await writer.drain()
    writer.close()


async def _exchange(port: int, chunks: list[bytes], want: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for chunk in chunks:  # the preface may arrive in pieces
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(0.01)
    got = b""
    while len(got) < want:
        got += await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    return got


def test_connections_go_to_grpc_or_http_by_their_first_bytes() -> None:
    async def main() -> None:
        name = f"etcdlite-test-{os.getpid()}"
        upstream = await asyncio.start_unix_server(_echo, path="\0" + name)
        mux = PortMux(name, _Recorder)
        listener = await mux.listen("127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        try:
            grpc_in = [HTTP2_PREFACE[:5], HTTP2_PREFACE[5:] + b"frames"]
            got = await _exchange(port, grpc_in, len(HTTP2_PREFACE) + 6 + 5)
            assert got.startswith(b"grpc:")
            assert got.replace(b"grpc:", b"") == HTTP2_PREFACE + b"frames"
            got = await _exchange(port, [b"GET /health HTTP/1.1\r\n\r\n"], 10)
            assert got == b"http:GET /health HTTP/1.1\r\n\r\n"
            assert (mux.grpc_connections, mux.http_connections) == (1, 1)
        finally:
            listener.close()
            upstream.close()

    asyncio.run(main())

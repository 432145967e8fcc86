"""etcd's streaming calls on the native protocol: Watch, LeaseKeepAlive, Snapshot.

WATCH: etcd pushes events down one bidirectional stream per client, carrying
many watches. The native protocol has no push; it has `watch_poll`, a
long-poll by revision (docs/protocol.md "Watch"). Each watch created on a
stream therefore becomes one poll loop: poll from `next_revision`, send what
came back, continue from the `next_revision` the reply names. The native
guarantees carry over unchanged (ordered, each event once, none missing,
revisions never split), and MVCC history stays the only buffer: a slow gRPC
reader makes its loops wait on the stream's bounded send queue, which simply
stops them polling; nothing is ever dropped.

Created responses are sent by the request reader itself, in the order the
creates arrived, because etcd clients pair "created" responses with their
pending create requests first-in first-out.

LEASEKEEPALIVE answers each request in turn with one native `lease_keepalive`
(which the member forwards to the leader, as etcd does); an unknown lease
answers TTL 0, as in etcd, which clients read as "expired".

SNAPSHOT streams the native snapshot_begin / snapshot_chunk / snapshot_end
transfer in format "etcd": a consistent copy of the member's state laid out as
etcd's bbolt backend file (storage/etcd_backend.py), followed by its sha256, as
etcd ends its snapshot stream; so `etcdctl snapshot status` reads it and
`etcdctl snapshot restore` seeds a real etcd from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, final

import grpc

from actors.etcd_api import EtcdApi
from actors.etcd_auth import with_token
from cluster import etcd_convert as cv
from cluster.errors import (
    AuthError,
    CompactedError,
    EtcdliteError,
    InvalidAuthTokenError,
    PermissionDeniedError,
    UnavailableError,
)
from cluster.etcd_errors import COMPACTED_MESSAGE, EtcdStatus, status_for
from cluster.etcdpb import rpc_pb2 as pb

log = logging.getLogger("etcdlite.etcd")

watch_poll_timeout_ms = 10_000
"""How long one watch long-poll waits for news before asking again."""

watch_progress_notify_interval_s = 600.0
"""etcd's default: a watch created with progress_notify that saw no event for this
long gets an empty response carrying the revision it has caught up to."""

watch_send_queue_max = 64
"""Responses queued on one watch stream; a full queue makes its poll loops wait."""

watch_retry_s = (0.05, 1.0)
"""Backoff (first, max) of a poll loop after `unavailable` or a transient error."""

snapshot_blob_bytes_max = 1024 * 1024
"""Bytes per SnapshotResponse: below gRPC's common 4 MiB receive limit of clients."""

Write = Callable[[pb.WatchResponse], Awaitable[None]]

INVALID_WATCH_ID = -1
"""The watch id of a response meant for every watch of a stream (progress)."""


@final
class WatchSession:
    """One Watch stream: its watches, their poll loops and the single writer."""

    def __init__(self, api: EtcdApi) -> None:
        self._api = api
        self._out: asyncio.Queue[pb.WatchResponse] = asyncio.Queue(watch_send_queue_max)
        self._loops: dict[int, asyncio.Task[None]] = {}
        self._synced: dict[int, int] = {}  # watch id -> every event <= this was sent
        self._next_id = 0

    async def serve(self, requests: AsyncIterator[pb.WatchRequest], write: Write) -> None:
        """Run the stream until the client stops sending (as etcd: a half-close ends the
        stream) or a write fails (the client is gone)."""
        reader = asyncio.create_task(self._read(requests))
        writer = asyncio.create_task(self._write(write))
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            tasks = [*self._loops.values(), reader, writer]
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:  # a malformed request or a bug: end the stream loudly
            if isinstance(result, Exception) and not isinstance(result, OSError | EtcdStatus):
                raise result

    async def _read(self, requests: AsyncIterator[pb.WatchRequest]) -> None:
        async for req in requests:
            which = req.WhichOneof("request_union")
            if which == "create_request":
                await self._create(req.create_request)
            elif which == "cancel_request":
                await self._cancel(req.cancel_request.watch_id)
            elif which == "progress_request":
                await self._progress()

    async def _write(self, write: Write) -> None:
        while True:
            await write(await self._out.get())

    def _new_id(self, wanted: int) -> int | None:
        if wanted > 0:
            return None if wanted in self._loops else wanted
        while self._next_id in self._loops:
            self._next_id += 1
        self._next_id += 1
        return self._next_id - 1

    async def _create(self, c: pb.WatchCreateRequest) -> None:
        watch_id = self._new_id(c.watch_id)
        if watch_id is None:
            await self._out.put(pb.WatchResponse(
                header=cv.header(self._api.last_header), watch_id=c.watch_id, created=True,
                canceled=True, cancel_reason="etcdserver: duplicate watch ID"))
            return
        try:
            # start_revision 0 = "from now": one immediate poll fixes where "now" is.
            now = await self._api.native(**cv.watch_poll_args(c, 0, 0))
        except EtcdStatus as st:
            await self._out.put(pb.WatchResponse(
                header=cv.header(self._api.last_header), watch_id=watch_id, created=True,
                canceled=True, cancel_reason=st.message))
            return
        start = c.start_revision or now["next_revision"]
        self._synced[watch_id] = start - 1
        await self._out.put(pb.WatchResponse(header=cv.header(now["header"]),
                                             watch_id=watch_id, created=True))
        self._loops[watch_id] = asyncio.create_task(self._poll_loop(watch_id, c, start))

    async def _cancel(self, watch_id: int) -> None:
        task = self._loops.pop(watch_id, None)
        if task is None:
            return  # etcd ignores a cancel of an unknown watch
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._synced.pop(watch_id, None)
        await self._out.put(pb.WatchResponse(header=cv.header(self._api.last_header),
                                             watch_id=watch_id, canceled=True))

    async def _progress(self) -> None:
        """Answer a progress request with a revision EVERY watch has delivered up to."""
        try:
            now = await self._api.native("watch_poll", key=b"\0", start_revision=0)
        except EtcdStatus:
            return
        revision = now["header"]["revision"]
        if self._synced:
            revision = min(revision, *self._synced.values())
        await self._out.put(pb.WatchResponse(
            header=cv.header({**now["header"], "revision": revision}),
            watch_id=INVALID_WATCH_ID))

    async def _poll_loop(self, watch_id: int, c: pb.WatchCreateRequest, start: int) -> None:
        backoff = watch_retry_s[0]
        last_sent = time.monotonic()
        while True:
            try:
                reply = await self._api.bridge.call(
                    with_token(cv.watch_poll_args(c, start, watch_poll_timeout_ms)))
            except CompactedError as exc:
                self._loops.pop(watch_id, None)
                self._synced.pop(watch_id, None)
                await self._out.put(pb.WatchResponse(
                    header=cv.header(self._api.last_header), watch_id=watch_id,
                    canceled=True, compact_revision=exc.compact_revision,
                    cancel_reason=COMPACTED_MESSAGE))
                return
            except (AuthError, InvalidAuthTokenError, PermissionDeniedError) as exc:
                # Permissions are checked at every poll: a revoke ends the watch.
                self._loops.pop(watch_id, None)
                self._synced.pop(watch_id, None)
                await self._out.put(pb.WatchResponse(
                    header=cv.header(self._api.last_header), watch_id=watch_id,
                    canceled=True, cancel_reason=exc.message))
                return
            except EtcdliteError as exc:
                if not isinstance(exc, UnavailableError):
                    log.warning("watch %d poll failed, retrying: %s", watch_id, exc.message)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, watch_retry_s[1])
                continue
            backoff = watch_retry_s[0]
            head = reply["header"]
            self._api.last_header = head
            events = reply["events"]
            start = reply["next_revision"]
            if events:
                await self._out.put(pb.WatchResponse(
                    header=cv.header(head), watch_id=watch_id,
                    events=[cv.event(e) for e in events]))
                last_sent = time.monotonic()
            elif (c.progress_notify and start > head["revision"]
                  and time.monotonic() - last_sent >= watch_progress_notify_interval_s):
                await self._out.put(pb.WatchResponse(header=cv.header(head),
                                                     watch_id=watch_id))
                last_sent = time.monotonic()
            self._synced[watch_id] = start - 1


async def lease_keepalive(api: EtcdApi, requests: AsyncIterator[pb.LeaseKeepAliveRequest],
                          context: grpc.aio.ServicerContext[Any, Any]) -> None:
    async for req in requests:
        try:
            resp = await api.lease_keepalive_once(req.ID)
        except EtcdStatus as st:
            await context.abort(st.code, st.message)
        await context.write(resp)


async def snapshot(api: EtcdApi, _request: pb.SnapshotRequest,
                   _context: grpc.aio.ServicerContext[Any, Any] | None = None
                   ) -> AsyncIterator[pb.SnapshotResponse]:
    """The db copy in blobs, then its sha256 as the last 32 bytes: etcd's layout, which
    etcdctl checks for ("sha256 checksum not found") and `snapshot restore` verifies."""
    begin = await api.native("snapshot_begin", format="etcd")
    token, size = begin["token"], begin["size"]
    digest = bytes.fromhex(begin["sha256"])
    total = size + len(digest)
    head = cv.header(begin["header"])
    offset = 0
    try:
        while offset < size:
            chunk = await api.native("snapshot_chunk", token=token, offset=offset)
            data: bytes = chunk["data"]
            if not data:
                raise status_for(UnavailableError("snapshot ended early"))
            for i in range(0, len(data), snapshot_blob_bytes_max):
                blob = data[i:i + snapshot_blob_bytes_max]
                offset += len(blob)
                yield pb.SnapshotResponse(header=head, remaining_bytes=total - offset,
                                          blob=blob)
        yield pb.SnapshotResponse(header=head, remaining_bytes=0, blob=digest)
    finally:
        with contextlib.suppress(EtcdStatus):
            await api.native("snapshot_end", token=token)

"""Applies committed entries to the MVCC store and wakes the requests waiting on them.

One SQLite transaction per batch (the store writes the applied index in it),
so a crash between batches re-applies nothing and skips nothing. The result
of an entry proposed on this member goes to its waiter; entries proposed
elsewhere are applied just the same, their results dropped.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import trio

from actors.events import RaftInput, SnapshotTaken
from actors.raft_node import ApplyBatch
from actors.wait import AppliedIndex, WaitRegistry
from cluster import codec, kv
from cluster.auth_types import (
    AUTH_REQUEST_TYPES,
    Authed,
    auth_request_from_wire,
    auth_request_to_wire,
)
from cluster.conf_change import ConfChange
from cluster.errors import BadRequestError, EtcdliteError
from cluster.messages import ConfState, EntryType
from storage.members import member_change_from
from storage.mvcc import MvccStore
from storage.snapshots import SnapshotStore

log = logging.getLogger("etcdlite.apply")


positions_kept = 4096
"""Batch-end positions remembered for snapshots of the live store."""


@dataclass(frozen=True, slots=True)
class ApplierStatistics:
    batches: int
    entries: int
    applied_index: int


def _request_to_wire(request: Any) -> dict[str, Any]:
    if type(request) in _AUTH_CLASSES:
        return auth_request_to_wire(request)
    return kv.request_to_wire(request)


_AUTH_CLASSES = frozenset(AUTH_REQUEST_TYPES.values())


def encode_proposal(request_id: int, request: Any) -> bytes:
    """The log entry payload of a client request: validated request + who waits for it,
    plus `auth: [user, token_revision]` for a request a client sent (`Authed`)."""
    if isinstance(request, Authed):
        return codec.dumps({"id": request_id, "req": _request_to_wire(request.request),
                            "auth": [request.user, request.token_revision]})
    return codec.dumps({"id": request_id, "req": _request_to_wire(request)})


def decode_proposal(data: bytes) -> tuple[int, Any]:
    """Inverse of `encode_proposal`; raises EtcdliteError on a malformed payload."""
    body = codec.loads(data)
    if not isinstance(body, dict) or not isinstance(body.get("id"), int) \
            or not isinstance(body.get("req"), dict):
        raise BadRequestError("malformed log entry payload")
    wire = body["req"]
    if wire.get("op") in AUTH_REQUEST_TYPES:
        try:
            request: Any = auth_request_from_wire(wire)
        except ValueError as exc:
            raise BadRequestError(f"malformed auth entry: {exc}") from None
    else:
        request = kv.request_from_wire(wire)
    auth = body.get("auth")
    if auth is not None:
        if not (isinstance(auth, list) and len(auth) == 2 and isinstance(auth[0], str)
                and isinstance(auth[1], int) and not isinstance(auth[1], bool)):
            raise BadRequestError("malformed log entry auth")
        request = Authed(request, auth[0], auth[1])
    return body["id"], request


class Applier:
    def __init__(self, mvcc: MvccStore, batches: trio.MemoryReceiveChannel[ApplyBatch],
                 waits: WaitRegistry, applied: AppliedIndex, name: str,
                 snapshots: SnapshotStore, snapshot_count: int,
                 raft_inbox: trio.MemorySendChannel[RaftInput],
                 after_apply: Callable[[int], None] | None = None) -> None:
        self._mvcc = mvcc
        self._snapshots = snapshots
        self._snapshot_count = snapshot_count
        self._raft_inbox = raft_inbox
        latest = snapshots.latest()
        self._snapshot_index = latest.meta.index if latest is not None else 0
        self._batches = batches
        self._waits = waits
        self._applied = applied
        self._name = name
        self._after_apply = after_apply
        self._batch_count = 0
        self._entry_count = 0
        # Term and membership at the end of recent batches: a snapshot taken of the live
        # store lands on one of these indexes and needs them for its Raft position.
        self._positions: OrderedDict[int, tuple[int, ConfState]] = OrderedDict()
        self._snapshotting = False
        self._nursery: trio.Nursery | None = None
        # Held while a batch is applied. Maintenance that rewrites state.db under the
        # store (defragment) takes it, so that no batch is applied meanwhile.
        self.exclusive = trio.Lock()

    def statistics(self) -> ApplierStatistics:
        return ApplierStatistics(self._batch_count, self._entry_count, self._applied.index)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> NoReturn:
        async with self._batches, self._raft_inbox, trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            async for batch in self._batches:
                async with self.exclusive:
                    self._apply_batch(batch)
                await trio.lowlevel.checkpoint()
        raise AssertionError("applier should never complete")

    def _apply_batch(self, batch: ApplyBatch) -> None:
        if batch.snapshot is not None:
            self._install(batch)
            return
        entries = list(batch.entries)
        conf = batch.conf_after
        while True:  # coalesce queued batches into one transaction
            try:
                more = self._batches.receive_nowait()
            except trio.WouldBlock:
                break
            if more.snapshot is not None:
                self.apply_entries(entries)
                entries, conf = [], more.conf_after
                self._install(more)
                continue
            entries.extend(more.entries)
            conf = more.conf_after
        if entries:
            self.apply_entries(entries)
            self._maybe_snapshot(entries[-1].term, conf)

    def _install(self, batch: ApplyBatch) -> None:
        assert batch.snapshot is not None
        assert batch.done is not None
        self._mvcc.replace_from(batch.snapshot.path)
        assert self._mvcc.applied_index == batch.snapshot.meta.index, \
            "snapshot content does not match its Raft position"
        self._snapshot_index = batch.snapshot.meta.index
        self._applied.set(max(self._applied.index, self._mvcc.applied_index))
        batch.done.set()

    def _maybe_snapshot(self, term: int, conf: ConfState) -> None:
        index = self._mvcc.applied_index
        self._positions[index] = (term, conf)
        while len(self._positions) > positions_kept:
            self._positions.popitem(last=False)
        if self._snapshotting or index - self._snapshot_index < self._snapshot_count:
            return
        assert self._nursery is not None
        self._snapshotting = True
        self._nursery.start_soon(self._take_snapshot)

    async def _take_snapshot(self) -> None:
        """Copy and checksum the store in a worker thread while applies go on.

        Done inline, copying a large state.db would freeze the member's event loop
        long enough to miss heartbeats and lose leadership.
        """
        try:
            snap = await trio.to_thread.run_sync(
                self._snapshots.capture, self._mvcc.path, self._positions.get)
            if snap is None:
                return
            self._snapshot_index = max(self._snapshot_index, snap.meta.index)
            log.info("%s took snapshot at index %d (%d bytes)", self._name, snap.meta.index,
                     snap.size)
            await self._raft_inbox.send(SnapshotTaken(snap.meta))
        finally:
            self._snapshotting = False

    def apply_entries(self, entries: list[Any]) -> None:
        items: list[tuple[int, Any]] = []
        waiters: list[int | None] = []
        for e in entries:
            request: Any = None
            rid: int | None = None
            try:
                if e.type is EntryType.NORMAL and e.data:
                    rid, request = decode_proposal(e.data)
                elif e.type is EntryType.CONF_CHANGE:
                    request = member_change_from(ConfChange.from_bytes(e.data))
                    rid = request.request_id or None
            except EtcdliteError as exc:
                # Deterministic on every member: the entry becomes a no-op.
                log.error("%s skipped malformed entry %d: %s", self._name, e.index, exc)
            items.append((e.index, request))
            waiters.append(rid)
        results = self._mvcc.apply(items, request_ids=waiters)
        self._batch_count += 1
        self._entry_count += len(items)
        last = items[-1][0]
        if last > self._applied.index:
            self._applied.set(last)
        for rid, result in zip(waiters, results, strict=True):
            if rid is not None:
                self._waits.trigger(rid, result)
        if self._after_apply is not None:
            self._after_apply(last)

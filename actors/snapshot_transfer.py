"""Snapshots between members: chunked sending (leader) and reassembly (follower).

The Raft core only says "send the snapshot at index I to peer P"; the bytes
travel here, in bounded chunks on a socket of their own so that a large
snapshot never delays heartbeats. The receiver writes chunks to a temporary
file, checks the SHA-256 the sender announced, and only then hands Raft one
SNAP message pointing at the verified file. A torn or corrupt transfer is
dropped; the leader retries after it hears the outcome.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import pynng
import trio

from actors.events import RaftInput, SnapshotStatus
from cluster import codec
from cluster.errors import BadRequestError
from cluster.messages import Message, MessageType, Snapshot
from storage.snapshots import CorruptSnapshotError, SnapshotStore, file_sha256

log = logging.getLogger("etcdlite.snapshot")

chunk_bytes = 1 << 20
send_timeout_s = 30.0


def snapshot_descriptor(path: Path, sha256: str) -> bytes:
    """What a SNAP message's `data` holds on the receiving side: where the verified file is."""
    return codec.dumps({"path": str(path), "sha256": sha256})


def parse_descriptor(data: bytes) -> tuple[Path, str]:
    body = codec.loads(data)
    return Path(body["path"]), str(body["sha256"])


class SnapshotSender:
    """Leader side: one transfer at a time per peer, reported back to Raft."""

    def __init__(self, member_id: int, store: SnapshotStore, peer_urls: dict[int, str],
                 inbox: trio.MemorySendChannel[RaftInput]) -> None:
        self._id = member_id
        self._store = store
        self._peer_urls = peer_urls  # shared view, updated on membership changes
        self._inbox = inbox
        self._nursery: trio.Nursery | None = None
        self._busy: set[int] = set()
        self.sent = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> NoReturn:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()
        raise AssertionError("snapshot sender should never complete")

    def send_nowait(self, m: Message) -> None:
        if m.to in self._busy or self._nursery is None:
            return  # Raft will ask again after the running transfer reports
        self._busy.add(m.to)
        self._nursery.start_soon(self._transfer, m)

    async def _transfer(self, m: Message) -> None:
        failed = True
        try:
            assert m.snapshot is not None
            snap = self._store.get(m.snapshot.meta.index)
            url = self._peer_urls.get(m.to)
            if snap is None or url is None:
                log.warning("%x has no snapshot at %d for %x", self._id,
                            m.snapshot.meta.index, m.to)
                return
            SnapshotStore.verify(snap)
            header = codec.message_to_wire(Message(
                MessageType.SNAP, to=m.to, frm=m.frm, term=m.term,
                snapshot=Snapshot(meta=m.snapshot.meta)))
            with trio.move_on_after(send_timeout_s), \
                    pynng.Push0(send_buffer_size=4) as sock:
                sock.dial(url, block=False)
                async with await trio.open_file(snap.path, "rb") as f:
                    offset = 0
                    while True:
                        chunk = await f.read(chunk_bytes)
                        await sock.asend(codec.encode_frame({"from": self._id, "snap": {
                            "msg": header, "offset": offset, "total": snap.size,
                            "sha256": snap.sha256, "data": chunk}}))
                        offset += len(chunk)
                        if offset >= snap.size:
                            break
                failed = False
                self.sent += 1
                log.info("%x sent snapshot at %d (%d bytes) to %x", self._id,
                         snap.meta.index, snap.size, m.to)
        except (CorruptSnapshotError, OSError, pynng.NNGException) as exc:
            log.warning("%x snapshot send to %x failed: %s", self._id, m.to, exc)
        finally:
            self._busy.discard(m.to)
            # Raft keeps the peer paused until it hears the outcome: never drop this.
            await self._inbox.send(SnapshotStatus(m.to, failed))


@dataclass(slots=True)
class _Incoming:
    header: Message
    sha256: str
    total: int
    path: Path
    file: BinaryIO
    offset: int = 0


class SnapshotReceiver:
    """Follower side: reassemble chunks from one sender at a time into a verified file."""

    def __init__(self, member_id: int, store: SnapshotStore) -> None:
        self._id = member_id
        self._store = store
        self._incoming: dict[int, _Incoming] = {}

    def feed(self, sender: int, body: Any) -> Message | None:
        """Take one chunk; returns the SNAP message for Raft once the file is whole."""
        try:
            header = codec.message_from_wire(body["msg"])
            offset, total, sha256, data = (body["offset"], body["total"], body["sha256"],
                                           body["data"])
            if not (isinstance(offset, int) and isinstance(total, int)
                    and isinstance(sha256, str) and isinstance(data, bytes)):
                raise BadRequestError("malformed snapshot chunk")
        except (KeyError, TypeError) as exc:
            raise BadRequestError("malformed snapshot chunk") from exc
        if header.type is not MessageType.SNAP or header.snapshot is None \
                or header.to != self._id or header.frm != sender:
            raise BadRequestError("snapshot chunk with a bad header")
        cur = self._incoming.get(sender)
        if offset == 0:
            if cur is not None:
                cur.file.close()
            path = self._store.incoming_path(header.snapshot.meta.index)
            cur = _Incoming(header, sha256, total, path, open(path, "wb"))  # noqa: SIM115
            self._incoming[sender] = cur
        elif cur is None or offset != cur.offset or sha256 != cur.sha256:
            self._abort(sender)
            raise BadRequestError("snapshot chunk out of order; transfer dropped")
        cur.file.write(data)
        cur.offset += len(data)
        if cur.offset < cur.total:
            return None
        del self._incoming[sender]
        cur.file.flush()
        cur.file.close()
        if cur.offset != cur.total or file_sha256(cur.path) != cur.sha256:
            cur.path.unlink(missing_ok=True)
            raise BadRequestError("received snapshot fails its checksum; dropped")
        snap = cur.header.snapshot
        assert snap is not None
        return Message(MessageType.SNAP, to=self._id, frm=sender, term=cur.header.term,
                       snapshot=Snapshot(meta=snap.meta,
                                         data=snapshot_descriptor(cur.path, cur.sha256)))

    def _abort(self, sender: int) -> None:
        cur = self._incoming.pop(sender, None)
        if cur is not None:
            cur.file.close()
            cur.path.unlink(missing_ok=True)

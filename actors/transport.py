"""Peer traffic over nng: the only actor that touches peer sockets.

Inbound: one PULL listener per member; each frame is a batch of Raft
messages from one peer, decoded and handed to the raft node (blocking send:
backpressure). A malformed or stale frame is logged and dropped; it never
takes the member down. Outbound: one PUSH dialer per peer fed by a bounded
outbox. The raft node enqueues with `send_nowait` and a full outbox drops
the message (Raft tolerates loss), so a dead peer can never stall the node.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NoReturn

import pynng
import trio

from actors.events import PeerMessages, RaftInput
from actors.fault_injection import fault_control_from_env, send_later
from actors.snapshot_transfer import SnapshotReceiver
from cluster import codec, limits
from cluster.errors import BadRequestError, EtcdliteError
from cluster.messages import Message

log = logging.getLogger("etcdlite.transport")


@dataclass(frozen=True, slots=True)
class TransportStatistics:
    frames_in: int
    frames_out: int
    frames_rejected: int
    messages_dropped: int


class PeerTransport:
    def __init__(self, member_id: int, listen_url: str, peers: dict[int, str],
                 inbox: trio.MemorySendChannel[RaftInput],
                 snapshots: SnapshotReceiver | None = None) -> None:
        self.member_id = member_id
        self._snapshots = snapshots
        self.listen_url = listen_url
        self._inbox = inbox
        self._outboxes: dict[int, trio.MemorySendChannel[Message]] = {}
        self._outbox_receivers: dict[int, trio.MemoryReceiveChannel[Message]] = {}
        self._peer_urls = dict(peers)
        self._frames_in = self._frames_out = self._rejected = self._dropped = 0
        self._nursery: trio.Nursery | None = None
        # None (no cost, no way in) unless ETCDLITE_FAULT_FILE is set: torture runs only.
        self._faults = fault_control_from_env()
        for pid in peers:
            self._make_outbox(pid)

    def _make_outbox(self, pid: int) -> None:
        send, recv = trio.open_memory_channel[Message](limits.peer_outbox_buffer_max)
        self._outboxes[pid] = send
        self._outbox_receivers[pid] = recv

    def statistics(self) -> TransportStatistics:
        return TransportStatistics(self._frames_in, self._frames_out, self._rejected,
                                   self._dropped)

    def send_nowait(self, m: Message) -> None:
        """Queue `m` for its peer; drop it (and count) when the peer's outbox is full."""
        outbox = self._outboxes.get(m.to)
        if outbox is None:
            self._dropped += 1
            return
        try:
            outbox.send_nowait(m)
        except trio.WouldBlock:
            self._dropped += 1

    def update_peers(self, peers: dict[int, str]) -> None:
        """Follow a membership change: dial new peers, stop sending to removed ones."""
        for pid, url in peers.items():
            if pid == self.member_id:
                continue
            if pid not in self._outboxes or self._peer_urls.get(pid) != url:
                old = self._outboxes.pop(pid, None)
                if old is not None:
                    old.close()
                self._peer_urls[pid] = url
                self._make_outbox(pid)
                if self._nursery is not None:
                    self._nursery.start_soon(self._send_loop, pid, url,
                                             self._outbox_receivers.pop(pid))
        for pid in list(self._outboxes):
            if pid not in peers:
                self._outboxes.pop(pid).close()
                self._peer_urls.pop(pid, None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> NoReturn:
        with pynng.Pull0(recv_max_size=limits.peer_frame_bytes_max) as sock:
            sock.listen(self.listen_url)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for pid, url in self._peer_urls.items():
                    nursery.start_soon(self._send_loop, pid, url,
                                       self._outbox_receivers.pop(pid))
                task_status.started()
                await self._recv_loop(sock)
        raise AssertionError("transport should never complete")

    async def _recv_loop(self, sock: pynng.Pull0) -> NoReturn:
        while True:
            frame = await _recv(sock)
            try:
                body = codec.decode_frame(frame)
                if self._faults is not None and self._faults.inbound_blocked(body.get("from")):
                    continue
                if "snap" in body and self._snapshots is not None:
                    sender = body.get("from")
                    if not isinstance(sender, int) or sender not in self._peer_urls:
                        raise BadRequestError("snapshot chunk from an unknown member")
                    snap = self._snapshots.feed(sender, body["snap"])
                    if snap is not None:
                        await self._inbox.send(PeerMessages(sender, (snap,)))
                    continue
                sender, messages = codec.peer_frame_messages(body)
            except EtcdliteError as exc:
                self._rejected += 1
                log.warning("%x dropped malformed peer frame (%d bytes): %s",
                            self.member_id, len(frame), exc.message)
                continue
            known = sender in self._peer_urls
            ok = [m for m in messages if known and m.to == self.member_id and m.frm == sender]
            if len(ok) != len(messages):
                # Unknown senders (removed members, strays) must not move our term.
                self._rejected += 1
                log.warning("%x dropped %d messages from unknown or misaddressed sender %x",
                            self.member_id, len(messages) - len(ok), sender)
            if ok:
                self._frames_in += 1
                await self._inbox.send(PeerMessages(sender, tuple(ok)))

    async def _send_loop(self, pid: int, url: str,
                         outbox: trio.MemoryReceiveChannel[Message]) -> None:
        with pynng.Push0(send_buffer_size=64) as sock:
            sock.dial(url, block=False)
            async with outbox:
                async for first in outbox:
                    batch = [first]
                    while len(batch) < limits.append_entries_max:
                        try:
                            batch.append(outbox.receive_nowait())
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                    frame = codec.encode_peer_frame(self.member_id, batch)
                    if self._faults is None:
                        await _send(sock, frame)
                    else:
                        await self._send_with_faults(sock, pid, frame)
                    self._frames_out += 1

    async def _send_with_faults(self, sock: pynng.Push0, pid: int, frame: bytes) -> None:
        """Torture runs only (actors.fault_injection): drop, delay or duplicate a frame."""
        assert self._faults is not None
        assert self._nursery is not None
        for delay_s in self._faults.outbound(pid):
            if delay_s <= 0:
                await sock.asend(frame)
            else:
                self._nursery.start_soon(send_later, self._faults, sock.asend, frame, delay_s,
                                         pynng.NNGException)


async def _send(sock: pynng.Push0, frame: bytes) -> None:
    """Queue a frame without a trio round trip when nng's send buffer has room.

    pynng's `asend` costs an aio object and a trio wake-up per message, about as
    much CPU as the rest of a small append's handling; a non-blocking send into
    the socket's buffer is a plain call. Only a full buffer (or no pipe yet) takes
    the awaited path, which waits exactly as before.
    """
    try:
        sock.send(frame, block=False)
    except pynng.TryAgain:
        await sock.asend(frame)


async def _recv(sock: pynng.Pull0) -> bytes:
    """The next frame: taken straight from nng's queue when one is waiting (under
    load, most are), with an awaited `arecv` only when the queue is empty. The
    checkpoint keeps a busy receive loop from starving the member's other tasks."""
    try:
        frame = sock.recv(block=False)
    except pynng.TryAgain:
        return await sock.arecv()
    await trio.lowlevel.checkpoint()
    return frame

"""Pending ReadIndex requests at the leader (etcd's readOnly, safe mode).

A read index is the commit index at the moment the request arrived; it is
released only after a quorum acknowledged a heartbeat carrying the request's
context, which proves no newer leader existed at that moment. One quorum
round confirms every request queued before it, so concurrent reads share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class ReadIndexStatus:
    requester: int
    index: int
    context: bytes
    acks: set[int] = field(default_factory=set)


class ReadOnly:
    def __init__(self) -> None:
        self._pending: dict[bytes, ReadIndexStatus] = {}
        self._queue: list[bytes] = []

    def add_request(self, index: int, requester: int, context: bytes) -> None:
        if context in self._pending:
            return
        self._pending[context] = ReadIndexStatus(requester, index, context)
        self._queue.append(context)

    def recv_ack(self, frm: int, context: bytes) -> set[int] | None:
        status = self._pending.get(context)
        if status is None:
            return None
        status.acks.add(frm)
        return status.acks

    def advance(self, context: bytes) -> list[ReadIndexStatus]:
        """Release `context` and everything queued before it."""
        if context not in self._pending:
            return []
        i = self._queue.index(context)
        released = [self._pending.pop(c) for c in self._queue[: i + 1]]
        del self._queue[: i + 1]
        return released

    def last_pending_context(self) -> bytes:
        return self._queue[-1] if self._queue else b""

    def __len__(self) -> int:
        return len(self._queue)

"""The frozen values actors pass to the raft node over its inbox channel."""

from __future__ import annotations

from dataclasses import dataclass

from cluster.messages import EntryType, Message, SnapshotMeta


@dataclass(frozen=True, slots=True)
class Tick:
    """One heartbeat interval elapsed."""


@dataclass(frozen=True, slots=True)
class PeerMessages:
    """A batch of Raft messages that arrived from one peer."""

    sender: int
    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class Propose:
    """Append `data` to the log; the result is delivered to waiter `request_id`."""

    request_id: int
    data: bytes
    entry_type: EntryType = EntryType.NORMAL


@dataclass(frozen=True, slots=True)
class ReadIndexRequest:
    """Ask for a read index for one batch of linearizable reads."""

    context: bytes


@dataclass(frozen=True, slots=True)
class TransferLeader:
    target: int


@dataclass(frozen=True, slots=True)
class SnapshotStatus:
    peer: int
    failed: bool


@dataclass(frozen=True, slots=True)
class SnapshotTaken:
    """The applier sealed a snapshot of the state at `meta.index`: the log below may go."""

    meta: SnapshotMeta


RaftInput = (Tick | PeerMessages | Propose | ReadIndexRequest | TransferLeader | SnapshotStatus
             | SnapshotTaken)

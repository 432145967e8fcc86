"""The one schema of everything Raft passes around (the shape of etcd's raftpb).

Values are frozen dataclasses so that actors can hand them across channels
without sharing anything mutable. `cluster/codec.py` turns them into CBOR.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

NONE = 0
"""The member id that means "nobody" (no vote, no leader)."""


class MessageType(enum.IntEnum):
    """Raft message kinds; local ones (HUP, BEAT, PROP from self) never cross the wire."""

    HUP = 0  # local: start an election (pre-vote first when enabled)
    BEAT = 1  # local: leader sends heartbeats now
    PROP = 2  # a proposal; followers forward it to the leader
    APP = 3  # AppendEntries
    APP_RESP = 4
    VOTE = 5  # RequestVote
    VOTE_RESP = 6
    PRE_VOTE = 7
    PRE_VOTE_RESP = 8
    HEARTBEAT = 9
    HEARTBEAT_RESP = 10
    READ_INDEX = 11  # ask the leader for a read index (context = request id)
    READ_INDEX_RESP = 12
    SNAP = 13  # InstallSnapshot
    TIMEOUT_NOW = 14  # leader transfer: campaign now, skipping pre-vote
    TRANSFER_LEADER = 15  # local or forwarded: ask the leader to hand over
    SNAP_STATUS = 16  # local: outcome of a snapshot send


class EntryType(enum.IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"
    LEARNER = "learner"


@dataclass(frozen=True, slots=True)
class Entry:
    index: int
    term: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be on disk before any message that depends on it leaves."""

    term: int = 0
    vote: int = NONE
    commit: int = 0


@dataclass(frozen=True, slots=True)
class ConfState:
    """Membership: who votes, who only learns."""

    voters: frozenset[int] = frozenset()
    learners: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int = 0
    term: int = 0
    conf: ConfState = field(default_factory=ConfState)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A point-in-time state image; `data` is opaque to Raft."""

    meta: SnapshotMeta = field(default_factory=SnapshotMeta)
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Message:
    type: MessageType
    to: int
    frm: int
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""
    snapshot: Snapshot | None = None


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state worth reporting (never persisted)."""

    leader: int
    role: Role


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served once applied index >= `index`."""

    index: int
    context: bytes


@dataclass(frozen=True, slots=True)
class Ready:
    """One batch of work the core hands to the actors.

    ORDER: PERSIST `hard_state` AND `entries` (ONE TRANSACTION, FSYNC) AND
    `snapshot`, THEN SEND `messages`, THEN APPLY `committed_entries`, THEN CALL
    `advance(ready)`.
    """

    soft_state: SoftState | None
    hard_state: HardState | None
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    committed_entries: tuple[Entry, ...]
    messages: tuple[Message, ...]
    read_states: tuple[ReadState, ...]

    @property
    def must_sync(self) -> bool:
        return bool(self.entries) or self.hard_state is not None or self.snapshot is not None

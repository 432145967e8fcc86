"""What the Raft role mixins need from `self`: a typing-only Protocol.

`Raft` (cluster/raft.py) is composed of `LeaderRole`, `FollowerRole` and
`ElectionRole`, which live in their own files only to keep files short and
share state through `self`. Each mixin method annotates `self: RaftState`
rather than `self: Raft`: mypy rejects a self type that is a *subclass* of
the mixin ("the erased type of self is not a supertype of its class"), but
accepts a Protocol, and it then checks at every call inside `Raft` that
`Raft` really has all of the members below with these types.

The mixins import this module only under `TYPE_CHECKING`, so it adds nothing
at run time. Keep it in step with the `self.` uses in the three mixins:
mypy reports any member a mixin uses that is missing here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from cluster.messages import (
        ConfState,
        Entry,
        Message,
        MessageType,
        ReadState,
        Role,
        Snapshot,
        SnapshotMeta,
    )
    from cluster.progress import Progress
    from cluster.raft import RaftConfig
    from cluster.raft_log import RaftLog
    from cluster.read_only import ReadOnly


class RaftState(Protocol):
    """The state and methods of `Raft` that its role mixins use through `self`."""

    # --- state, assigned in Raft.__init__ ----------------------------------------
    id: int
    cfg: RaftConfig
    log: RaftLog
    term: int
    vote: int
    conf: ConfState
    snapshot_meta: SnapshotMeta
    role: Role
    leader: int
    progress: dict[int, Progress]
    votes: dict[int, bool]
    read_only: ReadOnly
    pending_read_requests: list[Message]
    lead_transferee: int
    pending_conf_index: int
    election_elapsed: int
    msgs: list[Message]
    read_states: list[ReadState]
    _pending_snapshot: Snapshot | None

    # --- role changes, in Raft ------------------------------------------------------
    def become_follower(self, term: int, leader: int) -> None: ...
    def promotable(self) -> bool: ...
    def _become_pre_candidate(self) -> None: ...
    def _become_candidate(self) -> None: ...
    def _become_leader(self) -> None: ...

    # --- LeaderRole -------------------------------------------------------------------
    def _send(self, m: Message) -> None: ...
    def _append_entries(self, entries: list[Entry]) -> None: ...
    def _committed_in_current_term(self) -> bool: ...
    def _maybe_commit(self) -> bool: ...
    def _bcast_append(self) -> None: ...
    def _send_append(self, pid: int, *, send_if_empty: bool) -> bool: ...
    def _send_snapshot(self, pid: int) -> bool: ...
    def _bcast_heartbeat(self, context: bytes) -> None: ...
    def _handle_append_response(self, m: Message) -> None: ...
    def _leader_read_index(self, m: Message) -> None: ...
    def _handle_read_ack(self, m: Message) -> None: ...
    def _release_read(self, requester: int, index: int, context: bytes) -> None: ...
    def _handle_transfer(self, transferee: int) -> None: ...

    # --- FollowerRole -----------------------------------------------------------------
    def _step_follower(self, m: Message) -> None: ...
    def _handle_append(self, m: Message) -> None: ...
    def _handle_snapshot(self, m: Message) -> None: ...

    # --- ElectionRole -----------------------------------------------------------------
    def _hup(self, *, transfer: bool) -> None: ...
    def _has_unapplied_conf_change(self) -> bool: ...
    def _request_votes(self, mtype: MessageType, term: int, context: bytes) -> None: ...
    def _record_vote(self, m: Message) -> None: ...

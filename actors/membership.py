"""Membership and leadership operations of the native protocol.

member_add / member_remove / member_promote / member_update go through the log
as CONF_CHANGE entries (single-server changes, see cluster/raft.py), proposed
by the leader only: it alone knows whether a learner has caught up and
whether another change is still in flight. move_leader hands leadership to a
named voter (etcd's MoveLeader) via Raft's TimeoutNow.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from actors.client_server import ClientServer
from actors.events import RaftInput, TransferLeader
from actors.raft_node import RaftView
from cluster.conf_change import ConfChange, ConfChangeType
from cluster.config import check_nng_url, member_id_for
from cluster.errors import (
    BadRequestError,
    MemberExistsError,
    MemberNotFoundError,
    NotLeaderError,
    TimeoutError_,
)
from cluster.join import unnamed_member_id
from cluster.messages import NONE, EntryType, Role
from storage.members import MemberRecord, conf_change_context
from storage.mvcc import MvccStore

learner_ready_ratio = 0.9
"""A learner is promoted only once it holds this share of the leader's log (as etcd)."""


class Membership:
    def __init__(self, *, server: ClientServer, mvcc: MvccStore,
                 view: Callable[[], RaftView], wait_view_change: Callable[[], Awaitable[None]],
                 header: Callable[[], dict[str, int]],
                 inbox: trio.MemorySendChannel[RaftInput], token: str,
                 transfer_timeout_s: float) -> None:
        self._server = server
        self._mvcc = mvcc
        self._view = view
        self._wait_view_change = wait_view_change
        self._header = header
        self._inbox = inbox
        self._token = token
        self._transfer_timeout_s = transfer_timeout_s

    def install(self) -> None:
        for op, handler in (("member_list", self.member_list), ("member_add", self.member_add),
                            ("member_remove", self.member_remove),
                            ("member_promote", self.member_promote),
                            ("member_update", self.member_update),
                            ("move_leader", self.move_leader)):
            self._server.add_operation(op, handler)

    def _require_leader(self) -> RaftView:
        view = self._view()
        if view.role is not Role.LEADER:
            raise NotLeaderError("membership changes are made on the leader")
        return view

    def _reply(self, members: list[MemberRecord], member: MemberRecord | None = None
               ) -> dict[str, Any]:
        out: dict[str, Any] = {"header": self._header(),
                               "members": [m.to_wire() for m in members]}
        if member is not None:
            out["member"] = member.to_wire()
        return out

    def _find(self, member_id: Any) -> MemberRecord:
        if not isinstance(member_id, int) or isinstance(member_id, bool):
            raise BadRequestError("member id must be an integer")
        for m in self._mvcc.members():
            if m.id == member_id:
                return m
        raise MemberNotFoundError(f"member {member_id:x} not found")

    async def _change(self, ctype: ConfChangeType, member_id: int, *, name: str,
                      peer_urls: list[str], client_urls: list[str]) -> list[MemberRecord]:
        def data(rid: int) -> bytes:
            ctx = conf_change_context(name=name, peer_urls=peer_urls, client_urls=client_urls,
                                      request_id=rid)
            return ConfChange(ctype, member_id, ctx).to_bytes()
        result: list[MemberRecord] = await self._server.propose_entry(
            data, EntryType.CONF_CHANGE)
        return result

    async def member_list(self, _body: dict[str, Any]) -> dict[str, Any]:
        return self._reply(self._mvcc.members())

    async def member_add(self, body: dict[str, Any]) -> dict[str, Any]:
        name, peer_urls = body.get("name", ""), body.get("peer_urls")
        client_urls, learner = body.get("client_urls", []), body.get("is_learner", False)
        if not isinstance(name, str) or not isinstance(learner, bool) \
                or not isinstance(peer_urls, list) or not peer_urls \
                or not isinstance(client_urls, list):
            raise BadRequestError("member_add needs name, peer_urls [, client_urls, is_learner]")
        for url in [*peer_urls, *client_urls]:
            if not isinstance(url, str):
                raise BadRequestError("urls must be strings")
            try:
                check_nng_url(url, "member url")
            except ValueError as exc:
                raise BadRequestError(str(exc)) from None
        self._require_leader()
        for m in self._mvcc.members():
            if set(m.peer_urls) & set(peer_urls):
                raise MemberExistsError(f"peer URL already used by member {m.id:x}")
        if name:
            # The new process derives the same id from its own config (name, peer URL, token).
            member_id = member_id_for(name, peer_urls[0], self._token)
        else:
            # etcd's MemberAdd: no name; the new process learns the id by its peer URL.
            member_id = unnamed_member_id(peer_urls[0], self._token,
                                          self._mvcc.is_removed_member)
        if self._mvcc.is_removed_member(member_id):
            raise MemberExistsError(f"member id {member_id:x} was removed and cannot rejoin; "
                                    "choose another name or peer URL")
        ctype = ConfChangeType.ADD_LEARNER if learner else ConfChangeType.ADD_NODE
        members = await self._change(ctype, member_id, name=name, peer_urls=peer_urls,
                                     client_urls=client_urls)
        return self._reply(members, next(m for m in members if m.id == member_id))

    async def member_remove(self, body: dict[str, Any]) -> dict[str, Any]:
        member = self._find(body.get("id"))
        view = self._require_leader()
        if member.id in view.conf.voters and len(view.conf.voters) == 1:
            raise BadRequestError("cannot remove the last voting member")
        if member.id == view.member_id:
            # Hand over first, so removing the leader costs no election timeout; the
            # client retries on the new leader, which proposes the removal.
            target = self.best_transferee()
            if target != NONE:
                await self.transfer_to(target)
                raise NotLeaderError("leadership handed over; retry on the new leader")
        return self._reply(await self._change(
            ConfChangeType.REMOVE_NODE, member.id, name=member.name,
            peer_urls=list(member.peer_urls), client_urls=list(member.client_urls)))

    async def member_promote(self, body: dict[str, Any]) -> dict[str, Any]:
        member = self._find(body.get("id"))
        view = self._require_leader()
        if not member.is_learner:
            raise BadRequestError("can only promote a learner member")
        match = view.match.get(member.id, 0)
        if match < learner_ready_ratio * view.commit_index:
            raise BadRequestError(
                f"can only promote a learner member which is in sync with leader "
                f"(has {match} of {view.commit_index} entries)")
        return self._reply(await self._change(
            ConfChangeType.ADD_NODE, member.id, name=member.name,
            peer_urls=list(member.peer_urls), client_urls=list(member.client_urls)))

    async def member_update(self, body: dict[str, Any]) -> dict[str, Any]:
        member = self._find(body.get("id"))
        peer_urls = body.get("peer_urls")
        if not isinstance(peer_urls, list) or not peer_urls \
                or not all(isinstance(u, str) for u in peer_urls):
            raise BadRequestError("member_update needs peer_urls")
        self._require_leader()
        return self._reply(await self._change(
            ConfChangeType.UPDATE_NODE, member.id, name=member.name, peer_urls=peer_urls,
            client_urls=list(member.client_urls)))

    async def move_leader(self, body: dict[str, Any]) -> dict[str, Any]:
        target = body.get("target")
        if not isinstance(target, int) or isinstance(target, bool):
            raise BadRequestError("move_leader needs an integer target member id")
        view = self._require_leader()
        if target not in view.conf.voters:
            raise MemberNotFoundError(f"{target:x} is not a voting member")
        if target != view.member_id:
            await self.transfer_to(target)
        return {"header": self._header()}

    async def transfer_to(self, target: int) -> None:
        """Hand leadership to `target` and wait until it has it (one election timeout)."""
        await self._inbox.send(TransferLeader(target))
        with trio.move_on_after(self._transfer_timeout_s):
            while self._view().leader != target:
                await self._wait_view_change()
            return
        raise TimeoutError_("leader transfer did not finish within an election timeout")

    def best_transferee(self) -> int:
        """The voter whose log is furthest along (NONE if there is no other voter)."""
        view = self._view()
        others = [(view.match.get(v, 0), v) for v in view.conf.voters if v != view.member_id]
        return max(others)[1] if others else NONE

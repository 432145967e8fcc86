"""The member publishes its own name and client URLs through the log once it has joined.

etcd's MemberAdd names no member, so a member added by `etcdctl member add` is
known to the cluster only by id and peer URLs ("unstarted") until its process
has joined; then, as etcd's publish does, it proposes a member attribute update
(`MemberAttrRequest`, an ordinary log entry) that every member applies to its
members table, and `member list` shows its name, its client URLs, "started".
The same happens whenever the applied record differs from what this member
advertises (a native member_add without client URLs, an etcd endpoint the
record lacks); a member whose record already matches proposes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, final

import trio

from actors.applier import encode_proposal
from actors.wait import AppliedIndex
from cluster.errors import EtcdliteError
from cluster.kv import MemberAttrRequest
from storage.members import MemberRecord

log = logging.getLogger("etcdlite.publish")

ProposeEntry = Callable[[Callable[[int], bytes]], Awaitable[Any]]


def needs_publishing(record: MemberRecord | None, attrs: MemberAttrRequest) -> bool:
    """True when the applied record of this member differs from what it advertises.

    A member not in the applied membership yet (still catching up) or any more
    (removed) has nothing to publish.
    """
    if record is None:
        return False
    return (record.name, record.client_urls, record.etcd_client_urls) != (
        attrs.name, attrs.client_urls, attrs.etcd_client_urls)


@final
class AttributePublisher:
    """Proposes this member's attributes until its applied record carries them.

    Args:
        attrs: what this member advertises (its id, name and client URLs).
        members: the applied membership (state.db).
        applied: the applier's progress; the record is re-read after each batch.
        propose_entry: the client server's; waits until this member applied the entry.
        retry_s: pause after a failed proposal (no leader yet, timeout): about one
            election timeout, so a member joining during an election does not spin.
    """

    def __init__(self, *, attrs: MemberAttrRequest, members: Callable[[], list[MemberRecord]],
                 applied: AppliedIndex, propose_entry: ProposeEntry, retry_s: float) -> None:
        self._attrs = attrs
        self._members = members
        self._applied = applied
        self._propose_entry = propose_entry
        self._retry_s = retry_s
        self.published = False  # by this process (tests and statistics read it)

    def _record(self) -> MemberRecord | None:
        return next((m for m in self._members() if m.id == self._attrs.member_id), None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> NoReturn:
        task_status.started()
        attrs = self._attrs
        while True:
            record = self._record()
            if record is not None and not needs_publishing(record, attrs):
                break
            if record is None:  # not joined yet: wait for the log to add us
                await self._applied.wait_at_least(self._applied.index + 1)
                continue
            try:
                await self._propose_entry(lambda rid: encode_proposal(rid, attrs))
                self.published = True
                log.info("%s published its name and client URLs as member %x",
                         attrs.name, attrs.member_id)
            except EtcdliteError as exc:
                log.info("%s will retry publishing its attributes: %s", attrs.name,
                         exc.message)
                await trio.sleep(self._retry_s)
        await trio.sleep_forever()
        raise AssertionError("AttributePublisher.run should never complete")

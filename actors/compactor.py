"""Auto compaction: the leader proposes `compact` when its policy says so.

Only the leader decides (as in etcd), and the compaction travels through the
log like a client's, so every member compacts at the same index. What to
compact and when is `cluster.compaction_policy`'s pure decision; this actor
only feeds it the clock (`trio.current_time()`) and the store's revisions,
resets it whenever this member (re)gains leadership, and proposes.

Revision mode checks every `interval_s`: etcd's fixed 5 minutes by default,
overridable with $ETCDLITE_AUTO_COMPACTION_INTERVAL_S (seconds), mainly so
tests need not wait. Periodic mode derives its pace from the retention.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn

import trio

from cluster import kv
from cluster.compaction_policy import CompactionPolicy, make_policy
from cluster.errors import CompactedError, EtcdliteError
from cluster.messages import Role

log = logging.getLogger("etcdlite.compactor")

revision_interval_s_default = 300.0
"""etcd's revision-mode check interval."""

INTERVAL_ENV = "ETCDLITE_AUTO_COMPACTION_INTERVAL_S"


class Compactor:
    """Runs one compaction policy on behalf of the leader.

    Args:
        policy: what to compact and when.
        role: this member's Raft role and term, read fresh every round.
        revisions: the store's (revision, compact_revision) right now.
        propose: puts a request through the log (`ClientServer.propose`).
    """

    def __init__(self, *, policy: CompactionPolicy, role: Callable[[], tuple[Role, int]],
                 revisions: Callable[[], tuple[int, int]],
                 propose: Callable[[Any], Awaitable[dict[str, Any]]], name: str) -> None:
        self._policy = policy
        self._role = role
        self._revisions = revisions
        self._propose = propose
        self._name = name
        self._leader_term = 0
        self.compactions = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> NoReturn:
        task_status.started()
        while True:
            # Pacing, not synchronisation: the policy reasons in these steps.
            await trio.sleep(self._policy.sample_interval_s)
            await self.round()
        raise AssertionError("compactor should never complete")

    async def round(self) -> None:
        role, term = self._role()
        now = trio.current_time()
        if role is not Role.LEADER:
            self._leader_term = 0
            return
        if term != self._leader_term:
            self._leader_term = term
            self._policy.reset(now)
            return
        revision, compact_revision = self._revisions()
        target = self._policy.decide(now, revision, compact_revision)
        if target is None:
            return
        try:
            await self._propose(kv.CompactionRequest(revision=target))
        except CompactedError:
            return  # someone compacted further meanwhile: nothing lost
        except EtcdliteError as exc:
            log.warning("%s auto compaction to revision %d failed: %s", self._name, target, exc)
            return
        self.compactions += 1
        log.info("%s auto compacted to revision %d", self._name, target)


def compactor_for_member(member: Any, propose: Callable[[Any], Awaitable[dict[str, Any]]]
                         ) -> Compactor | None:
    """The compactor a `cluster.member.Member`'s configuration asks for, or None (off)."""
    c = member.cfg.cluster
    policy = make_policy(c.auto_compaction_mode,
                         retention_revisions=c.auto_compaction_retention_revisions,
                         retention_s=c.auto_compaction_retention_s,
                         revision_interval_s=interval_from_env(os.environ))
    if policy is None:
        return None

    def role() -> tuple[Role, int]:
        node = member.node
        return (node.view.role, node.view.term) if node is not None else (Role.FOLLOWER, 0)

    def revisions() -> tuple[int, int]:
        return member.mvcc.revision, member.mvcc.compact_revision

    log.info("%s auto compaction: %s, retention %s", member.name, c.auto_compaction_mode,
             c.auto_compaction_retention)
    return Compactor(policy=policy, role=role, revisions=revisions, propose=propose,
                     name=member.name)


def interval_from_env(env: Mapping[str, str]) -> float:
    raw = env.get(INTERVAL_ENV, "").strip()
    if not raw:
        return revision_interval_s_default
    value = float(raw)
    if not value > 0:
        raise ValueError(f"{INTERVAL_ENV} must be > 0 seconds, got {raw!r}")
    return value

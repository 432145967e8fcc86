"""Maintenance and health of one member: quota + alarms, defragment, hash_kv, health.

- QUOTA: before a request that grows the store (put, txn with a put, lease
  grant) is proposed, `check_quota` compares this member's state.db size
  (page count x page size, which only shrinks by defragmenting, like
  etcd's bolt file) plus the request's size with --quota-backend-bytes. Over
  it, the request fails `no_space` and this member proposes a NOSPACE alarm
  for itself through the log, so every member starts refusing such writes at
  the same index (storage/alarms.py). That alarm stays until `alarm`
  deactivate ("etcdlite alarm disarm"), even once space is freed.
- ALARM: list (after a linearizable barrier, from the applied table),
  activate and deactivate (through the log).
- DEFRAGMENT: local to this member, not through the log. SQLite's VACUUM runs in
  a worker thread while the applier is held between batches (its exclusive
  lock), so committed entries queue up and no write is applied here until it
  is done; reads keep being served from the last applied state (WAL mode lets
  a VACUUM and readers run together), but linearizable reads that need a newer
  applied index wait too. Raft keeps running (heartbeats, votes, appends).
- HASH_KV: a CRC-32 of the MVCC history at a revision (storage/mvcc_hash.py),
  to compare members; computed in a worker thread on its own read connection
  (about 0.9 s per 100,000 history records), so the member keeps serving.
- HEALTH: healthy = a leader is known, a linearizable read completes within the
  deadline, and no alarm is active (etcd's /health reports "alarm NOSPACE").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import trio

from cluster import kv
from cluster.alarm_types import AlarmAction, AlarmMember, AlarmRequest, AlarmType
from cluster.errors import BadRequestError, EtcdliteError, NoSpaceError
from cluster.messages import NONE
from storage.alarms import NO_SPACE_MESSAGE, AlarmReader, grows_store
from storage.mvcc_hash import hash_state_db

log = logging.getLogger("etcdlite.maintenance")

size_cache_s = 0.05
"""How stale the db size the quota check uses may be: a few pragmas per write add up."""

request_overhead_bytes = 64
"""Bytes a stored record costs beyond its key and value (history row + index entries)."""

alarm_retry_s = 1.0
"""Pause before proposing the NOSPACE alarm again when the last proposal failed."""


def request_cost_bytes(req: Any) -> int:
    """A rough bound of what a request adds to the store (etcd's quota cost)."""
    if isinstance(req, kv.PutRequest):
        return len(req.key) + len(req.value) + request_overhead_bytes
    if isinstance(req, kv.TxnRequest):
        return sum(request_cost_bytes(op) for op in (*req.success, *req.failure))
    if isinstance(req, kv.LeaseGrantRequest):
        return request_overhead_bytes
    return 0


@dataclass(frozen=True, slots=True)
class MaintenanceStatistics:
    quota_refusals: int
    alarms_proposed: int
    defragments: int


class Maintenance:
    """Serves the maintenance operations of docs/protocol.md for one member.

    Args:
        member: the `cluster.member.Member` (mvcc, header, id, leader_id, node).
        propose: puts a request through the log (`ClientServer.propose`).
        read_barrier: waits until local state is linearizable (ReadIndex).
        apply_lock: held by the applier while it applies a batch; defragment
            holds it so that nothing is applied while the file is rewritten.
        quota_bytes: --quota-backend-bytes.
        health_timeout_s: default deadline of the health check's read.
    """

    def __init__(self, *, member: Any, propose: Callable[[Any], Awaitable[dict[str, Any]]],
                 read_barrier: Callable[[], Awaitable[None]], apply_lock: trio.Lock,
                 quota_bytes: int, health_timeout_s: float) -> None:
        self._member = member
        self._mvcc = member.mvcc
        self._propose = propose
        self._read_barrier = read_barrier
        self._apply_lock = apply_lock
        self._quota_bytes = quota_bytes
        self._health_timeout_s = health_timeout_s
        self._alarms = AlarmReader(self._mvcc.path)
        self._size_bytes = 0
        self._size_at = -1.0
        self._nospace_wanted = trio.Event()
        self._defrag_lock = trio.Lock()
        self._refusals = self._alarms_proposed = self._defragments = 0

    def statistics(self) -> MaintenanceStatistics:
        return MaintenanceStatistics(self._refusals, self._alarms_proposed, self._defragments)

    def register(self, server: Any) -> None:
        server.add_operation("alarm", self.alarm)
        server.add_operation("defragment", self.defragment)
        server.add_operation("hash_kv", self.hash_kv)
        server.add_operation("health", self.health)

    def close(self) -> None:
        self._alarms.close()

    def alarms(self) -> tuple[AlarmMember, ...]:
        """The applied alarms (for status' errors list)."""
        return self._alarms.alarms()

    def errors(self) -> list[str]:
        return [a.describe() for a in self.alarms()]

    # --- quota -------------------------------------------------------------------------

    def check_quota(self, request: Any) -> None:
        """Refuse a growing request when this member's store is over its quota.

        Raises:
            NoSpaceError: over quota; the NOSPACE alarm is being raised meanwhile.
        """
        if not grows_store(request):
            return
        now = time.monotonic()
        if now - self._size_at > size_cache_s:
            self._size_bytes = self._mvcc.db_size_bytes
            self._size_at = now
        if self._size_bytes + request_cost_bytes(request) <= self._quota_bytes:
            return
        self._refusals += 1
        self._nospace_wanted.set()
        raise NoSpaceError(NO_SPACE_MESSAGE)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> NoReturn:
        """Raise this member's NOSPACE alarm whenever the quota check asks for it."""
        task_status.started()
        try:
            while True:
                await self._nospace_wanted.wait()
                self._nospace_wanted = trio.Event()
                mine = AlarmMember(self._member.id, AlarmType.NOSPACE)
                if mine in self.alarms():
                    continue
                try:
                    await self._propose(AlarmRequest(AlarmAction.ACTIVATE, self._member.id,
                                                     AlarmType.NOSPACE))
                    self._alarms_proposed += 1
                    log.warning("%s raised alarm NOSPACE: db size %d, quota %d",
                                self._member.name, self._mvcc.db_size_bytes,
                                self._quota_bytes)
                except EtcdliteError as exc:
                    log.warning("%s could not raise alarm NOSPACE: %s", self._member.name, exc)
                    await trio.sleep(alarm_retry_s)  # pacing retries, not synchronisation
                    self._nospace_wanted.set()
        finally:
            self.close()
        raise AssertionError("maintenance should never complete")

    # --- operations -----------------------------------------------------------------

    async def alarm(self, body: dict[str, Any]) -> dict[str, Any]:
        req = kv.parse_request(body, allow_internal=True)
        assert isinstance(req, AlarmRequest)
        if req.action is AlarmAction.GET:
            await self._read_barrier()
            alarms = [a for a in self.alarms()
                      if req.member_id in (0, a.member_id)
                      and req.alarm in (AlarmType.NONE, a.alarm)]
            return {"header": self._member.header(),
                    "alarms": [{"member_id": a.member_id, "alarm": a.alarm.value}
                               for a in alarms]}
        if req.action is AlarmAction.ACTIVATE and (req.member_id <= 0
                                                   or req.alarm is AlarmType.NONE):
            raise BadRequestError("alarm activate needs a member_id and an alarm type")
        return await self._propose(req)

    async def defragment(self, body: dict[str, Any]) -> dict[str, Any]:
        _no_arguments(body, "defragment")
        async with self._defrag_lock, self._apply_lock:
            before = self._mvcc.db_size_bytes
            started = trio.current_time()
            await trio.to_thread.run_sync(self._mvcc.defragment)
            took_s = trio.current_time() - started
        after = self._mvcc.db_size_bytes
        self._size_at = -1.0  # the quota check must see the new size at once
        self._defragments += 1
        log.info("%s defragmented state.db in %.3fs: %d -> %d bytes", self._member.name,
                 took_s, before, after)
        return {"header": self._member.header(), "db_size_before": before,
                "db_size": after, "took_ms": round(took_s * 1000, 3)}

    async def hash_kv(self, body: dict[str, Any]) -> dict[str, Any]:
        revision = _int_arg(body, "revision", "hash_kv")
        # A thread and a connection of its own: a big history takes seconds to hash.
        crc, compact, hash_revision = await trio.to_thread.run_sync(
            hash_state_db, self._mvcc.path, revision)
        return {"header": self._member.header(), "hash": crc, "compact_revision": compact,
                "hash_revision": hash_revision}

    async def health(self, body: dict[str, Any]) -> dict[str, Any]:
        timeout_ms = _int_arg(body, "timeout_ms", "health")
        timeout_s = timeout_ms / 1000 if timeout_ms else self._health_timeout_s
        started = trio.current_time()
        reasons = [f"alarm {a.alarm.value}" for a in self.alarms()]
        if self._member.leader_id() == NONE:
            reasons.append("no leader")
        else:
            try:
                with trio.fail_after(timeout_s):
                    await self._read_barrier()
            except trio.TooSlowError:
                reasons.append(f"linearizable read timed out after {timeout_s:g}s")
            except EtcdliteError as exc:
                reasons.append(f"linearizable read failed: {exc.message}")
        took_ms = (trio.current_time() - started) * 1000
        return {"header": self._member.header(), "health": not reasons,
                "reason": "; ".join(dict.fromkeys(reasons)), "took_ms": round(took_ms, 3)}


def _no_arguments(body: dict[str, Any], op: str) -> None:
    extra = set(body) - {"op", "v"}
    if extra:
        raise BadRequestError(f"{op}: unknown argument(s) {sorted(extra)}")


def _int_arg(body: dict[str, Any], name: str, op: str) -> int:
    extra = set(body) - {"op", "v", name}
    if extra:
        raise BadRequestError(f"{op}: unknown argument(s) {sorted(extra)}")
    value = body.get(name, 0)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise BadRequestError(f"{op}: '{name}' must be a non-negative integer")
    return int(value)

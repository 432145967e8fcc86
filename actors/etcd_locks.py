"""etcd's server-side lock and election services (v3lockpb, v3electionpb) on native ops.

etcd implements these on the server with its client-side concurrency recipes
(a key per contender under the lock or election name, created with the
contender's lease; the lowest create revision holds it; the others wait for
the deletion of the key just before theirs). Here the same recipes run on
the etcd API's asyncio side and every step is a native request: `txn` to
enter, `range` to find the holder, `watch_poll` (deletes only) to wait, so
the services add no state and no new path to the store.

Keys are etcd's: "<name>/<lease id in hex>", so a contender using etcd's
client-side recipes (etcdctl lock / elect, clientv3 concurrency) and one
using these services queue in the same line.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, final

import grpc

from actors.etcd_api import EtcdApi, Method
from cluster import etcd_convert as cv
from cluster.etcd_errors import EtcdStatus
from cluster.etcdpb import v3election_pb2 as el
from cluster.etcdpb import v3lock_pb2 as lk
from cluster.kv_types import prefix_range_end

wait_poll_timeout_ms = 10_000
"""How long one wait for a deletion long-polls before asking again."""

NOT_LEADER = EtcdStatus(grpc.StatusCode.UNKNOWN, "election: not leader")
NO_LEADER = EtcdStatus(grpc.StatusCode.UNKNOWN, "election: no leader")
MISSING_LEADER = EtcdStatus(grpc.StatusCode.UNKNOWN, '"leader" field must be provided')


@final
class Concurrency:
    """Lock and Election for one member's etcd API."""

    def __init__(self, api: EtcdApi) -> None:
        self._api = api

    # --- the recipes' steps -----------------------------------------------------------

    async def _enter(self, prefix: bytes, lease: int, value: bytes
                     ) -> tuple[bytes, int, dict[str, Any], bool]:
        """Create our key unless it exists; (key, its create revision, reply, created)."""
        key = prefix + b"%x" % lease
        reply = await self._api.native(
            "txn", compare=[{"key": key, "target": "create", "result": "=", "value": 0}],
            success=[{"put": {"key": key, "value": value, "lease": lease}}],
            failure=[{"range": {"key": key}}])
        if reply["succeeded"]:
            return key, reply["header"]["revision"], reply, True
        kv = reply["responses"][0]["range"]["kvs"][0]
        return key, kv["create_revision"], reply, False

    async def _first(self, prefix: bytes) -> dict[str, Any]:
        """The reply of a range for the oldest key under `prefix` (the holder)."""
        return await self._api.native(
            "range", key=prefix, range_end=prefix_range_end(prefix), limit=1,
            sort_order="ascend", sort_target="create")

    async def _wait_deletes(self, prefix: bytes, max_create_revision: int) -> None:
        """Return once every key under `prefix` created at or before the revision is gone."""
        while True:
            older = await self._api.native(
                "range", key=prefix, range_end=prefix_range_end(prefix), limit=1,
                sort_order="descend", sort_target="create",
                max_create_revision=max_create_revision)
            if not older["kvs"]:
                return
            await self._wait_delete(older["kvs"][0]["key"], older["header"]["revision"] + 1)

    async def _wait_delete(self, key: bytes, start: int) -> None:
        while True:
            reply = await self._api.native(
                "watch_poll", key=key, start_revision=start, filters=["noput"],
                timeout_ms=wait_poll_timeout_ms)
            if reply["events"]:
                return
            start = reply["next_revision"]

    async def _delete_quietly(self, key: bytes) -> None:
        with contextlib.suppress(EtcdStatus):  # else its lease, if any, cleans up later
            await self._api.native("delete_range", key=key)

    # --- v3lockpb.Lock ----------------------------------------------------------------

    async def lock(self, r: lk.LockRequest) -> lk.LockResponse:
        prefix = r.name + b"/"
        key, revision, reply, _ = await self._enter(prefix, r.lease, b"")
        try:
            await self._wait_deletes(prefix, revision - 1)
        except BaseException:  # cancelled or failed while queued: leave the line
            await asyncio.shield(self._delete_quietly(key))
            raise
        return lk.LockResponse(header=cv.header(reply["header"]), key=key)

    async def unlock(self, r: lk.UnlockRequest) -> lk.UnlockResponse:
        reply = await self._api.native("delete_range", key=r.key)
        return lk.UnlockResponse(header=cv.header(reply["header"]))

    # --- v3electionpb.Election --------------------------------------------------------

    async def campaign(self, r: el.CampaignRequest) -> el.CampaignResponse:
        prefix = r.name + b"/"
        key, revision, reply, created = await self._enter(prefix, r.lease, r.value)
        leader = el.LeaderKey(name=r.name, key=key, rev=revision, lease=r.lease)
        try:
            if not created:
                kv = reply["responses"][0]["range"]["kvs"][0]
                if kv["value"] != r.value:
                    await self._proclaim(leader, r.value)
            await self._wait_deletes(prefix, revision - 1)
        except BaseException:
            await asyncio.shield(self._delete_quietly(key))
            raise
        return el.CampaignResponse(header=cv.header(reply["header"]), leader=leader)

    async def _proclaim(self, leader: el.LeaderKey, value: bytes) -> dict[str, Any]:
        reply = await self._api.native(
            "txn", compare=[{"key": leader.key, "target": "create", "result": "=",
                             "value": leader.rev}],
            success=[{"put": {"key": leader.key, "value": value, "lease": leader.lease}}],
            failure=[])
        if not reply["succeeded"]:
            raise NOT_LEADER
        return reply

    async def proclaim(self, r: el.ProclaimRequest) -> el.ProclaimResponse:
        if not r.HasField("leader"):
            raise MISSING_LEADER
        reply = await self._proclaim(r.leader, r.value)
        return el.ProclaimResponse(header=cv.header(reply["header"]))

    async def leader(self, r: el.LeaderRequest) -> el.LeaderResponse:
        reply = await self._first(r.name + b"/")
        if not reply["kvs"]:
            raise NO_LEADER
        return el.LeaderResponse(header=cv.header(reply["header"]),
                                 kv=cv.key_value(reply["kvs"][0]))

    async def resign(self, r: el.ResignRequest) -> el.ResignResponse:
        if not r.HasField("leader"):
            raise MISSING_LEADER
        reply = await self._api.native(
            "txn", compare=[{"key": r.leader.key, "target": "create", "result": "=",
                             "value": r.leader.rev}],
            success=[{"delete_range": {"key": r.leader.key}}], failure=[])
        return el.ResignResponse(header=cv.header(reply["header"]))

    async def observe(self, r: el.LeaderRequest) -> AsyncIterator[el.LeaderResponse]:
        """Every change of leader or of its value, starting with the current one."""
        prefix = r.name + b"/"
        last: tuple[bytes, int] | None = None
        while True:
            reply = await self._first(prefix)
            if reply["kvs"]:
                kv = reply["kvs"][0]
                if (kv["key"], kv["mod_revision"]) != last:
                    last = (kv["key"], kv["mod_revision"])
                    yield el.LeaderResponse(header=cv.header(reply["header"]),
                                            kv=cv.key_value(kv))
            start = reply["header"]["revision"] + 1
            while True:  # wait for any change under the election's prefix
                polled = await self._api.native(
                    "watch_poll", key=prefix, range_end=prefix_range_end(prefix),
                    start_revision=start, timeout_ms=wait_poll_timeout_ms)
                if polled["events"]:
                    break
                start = polled["next_revision"]

    def methods(self) -> list[Method]:
        lock, election = "/v3lockpb.Lock/", "/v3electionpb.Election/"
        return [
            Method(lock + "Lock", lk.LockRequest, lk.LockResponse, self.lock),
            Method(lock + "Unlock", lk.UnlockRequest, lk.UnlockResponse, self.unlock),
            Method(election + "Campaign", el.CampaignRequest, el.CampaignResponse,
                   self.campaign),
            Method(election + "Proclaim", el.ProclaimRequest, el.ProclaimResponse,
                   self.proclaim),
            Method(election + "Leader", el.LeaderRequest, el.LeaderResponse, self.leader),
            Method(election + "Resign", el.ResignRequest, el.ResignResponse, self.resign),
        ]

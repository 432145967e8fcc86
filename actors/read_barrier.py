"""Linearizable reads without log writes: one ReadIndex round serves a whole batch.

Reads that arrive while a round is in flight join the next round (etcd's
linearizable read loop). A round: ask Raft for a read index with a fresh
context, wait for the leader's quorum-confirmed answer, wait until this
member has applied that index, release every read of the batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NoReturn

import trio

from actors.events import RaftInput, ReadIndexRequest
from actors.wait import AppliedIndex, WaitRegistry
from cluster.errors import EtcdliteError, NoLeaderError, TimeoutError_


class _Batch:
    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: EtcdliteError | None = None


class ReadBarrier:
    def __init__(self, inbox: trio.MemorySendChannel[RaftInput], waits: WaitRegistry,
                 applied: AppliedIndex, round_timeout_s: float, read_timeout_s: float,
                 has_leader: Callable[[], bool]) -> None:
        self._inbox = inbox
        self._waits = waits
        self._applied = applied
        self._round_timeout_s = round_timeout_s
        self._read_timeout_s = read_timeout_s
        self._has_leader = has_leader
        self._next = _Batch()
        self._wakeup = trio.Event()
        self.rounds = 0

    async def wait(self) -> None:
        """Return once a read started now may be served from local state."""
        batch = self._next
        self._wakeup.set()
        await batch.done.wait()
        if batch.error is not None:
            raise batch.error

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> NoReturn:
        task_status.started()
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            batch, self._next = self._next, _Batch()
            try:
                await self._round()
            except EtcdliteError as exc:
                batch.error = exc
            batch.done.set()
        raise AssertionError("read barrier should never complete")

    async def _round(self) -> None:
        self.rounds += 1
        with trio.move_on_after(self._read_timeout_s):
            while True:
                if not self._has_leader():
                    raise NoLeaderError("no leader to confirm a linearizable read")
                context = os.urandom(8)
                slot = self._waits.register(context)
                await self._inbox.send(ReadIndexRequest(context))
                ok, index = await self._waits.wait(context, slot, self._round_timeout_s)
                if ok:
                    await self._applied.wait_at_least(index)
                    return
        raise TimeoutError_("linearizable read timed out")

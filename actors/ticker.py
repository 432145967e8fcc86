"""The only clock of a member: one Tick per heartbeat interval into the raft inbox."""

from __future__ import annotations

from typing import NoReturn

import trio

from actors.events import RaftInput, Tick


class Ticker:
    def __init__(self, interval_s: float, inbox: trio.MemorySendChannel[RaftInput]) -> None:
        self._interval_s = interval_s
        self._inbox = inbox
        self.missed = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> NoReturn:
        task_status.started()
        deadline = trio.current_time()
        while True:
            deadline += self._interval_s
            await trio.sleep_until(deadline)
            now = trio.current_time()
            if now - deadline > self._interval_s:
                deadline = now  # fell behind (paused process): do not burst ticks
            try:
                self._inbox.send_nowait(Tick())
            except trio.WouldBlock:
                self.missed += 1  # a busy node skips a tick rather than queueing time
        raise AssertionError("ticker should never complete")

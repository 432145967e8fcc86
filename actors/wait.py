"""Rendezvous between a request and the actor that finishes it (etcd's wait.Wait).

A client-serving task registers an id, hands the id to another actor (in a
proposal, a read-index context), and sleeps; whoever finishes the work calls
`trigger(id, result)`. Triggering an id nobody waits for (a proposal made by
another member, or a waiter that already timed out) is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio


@dataclass(slots=True)
class _Slot:
    event: trio.Event = field(default_factory=trio.Event)
    result: Any = None


class WaitRegistry:
    def __init__(self) -> None:
        self._slots: dict[int | bytes, _Slot] = {}

    def register(self, key: int | bytes) -> _Slot:
        assert key not in self._slots, f"duplicate wait id {key!r}"
        slot = _Slot()
        self._slots[key] = slot
        return slot

    def cancel(self, key: int | bytes) -> None:
        self._slots.pop(key, None)

    def trigger(self, key: int | bytes, result: Any) -> bool:
        slot = self._slots.pop(key, None)
        if slot is None:
            return False
        slot.result = result
        slot.event.set()
        return True

    def is_registered(self, key: int | bytes) -> bool:
        return key in self._slots

    async def wait(self, key: int | bytes, slot: _Slot, timeout_s: float) -> tuple[bool, Any]:
        """(True, result) when triggered in time; (False, None) on timeout (slot removed)."""
        with trio.move_on_after(timeout_s):
            await slot.event.wait()
            return True, slot.result
        self.cancel(key)
        return False, None

    def __len__(self) -> int:
        return len(self._slots)


class AppliedIndex:
    """The applier's progress, which linearizable reads wait on."""

    def __init__(self, index: int) -> None:
        self.index = index
        self._changed = trio.Event()

    def set(self, index: int) -> None:
        assert index >= self.index, "applied index went backwards"
        self.index = index
        self._changed.set()
        self._changed = trio.Event()

    async def wait_at_least(self, index: int) -> None:
        while self.index < index:
            await self._changed.wait()

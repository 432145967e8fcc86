"""The cluster's own record of what happened, read back once the faults are healed.

No compaction runs during a torture run, so every member's MVCC history is
complete: every revision, every put and tombstone. `fetch_history` pages
through it on ONE member with raw `watch_poll` requests (not the watch client,
which checker_watch is judging), and `MvccHistory` answers "what was key k at
revision r". The durability checker compares the members' histories with each
other and with what clients were told; the linearizability checker may use it
to settle indeterminate writes (`resolved`).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import trio

from cluster import codec
from cluster.client_replies import parse_kv
from cluster.client_transport import AsyncTransport
from cluster.errors import InternalError
from cluster.torture.history import KV, WatchEvent
from cluster.torture.linear_model import Resolution

page_events_max = 1000


def _event(w: dict[str, object]) -> WatchEvent:
    kv = parse_kv(w.get("kv"))
    prev = w.get("prev_kv")
    pkv = None if prev is None else parse_kv(prev)
    deleted = w.get("type") == "delete"
    return WatchEvent(
        revision=kv.mod_revision, type="delete" if deleted else "put", key=kv.key.decode(),
        value=None if deleted else kv.value.decode(), create_revision=kv.create_revision,
        version=kv.version, lease=kv.lease,
        prev_value=None if pkv is None else pkv.value.decode(),
        prev_mod_revision=0 if pkv is None else pkv.mod_revision)


async def fetch_history(endpoint: str, up_to: int, timeout_s: float = 30.0
                        ) -> list[WatchEvent]:
    """Every event of the whole key space at revisions 1..`up_to`, from one member."""
    transport = AsyncTransport((endpoint,), timeout_s)
    events: list[WatchEvent] = []
    start = 1
    try:
        with trio.fail_after(timeout_s):
            while start <= up_to:
                frame = codec.encode_frame({
                    "op": "watch_poll", "key": b"\0", "range_end": b"\0",
                    "start_revision": start, "prev_kv": True, "limit": page_events_max,
                    "timeout_ms": 1000})
                body, _ = await transport.request(frame, read=True, pinned=endpoint)
                raw, nxt = body.get("events"), body.get("next_revision")
                if not isinstance(raw, list) or not isinstance(nxt, int) or nxt < start:
                    raise InternalError(f"{endpoint}: bad watch_poll reply at {start}: "
                                        f"next_revision {nxt!r}")
                events += [_event(w) for w in raw]
                start = nxt
    finally:
        transport.close()
    return [e for e in events if e.revision <= up_to]


@dataclass(frozen=True, slots=True)
class Version:
    revision: int
    value: str | None  # None: deleted at `revision`
    lease: int


class MvccHistory:
    """Key -> its versions in revision order, built from one member's full history."""

    def __init__(self, events: Iterable[WatchEvent]) -> None:
        self.events = sorted(events, key=lambda e: e.revision)
        self.by_revision: dict[int, list[WatchEvent]] = defaultdict(list)
        self._versions: dict[str, list[Version]] = defaultdict(list)
        for e in self.events:
            self.by_revision[e.revision].append(e)
            self._versions[e.key].append(Version(e.revision, e.value, e.lease))
        self._revs = {k: [v.revision for v in vs] for k, vs in self._versions.items()}
        self.last_revision = self.events[-1].revision if self.events else 1

    @property
    def keys(self) -> list[str]:
        return sorted(self._versions)

    def at(self, key: str, revision: int) -> KV:
        """The key as a read at `revision` returns it (value None = absent)."""
        revs = self._revs.get(key, [])
        i = bisect.bisect_right(revs, revision) - 1
        if i < 0:
            return KV(key, None)
        v = self._versions[key][i]
        if v.value is None:
            return KV(key, None)
        return KV(key, v.value, v.revision, v.lease)

    def state(self, revision: int) -> dict[str, KV]:
        """Every live key at `revision`."""
        out = {}
        for key in self._versions:
            kv = self.at(key, revision)
            if kv.value is not None:
                out[key] = kv
        return out

    def resolved(self) -> Resolution:
        """Every put's revision and every tombstone: settles indeterminate writes."""
        tombstones: dict[str, dict[int, int]] = defaultdict(dict)
        for e in self.events:
            if e.value is None:
                tombstones[e.key][e.revision] = self.at(e.key, e.revision - 1).lease
        return Resolution(
            puts={(e.key, e.value): e.revision for e in self.events if e.value is not None},
            tombstones=dict(tombstones))

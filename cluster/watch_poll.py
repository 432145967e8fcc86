"""The `watch_poll` operation, pure parts: argument checking, revision-whole cuts, wire maps.

Watch in etcdlite is a long-poll by revision (docs/protocol.md, "Watch"):
the client asks for the changes at or after `start_revision` and the member
answers from MVCC history, waiting only when there is nothing to say yet.
Nothing here does I/O, so every rule (argument bounds, the "never split a
revision" cut, filters, where the client must continue) is tested as a plain
function; `actors.watch` does the waiting and the reading.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cluster import limits
from cluster.errors import BadRequestError
from cluster.kv import INT64_MAX, KeyValue, kv_to_wire


class WatchFilter(enum.StrEnum):
    """etcd's WatchCreateRequest filters: drop puts, or drop deletes."""

    NOPUT = "noput"
    NODELETE = "nodelete"


@dataclass(frozen=True, slots=True)
class WatchPollRequest:
    """One validated `watch_poll`; `start_revision` 0 means "from now"."""

    key: bytes
    range_end: bytes = b""
    start_revision: int = 0
    prev_kv: bool = False
    filters: frozenset[WatchFilter] = frozenset()
    progress_notify: bool = False
    limit: int = limits.watch_events_max
    timeout_ms: int = 0

    def matches(self, key: bytes, is_delete: bool) -> bool:
        """Whether a change to `key` would be delivered (range and filters)."""
        if is_delete and WatchFilter.NODELETE in self.filters:
            return False
        if not is_delete and WatchFilter.NOPUT in self.filters:
            return False
        return in_range(key, self.key, self.range_end)


def in_range(key: bytes, start: bytes, range_end: bytes) -> bool:
    """etcd's range rule: b"" = `start` alone, b"\\0" = every key >= start, else [start, end)."""
    if not range_end:
        return key == start
    if range_end == b"\0":
        return key >= start
    return start <= key < range_end


_ARGS = frozenset({"op", "v", "key", "range_end", "start_revision", "prev_kv", "filters",
                   "progress_notify", "limit", "timeout_ms"})


def _int(body: dict[str, Any], name: str) -> int:
    value = body.get(name, 0)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= INT64_MAX:
        raise BadRequestError(f"watch_poll: '{name}' must be a non-negative integer")
    return value


def _bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadRequestError(f"watch_poll: '{name}' must be a boolean")
    return value


def _bytes(body: dict[str, Any], name: str) -> bytes:
    value = body.get(name, b"")
    if not isinstance(value, bytes):
        raise BadRequestError(f"watch_poll: '{name}' must be bytes")
    return value


def parse_watch_poll(body: dict[str, Any]) -> WatchPollRequest:
    """Check a decoded `watch_poll` frame strictly, as `kv.parse_request` does for KV ops.

    `limit` 0 or above the server maximum becomes the maximum, and `timeout_ms`
    is clamped to `limits.watch_timeout_ms_max`: a client cannot make a member
    hold a context, or build a reply, without bound.

    Raises:
        BadRequestError: a missing key, an unknown argument, a wrong type.
    """
    unknown = set(body) - _ARGS
    if unknown:
        raise BadRequestError(f"watch_poll: unknown argument(s) {sorted(unknown)}")
    key = _bytes(body, "key")
    if not key:
        raise BadRequestError("key is not provided")
    raw_filters = body.get("filters", [])
    if not isinstance(raw_filters, list | tuple):
        raise BadRequestError("watch_poll: 'filters' must be a list")
    try:
        filters = frozenset(WatchFilter(f) for f in raw_filters)
    except ValueError:
        raise BadRequestError("watch_poll: filters must be 'noput' or 'nodelete'") from None
    limit = _int(body, "limit")
    return WatchPollRequest(
        key=key, range_end=_bytes(body, "range_end"),
        start_revision=_int(body, "start_revision"), prev_kv=_bool(body, "prev_kv"),
        filters=filters, progress_notify=_bool(body, "progress_notify"),
        limit=min(limit, limits.watch_events_max) if limit else limits.watch_events_max,
        timeout_ms=min(_int(body, "timeout_ms"), limits.watch_timeout_ms_max),
    )


class ChangeLike(Protocol):
    """What the cut needs of an event (storage.mvcc.MvccEvent has it)."""

    @property
    def is_delete(self) -> bool: ...

    @property
    def kv(self) -> KeyValue: ...

    @property
    def prev_kv(self) -> KeyValue | None: ...


def cut_point(events: Sequence[ChangeLike], limit: int) -> int | None:
    """The revision whose events a `limit`-long read may have cut, if it may have.

    A read that returned fewer than `limit` events saw everything in its
    window. One that returned exactly `limit` may have stopped inside its
    last revision, so the caller drops that revision and reads it again whole:
    a transaction must reach a watcher as one unit, never half in one reply.
    """
    if len(events) < limit or not events:
        return None
    return events[-1].kv.mod_revision


def cut_by_bytes(events: Sequence[ChangeLike], bytes_max: int) -> int | None:
    """The first revision to leave for the next reply so this one stays near `bytes_max`.

    Counts keys and values (prev_kv included). The first revision is always
    kept whole, however large, so a watch always moves forward; None means
    everything fits.
    """
    total = 0
    first = events[0].kv.mod_revision if events else 0
    for e in events:
        total += len(e.kv.key) + len(e.kv.value)
        if e.prev_kv is not None:
            total += len(e.prev_kv.key) + len(e.prev_kv.value)
        if total > bytes_max and e.kv.mod_revision != first:
            return e.kv.mod_revision
    return None


def drop_revision(events: Sequence[ChangeLike], revision: int) -> list[ChangeLike]:
    """`events` without those of `revision` (which the caller re-reads whole)."""
    return [e for e in events if e.kv.mod_revision != revision]


def next_revision(start: int, current: int, last_seen: int | None) -> int:
    """Where the client continues after a reply.

    Args:
        start: the poll's start revision.
        current: the member's revision when the reply was made (the header's).
        last_seen: the last revision the reply covers when it stopped short of
            `current` (cut by limit or by the scan window); None when it covers
            everything up to `current`.

    Never goes backwards: a member that is behind (the client failed over to a
    follower that has not applied `start - 1` yet) answers `start` again.
    """
    if last_seen is not None:
        return max(start, last_seen + 1)
    return max(start, current + 1)


def event_to_wire(event: ChangeLike, with_prev: bool) -> dict[str, Any]:
    """One event as the reply carries it (docs/protocol.md, EVENT)."""
    prev = event.prev_kv if with_prev else None
    return {"type": "delete" if event.is_delete else "put", "kv": kv_to_wire(event.kv),
            "prev_kv": None if prev is None else kv_to_wire(prev)}

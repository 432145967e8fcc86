"""Client side of watch, pure part: response types and the poll/resume state machine.

A watch is a sequence of `watch_poll` calls (docs/protocol.md, "Watch"), each
starting where the previous reply said to continue (`next_revision`). That one
number is the whole state of a watch, which is what makes it reliable and
resumable: the client moves it forward only when a reply has been received
whole, so a reply lost with a dying member is simply asked for again, from
the same revision, on the next endpoint. Every member holds the same history,
so the events are the same ones: none missing, none twice.

`WatchState` decides everything (what to send, where, what a reply or a
failure means, how long to pause) without doing I/O, so the sync `Watch` and
the trio `AsyncWatch` in `cluster.client_watch` share it, and its rules are
tested without sockets.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cluster import limits
from cluster.client_replies import parse_header, parse_kv
from cluster.client_requests import key_range, non_negative
from cluster.client_transport import retry_backoff_s_max, retry_backoff_s_min
from cluster.client_types import KeyValue, ResponseHeader
from cluster.codec import encode_frame
from cluster.errors import (
    BadRequestError,
    CompactedError,
    EtcdliteError,
    InternalError,
    NoLeaderError,
    NotLeaderError,
    TimeoutError_,
    UnavailableError,
)

poll_timeout_s_default = 10.0
"""How long one long-poll waits on a member for a change; also the longest gap
between progress notifications of an idle watch."""

_RETRYABLE = (UnavailableError, TimeoutError_, NoLeaderError, NotLeaderError)
"""Failures that say nothing about the watch itself: try the next endpoint."""

_NO_HEADER = ResponseHeader(cluster_id=0, member_id=0, revision=0, raft_term=0)

_watch_ids = itertools.count()
"""Watch ids for callers that do not choose one: unique within this process."""


class EventType(enum.StrEnum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Event:
    """One change (etcd's mvccpb.Event). A delete's `kv` holds the key and the
    deletion's mod_revision only; `prev_kv` is set when asked for and the key existed."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class WatchResponse:
    """What a watch yields: events (all of a revision together), a progress
    notification (no events; everything up to `header.revision` was delivered),
    or the final canceled response (`compact_revision` set when history was compacted)."""

    watch_id: int
    header: ResponseHeader
    events: tuple[Event, ...] = ()
    compact_revision: int = 0
    canceled: bool = False
    cancel_reason: str = ""
    is_progress_notify: bool = False


def new_watch_id(watch_id: int | None) -> int:
    return next(_watch_ids) if watch_id is None else watch_id


def parse_filters(filters: Iterable[str]) -> tuple[str, ...]:
    allowed = ("noput", "nodelete")
    out = tuple(str(f) for f in filters)
    for f in out:
        if f not in allowed:
            raise BadRequestError(f"watch filter must be one of {allowed}, not {f!r}")
    return out


def _parse_event(w: object) -> Event:
    if not isinstance(w, dict):
        raise InternalError("malformed reply: an event must be a map")
    kind = w.get("type")
    if kind not in ("put", "delete"):
        raise InternalError(f"malformed reply: event type {kind!r}")
    prev = w.get("prev_kv")
    return Event(EventType(kind), parse_kv(w.get("kv")),
                 None if prev is None else parse_kv(prev))


class WatchState:
    """Where a watch stands and what to do next; no I/O.

    Args:
        endpoints: the client's endpoints; the watch starts on the first and
            moves to the next after any failure.
        start_revision: 0 = from now (fixed by the first poll).
        poll_timeout_s: the long-poll wait (`timeout_ms` of each poll).
    """

    def __init__(self, endpoints: tuple[str, ...], *, key: bytes, range_end: bytes,
                 start_revision: int, prev_kv: bool, filters: tuple[str, ...],
                 progress_notify: bool, watch_id: int,
                 poll_timeout_s: float = poll_timeout_s_default,
                 auth_token: str | None = None) -> None:
        assert endpoints, "a watch needs at least one endpoint"
        self.endpoints = endpoints
        self.key = key
        self.range_end = range_end
        self.next_revision = start_revision
        self.prev_kv = prev_kv
        self.filters = filters
        self.progress_notify = progress_notify
        self.watch_id = watch_id
        self.poll_timeout_s = poll_timeout_s
        self.auth_token = auth_token
        self.canceled = False
        self.header = _NO_HEADER
        self._current = 0
        self._tries = 0
        self._backoff_s = retry_backoff_s_min
        self._asked = start_revision

    @property
    def endpoint(self) -> str:
        """Where the next poll goes."""
        return self.endpoints[self._current]

    @property
    def established(self) -> bool:
        """True once the start revision is fixed (a "from now" watch has polled once)."""
        return self.next_revision > 0

    def frame(self, poll_timeout_s: float) -> bytes:
        """The next `watch_poll` request, asking from `next_revision`."""
        self._asked = self.next_revision
        timeout_ms = min(int(poll_timeout_s * 1000), limits.watch_timeout_ms_max)
        body = {
            "op": "watch_poll", "key": self.key, "range_end": self.range_end,
            "start_revision": self.next_revision, "prev_kv": self.prev_kv,
            "filters": list(self.filters), "progress_notify": self.progress_notify,
            "timeout_ms": timeout_ms,
        }
        if self.auth_token is not None:
            body["auth_token"] = self.auth_token
        return encode_frame(body)

    def on_reply(self, body: dict[str, Any], *, first: bool = False) -> WatchResponse | None:
        """Take in one successful reply; returns what to yield, if anything.

        Events and (when asked for) progress notifications are yielded; the
        reply that fixes a "from now" start, and the first poll's progress,
        are not. `next_revision` only ever moves forward.

        Raises:
            InternalError: the reply breaks the protocol's ordering rules.
        """
        header = parse_header(body)
        raw_events = body.get("events")
        nxt = body.get("next_revision")
        if not isinstance(raw_events, list) or not isinstance(nxt, int) \
                or isinstance(nxt, bool):
            raise InternalError("malformed reply: watch_poll needs events and next_revision")
        events = tuple(_parse_event(w) for w in raw_events)
        low = self._asked
        for e in events:
            rev = e.kv.mod_revision
            if rev < low or rev > header.revision or rev >= nxt:
                raise InternalError(f"watch reply out of order: event at revision {rev} "
                                    f"(asked from {self._asked}, next {nxt})")
            low = rev
        if nxt <= 0 or (self._asked and nxt < self._asked):
            raise InternalError(f"watch reply moves backwards: next {nxt} < {self._asked}")
        self.next_revision = nxt
        self.header = header
        self._tries = 0
        self._backoff_s = retry_backoff_s_min
        progress = not events and nxt > header.revision
        if events:
            return WatchResponse(self.watch_id, header, events)
        if progress and self.progress_notify and not first:
            return WatchResponse(self.watch_id, header, is_progress_notify=True)
        return None

    def on_failure(self, exc: EtcdliteError) -> WatchResponse | float:
        """Decide what a failed poll means.

        Returns:
            The final canceled response (history compacted), or the pause in
            seconds before polling the next endpoint.

        Raises:
            EtcdliteError: a failure that retrying cannot fix (bad arguments, a
                member that does not know `watch_poll`, a protocol violation).
        """
        if isinstance(exc, CompactedError):
            self.canceled = True
            return WatchResponse(
                self.watch_id, self.header, compact_revision=exc.compact_revision,
                canceled=True, cancel_reason=exc.message)
        if not isinstance(exc, _RETRYABLE):
            raise exc
        self._current = (self._current + 1) % len(self.endpoints)
        self._tries += 1
        if self._tries % len(self.endpoints):
            return 0.0  # the rest of this round first: another member may be fine
        pause = self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, retry_backoff_s_max)
        return pause

    def cancel(self, reason: str = "canceled by the client") -> WatchResponse:
        self.canceled = True
        return WatchResponse(self.watch_id, self.header, canceled=True, cancel_reason=reason)


def new_watch_state(
    endpoints: tuple[str, ...], key: bytes | str, *, range_end: bytes | str | None,
    prefix: bool, start_revision: int, prev_kv: bool, filters: Iterable[str],
    progress_notify: bool, watch_id: int | None, poll_timeout_s: float,
    auth_token: str | None = None,
) -> WatchState:
    """Check `Client.watch()`'s arguments and build the state of a new watch.

    Raises:
        BadRequestError: conflicting range options, a bad filter, a negative revision.
    """
    k, end = key_range(key, range_end, prefix, False)
    if not poll_timeout_s > 0:
        raise BadRequestError(f"poll_timeout_s must be positive, got {poll_timeout_s!r}")
    return WatchState(
        endpoints, key=k, range_end=end,
        start_revision=non_negative(start_revision, "start_revision"), prev_kv=bool(prev_kv),
        filters=parse_filters(filters), progress_notify=bool(progress_notify),
        watch_id=new_watch_id(watch_id), poll_timeout_s=poll_timeout_s, auth_token=auth_token)

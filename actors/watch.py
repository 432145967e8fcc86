"""Serves `watch_poll`: reliable, resumable watch as a long-poll by revision.

A poll asks for the changes at or after a start revision. If MVCC history
already holds some, they are answered at once; otherwise the poll parks until
this member applies a revision that touches the watched range, or until its
timeout (then the empty reply is a progress notification: everything up to
the header revision has been delivered). History is the only buffer: a
watcher that does not poll costs the member nothing, however far behind it
falls, and it catches up from SQLite when it comes back (or gets `compacted`
if the history it needs is gone). Nothing is ever pushed, so nothing can be
dropped.

Waking is targeted. The hub is an actor fed by the applier's AppliedIndex:
when the store revision moves, it reads the new changes ONCE and wakes only
the parked polls whose range and filters match one of them, so a thousand
idle watchers on other keys do not each run a query per write.

Concurrency: a parked poll holds one nng REP context of the client server,
so at most `limits.watch_polls_waiting_max` polls may park at once; the
remaining contexts stay free for unary requests. A poll over the cap gets
`unavailable`, which the client treats like a busy member (it moves on).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import trio

from actors.wait import AppliedIndex
from cluster import limits
from cluster.errors import CompactedError, UnavailableError
from cluster.watch_poll import (
    ChangeLike,
    WatchPollRequest,
    cut_by_bytes,
    cut_point,
    drop_revision,
    event_to_wire,
    next_revision,
    parse_watch_poll,
)

log = logging.getLogger("etcdlite.watch")

wake_scan_events_max = 4096
"""Changes the hub reads to decide whom to wake; beyond this it wakes every parked
poll (each re-reads its own range), which is cheaper than reading a huge batch."""

scan_chunks_max = 4
"""Scan windows one poll reads while everything it finds is filtered out, before it
answers with no events and a `next_revision` short of the header (not a progress)."""


shared_reads_max = 64
"""Answers kept for polls that ask the same thing at the same store revision."""

shared_bytes_max = 64 * 1024
"""Only answers this small are kept for sharing, so sharing never pins much memory."""


@dataclass(frozen=True, slots=True)
class WatchStatistics:
    polls: int
    waiting: int
    wakeups: int
    events_sent: int
    refused: int
    reads: int


@dataclass(eq=False, slots=True)
class _Parked:
    """One parked poll: what it watches and the event that wakes it."""

    request: WatchPollRequest
    event: trio.Event = field(default_factory=trio.Event)


class WatchHub:
    """Owns the parked polls of one member; `poll` is the `watch_poll` handler.

    Args:
        member: the cluster.member.Member (its `mvcc` and `header()`); the store
            is looked up on every use because a snapshot install swaps its content.
        applied: the applier's progress; every advance may carry new revisions.
        waiting_max: parked polls allowed at once (see the module docstring).
    """

    def __init__(self, member: Any, applied: AppliedIndex, name: str,
                 waiting_max: int = limits.watch_polls_waiting_max) -> None:
        self._member = member
        self._applied = applied
        self._name = name
        self._waiting_max = waiting_max
        self._by_key: dict[bytes, set[_Parked]] = {}
        self._ranges: set[_Parked] = set()
        self._waiting = 0
        self._polls = self._wakeups = self._events_sent = self._refused = self._reads = 0
        self._shared: dict[tuple[Any, ...], tuple[list[dict[str, Any]], int | None]] = {}
        self._shared_revision = 0

    def statistics(self) -> WatchStatistics:
        return WatchStatistics(self._polls, self._waiting, self._wakeups, self._events_sent,
                               self._refused, self._reads)

    # --- the actor: revision advances -> wake matching polls ---------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> NoReturn:
        seen = self._member.mvcc.revision
        task_status.started()
        while True:
            await self._applied.wait_at_least(self._applied.index + 1)
            current = self._member.mvcc.revision
            if current != seen and self._waiting:
                self._wake_matching(seen, current)
            seen = current
        raise AssertionError("watch hub should never complete")

    def _wake_matching(self, seen: int, current: int) -> None:
        if current < seen:  # cannot happen with Raft; waking everyone is always safe
            self._wake(self._all_parked())
            return
        try:
            changes = self._member.mvcc.events(seen + 1, current, limit=wake_scan_events_max)
        except CompactedError:  # compacted past what the hub saw: let each poll find out
            self._wake(self._all_parked())
            return
        if len(changes) >= wake_scan_events_max:
            self._wake(self._all_parked())
            return
        hit: list[_Parked] = []
        for change in changes:
            key, is_delete = change.kv.key, change.is_delete
            hit.extend(p for p in self._by_key.get(key, ()) if p.request.matches(key, is_delete))
            hit.extend(p for p in self._ranges if p.request.matches(key, is_delete))
        self._wake(hit)

    def _all_parked(self) -> list[_Parked]:
        return [p for ps in self._by_key.values() for p in ps] + list(self._ranges)

    def _wake(self, parked: Iterable[_Parked]) -> None:
        for p in parked:
            if not p.event.is_set():
                p.event.set()
                self._wakeups += 1

    def _park(self, request: WatchPollRequest) -> _Parked:
        p = _Parked(request)
        if request.range_end:
            self._ranges.add(p)
        else:
            self._by_key.setdefault(request.key, set()).add(p)
        self._waiting += 1
        return p

    def _unpark(self, p: _Parked) -> None:
        self._waiting -= 1
        if p.request.range_end:
            self._ranges.discard(p)
            return
        same = self._by_key[p.request.key]
        same.discard(p)
        if not same:
            del self._by_key[p.request.key]

    # --- the handler ---------------------------------------------------------------------

    async def poll(self, body: dict[str, Any]) -> dict[str, Any]:
        """Answer one `watch_poll` (docs/protocol.md): now if there is anything to say,
        else when a matching revision is applied or the timeout passes.

        Raises:
            BadRequestError: malformed arguments.
            CompactedError: the start revision is below the compact revision; the
                error carries the compact revision.
            UnavailableError: too many polls are parked on this member already.
        """
        request = parse_watch_poll(body)
        self._polls += 1
        if request.start_revision == 0:  # "from now": fix the start, deliver nothing
            current = self._member.mvcc.revision
            return self._reply([], current, current + 1)
        deadline = trio.current_time() + request.timeout_ms / 1000
        while True:
            # No await between reading `current` and parking: an apply that lands
            # after this read wakes the parked poll, so nothing falls in between.
            current = self._member.mvcc.revision
            events, last_seen = self._collect(request, current)
            if events or last_seen is not None or trio.current_time() >= deadline:
                nxt = next_revision(request.start_revision, current, last_seen)
                return self._reply(events, current, nxt)
            if self._waiting >= self._waiting_max:
                self._refused += 1
                raise UnavailableError(
                    f"{self._waiting} watch polls already wait on this member; "
                    "try another endpoint")
            parked = self._park(request)
            try:
                with trio.move_on_at(deadline):
                    await parked.event.wait()
            finally:
                self._unpark(parked)

    def _collect(self, request: WatchPollRequest, current: int
                 ) -> tuple[list[dict[str, Any]], int | None]:
        """`_read`, as wire maps, once per distinct question and store revision.

        Watchers of one hot range wake together and ask from the same revision:
        they share one read and one conversion. Only small answers are kept
        (`shared_bytes_max`), and only until the revision moves.
        """
        if current != self._shared_revision or len(self._shared) >= shared_reads_max:
            self._shared.clear()
            self._shared_revision = current
        key = (request.key, request.range_end, request.start_revision, request.prev_kv,
               request.filters, request.limit)
        answer = self._shared.get(key)
        if answer is None:
            events, last_seen = self._read(request, current)
            answer = [event_to_wire(e, request.prev_kv) for e in events], last_seen
            size = sum(len(e.kv.value) + len(e.prev_kv.value if e.prev_kv else b"")
                       for e in events)
            if size <= shared_bytes_max:
                self._shared[key] = answer
        return answer

    def _read(self, request: WatchPollRequest, current: int
              ) -> tuple[list[ChangeLike], int | None]:
        """Matching events from the start revision up to `current`, whole revisions only.

        Returns:
            (events, last revision covered if short of `current`, else None).

        Raises:
            CompactedError: with the compact revision, for the client to report.
        """
        self._reads += 1
        mvcc = self._member.mvcc
        start, chunks = request.start_revision, 0
        found: list[ChangeLike] = []
        while start <= current:
            try:
                raw, end = self._read_chunk(
                    request, start, min(current, start + limits.watch_scan_revisions_max - 1))
            except CompactedError as exc:
                raise CompactedError(
                    f"{exc.message} (start revision {request.start_revision},"
                    f" compact revision {mvcc.compact_revision})",
                    compact_revision=mvcc.compact_revision) from None
            found.extend(e for e in raw if request.matches(e.kv.key, e.is_delete))
            chunks += 1
            if end >= current:
                return found, None
            if found or chunks >= scan_chunks_max:
                return found, end
            start = end + 1
        return found, None

    def _read_chunk(self, request: WatchPollRequest, start: int, end: int
                    ) -> tuple[list[ChangeLike], int]:
        """The range's events in [start, end], cut to the reply's bounds at a revision
        boundary; returns them and the last revision they cover."""
        mvcc = self._member.mvcc
        raw: list[ChangeLike] = list(mvcc.events(
            start, end, key=request.key, range_end=request.range_end,
            prev_kv=request.prev_kv, limit=request.limit))
        cut = cut_point(raw, request.limit)
        if cut is not None:  # the limit may have split `cut`: read it again, whole
            raw = drop_revision(raw, cut) + list(mvcc.events(
                cut, cut, key=request.key, range_end=request.range_end,
                prev_kv=request.prev_kv))
            end = cut
        too_big = cut_by_bytes(raw, limits.watch_reply_bytes_max)
        if too_big is not None:
            raw = [e for e in raw if e.kv.mod_revision < too_big]
            end = too_big - 1
        return raw, end

    def _reply(self, events: list[dict[str, Any]], current: int, nxt: int
               ) -> dict[str, Any]:
        self._events_sent += len(events)
        return {"header": self._member.header(current), "events": events,
                "next_revision": nxt}

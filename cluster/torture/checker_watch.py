"""Watch guarantees, per watcher, against the cluster's history and the clients' writes.

etcd promises (and docs/protocol.md repeats) that a watch is:

- ordered: events by increasing revision, never going back, across responses;
- unique: an event (revision, key) is delivered once;
- atomic: all events of one revision arrive in the same response;
- reliable: no event between the start revision and the last one delivered is
  missing: the stream equals the history, event for event, values included;
- prev_kv: each event's prev_kv is the key's previous version, or none when the
  key did not exist.

Every watcher of the workload starts at revision 1 on the whole prefix, so its
stream must be exactly the history's prefix up to where it got. Independently
of the fetched history, every acknowledged write up to that point must be in
the stream at the revision its client was told.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from cluster.torture.final_state import MvccHistory
from cluster.torture.history import CheckResult, F, Op, Outcome, WatchDelivery, WatchEvent

violations_shown_max = 20


def _add(res: CheckResult, watcher: int, text: str) -> None:
    if len(res.violations) < violations_shown_max:
        res.violations.append(f"watcher {watcher}: {text}")


def _same(a: WatchEvent, b: WatchEvent) -> bool:
    """Equal as far as a watcher can check (prev fields are judged separately)."""
    return (a.revision, a.type, a.key, a.value) == (b.revision, b.type, b.key, b.value) and (
        a.type == "delete" or (a.create_revision, a.version, a.lease) ==
        (b.create_revision, b.version, b.lease))


def check_watches(deliveries: Iterable[WatchDelivery], hist: MvccHistory, ops: Iterable[Op],
                  prefix: str) -> CheckResult:
    res = CheckResult("watch")
    deliveries = list(deliveries)
    streams: dict[int, list[WatchDelivery]] = defaultdict(list)
    for d in deliveries:
        streams[d.watcher].append(d)
    acked = [op for op in ops if op.outcome is Outcome.OK
             and (op.f in (F.PUT, F.TXN) or (op.f is F.CAS and op.succeeded))]
    truth = [e for e in hist.events if e.key.startswith(prefix)]
    want_last = truth[-1].revision if truth else 0
    caught_up = 0
    for wid, stream in sorted(streams.items()):
        events = [e for d in stream for e in d.events]
        res.checked += len(events)
        last = 0
        seen: set[tuple[int, str]] = set()
        revision_in: dict[int, int] = {}
        for i, d in enumerate(stream):
            for e in d.events:
                if e.revision < last:
                    _add(res, wid, f"out of order: rev {e.revision} after {last}")
                last = max(last, e.revision)
                if (e.revision, e.key) in seen:
                    _add(res, wid, f"duplicate event rev {e.revision} key {e.key}")
                seen.add((e.revision, e.key))
                first = revision_in.setdefault(e.revision, i)
                if first != i:
                    _add(res, wid, f"revision {e.revision} split across responses "
                                   f"{first} and {i}")
        expected = [e for e in truth if e.revision <= last]
        if len(events) != len(expected) or not all(
                _same(a, b) for a, b in zip(events, expected, strict=False)):
            at = next((i for i, (a, b) in enumerate(zip(events, expected, strict=False))
                       if not _same(a, b)), min(len(events), len(expected)))
            got = events[at] if at < len(events) else "end of stream"
            want = expected[at] if at < len(expected) else "nothing more"
            _add(res, wid, f"stream differs from the history at event {at}: got {got}, "
                           f"history has {want} ({len(events)} vs {len(expected)} events)")
        for e in events:
            prev = hist.at(e.key, e.revision - 1)
            if (e.prev_value, e.prev_mod_revision) != (prev.value, prev.mod_revision):
                _add(res, wid, f"wrong prev_kv for {e.key} at rev {e.revision}: "
                               f"{e.prev_value}@{e.prev_mod_revision}, history has "
                               f"{prev.value}@{prev.mod_revision}")
        delivered = {(e.revision, e.key): e.value for e in events}
        for op in acked:
            if op.revision <= last:
                for w in op.writes:
                    if delivered.get((op.revision, w.key)) != w.value:
                        _add(res, wid, f"acknowledged write missing from the stream: "
                                       f"{op.describe()}")
        caught_up += last >= want_last
    res.figures |= {"watchers": len(streams), "caught_up": caught_up,
                    "events": sum(len(d.events) for d in deliveries)}
    if caught_up < len(streams):
        res.violations.append(f"only {caught_up} of {len(streams)} watchers reached the "
                              f"last revision {want_last} after healing")
    return res

"""Durability, replica agreement and read validity, judged against the final histories.

Once every fault is healed and every member has caught up:

- the members agree: the same MVCC history event for event, the same HashKV at
  the same revision, the same live keys;
- every acknowledged write is in that history, at the revision its client was
  told, with its value; no definitely-failed write is; no write appears that
  no client ever made (a lease that expired on its own would show up here),
  and none appears twice (every value is unique to one op);
- every read (linearizable or serializable) returned exactly the key's version
  at the revision in its reply header: a serializable read may be stale, but
  it must be a state that really existed, no later than what that member had
  applied;
- every SQLite file passes `PRAGMA integrity_check` (after a last kill -9).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cluster.torture.final_state import MvccHistory
from cluster.torture.history import KV, CheckResult, F, Op, Outcome, WatchEvent

violations_shown_max = 20


@dataclass(frozen=True, slots=True)
class MemberFinal:
    """One member's final report, gathered by the runner."""

    name: str
    revision: int
    history: tuple[WatchEvent, ...]
    hash: int | None  # HashKV at the common final revision; None = not available
    live: Mapping[str, KV]  # a serializable range of every key on that member
    error: str = ""  # why the member could not be asked (then the rest is empty)


def _add(res: CheckResult, text: str) -> None:
    if len(res.violations) < violations_shown_max:
        res.violations.append(text)
    else:
        res.figures["violations_not_shown"] = res.figures.get("violations_not_shown", 0) + 1


def check_agreement(members: Sequence[MemberFinal]) -> CheckResult:
    res = CheckResult("replicas-agree")
    if not members:
        _add(res, "no member answered at the end")
        return res
    for m in members:
        if m.error:
            _add(res, f"{m.name} could not be read at the end: {m.error}")
    healthy = [m for m in members if not m.error]
    if not healthy:
        return res
    ref = healthy[0]
    for m in healthy:
        res.checked += 1
        if m.revision != ref.revision:
            _add(res, f"{m.name} is at revision {m.revision}, {ref.name} at {ref.revision}")
        if m.history != ref.history:
            diff = next((i for i, (a, b) in enumerate(zip(m.history, ref.history, strict=False))
                         if a != b), min(len(m.history), len(ref.history)))
            mine = m.history[diff] if diff < len(m.history) else "end"
            theirs = ref.history[diff] if diff < len(ref.history) else "end"
            _add(res, f"{m.name}'s history differs from {ref.name}'s at event {diff}: "
                      f"{mine} vs {theirs}")
        if m.hash is not None and ref.hash is not None and m.hash != ref.hash:
            _add(res, f"HashKV differs: {m.name} {m.hash:#x} vs {ref.name} {ref.hash:#x}")
        if dict(m.live) != dict(ref.live):
            _add(res, f"{m.name}'s live keys differ from {ref.name}'s")
    res.figures["hashes_compared"] = sum(m.hash is not None for m in members)
    return res


def check_durability(ops: Iterable[Op], hist: MvccHistory,
                     live: Mapping[str, KV] | None = None) -> CheckResult:
    """Acknowledged writes present, failed writes absent, no write from nowhere."""
    res = CheckResult("durability")
    ops = list(ops)
    made: dict[tuple[str, str], Op] = {}
    for op in ops:
        for w in op.writes:
            if w.value is not None:
                made[(w.key, w.value)] = op
    info_took = info_total = 0
    lost = 0
    resolved = hist.resolved().puts
    for op in ops:
        if not op.is_write or op.f is F.REVOKE:
            continue
        if op.outcome is Outcome.OK:
            if op.f is F.CAS and not op.succeeded:
                continue
            if op.f is F.DELETE and op.deleted <= 0:
                continue
            res.checked += 1
            events = {e.key: e for e in hist.by_revision.get(op.revision, [])}
            for w in op.writes:
                e = events.get(w.key)
                if e is None or e.value != w.value:
                    lost += 1
                    _add(res, f"acknowledged write lost: {op.describe()}; history at "
                              f"rev {op.revision} has {e}")
        else:
            revs = [resolved.get((w.key, w.value)) for w in op.writes if w.value]
            if op.outcome is Outcome.FAIL and any(revs):
                _add(res, f"a write that definitely failed took effect: {op.describe()}")
            if op.outcome is Outcome.INFO and op.f is not F.DELETE:
                info_total += 1
                info_took += any(revs)
    first_rev: dict[tuple[str, str], int] = {}
    twice: set[int] = set()
    for e in hist.events:
        if e.value is None:
            continue
        if (e.key, e.value) not in made:
            _add(res, f"a write nobody made appeared: {e}")
        elif (e.key, e.value) in first_rev:
            # Values are unique per op: a second put of one means it was applied twice.
            op = made[(e.key, e.value)]
            if op.id in twice:
                continue
            twice.add(op.id)
            _add(res, f"write applied more than once: {op.describe()} "
                      f"is in the history at rev {first_rev[(e.key, e.value)]} and again "
                      f"at rev {e.revision}")
        else:
            first_rev[(e.key, e.value)] = e.revision
    deletes_explained = _explain_deletes(ops, hist)
    res.figures |= {"acknowledged_lost": lost, "applied_twice": len(twice),
                    "indeterminate_writes": info_total, "indeterminate_took_effect": info_took,
                    "unexplained_deletes": deletes_explained}
    if deletes_explained:
        _add(res, f"{deletes_explained} deletions in the history match no delete or "
                  "lease revoke any client made (lease expiry?)")
    if live is not None:
        want = hist.state(hist.last_revision)
        if dict(live) != want:
            _add(res, f"final live keys {sorted(live.values(), key=str)} differ from the "
                      f"history's state {sorted(want.values(), key=str)}")
    return res


def _explain_deletes(ops: Sequence[Op], hist: MvccHistory) -> int:
    """Tombstones not accounted for by a delete of that key or a revoke of its lease."""
    deleting_keys = {op.writes[0].key for op in ops if op.f is F.DELETE
                     and op.outcome is not Outcome.FAIL}
    revoked = {op.lease for op in ops if op.f is F.REVOKE and op.outcome is not Outcome.FAIL}
    lease_of: dict[str, int] = defaultdict(int)
    unexplained = 0
    for e in hist.events:
        if e.value is not None:
            lease_of[e.key] = e.lease
        elif e.key not in deleting_keys and lease_of[e.key] not in revoked:
            unexplained += 1
    return unexplained


def check_reads(ops: Iterable[Op], hist: MvccHistory) -> CheckResult:
    """Every read saw the key exactly as it was at its header revision (which itself
    existed). For serializable reads this is the "(d)" rule: a real, not-too-new state."""
    res = CheckResult("reads-match-history")
    counts = {"linearizable": 0, "serializable": 0}
    for op in ops:
        if op.outcome is not Outcome.OK or not op.reads:
            continue
        res.checked += 1
        counts["serializable" if op.serializable else "linearizable"] += 1
        if op.revision > hist.last_revision:
            _add(res, f"read at a revision that never existed: {op.describe()}")
            continue
        for r in op.reads:
            want = hist.at(r.key, op.revision)
            if (r.value, r.mod_revision if r.value is not None else 0) != (
                    want.value, want.mod_revision):
                _add(res, f"read does not match the history at rev {op.revision} "
                          f"({want.value}@{want.mod_revision}): {op.describe()}")
    res.figures |= counts
    return res


def check_integrity(results: Mapping[str, str]) -> CheckResult:
    """`results`: file -> what `PRAGMA integrity_check` said ("ok" when sound)."""
    res = CheckResult("sqlite-integrity")
    for path, verdict in sorted(results.items()):
        res.checked += 1
        if verdict != "ok":
            _add(res, f"{path}: {verdict}")
    return res

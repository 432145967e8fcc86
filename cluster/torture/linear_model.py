"""The per-key model the linearizability checker searches over, and the projection onto it.

etcd's keys are independent registers that share one revision counter, so a
history is checked key by key (P-compositionality: a history is linearizable
iff every key's sub-history is); cross-key properties (revision order, the
atomicity of a multi-key txn) are checked separately with revisions.

A key's state is `(value, revision, exact, lease)`: the value (None = absent),
the revision of the write that produced it, whether that revision is known
(`exact`) or only a lower bound (a write whose reply never came), and the lease
attached. Revisions prune hard: a write with a known revision can only follow
states with a smaller one, and a read names the exact write it saw.
"""

from __future__ import annotations

import bisect
import enum
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from cluster.torture.history import F, Op, Outcome

State = tuple[str | None, int, bool, int]
INITIAL: State = (None, 0, True, 0)


class Kind(enum.IntEnum):
    READ = 0          # saw (value, rev)
    WRITE = 1         # put value (rev known or 0)
    DELETE = 2        # deleted an existing key at rev
    MAYBE_DELETE = 3  # indeterminate delete
    ABSENT = 4        # a delete that deleted nothing: the key was absent
    CAS = 5           # value == expected, then write
    CAS_FAILED = 6    # value != expected, and saw (value, rev)
    MAYBE_CAS = 7     # indeterminate cas: if value == expected, write
    REVOKE = 8        # if the key's lease is `lease`, delete it


@dataclass(frozen=True, slots=True)
class KeyOp:
    """One operation's effect on one key. `must` ops have to be linearized before
    `return_s`; the others (indeterminate) may be linearized after `invoke_s` or never."""

    op_id: int
    kind: Kind
    invoke_s: float
    return_s: float
    must: bool
    value: str | None = None
    rev: int = 0
    expected: str | None = None
    lease: int = 0


def _write(s: State, value: str | None, rev: int, lease: int) -> State | None:
    if rev:
        return (value, rev, True, lease) if rev > s[1] else None
    return (value, s[1], False, lease)


def _read(s: State, value: str | None, rev: int) -> State | None:
    if s[0] != value:
        return None
    if value is None:
        return s
    if s[2]:
        return s if s[1] == rev else None
    return (value, rev, True, s[3]) if rev > s[1] else None


def step(op: KeyOp, s: State) -> State | None:
    """The state after `op` if `op` can take effect in state `s`, else None."""
    k = op.kind
    if k is Kind.READ:
        return _read(s, op.value, op.rev)
    if k is Kind.WRITE:
        return _write(s, op.value, op.rev, op.lease)
    if k is Kind.DELETE:
        return None if s[0] is None else _write(s, None, op.rev, 0)
    if k is Kind.MAYBE_DELETE:
        return s if s[0] is None else _write(s, None, 0, 0)
    if k is Kind.ABSENT:
        return s if s[0] is None else None
    if k is Kind.CAS:
        return _write(s, op.value, op.rev, 0) if s[0] == op.expected else None
    if k is Kind.CAS_FAILED:
        return None if s[0] == op.expected else _read(s, op.value, op.rev)
    if k is Kind.MAYBE_CAS:
        return _write(s, op.value, op.rev, 0) if s[0] == op.expected else s
    if k is Kind.REVOKE:
        if s[0] is None or s[3] != op.lease:
            return s
        return _write(s, None, op.rev, 0)
    raise AssertionError(f"unknown kind {k}")


@dataclass(frozen=True, slots=True)
class Resolution:
    """What the cluster's final history says about writes whose reply never came."""

    puts: Mapping[tuple[str, str], int]  # (key, value) -> the revision that wrote it
    tombstones: Mapping[str, Mapping[int, int]]  # key -> {deletion revision: lease it had}


def _info_fate(op: Op, resolved: Resolution | None) -> int | None:
    """For an indeterminate write: its revision if it is known to have happened, 0 if
    unknown, None if it is known NOT to have happened (absent from the final history)."""
    values = [(w.key, w.value) for w in op.writes if w.value is not None]
    if resolved is None or not values or op.f is F.REVOKE:
        return 0
    revs = {resolved.puts.get(kv) for kv in values} - {None}
    if not revs:
        return None
    return max(r for r in revs if r is not None)


def _applied_by(ops: list[Op]) -> Callable[[int], float]:
    """revision -> a time by which it had certainly been applied: the earliest completion
    of an op that reported a higher revision (+inf if none did)."""
    done = sorted((op.revision, op.complete_s) for op in ops
                  if op.outcome is Outcome.OK and op.revision)
    revs = [r for r, _ in done]
    suffix = [math.inf] * (len(done) + 1)
    for i in range(len(done) - 1, -1, -1):
        suffix[i] = min(done[i][1], suffix[i + 1])
    return lambda rev: suffix[bisect.bisect_right(revs, rev)]


def _unexplained_deletes(ops: list[Op], resolved: Resolution,
                         lease_keys: Mapping[int, set[str]]) -> dict[str, set[int]]:
    """Per key, the tombstones no acknowledged delete or revoke accounts for: only those
    can be the work of an indeterminate delete or revoke. Where there are none, such an
    op did nothing to the key, and leaving it out keeps the search from branching."""
    explained: dict[str, set[int]] = defaultdict(set)
    for op in ops:
        if op.outcome is not Outcome.OK:
            continue
        if op.f is F.DELETE and op.deleted > 0:
            explained[op.writes[0].key].add(op.revision)
        elif op.f is F.REVOKE:
            for key in lease_keys.get(op.lease, ()):
                explained[key].add(op.revision)
    return {key: set(revs) - explained[key] for key, revs in resolved.tombstones.items()}


def _candidates(unexplained: Mapping[str, set[int]], resolved: Resolution, key: str,
                lease: int) -> list[int]:
    """Unexplained tombstones of `key` an indeterminate delete (lease 0) or a revoke of
    `lease` could have made: a revoke only deletes a version attached to its lease."""
    revs = unexplained.get(key, set())
    if not lease:
        return sorted(revs)
    leases = resolved.tombstones.get(key, {})
    return sorted(r for r in revs if leases.get(r) == lease)


def project(ops: Iterable[Op], resolved: Resolution | None = None
            ) -> dict[str, list[KeyOp]]:
    """Each key's sub-history. Serializable reads, failed ops and indeterminate reads are
    left out: they constrain nothing here (serializable reads are checked elsewhere)."""
    ops = list(ops)
    lease_keys: dict[int, set[str]] = defaultdict(set)
    for op in ops:
        if op.f is F.PUT and op.outcome is not Outcome.FAIL:
            for w in op.writes:
                if w.lease:
                    lease_keys[w.lease].add(w.key)
    unexplained = None if resolved is None else _unexplained_deletes(ops, resolved, lease_keys)

    applied_by = _applied_by(ops)

    def delete_deadline(key: str, invoke_s: float, lease: int = 0) -> float | None:
        """When an indeterminate delete (or revoke of `lease`) must have landed on `key` if
        it did at all (None: it cannot have deleted anything there). Its tombstone is one
        of the unexplained ones that may have been applied after the op was invoked."""
        if unexplained is None or resolved is None:
            return math.inf
        times = [applied_by(rev) for rev in _candidates(unexplained, resolved, key, lease)]
        late = [t for t in times if t > invoke_s]
        return max(late) if late else None

    out: dict[str, list[KeyOp]] = defaultdict(list)
    end_s = max((op.complete_s for op in ops), default=0.0) + 1.0
    for op in ops:
        if op.outcome is Outcome.FAIL or (op.outcome is Outcome.INFO and not op.is_write):
            continue
        if op.f in (F.GET, F.MGET) and op.serializable:
            continue
        must = op.outcome is Outcome.OK
        rev = op.revision if must else 0
        if not must:
            fate = _info_fate(op, resolved)
            if fate is None:
                continue  # never happened: the final history does not hold its value
            if fate:
                must, rev = True, fate
        ret = op.complete_s if op.outcome is Outcome.OK else (end_s if must else math.inf)

        def add(key: str, kind: Kind, *, value: str | None = None, r: int = 0,
                expected: str | None = None, lease: int = 0, op: Op = op, ret: float = ret,
                must: bool = must) -> None:
            out[key].append(KeyOp(op.id, kind, op.invoke_s, ret, must, value, r, expected,
                                  lease))

        f = op.f
        if f in (F.GET, F.MGET):
            for r in op.reads:
                add(r.key, Kind.READ, value=r.value, r=r.mod_revision)
        elif f in (F.PUT, F.TXN):
            for w in op.writes:
                add(w.key, Kind.WRITE, value=w.value, r=rev, lease=w.lease)
        elif f is F.DELETE:
            key = op.writes[0].key
            if op.outcome is Outcome.INFO:
                deadline = delete_deadline(key, op.invoke_s)
                if deadline is not None:
                    add(key, Kind.MAYBE_DELETE, ret=deadline)
            else:
                deleted = op.deleted > 0
                add(key, Kind.DELETE if deleted else Kind.ABSENT, r=rev if deleted else 0)
        elif f is F.CAS:
            w = op.writes[0]
            if op.outcome is Outcome.INFO:
                add(w.key, Kind.CAS if must else Kind.MAYBE_CAS, value=w.value, r=rev,
                    expected=op.expected)
            elif op.succeeded:
                add(w.key, Kind.CAS, value=w.value, r=rev, expected=op.expected)
            else:
                seen = op.reads[0] if op.reads else None
                add(w.key, Kind.CAS_FAILED, value=seen.value if seen else None,
                    r=seen.mod_revision if seen else 0, expected=op.expected)
        elif f is F.REVOKE:
            for key in sorted(lease_keys.get(op.lease, ())):
                deadline = ret if must else delete_deadline(key, op.invoke_s, op.lease)
                if deadline is not None:
                    add(key, Kind.REVOKE, r=rev if must else 0, lease=op.lease, ret=deadline)
    return {key: _tighten(kops) for key, kops in out.items()}


def _tighten(kops: list[KeyOp]) -> list[KeyOp]:
    """Give indeterminate writes known to have happened at revision R a real deadline:
    they must take effect before any op of the key that already saw a revision > R
    completed. Without it they would float to the end of time and blow up the search."""
    seen = sorted((k.rev, k.return_s) for k in kops if k.rev and k.kind not in (
        Kind.REVOKE, Kind.ABSENT) and (k.kind is not Kind.READ or k.value is not None))
    if not seen:
        return kops
    revs = [rev for rev, _ in seen]
    suffix_min = [math.inf] * (len(seen) + 1)  # min return_s over seen[i:]
    for i in range(len(seen) - 1, -1, -1):
        suffix_min[i] = min(seen[i][1], suffix_min[i + 1])
    out = []
    for k in kops:
        if k.must and k.rev and k.kind in (Kind.WRITE, Kind.CAS):
            bound = suffix_min[bisect.bisect_right(revs, k.rev)]
            if bound < k.return_s:
                k = KeyOp(k.op_id, k.kind, k.invoke_s, max(bound, k.invoke_s), k.must,
                          k.value, k.rev, k.expected, k.lease)
        out.append(k)
    return out

"""Linearizability of the KV history: a Wing-Gong search per key, plus revision order.

The search is the Wing & Gong / Lowe "just-in-time linearization" algorithm
that Porcupine uses: walk the history's call/return events in time order;
at a call, try to linearize that op now (the model must accept it, and the
pair (set of linearized ops, state) must be new: a memo that cuts most
repeated work); at a return of an op not yet linearized, undo the most
recent choice. Indeterminate ops have no return event: they may be
linearized at any point after their call, or never. A key is linearizable
when every op that must be linearized has been (`linear_model` has the
state and the projection).

When a key fails, the failing sub-history is shrunk (delta debugging, with
the rule that a read keeps the write whose value it returned) to a handful
of ops that are still not linearizable on their own: that is what a human
needs to read.

Revision order is the cross-key half: if op A completed before op B was
invoked, B's revision is at least A's, and strictly greater when B wrote.
A stale read on a lagging member shows up here even on a key nobody else
touched.
"""

from __future__ import annotations

import bisect
import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cluster.torture.final_state import MvccHistory
from cluster.torture.history import CheckResult, F, Op, Outcome
from cluster.torture.linear_model import (
    INITIAL,
    KeyOp,
    Kind,
    Resolution,
    State,
    project,
    step,
)

search_steps_max = 2_000_000
"""Per key; beyond it the key is reported as unknown rather than searched forever."""

violations_shown_max = 20

shrink_s_max = 20.0

"""Time spent shrinking a failing sub-history before printing what is left."""

ops_shown_max = 40
"""A sub-history longer than this (shrinking ran out of time) is printed cut in the middle;
the saved failing-<key>.txt has all of it."""


def search(kops: Sequence[KeyOp], steps_max: int = search_steps_max,
           initial: State = INITIAL) -> bool | None:
    """Whether `kops` (one key, starting in state `initial`) is linearizable; None if
    the step budget ran out."""
    events = [(k.invoke_s, 0, i) for i, k in enumerate(kops)]
    events += [(k.return_s, 1, i) for i, k in enumerate(kops) if math.isfinite(k.return_s)]
    events.sort()
    n = len(events)
    # A doubly linked list over nodes 1..n (0 is the head), lifted and restored in
    # LIFO order ("dancing links"), so undoing a choice is O(1).
    nxt = [*range(1, n + 1), -1]
    prv = [-1, *range(0, n)]
    nxt[n] = -1
    is_call = [False] * (n + 1)
    op_of = [0] * (n + 1)
    ret_node = [-1] * len(kops)
    call_node = [-1] * len(kops)
    for j, (_, kind, i) in enumerate(events, start=1):
        is_call[j], op_of[j] = kind == 0, i
        if kind == 1:
            ret_node[i] = j
        else:
            call_node[i] = j

    def unlink(x: int) -> None:
        nxt[prv[x]] = nxt[x]
        if nxt[x] != -1:
            prv[nxt[x]] = prv[x]

    def relink(x: int) -> None:
        nxt[prv[x]] = x
        if nxt[x] != -1:
            prv[nxt[x]] = x

    state = initial
    mask = 0
    # (call node, state before, forced): forced entries record an optional op that
    # reached its deadline unlinearized, i.e. never happened: not a choice to revisit.
    stack: list[tuple[int, State, bool]] = []
    memo: set[tuple[int, State]] = set()
    node = nxt[0]
    steps = 0
    while nxt[0] != -1:
        steps += 1
        if steps > steps_max:
            return None
        if node == -1:
            return True  # only indeterminate calls are left: they never took effect
        i = op_of[node]
        new: State | None = None
        if is_call[node]:
            new = step(kops[i], state)
        elif not kops[i].must:
            new = state  # its deadline passed: it did not happen
        if new is not None:
            m2 = mask | (1 << i)
            if (m2, new) not in memo:
                memo.add((m2, new))
                call = call_node[i]
                stack.append((call, state, not is_call[node]))
                state, mask = new, m2
                unlink(call)
                if ret_node[i] != -1:
                    unlink(ret_node[i])
                node = nxt[0]
                continue
        if is_call[node]:
            node = nxt[node]
            continue
        # A return (or a deadline) of an op not linearized: undo the latest real choice.
        while True:
            if not stack:
                return False
            call, state, forced = stack.pop()
            i = op_of[call]
            mask &= ~(1 << i)
            if ret_node[i] != -1:
                relink(ret_node[i])
            relink(call)
            if not forced:
                break
        node = nxt[call]
    return True


def segments(kops: Sequence[KeyOp]) -> list[list[KeyOp]]:
    """Cut a key's sub-history at quiet moments: every op before the cut returned (or,
    if indeterminate, reached its deadline) before every op after it was invoked. The
    key's state at such a cut is unique: without indeterminate ops it is the last write
    by revision (`fold`); with them, the cluster's final history says (`_cut_state`).
    Each piece is searched on its own, which keeps the memo small on long runs."""
    ordered = sorted(kops, key=lambda k: k.invoke_s)
    out: list[list[KeyOp]] = []
    current: list[KeyOp] = []
    horizon = -math.inf
    for k in ordered:
        if current and horizon < k.invoke_s:
            out.append(current)
            current = []
        current.append(k)
        horizon = max(horizon, k.return_s)
    if current:
        out.append(current)
    return out


def fold(kops: Sequence[KeyOp], initial: State) -> State | None:
    """The state after a piece that `search` accepted: its writes in revision order."""
    state: State | None = initial
    for k in sorted((k for k in kops if k.rev and k.kind not in (Kind.READ, Kind.CAS_FAILED)),
                    key=lambda k: k.rev):
        if state is None:
            return None
        state = step(k, state)
    return state


def _closure(kops: Sequence[KeyOp], keep: set[int], initial: State = INITIAL
             ) -> list[KeyOp]:
    """The kept ops, minus those that depend on a value no kept write (nor the initial
    state) produced: a read of it, or a compare-and-set expecting it. Such an op would
    "fail" for a reason the reader learns nothing from."""
    kept = [k for k in kops if k.op_id in keep]
    while True:
        written = {initial[0]} | {k.value for k in kept if k.kind in (
            Kind.WRITE, Kind.CAS, Kind.MAYBE_CAS)}
        if any(k.kind in (Kind.DELETE, Kind.MAYBE_DELETE, Kind.REVOKE) for k in kept):
            written.add(None)  # "absent" is a value a delete produces
        out = [k for k in kept if not (
            (k.kind in (Kind.READ, Kind.CAS_FAILED, Kind.ABSENT) and k.value not in written)
            or (k.kind in (Kind.CAS, Kind.MAYBE_CAS) and k.expected not in written))]
        if len(out) == len(kept):
            return out
        kept = out


def shrink(kops: Sequence[KeyOp], deadline_s: float, initial: State = INITIAL
           ) -> list[KeyOp]:
    """A small sub-history of `kops` that is still not linearizable (delta debugging)."""
    def fails(keep: set[int]) -> bool:
        return search(_closure(kops, keep, initial), 200_000, initial) is False

    ids = [k.op_id for k in kops]
    keep = set(ids)
    # First the shortest failing prefix (by invocation): violations are local in time.
    lo, hi = 1, len(ids)
    while lo < hi and time.monotonic() < deadline_s:
        mid = (lo + hi) // 2
        if fails(set(ids[:mid])):
            hi = mid
        else:
            lo = mid + 1
    if fails(set(ids[:hi])):
        keep = set(ids[:hi])
    chunk = max(1, len(keep) // 2)
    while time.monotonic() < deadline_s:
        order = [i for i in ids if i in keep]
        removed = False
        for start in range(0, len(order), chunk):
            trial = keep - set(order[start:start + chunk])
            if trial and fails(trial):
                keep, removed = trial, True
                break
            if time.monotonic() >= deadline_s:
                break
        if not removed:
            if chunk == 1:
                break
            chunk = max(1, chunk // 2)
    small = _closure(kops, keep, initial)
    return small if fails(keep) else list(kops)


@dataclass
class LinearResult:
    result: CheckResult
    failing: dict[str, list[Op]] = field(default_factory=dict)  # key -> shrunk ops


def _cut_states(ops: Sequence[Op], hist: MvccHistory) -> Callable[[str, float], State]:
    """(key, cut time) -> the key's state at a cut, read from the final history at the
    highest revision any op reported before the cut (every write before the cut is at
    or below it, every write after it above)."""
    done = sorted((op.complete_s, op.revision) for op in ops
                  if op.outcome is Outcome.OK and op.revision)
    times = [t for t, _ in done]
    best = list(itertools.accumulate((r for _, r in done), max))

    def state(key: str, cut_s: float) -> State:
        i = bisect.bisect_left(times, cut_s)
        kv = hist.at(key, best[i - 1] if i else 0)
        return (kv.value, kv.mod_revision if kv.value is not None else 0, True, kv.lease)
    return state


def check_linearizable(ops: Iterable[Op], hist: MvccHistory | None = None,
                       steps_max: int = search_steps_max) -> LinearResult:
    """Search every key's sub-history; shrink and report the keys that fail. With the
    cluster's final history, indeterminate writes are settled (took effect at revision R,
    or never) and pieces can be cut after them."""
    ops = list(ops)
    resolved: Resolution | None = hist.resolved() if hist is not None else None
    cut_state = _cut_states(ops, hist) if hist is not None else None
    by_id = {op.id: op for op in ops}
    res = CheckResult("linearizable")
    out = LinearResult(res)
    started = time.monotonic()
    pieces = 0
    for key, kops in sorted(project(ops, resolved).items()):
        res.checked += len(kops)
        state: State | None = INITIAL
        for n, piece in enumerate(segments(kops)):
            pieces += 1
            if cut_state is not None and n:
                state = cut_state(key, piece[0].invoke_s)
            if state is None:  # a piece's writes did not fold: it failed already
                break
            verdict = search(piece, steps_max, state)
            if verdict is None:
                res.unknown.append(f"key {key}: search gave up after {steps_max} steps "
                                   f"({len(piece)} ops from t={piece[0].invoke_s:.3f})")
                break
            if not verdict:
                small = shrink(piece, time.monotonic() + shrink_s_max, state)
                # The write that left the key in its starting state, for context.
                small += [k for k in kops if state[1] and k.rev == state[1]
                          and k.kind not in (Kind.READ, Kind.CAS_FAILED)]
                failing = sorted({by_id[k.op_id] for k in small}, key=lambda o: o.invoke_s)
                out.failing[key] = failing
                shown = failing if len(failing) <= ops_shown_max else [
                    *failing[:ops_shown_max // 2], None, *failing[-ops_shown_max // 2:]]
                lines = "\n    ".join(
                    op.describe() if op is not None else
                    f"... {len(failing) - ops_shown_max} more (see failing-<key>.txt)"
                    for op in shown)
                res.violations.append(
                    f"key {key} is not linearizable; smallest failing sub-history "
                    f"({len(failing)} ops, starting from {_show(state)}):\n    {lines}")
                break
            state = fold(piece, state)
    res.figures["pieces"] = pieces
    res.figures["search_s"] = round(time.monotonic() - started, 2)
    res.figures["keys"] = len({k for op in ops for k in op.keys})
    return out


def _show(state: State) -> str:
    value, rev, exact, lease = state
    if value is None:
        return "key absent" if rev == 0 else f"key deleted at rev {rev}"
    return f"value {value} at rev {rev}{'' if exact else '+'}" + (
        f" lease {lease:x}" if lease else "")


def _strict_write(op: Op) -> bool:
    """Ops whose revision is their own new revision (not just the current one)."""
    return (op.f in (F.PUT, F.TXN) or (op.f is F.CAS and bool(op.succeeded))
            or (op.f is F.DELETE and op.deleted > 0))


def check_revision_order(ops: Iterable[Op]) -> CheckResult:
    """Real time vs revisions across keys: what completed before an op was invoked is
    visible to it. Serializable reads are exempt (they may be stale by design)."""
    res = CheckResult("revision-order")
    ordered = sorted((op for op in ops if op.outcome is Outcome.OK and op.revision
                      and not op.serializable and op.f is not F.GRANT),
                     key=lambda o: o.invoke_s)
    best: Op | None = None  # the highest revision among ops completed so far
    pending = sorted(range(len(ordered)), key=lambda i: ordered[i].complete_s)
    p = 0
    for op in ordered:
        while p < len(pending) and ordered[pending[p]].complete_s < op.invoke_s:
            prior = ordered[pending[p]]
            if best is None or prior.revision > best.revision:
                best = prior
            p += 1
        res.checked += 1
        if best is None:
            continue
        need = best.revision + 1 if _strict_write(op) else best.revision
        if op.revision < need and len(res.violations) >= violations_shown_max:
            res.figures["violations_not_shown"] = res.figures.get("violations_not_shown", 0) + 1
        elif op.revision < need:
            res.violations.append(
                f"revision went back in time: {op.describe()}\n    was invoked after "
                f"{best.describe()} had completed")
    return res

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

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cluster.torture.history import CheckResult, F, Op, Outcome
from cluster.torture.linear_model import (
    INITIAL,
    KeyOp,
    Kind,
    Resolved,
    State,
    project,
    step,
)

search_steps_max = 2_000_000
"""Per key; beyond it the key is reported as unknown rather than searched forever."""

violations_shown_max = 20

shrink_s_max = 20.0
"""Time spent shrinking a failing sub-history before printing what is left."""


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
    for j, (_, kind, i) in enumerate(events, start=1):
        is_call[j], op_of[j] = kind == 0, i
        if kind == 1:
            ret_node[i] = j

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
    stack: list[tuple[int, State]] = []
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
        if is_call[node]:
            new = step(kops[i], state)
            if new is not None:
                m2 = mask | (1 << i)
                if (m2, new) not in memo:
                    memo.add((m2, new))
                    stack.append((node, state))
                    state, mask = new, m2
                    unlink(node)
                    if ret_node[i] != -1:
                        unlink(ret_node[i])
                    node = nxt[0]
                    continue
            node = nxt[node]
        else:
            if not stack:
                return False
            call, state = stack.pop()
            i = op_of[call]
            mask &= ~(1 << i)
            if ret_node[i] != -1:
                relink(ret_node[i])
            relink(call)
            node = nxt[call]
    return True


def segments(kops: Sequence[KeyOp]) -> list[list[KeyOp]]:
    """Cut a key's sub-history at quiet moments: every op before the cut returned
    before every op after it was invoked, and none before it is indeterminate.
    All writes before such a cut carry known revisions, so the state at the cut
    is unique (`fold`): each piece is searched on its own, which keeps the memo
    small on long runs."""
    ordered = sorted(kops, key=lambda k: k.invoke_s)
    out: list[list[KeyOp]] = []
    current: list[KeyOp] = []
    horizon = -math.inf
    for k in ordered:
        if current and horizon < k.invoke_s:
            out.append(current)
            current = []
        current.append(k)
        horizon = max(horizon, k.return_s if k.must else math.inf)
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
    """The kept ops, minus reads whose value no kept write (nor the initial state)
    produced: a read of an unknown value would "fail" for a reason the reader
    learns nothing from."""
    written = {initial[0]} | {k.value for k in kops if k.op_id in keep and k.kind in (
        Kind.WRITE, Kind.CAS, Kind.MAYBE_CAS)}
    out = []
    for k in kops:
        if k.op_id not in keep:
            continue
        if k.kind in (Kind.READ, Kind.CAS_FAILED) and k.value is not None \
                and k.value not in written:
            continue
        out.append(k)
    return out


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


def check_linearizable(ops: Iterable[Op], resolved: Resolved | None = None,
                       steps_max: int = search_steps_max) -> LinearResult:
    """Search every key's sub-history; shrink and report the keys that fail."""
    ops = list(ops)
    by_id = {op.id: op for op in ops}
    res = CheckResult("linearizable")
    out = LinearResult(res)
    started = time.monotonic()
    pieces = 0
    for key, kops in sorted(project(ops, resolved).items()):
        res.checked += len(kops)
        state: State | None = INITIAL
        for piece in segments(kops):
            pieces += 1
            if state is None:  # an earlier piece of this key failed
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
                lines = "\n    ".join(op.describe() for op in failing)
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

"""The verdict of a torture run, its figures, and what is saved for a human to read.

Figures are what the README quotes: throughput under faults, how often a
write's outcome stayed unknown (the indeterminate ratio), and, per fault kind,
the longest stretch without an acknowledged write while that fault was on
(or in the few seconds after it was healed, when the cluster recovers, unless
the next fault starts first).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cluster.torture.history import CheckResult, History, Op, Outcome

recovery_window_s = 5.0
"""How long after a fault is healed its effect on availability is still counted."""


def _longest_gap(times: list[float], start: float, end: float) -> float:
    """Longest interval inside [start, end] containing none of the sorted `times`."""
    inside = [t for t in times if start < t < end]
    points = [start, *inside, end]
    return max((b - a for a, b in itertools.pairwise(points)), default=0.0)


def figures_of(history: History) -> dict[str, Any]:
    ops = history.ops
    duration = float(history.meta.get("workload_s") or 0.0) or 1.0
    outcomes = Counter(op.outcome.value for op in ops)
    writes = [op for op in ops if op.is_write]
    info_writes = sum(op.outcome is Outcome.INFO for op in writes)
    ok_write_times = sorted(op.complete_s for op in writes if op.outcome is Outcome.OK)
    unavailable: dict[str, float] = defaultdict(float)
    faults = sorted(history.faults, key=lambda f: f.start_s)
    for i, fault in enumerate(faults):
        after = faults[i + 1] if i + 1 < len(faults) else None
        # Recovery counts, up to the next fault (whose effect is its own).
        end = fault.end_s + recovery_window_s
        if after is not None:
            end = min(end, after.start_s)
        gap = _longest_gap(ok_write_times, fault.start_s, max(end, fault.end_s))
        unavailable[fault.kind] = max(unavailable[fault.kind], gap)
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    for op in ops:
        name = f"{op.f.value}{'(s)' if op.serializable else ''}"
        by_kind[name][op.outcome.value] += 1
    return {
        "seed": history.meta.get("seed"),
        "members": history.meta.get("members"),
        "duration_s": round(duration, 1),
        "ops": len(ops),
        "outcomes": dict(outcomes),
        "ok_ops_per_s": round(outcomes.get("ok", 0) / duration, 1),
        "ok_writes_per_s": round(len(ok_write_times) / duration, 1),
        "writes": len(writes),
        "indeterminate_writes": info_writes,
        "indeterminate_ratio": round(info_writes / len(writes), 4) if writes else 0.0,
        "faults": dict(Counter(f.kind for f in history.faults)),
        "longest_write_gap_s": {k: round(v, 2) for k, v in sorted(unavailable.items())},
        "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
        "watch_deliveries": len(history.watches),
        "final_revision": history.meta.get("final_revision"),
    }


@dataclass
class Report:
    results: list[CheckResult]
    figures: dict[str, Any]
    failing: dict[str, list[Op]] = field(default_factory=dict)
    saved_to: Path | None = None

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def violations(self) -> int:
        return sum(len(r.violations) for r in self.results)

    def text(self) -> str:
        f = self.figures
        lines = [
            f"ops: {f['ops']} ({', '.join(f'{k} {v}' for k, v in sorted(f['outcomes'].items()))})"
            f" in {f['duration_s']} s: {f['ok_ops_per_s']} ok ops/s, "
            f"{f['ok_writes_per_s']} ok writes/s",
            f"indeterminate writes: {f['indeterminate_writes']} of {f['writes']} "
            f"({f['indeterminate_ratio'] * 100:.2f}%)",
            "faults: " + (", ".join(f"{k} x{v}" for k, v in sorted(f["faults"].items()))
                          or "none"),
            "longest write gap per fault: " + (", ".join(
                f"{k} {v:.2f}s" for k, v in f["longest_write_gap_s"].items()) or "-"),
        ]
        for r in self.results:
            state = "ok" if r.ok else f"{len(r.violations)} VIOLATION(S)"
            unknown = f", {len(r.unknown)} unknown" if r.unknown else ""
            extras = ", ".join(f"{k} {v}" for k, v in r.figures.items())
            lines.append(f"  {r.name:<20} {state:<16} checked {r.checked}{unknown}"
                         + (f" ({extras})" if extras else ""))
            lines += [f"    ! {v}" for v in r.violations]
            lines += [f"    ? {u}" for u in r.unknown]
        if self.saved_to is not None:
            lines.append(f"history, report and failing sub-histories saved in {self.saved_to}/")
        verdict = "VALID" if self.ok else f"INVALID: {self.violations} violation(s)"
        lines.append(f"verdict: {verdict}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"valid": self.ok, "violations": self.violations, "figures": self.figures,
                "checks": [asdict(r) for r in self.results]}

    def save(self, out_dir: Path, history: History, logs: str = "") -> None:
        """history.jsonl (re-checkable), report.json, failing-<key>.txt, members.log."""
        out_dir.mkdir(parents=True, exist_ok=True)
        history.save(out_dir / "history.jsonl")
        (out_dir / "report.json").write_text(json.dumps(self.to_json(), indent=2))
        (out_dir / "report.txt").write_text(self.text() + "\n")
        for key, ops in self.failing.items():
            name = key.replace("/", "_")
            (out_dir / f"failing-{name}.txt").write_text(
                "\n".join(op.describe() for op in ops) + "\n")
            (out_dir / f"failing-{name}.jsonl").write_text("".join(
                json.dumps({"type": "op", **asdict(op)}) + "\n" for op in ops))
        if logs:
            (out_dir / "members.log").write_text(logs)

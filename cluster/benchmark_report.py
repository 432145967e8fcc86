"""What a benchmark run measured, as numbers and as text: pure, so it is unit-tested.

A run hands over raw latencies (seconds, successful requests only), error
kinds and the wall-clock time; `summarize` turns them into a `Report`, which
renders as a small table plus a histogram (the shape of etcd's
tools/benchmark), serialises to JSON for `--json`/`--save`, and diffs against
a saved run for `--compare`. Speed is tracked by re-running a command and
comparing, never by a timed unit test, so nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

REPORT_FORMAT = 1
"""Bumped when a saved report's fields change meaning; `--compare` refuses other formats."""

PERCENTILES = (10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9)
histogram_buckets = 10
histogram_bar_width_max = 40


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values: the smallest value with at
    least p% of the values at or below it. Nearest rank (no interpolation) so that
    every figure reported is a latency some request really had."""
    if not sorted_values:
        return 0.0
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {p}")
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def percentile_key(p: float) -> str:
    """p50, p99, p99.9: the names used in JSON and tables."""
    return f"p{p:g}"


def histogram(sorted_values: Sequence[float], buckets: int = histogram_buckets
              ) -> list[tuple[float, int]]:
    """Equal-width buckets between the fastest and the slowest value, as
    (upper edge, count) pairs; every value lands in exactly one bucket."""
    if not sorted_values:
        return []
    lo, hi = sorted_values[0], sorted_values[-1]
    if hi == lo:
        return [(hi, len(sorted_values))]
    width = (hi - lo) / buckets
    edges = [lo + width * (i + 1) for i in range(buckets)]
    edges[-1] = hi  # float steps must not leave the slowest value outside
    counts = [0] * buckets
    b = 0
    for v in sorted_values:
        while v > edges[b]:
            b += 1
        counts[b] += 1
    return list(zip(edges, counts, strict=True))


@dataclass(frozen=True, slots=True)
class Report:
    """One benchmark run. Times are seconds; `requests` counts successes only."""

    name: str
    params: dict[str, Any]
    requests: int
    errors: dict[str, int]
    elapsed_s: float
    requests_per_s: float
    average_s: float
    stddev_s: float
    fastest_s: float
    slowest_s: float
    percentiles_s: dict[str, float]
    histogram: list[tuple[float, int]]
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0  # CPU of the member processes, when they run on this host
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def server_cpu_us_per_request(self) -> float:
        """Member CPU per answered request: steadier than requests/s on a shared
        machine, where other processes take CPU from the members."""
        return 1e6 * self.server_cpu_s / self.requests if self.requests else 0.0

    def p(self, pct: float) -> float:
        return self.percentiles_s.get(percentile_key(pct), 0.0)


def summarize(name: str, params: Mapping[str, Any], latencies_s: Sequence[float],
              errors: Mapping[str, int], elapsed_s: float, *, client_cpu_s: float = 0.0,
              server_cpu_s: float = 0.0, environment: Mapping[str, Any] | None = None) -> Report:
    """Reduce a run to its figures. Throughput counts successful requests only, as
    a failed request is not served work."""
    values = sorted(latencies_s)
    n = len(values)
    mean = sum(values) / n if n else 0.0
    var = sum((v - mean) ** 2 for v in values) / n if n else 0.0
    return Report(
        name=name, params=dict(params), requests=n,
        errors={k: v for k, v in sorted(errors.items()) if v},
        elapsed_s=elapsed_s, requests_per_s=n / elapsed_s if elapsed_s > 0 else 0.0,
        average_s=mean, stddev_s=math.sqrt(var),
        fastest_s=values[0] if n else 0.0, slowest_s=values[-1] if n else 0.0,
        percentiles_s={percentile_key(p): percentile(values, p) for p in PERCENTILES},
        histogram=histogram(values), client_cpu_s=client_cpu_s, server_cpu_s=server_cpu_s,
        environment=dict(environment or {}),
    )


# --- JSON -------------------------------------------------------------------------

def to_json(report: Report) -> dict[str, Any]:
    """A plain dict for `json.dumps`; `from_json` reads it back."""
    data = asdict(report)
    data["format"] = REPORT_FORMAT
    data["error_count"] = report.error_count
    data["histogram"] = [[edge, count] for edge, count in report.histogram]
    return data


def from_json(data: Mapping[str, Any]) -> Report:
    """Read a saved report.

    Raises:
        ValueError: not a report, or one written in another format.
    """
    if data.get("format") != REPORT_FORMAT:
        raise ValueError(f"not a benchmark report of format {REPORT_FORMAT} "
                         f"(found format {data.get('format')!r})")
    try:
        return Report(
            name=str(data["name"]), params=dict(data["params"]),
            requests=int(data["requests"]), errors=dict(data["errors"]),
            elapsed_s=float(data["elapsed_s"]), requests_per_s=float(data["requests_per_s"]),
            average_s=float(data["average_s"]), stddev_s=float(data["stddev_s"]),
            fastest_s=float(data["fastest_s"]), slowest_s=float(data["slowest_s"]),
            percentiles_s={str(k): float(v) for k, v in data["percentiles_s"].items()},
            histogram=[(float(e), int(c)) for e, c in data["histogram"]],
            client_cpu_s=float(data.get("client_cpu_s", 0.0)),
            server_cpu_s=float(data.get("server_cpu_s", 0.0)),
            environment=dict(data.get("environment", {})),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed benchmark report: {exc!r}") from None


# --- text -------------------------------------------------------------------------

def ms(seconds: float) -> str:
    """Milliseconds with three significant-ish decimals, as latencies are read."""
    return f"{seconds * 1000:.3f}"


def summary_rows(r: Report) -> list[tuple[str, str]]:
    """(label, value) rows of the summary table."""
    cpu = (f"{r.client_cpu_s:.2f} s ({100 * r.client_cpu_s / r.elapsed_s:.0f}% of one core)"
           if r.elapsed_s > 0 else "-")
    errors = ", ".join(f"{k}={v}" for k, v in r.errors.items()) or "none"
    return [
        ("requests/s", f"{r.requests_per_s:,.1f}"),
        ("requests", f"{r.requests:,} in {r.elapsed_s:.2f} s"),
        ("average ms", ms(r.average_s)),
        ("stddev ms", ms(r.stddev_s)),
        ("fastest ms", ms(r.fastest_s)),
        ("p50 ms", ms(r.p(50))),
        ("p90 ms", ms(r.p(90))),
        ("p99 ms", ms(r.p(99))),
        ("slowest ms", ms(r.slowest_s)),
        ("errors", f"{r.error_count} ({errors})"),
        ("load generator CPU", cpu),
        *([("member CPU", f"{r.server_cpu_s:.2f} s ({r.server_cpu_us_per_request:,.0f} us "
                          "per request)")] if r.server_cpu_s else []),
    ]


def histogram_lines(r: Report) -> list[str]:
    """One line per bucket: upper edge in ms, count, and a bar scaled to the fullest."""
    if not r.histogram:
        return []
    peak = max(c for _, c in r.histogram) or 1
    width = len(f"{max(c for _, c in r.histogram)}")
    lines = []
    for edge, count in r.histogram:
        bar = "∎" * round(histogram_bar_width_max * count / peak)
        lines.append(f"  {edge * 1000:10.3f} ms [{count:>{width}}] |{bar}")
    return lines


def distribution_line(r: Report) -> str:
    """Every percentile on one line, for logs and terse output."""
    return "  ".join(f"{percentile_key(p)}={ms(r.p(p))}" for p in PERCENTILES) + " (ms)"


# --- compare ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CompareRow:
    """One metric of two runs. `change` is relative (+0.10 = 10% more); `better` says
    whether the new run is better on it (None when equal or not comparable)."""

    metric: str
    old: float
    new: float
    change: float | None
    better: bool | None


_COMPARED: tuple[tuple[str, bool], ...] = (
    # metric, higher is better
    ("requests/s", True), ("average ms", False), ("p50 ms", False), ("p90 ms", False),
    ("p99 ms", False), ("slowest ms", False), ("errors", False),
    ("member CPU us/req", False),
)


def _metric(r: Report, metric: str) -> float:
    return {
        "requests/s": r.requests_per_s, "average ms": r.average_s * 1000,
        "p50 ms": r.p(50) * 1000, "p90 ms": r.p(90) * 1000, "p99 ms": r.p(99) * 1000,
        "slowest ms": r.slowest_s * 1000, "errors": float(r.error_count),
        "member CPU us/req": r.server_cpu_us_per_request,
    }[metric]


def compare(old: Report, new: Report) -> list[CompareRow]:
    """Metric by metric, how `new` differs from `old`."""
    rows = []
    for metric, higher_is_better in _COMPARED:
        a, b = _metric(old, metric), _metric(new, metric)
        if metric == "member CPU us/req" and not (a and b):
            continue  # one of the runs could not see the member processes
        change = (b - a) / a if a else None
        better = None if a == b else (b > a) == higher_is_better
        rows.append(CompareRow(metric, a, b, change, better))
    return rows


def param_differences(old: Report, new: Report) -> list[str]:
    """Workload settings that differ: a comparison across them measures something else."""
    diffs = [f"name: {old.name} -> {new.name}"] if old.name != new.name else []
    for key in sorted(set(old.params) | set(new.params)):
        if key in ("total",):  # a different request count is still the same workload
            continue
        a, b = old.params.get(key), new.params.get(key)
        if a != b:
            diffs.append(f"{key}: {a} -> {b}")
    return diffs


def format_change(row: CompareRow) -> str:
    if row.change is None:
        return "n/a" if row.old != row.new else "="
    return f"{row.change * 100:+.1f}%"


def compare_lines(old: Report, new: Report) -> list[str]:
    """Plain-text comparison (also what the rich table shows)."""
    lines = [f"  {'metric':<17} {'saved':>12} {'now':>12} {'change':>9}"]
    for row in compare(old, new):
        verdict = {True: "better", False: "worse", None: ""}[row.better]
        lines.append(f"  {row.metric:<17} {row.old:>12,.3f} {row.new:>12,.3f} "
                     f"{format_change(row):>9} {verdict}".rstrip())
    lines.extend(f"  note: workload differs, {d}" for d in param_differences(old, new))
    return lines

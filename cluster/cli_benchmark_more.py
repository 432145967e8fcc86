"""`etcdlite benchmark watch-latency`, `etcdlite benchmark failover` and `etcdlite check perf`.

Kept apart from `cluster.cli_benchmark` (the request/response workloads) to
keep each file small; `cluster.cli_benchmark` adds the two benchmark
subcommands to its group and exports `check_group`.

`check perf` follows `etcdctl check perf`: a fixed write load for a fixed
time, then PASS/FAIL. Its loads, key and value sizes and criteria are
etcdctl's, so a verdict means the same for both: every request succeeded,
throughput above 90% of the target, slowest request at most 0.5 s, standard
deviation at most 0.1 s.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any

import click

from cluster import benchmark_failover as fo
from cluster import benchmark_report as rep
from cluster import benchmark_workloads as wl
from cluster.benchmark_watch import WatchLoad, run_watch_latency
from cluster.cli_benchmark_run import (
    BenchOptions,
    bench_options,
    emit,
    environment,
    execute,
    load_options,
    stderr,
)
from cluster.cli_common import ErrorMappingGroup, arg_bytes
from cluster.client import Client

EXIT_FAIL = 1


@click.command("watch-latency")
@click.option("--watchers", type=click.IntRange(min=1, max=150), default=10, show_default=True,
              help="Watches on the key (spread over the endpoints).")
@click.option("--put-total", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--put-rate", type=click.FloatRange(min=0, min_open=True), default=100.0,
              show_default=True, help="Puts per second.")
@click.option("--val-size", type=click.IntRange(min=0), default=256, show_default=True)
@click.option("--key", default="watch-latency", show_default=True)
@load_options
@click.pass_context
def watch_latency_cmd(ctx: click.Context, /, watchers: int, put_total: int, put_rate: float,
                      val_size: int, key: str, **given: Any) -> None:
    """Time from sending a put to each watcher seeing it (trio AsyncClient.watch)."""
    opts = bench_options(ctx, given)
    env = environment(opts)
    env["engine"] = "trio"  # watches are trio iterators whatever --engine says
    stderr(f"watch-latency: {watchers} watchers, {put_total} puts at {put_rate:g}/s")
    result = run_watch_latency(WatchLoad(opts.endpoints, watchers, put_total, put_rate,
                                         arg_bytes(key), val_size, opts.timeout_s))
    env["loadavg_after"] = list(os.getloadavg())
    params = {"watchers": watchers, "put_total": put_total, "put_rate": put_rate,
              "val_size": val_size, "puts_acknowledged": result.puts_acknowledged,
              "clients": watchers, "conns": watchers}
    emit(opts, rep.summarize("watch-latency", params, result.latencies_s, result.errors,
                             result.elapsed_s, client_cpu_s=result.client_cpu_s,
                             environment=env))


@click.command("failover")
@click.option("--members", type=click.IntRange(min=3, max=7), default=3, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--catch-up-keys", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Keys written while a follower is down.")
@click.option("--json", "as_json", is_flag=True, help="Print every sample as JSON.")
def failover_cmd(members: int, rounds: int, catch_up_keys: int, as_json: bool) -> None:
    """Election, leader transfer and follower catch-up times, on a scratch cluster.

    Starts its own members (ipc:// sockets in a temporary directory, default
    settings) because it kills and restarts them; --endpoints is ignored.

    \b
    Example:
      etcdlite benchmark failover --rounds 3 --catch-up-keys 10000
    """
    result = fo.run_failover(members, rounds, catch_up_keys, progress=stderr)
    result["medians"] = fo.medians(result)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{members} members, election timeout {result['election_timeout_ms']} ms, "
               f"heartbeat {result['heartbeat_interval_ms']} ms; median of {rounds}:")
    for kind, fields in result["medians"].items():
        text = ", ".join(f"{k} {v:.3f} s" if k.endswith("_s") else f"{k} {v:,.0f}"
                         for k, v in fields.items())
        click.echo(f"  {kind:<9} {text}")


# --- check perf -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PerfLoad:
    writes_per_s: int
    clients: int


PERF_LOADS = {"s": PerfLoad(150, 50), "m": PerfLoad(1000, 200), "l": PerfLoad(8000, 500),
              "xl": PerfLoad(15000, 1000)}
_LOAD_ALIASES = {"small": "s", "medium": "m", "large": "l", "xlarge": "xl"}
perf_key_size = 256
perf_val_size = 1024
throughput_ratio_min = 0.9
slowest_s_max = 0.5
stddev_s_max = 0.1


def perf_verdict(r: rep.Report, target_writes_per_s: float) -> tuple[bool, list[str]]:
    """PASS/FAIL lines for a check-perf run (pure: unit-tested)."""
    lines: list[str] = []
    ok = True
    if r.errors:
        ok = False
        lines.append(f"FAIL: {r.error_count} requests failed")
        lines.extend(f"FAIL: error {kind}: {n}" for kind, n in r.errors.items())
    rate = f"{r.requests_per_s:,.0f} writes/s (target {target_writes_per_s:,.0f})"
    if r.requests_per_s / target_writes_per_s > throughput_ratio_min:
        lines.append(f"PASS: throughput {rate}")
    else:
        ok = False
        lines.append(f"FAIL: throughput too low: {rate}")
    slowest = f"slowest request {r.slowest_s:.6f} s (limit {slowest_s_max} s)"
    ok = ok and r.slowest_s <= slowest_s_max
    lines.append(("PASS: " if r.slowest_s <= slowest_s_max else "FAIL: ") + slowest)
    stddev = f"stddev {r.stddev_s:.6f} s (limit {stddev_s_max} s)"
    ok = ok and r.stddev_s <= stddev_s_max
    lines.append(("PASS: " if r.stddev_s <= stddev_s_max else "FAIL: ") + stddev)
    lines.append("PASS" if ok else "FAIL")
    return ok, lines


@click.group("check", cls=ErrorMappingGroup)
def check_group() -> None:
    """Check properties of the cluster (like etcdctl check)."""


@check_group.command("perf")
@click.option("--load", "load_name", default="s", show_default=True,
              type=click.Choice([*PERF_LOADS, *_LOAD_ALIASES], case_sensitive=False),
              help="s: 150 writes/s by 50 clients, m: 1,000 by 200, l: 8,000 by 500, "
                   "xl: 15,000 by 1,000.")
@click.option("--duration", "duration_s", type=click.FloatRange(min=1), default=60.0,
              show_default=True, help="Seconds of load (etcdctl uses 60).")
@click.option("--prefix", default="/etcdlite-check-perf/", show_default=True,
              help="Keys are written under this prefix, which must be empty.")
@click.option("--auto-compact", is_flag=True, help="Compact to the last revision afterwards.")
@click.option("--conns", type=click.IntRange(min=1), default=None,
              help="Connections the clients share [default: clients/10].")
@click.option("--engine", type=click.Choice(["threads", "trio"]), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def perf_cmd(ctx: click.Context, /, load_name: str, duration_s: float, prefix: str,
             auto_compact: bool, conns: int | None, engine: str | None, as_json: bool) -> None:
    """Write at a fixed rate for a while, then PASS or FAIL like `etcdctl check perf`.

    \b
    Examples:
      etcdlite check perf
      etcdlite check perf --load m --duration 20

    Exit code 1 on FAIL. The keys written are deleted afterwards.
    """
    load = PERF_LOADS[_LOAD_ALIASES.get(load_name.lower(), load_name.lower())]
    opts: BenchOptions = bench_options(ctx, {
        "clients": load.clients, "conns": conns or max(1, load.clients // 10),
        "engine": engine, "as_json": as_json})
    key_prefix = arg_bytes(prefix)
    with Client(opts.endpoints, timeout_s=opts.timeout_s) as c:
        if c.get(key_prefix, prefix=True, limit=1, count_only=True).count:
            raise click.UsageError(f"prefix {prefix!r} has keys; delete them first "
                                   f"(etcdlite del --prefix {prefix})")
    total = int(load.writes_per_s * duration_s)
    suffix_size = max(1, perf_key_size - len(key_prefix))
    # The load stops issuing at the duration even if the cluster fell behind the rate.
    report = execute(
        dataclasses.replace(opts, duration_s=duration_s), "check-perf",
        {"load": load_name, "target_writes_per_s": load.writes_per_s,
         "key_size": perf_key_size, "val_size": perf_val_size},
        wl.check_perf_workload(key_prefix, suffix_size, perf_val_size),
        total=total, rate=float(load.writes_per_s))
    with Client(opts.endpoints, timeout_s=30.0) as c:
        deleted = c.delete(key_prefix, prefix=True)
        if auto_compact:
            c.compact(deleted.header.revision)
    ok, lines = perf_verdict(report, load.writes_per_s)
    if as_json:  # one document: the report plus the verdict
        data = rep.to_json(report)
        data.update(verdict="PASS" if ok else "FAIL", lines=lines)
        click.echo(json.dumps(data, indent=2))
    else:
        for line in lines:
            click.echo(line)
    if not ok:
        ctx.exit(EXIT_FAIL)


"""`etcdlite benchmark ...`: measure a running cluster, shaped like etcd's tools/benchmark.

So figures can be set side by side with etcd's, the subcommands and flags
follow etcd's tool (put, range, txn-put, lease-keepalive, watch-latency;
--clients, --conns, --total, --key-size, --val-size, ...). The load engine is
`cluster.benchmark`, the figures `cluster.benchmark_report`, the shared
option/print/save/compare code `cluster.cli_benchmark_run`; watch-latency,
failover and `check perf` live in `cluster.cli_benchmark_more`.

Speed is tracked by command: `--save base.json` on one commit and
`--compare base.json` on the next, never by a timed unit test (a loaded CI
machine would make such a test flaky).
"""

from __future__ import annotations

from typing import Any

import click

from cluster import benchmark_workloads as wl
from cluster.cli_benchmark_more import check_group, failover_cmd, watch_latency_cmd
from cluster.cli_benchmark_run import (
    BENCH_META,
    bench_options,
    emit,
    execute,
    load_options,
    stderr,
)
from cluster.cli_common import ErrorMappingGroup, arg_bytes
from cluster.client import Client
from cluster.errors import EtcdliteError

__all__ = ["benchmark_group", "check_group"]


# --- commands -----------------------------------------------------------------------

@click.group("benchmark", cls=ErrorMappingGroup)
@load_options
@click.pass_context
def benchmark_group(ctx: click.Context, /, **given: Any) -> None:
    """Load the cluster and report requests/s and latency, like etcd's benchmark tool.

    \b
    Examples:
      etcdlite benchmark put --total 20000 --clients 64 --conns 8
      etcdlite benchmark --clients 64 --conns 8 range foo --consistency s --total 50000
      etcdlite benchmark txn-put --total 5000 --save before.json
      etcdlite benchmark txn-put --total 5000 --compare before.json
      etcdlite benchmark failover --rounds 3

    Each client sends its next request when its previous one is answered.
    Throughput counts answered requests only; errors are counted by kind.
    """
    ctx.meta[BENCH_META] = given


def _key_spec(key_size: int, key_space_size: int, sequential: bool) -> wl.KeySpec:
    try:
        return wl.KeySpec(key_size, key_space_size, sequential)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


_RATE = click.option("--rate", type=click.FloatRange(min=0), default=0.0,
                     help="Requests per second over all clients (0: as fast as possible).")
_TOTAL = click.option("--total", type=click.IntRange(min=1), default=10_000, show_default=True,
                      help="Requests to send.")
_KEY_SIZE = click.option("--key-size", type=click.IntRange(min=1), default=8, show_default=True)
_VAL_SIZE = click.option("--val-size", type=click.IntRange(min=0), default=256,
                         show_default=True)
_KEY_SPACE = click.option("--key-space-size", type=click.IntRange(min=1), default=1,
                          show_default=True, help="Distinct keys written.")
_SEQ = click.option("--sequential-keys", is_flag=True,
                    help="Keys 0, 1, 2, ... in order instead of at random.")


@benchmark_group.command("put")
@_TOTAL
@_KEY_SIZE
@_VAL_SIZE
@_KEY_SPACE
@_SEQ
@_RATE
@load_options
@click.pass_context
def put_cmd(ctx: click.Context, /, total: int, key_size: int, val_size: int, key_space_size: int,
            sequential_keys: bool, rate: float, **given: Any) -> None:
    """Write keys: one put per request."""
    opts = bench_options(ctx, given)
    keys = _key_spec(key_size, key_space_size, sequential_keys)
    params = {"key_size": key_size, "val_size": val_size, "key_space_size": key_space_size,
              "sequential_keys": sequential_keys, "rate": rate}
    emit(opts, execute(opts, "put", params, wl.put_workload(keys, val_size), total=total,
                       rate=rate))


@benchmark_group.command("range")
@click.argument("key")
@click.argument("range_end", required=False)
@click.option("--consistency", type=click.Choice(["l", "s"]), default="l", show_default=True,
              help="l: linearizable (ReadIndex), s: serializable (local).")
@click.option("--limit", type=click.IntRange(min=0), default=0, help="At most this many keys.")
@click.option("--count-only", is_flag=True, help="Ask only for the number of keys.")
@_TOTAL
@_RATE
@load_options
@click.pass_context
def range_cmd(ctx: click.Context, /, key: str, range_end: str | None, consistency: str,
              limit: int, count_only: bool, total: int, rate: float, **given: Any) -> None:
    """Read KEY (or [KEY, RANGE_END)) over and over."""
    opts = bench_options(ctx, given)
    make = wl.range_workload(arg_bytes(key), None if range_end is None else arg_bytes(range_end),
                             serializable=consistency == "s", limit=limit,
                             count_only=count_only)
    params = {"key": key, "range_end": range_end, "consistency": consistency, "limit": limit,
              "count_only": count_only, "rate": rate}
    emit(opts, execute(opts, "range", params, make, total=total, rate=rate))


@benchmark_group.command("txn-put")
@_TOTAL
@_KEY_SIZE
@_VAL_SIZE
@_KEY_SPACE
@click.option("--txn-ops", type=click.IntRange(min=1), default=1, show_default=True,
              help="Puts per transaction (distinct keys).")
@_RATE
@load_options
@click.pass_context
def txn_put_cmd(ctx: click.Context, /, total: int, key_size: int, val_size: int,
                key_space_size: int, txn_ops: int, rate: float, **given: Any) -> None:
    """Write keys in transactions of --txn-ops puts (no compares)."""
    opts = bench_options(ctx, given)
    keys = _key_spec(key_size, key_space_size, False)
    try:
        make = wl.txn_put_workload(keys, val_size, txn_ops)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    params = {"key_size": key_size, "val_size": val_size, "key_space_size": key_space_size,
              "txn_ops": txn_ops, "rate": rate}
    emit(opts, execute(opts, "txn-put", params, make, total=total, rate=rate))


@benchmark_group.command("lease-keepalive")
@_TOTAL
@click.option("--ttl", type=click.IntRange(min=1), default=60, show_default=True,
              help="TTL of the leases granted for the run (one per client).")
@_RATE
@load_options
@click.pass_context
def lease_keepalive_cmd(ctx: click.Context, /, total: int, ttl: int, rate: float,
                        **given: Any) -> None:
    """Renew leases: one keep-alive per request (the leader answers; followers forward)."""
    opts = bench_options(ctx, given)
    with Client(opts.endpoints, timeout_s=opts.timeout_s) as c:
        leases = [c.lease_grant(ttl).id for _ in range(opts.clients)]
        try:
            report = execute(opts, "lease-keepalive", {"ttl": ttl, "rate": rate},
                             wl.lease_keepalive_workload(leases), total=total, rate=rate)
        finally:
            for lease_id in leases:
                try:
                    c.lease_revoke(lease_id)
                except EtcdliteError as exc:
                    stderr(f"could not revoke lease {lease_id:x}: {exc.message}")
    emit(opts, report)


benchmark_group.add_command(watch_latency_cmd)
benchmark_group.add_command(failover_cmd)

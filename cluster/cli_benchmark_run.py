"""Shared machinery of the `etcdlite benchmark` commands: options, run, print, save, compare.

The load options are accepted before the subcommand, as etcd's tool takes
them, or after it; after wins (`bench_options`). Every report records where
the leader was, the load average before and after and the commit, because a
figure without its conditions cannot be compared later.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
import psutil
from rich import box
from rich.console import Console
from rich.table import Table

from cluster import benchmark_report as rep
from cluster.benchmark import ENGINES, LoadSpec, MakeCall, run_load
from cluster.cli_common import Settings
from cluster.client import Client
from cluster.client_transport import resolve_endpoints
from cluster.errors import EtcdliteError, UnavailableError

F = TypeVar("F", bound=Callable[..., Any])
BENCH_META = "etcdlite.benchmark"
REPO = Path(__file__).resolve().parent.parent

_DEFAULTS: dict[str, Any] = {
    "clients": 1, "conns": 1, "bench_endpoints": None, "engine": "threads",
    "duration_s": 0.0, "as_json": False, "save": None, "compare": None,
}


def load_options(command: F) -> F:
    """The options every benchmark subcommand (and the group) accepts; None = not given."""
    options = [
        click.option("--clients", type=click.IntRange(min=1), default=None,
                     help="Concurrent clients, each waiting for its answer. [default: 1]"),
        click.option("--conns", type=click.IntRange(min=1), default=None,
                     help="Connections the clients share. [default: 1]"),
        click.option("--endpoints", "bench_endpoints", metavar="URLS", default=None,
                     help="Endpoints to load (default: the global --endpoints)."),
        click.option("--engine", type=click.Choice(ENGINES), default=None,
                     help="threads: blocking nng contexts (cheapest client CPU); "
                          "trio: AsyncClient's transport. [default: threads]"),
        click.option("--duration", "duration_s", type=click.FloatRange(min=0), default=None,
                     help="Stop after this many seconds even if --total is not reached."),
        click.option("--json", "as_json", is_flag=True, default=None,
                     help="Print the report as JSON on stdout."),
        click.option("--save", type=click.Path(dir_okay=False), default=None,
                     help="Write the report to this JSON file."),
        click.option("--compare", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="Show the difference against a report saved with --save."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@dataclass(frozen=True, slots=True)
class BenchOptions:
    endpoints: tuple[str, ...]
    clients: int
    conns: int
    engine: str
    duration_s: float
    as_json: bool
    save: str | None
    compare: str | None
    timeout_s: float


def bench_options(ctx: click.Context, given: dict[str, Any]) -> BenchOptions:
    """Defaults, then what was given before the subcommand, then after it."""
    merged = dict(_DEFAULTS)
    for layer in (ctx.meta.get(BENCH_META, {}), given):
        merged.update({k: v for k, v in layer.items() if v is not None})
    settings: Settings = ctx.find_object(Settings) or Settings(resolve_endpoints(None), 5.0,
                                                               "simple")
    endpoints = (resolve_endpoints(merged["bench_endpoints"]) if merged["bench_endpoints"]
                 else settings.endpoints)
    return BenchOptions(endpoints, merged["clients"], merged["conns"], merged["engine"],
                        merged["duration_s"], bool(merged["as_json"]), merged["save"],
                        merged["compare"], settings.timeout_s)


def stderr(text: str) -> None:
    click.echo(text, err=True)


def _git_commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                              capture_output=True, timeout=5, check=False)
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def cluster_facts(endpoints: tuple[str, ...]) -> dict[str, Any]:
    """Who leads and which endpoint is theirs: a put to a follower is forwarded, which
    changes the figures, so every report says where the leader was."""
    facts: dict[str, Any] = {}
    with Client(endpoints, timeout_s=1.0) as c:
        for endpoint in endpoints:
            try:
                s = c.status(endpoint)
            except EtcdliteError:
                continue
            facts.setdefault("members_answering", []).append(s.name)
            if s.role == "leader":
                facts["leader"], facts["leader_endpoint"] = s.name, endpoint
                facts["revision_before"] = s.revision
    return facts


def environment(opts: BenchOptions) -> dict[str, Any]:
    return {
        "engine": opts.engine, "endpoints": list(opts.endpoints),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_before": list(os.getloadavg()), "cpus": os.cpu_count(),
        "python": platform.python_version(), "git": _git_commit(),
        **cluster_facts(opts.endpoints),
    }


def execute(opts: BenchOptions, name: str, params: dict[str, Any], make_call: MakeCall,
            *, total: int, rate: float = 0.0) -> rep.Report:
    """Run one load and summarise it (printing nothing)."""
    env = environment(opts)
    spec = LoadSpec(opts.endpoints, clients=opts.clients, conns=opts.conns, total=total,
                    duration_s_max=opts.duration_s, rate=rate, timeout_s=opts.timeout_s,
                    engine=opts.engine)
    stderr(f"{name}: {total:,} requests, {opts.clients} clients over {opts.conns} "
            f"connections ({opts.engine}), leader {env.get('leader', '?')}")
    members = member_processes(opts.endpoints)
    server_cpu0 = cpu_seconds(members)
    result = run_load(spec, make_call)
    server_cpu = cpu_seconds(members) - server_cpu0
    env["loadavg_after"] = list(os.getloadavg())
    env["member_pids"] = [p.pid for p in members]
    all_params = {"clients": opts.clients, "conns": opts.conns, "total": total, **params}
    return rep.summarize(name, all_params, result.latencies_s, result.errors,
                         result.elapsed_s, client_cpu_s=result.client_cpu_s,
                         server_cpu_s=server_cpu, environment=env)


def print_report(r: rep.Report) -> None:
    """The human view: a summary table, the histogram and the percentiles."""
    console = Console(highlight=False)
    title = f"{r.name}  ({r.params.get('clients')} clients / {r.params.get('conns')} conns)"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, value in rep.summary_rows(r):
        table.add_row(label, value)
    console.print(table)
    # Plain echo: rich would wrap these lines at the terminal width.
    click.echo("Response time histogram:")
    for line in rep.histogram_lines(r):
        click.echo(line)
    click.echo("Latency distribution:")
    click.echo("  " + rep.distribution_line(r))


def print_comparison(old: rep.Report, new: rep.Report, path: str) -> None:
    console = Console(highlight=False)
    table = Table(title=f"compared with {path}", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("metric", "saved", "now", "change", ""):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for row in rep.compare(old, new):
        verdict = {True: "[green]better[/]", False: "[red]worse[/]", None: ""}[row.better]
        table.add_row(row.metric, f"{row.old:,.3f}", f"{row.new:,.3f}",
                      rep.format_change(row), verdict)
    console.print(table)
    for diff in rep.param_differences(old, new):
        console.print(f"note: the workload differs ({diff})")


def _load_saved(path: str) -> rep.Report:
    try:
        return rep.from_json(json.loads(Path(path).read_text()))
    except (OSError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--compare") from None


def emit(opts: BenchOptions, report: rep.Report) -> None:
    """Print (text or JSON), compare with a saved run, save; fail if nothing succeeded."""
    old = _load_saved(opts.compare) if opts.compare else None
    if opts.as_json:
        data = rep.to_json(report)
        if old is not None:
            data["comparison"] = [
                {"metric": r.metric, "saved": r.old, "now": r.new, "change": r.change,
                 "better": r.better} for r in rep.compare(old, report)]
        click.echo(json.dumps(data, indent=2))
    else:
        print_report(report)
        if old is not None:
            print_comparison(old, report, str(opts.compare))
    if opts.save:
        Path(opts.save).write_text(json.dumps(rep.to_json(report), indent=2) + "\n")
        stderr(f"saved to {opts.save}")
    if report.requests == 0 and report.error_count:
        raise UnavailableError(f"all {report.error_count} requests failed: {report.errors}")




def member_processes(endpoints: tuple[str, ...]) -> list[psutil.Process]:
    """The local processes listening on `endpoints` (best effort, by listening socket),
    so a report can say how much member CPU the requests cost. Remote or unknown
    endpoints are skipped."""
    ports, paths = set(), set()
    for endpoint in endpoints:
        scheme, _, rest = endpoint.partition("://")
        if scheme == "tcp":
            host, _, port = rest.rpartition(":")
            if host in ("127.0.0.1", "localhost", "0.0.0.0", "[::1]") and port.isdigit():
                ports.add(int(port))
        elif scheme == "ipc":
            paths.add(rest)
    pids = set()
    with contextlib.suppress(psutil.Error, OSError):
        if ports:
            pids |= {c.pid for c in psutil.net_connections(kind="tcp")
                     if c.pid and c.status == psutil.CONN_LISTEN and c.laddr
                     and c.laddr.port in ports}
        if paths:
            pids |= {c.pid for c in psutil.net_connections(kind="unix")
                     if c.pid and c.laddr in paths}
    procs = []
    for pid in sorted(pids):
        with contextlib.suppress(psutil.Error):
            procs.append(psutil.Process(pid))
    return procs


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """User + system CPU of `procs` so far (a process that died counts 0)."""
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total

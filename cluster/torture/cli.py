"""`etcdlite torture`: run a fault-injection test against a cluster of its own, print a verdict."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click
import trio

from cluster.torture.crash_loop import CrashLoopConfig, run_crash_loop
from cluster.torture.member_main import BUGS
from cluster.torture.nemesis import FAULTS, parse_faults
from cluster.torture.runner import RunAborted, RunConfig, recheck, run
from cluster.torture.workload import WorkloadConfig


def _say(line: str) -> None:
    click.echo(line, err=True)


@click.command("torture", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--time", "time_s", type=click.FloatRange(min=5), default=60.0,
              show_default=True, help="Seconds of workload under faults.")
@click.option("--members", type=click.IntRange(1, 7), default=3, show_default=True)
@click.option("--faults", default="all", show_default=True,
              help=f"Comma-separated faults, 'all' or 'none'. Known: {', '.join(FAULTS)}.")
@click.option("--clients", type=click.IntRange(1, 64), default=6, show_default=True)
@click.option("--keys", type=click.IntRange(1, 100), default=6, show_default=True)
@click.option("--watchers", type=click.IntRange(0, 16), default=2, show_default=True)
@click.option("--seed", type=int, default=None, help="Fixes the workload and the nemesis.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Save history.jsonl, report and member logs here (always saved to "
                   "./torture-<seed>/ on a violation).")
@click.option("--keep", is_flag=True, help="Keep the cluster's data dirs and logs.")
@click.option("--bug", type=click.Choice(BUGS), default=None,
              help="Inject a deliberate bug into every member (to see the checkers catch it).")
@click.option("--crash-loop", "cycles", type=click.IntRange(min=1), default=None,
              help="Instead: N cycles of kill -9 during write bursts, then check durability.")
@click.option("--check", "check_path", type=click.Path(exists=True, path_type=Path),
              default=None, help="Instead: re-check a saved history.jsonl (no cluster).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("-v", "--verbose", is_flag=True, help="Log the torture process' own clients.")
def torture_cmd(time_s: float, members: int, faults: str, clients: int, keys: int,
                watchers: int, seed: int | None, out_dir: Path | None, keep: bool,
                bug: str | None, cycles: int | None, check_path: Path | None, as_json: bool,
                verbose: bool) -> None:
    """Start a cluster of real members, run a workload while injecting faults, check.

    \b
    Examples:
      etcdlite torture                                  # 60 s, 3 members, every fault
      etcdlite torture --time 600 --members 5 --faults all
      etcdlite torture --faults kill,pause,partition --seed 7 --out run7
      etcdlite torture --bug stale-reads --faults partition   # must report violations
      etcdlite torture --crash-loop 100
      etcdlite torture --check torture-7/history.jsonl      # re-check a saved run

    The members are separate processes on ipc:// sockets under a temporary
    directory, killed when the run ends (or when this process dies). The
    verdict covers linearizability (per key, indeterminate writes allowed to
    land or not), revision order, watch guarantees, durability of every
    acknowledged write, replica agreement (history and HashKV), reads matching
    the history, and SQLite integrity of every data file.

    Exit codes: 0 valid, 1 violations found, 2 usage, 3 the run could not start.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr)
    try:
        fault_names = parse_faults(faults)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from None
    if check_path is not None:
        report = recheck(check_path)
        click.echo(json.dumps(report.to_json(), indent=2) if as_json else report.text())
        sys.exit(0 if report.ok else 1)
    if cycles is not None:
        loop_cfg = CrashLoopConfig(cycles=cycles, members=members, say=_say)
        if seed is not None:
            loop_cfg.seed = seed
        result = trio.run(run_crash_loop, loop_cfg)
        if as_json:
            click.echo(json.dumps({"valid": result.ok, "checked": result.checked,
                                   "violations": result.violations, "figures": result.figures}))
        else:
            click.echo(f"crash loop: {result.checked} acknowledged writes checked, "
                       + ", ".join(f"{k} {v}" for k, v in result.figures.items()))
            for v in result.violations:
                click.echo(f"  ! {v}")
            click.echo("verdict: " + ("VALID" if result.ok else
                                      f"INVALID: {len(result.violations)} violation(s)"))
        sys.exit(0 if result.ok else 1)
    cfg = RunConfig(members=members, time_s=time_s, faults=fault_names, bug=bug or "",
                    keep=keep, out_dir=out_dir, say=_say,
                    workload=WorkloadConfig(keys=keys, clients=clients, watchers=watchers))
    if seed is not None:
        cfg.seed = seed
    try:
        report = trio.run(run, cfg)
    except RunAborted as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(3)
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else report.text())
    sys.exit(0 if report.ok else 1)

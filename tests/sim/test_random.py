"""Randomized fault schedules: the simulator's main safety net.

Runs `SIM_SCHEDULES` (default 1,000) seeded schedules from tests/sim/workload.py,
mixing 3- and 5-member clusters with loss, delay, duplication, reordering,
partitions, crashes (also mid-persist), leader transfers, membership changes
and snapshot installs; every schedule ends with a liveness check.

A failure names its seed; `SIM_SEED=<seed> python -m pytest tests/sim -k random`
replays exactly that schedule (in-process, with a full traceback). Keep other
test names free of "random" so that command selects only this test.

Schedules are independent, so they run on `SIM_WORKERS` processes (default:
one per CPU, at most 2 — this is a 2-core machine); results do not depend on
the worker count.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

from tests.sim.workload import ScheduleResult, replay_hint, run_schedule

SCHEDULES_DEFAULT = 1000


def _seeds() -> list[int]:
    if os.environ.get("SIM_SEED"):
        return [int(os.environ["SIM_SEED"])]
    return list(range(int(os.environ.get("SIM_SCHEDULES", SCHEDULES_DEFAULT))))


def _check(seed: int) -> ScheduleResult:
    """Run one schedule in this process; a failure names its seed and the replay command."""
    try:
        return run_schedule(seed)
    except AssertionError as exc:
        message = f"schedule seed {seed} failed: {exc}\n{replay_hint(seed)}"
        print(message)
        raise AssertionError(message) from exc


def _run_or_report(seed: int) -> ScheduleResult | str:
    """Run one schedule in a worker; a failure comes back as text (always picklable)."""
    try:
        return run_schedule(seed)
    except AssertionError as exc:
        return f"{type(exc).__name__}: {exc}"


def _run_all(seeds: list[int]) -> list[ScheduleResult]:
    workers = int(os.environ.get("SIM_WORKERS", min(2, os.cpu_count() or 1)))
    if workers <= 1 or len(seeds) < 50:
        return [_check(seed) for seed in seeds]
    # spawn, not fork: a forked worker inherits the parent's nng sockets (left over
    # from other tests in the same pytest process) and aborts when it collects them.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        outcomes = list(pool.map(_run_or_report, seeds, chunksize=25))
    failed = [(seed, out) for seed, out in zip(seeds, outcomes, strict=True)
              if isinstance(out, str)]
    if failed:
        print(f"{len(failed)} schedules failed: seeds {[seed for seed, _ in failed[:20]]}")
        seed, text = failed[0]
        _check(seed)  # replays here, so pytest shows the real traceback
        raise AssertionError(f"schedule seed {seed} failed in a worker ({text}) but passed "
                             f"when replayed: nondeterminism!\n{replay_hint(seed)}")
    return [out for out in outcomes if not isinstance(out, str)]


def test_random_schedules() -> None:
    seeds = _seeds()
    started = time.perf_counter()
    results = _run_all(seeds)
    elapsed = time.perf_counter() - started
    elections = sum(r.elections for r in results)
    delivered: Counter[str] = Counter()
    for r in results:
        delivered.update(r.delivered)
    print(f"{len(results)} schedules in {elapsed:.1f}s: {elections} elections, "
          f"{sum(r.acked for r in results)} acked writes, {sum(r.reads for r in results)} reads, "
          f"{sum(r.snapshots_installed for r in results)} snapshot installs, "
          f"{sum(r.conf_changes for r in results)} conf changes; delivered {dict(delivered)}")
    if len(results) >= 100:
        # A workload that silently stopped exercising a feature would still pass.
        assert elections > len(results)
        assert sum(r.snapshots_installed for r in results) > 0
        assert sum(r.conf_changes for r in results) > 0
        for kind in ("PRE_VOTE", "VOTE", "SNAP", "TIMEOUT_NOW", "READ_INDEX",
                     "READ_INDEX_RESP", "PROP", "TRANSFER_LEADER"):
            assert delivered[kind] > 0, f"no {kind} delivered in {len(results)} schedules"


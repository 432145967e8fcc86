"""Randomized fault schedules: the simulator's main safety net.

Runs `SIM_SCHEDULES` (default 1,000) seeded schedules from tests/sim/workload.py,
mixing 3- and 5-member clusters with loss, delay, duplication, reordering,
partitions, crashes (also mid-persist), leader transfers, membership changes
and snapshot installs; every schedule ends with a liveness check.

A failure names its seed; `SIM_SEED=<seed> python -m pytest tests/sim -k random`
replays exactly that schedule. Keep other test names free of "random" so
that command selects only this test.
"""

from __future__ import annotations

import os
import time
from collections import Counter

from tests.sim.workload import ScheduleResult, replay_hint, run_schedule

SCHEDULES_DEFAULT = 1000


def _seeds() -> list[int]:
    if os.environ.get("SIM_SEED"):
        return [int(os.environ["SIM_SEED"])]
    return list(range(int(os.environ.get("SIM_SCHEDULES", SCHEDULES_DEFAULT))))


def test_random_schedules() -> None:
    started = time.perf_counter()
    results: list[ScheduleResult] = []
    for seed in _seeds():
        try:
            results.append(run_schedule(seed))
        except AssertionError as exc:
            message = f"schedule seed {seed} failed: {exc}\n{replay_hint(seed)}"
            print(message)
            raise AssertionError(message) from exc
    elapsed = time.perf_counter() - started
    # Coverage, so a quietly toothless workload shows up in `-s` output and here.
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

"""`etcdlite torture` end to end: real members under faults, and the checkers' teeth.

The short run and the 5-cycle crash loop are in the default suite; the long
ones are behind the slow marker (README "Fault testing" has their figures).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import trio

from cluster.torture.crash_loop import CrashLoopConfig, run_crash_loop
from cluster.torture.nemesis import FAULTS
from cluster.torture.runner import RunConfig, run
from cluster.torture.workload import WorkloadConfig

pytestmark = pytest.mark.e2e


def quiet(_line: str) -> None:
    return


def test_short_run_with_kills_pauses_and_partitions_is_valid(tmp_path) -> None:
    cfg = RunConfig(members=3, time_s=45, faults=("kill", "pause", "partition"), seed=1234,
                    out_dir=tmp_path / "run", say=print)
    report = trio.run(run, cfg)
    print(report.text())
    assert report.ok, report.text()
    f = report.figures
    assert sum(f["faults"].values()) >= 4
    assert f["outcomes"]["ok"] > 500
    names = {r.name for r in report.results}
    assert {"linearizable", "watch", "durability", "replicas-agree",
            "sqlite-integrity"} <= names
    assert (tmp_path / "run" / "history.jsonl").exists()


def test_crash_loop_of_five_cycles_loses_no_acknowledged_write() -> None:
    result = trio.run(run_crash_loop, CrashLoopConfig(cycles=5, seed=99, say=print))
    assert result.ok, result.violations
    assert result.figures["cycles"] == 5
    assert result.figures["acknowledged"] > 200


def test_injected_stale_reads_are_caught_and_the_cli_exits_1(tmp_path) -> None:
    out = tmp_path / "bug"
    proc = subprocess.run(
        [sys.executable, "-m", "cluster", "torture", "--time", "15", "--faults", "partition",
         "--bug", "stale-reads", "--seed", "7", "--watchers", "0", "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False)
    print(proc.stdout[-3000:], proc.stderr[-2000:])
    assert proc.returncode == 1
    assert "INVALID" in proc.stdout
    assert "revision went back in time" in proc.stdout or "not linearizable" in proc.stdout
    assert list(out.glob("failing-*.txt")) or "revision-order" in proc.stdout


@pytest.mark.slow
def test_crash_loop_of_a_hundred_cycles_loses_no_acknowledged_write() -> None:
    result = trio.run(run_crash_loop, CrashLoopConfig(cycles=100, seed=100, say=print))
    assert result.ok, result.violations


@pytest.mark.slow
def test_five_members_every_fault_but_dup_for_three_minutes_is_valid(tmp_path) -> None:
    faults = tuple(f for f in FAULTS if f != "dup")
    cfg = RunConfig(members=5, time_s=180, faults=faults, seed=4321, out_dir=tmp_path / "run",
                    workload=WorkloadConfig(clients=8), say=print)
    report = trio.run(run, cfg)
    print(report.text())
    assert report.ok, report.text()


@pytest.mark.slow
def test_duplicated_peer_frames_never_apply_a_write_twice(tmp_path) -> None:
    cfg = RunConfig(members=3, time_s=30, faults=("dup",), seed=11, out_dir=tmp_path / "run",
                    say=print)
    report = trio.run(run, cfg)
    print(report.text())
    durability = next(r for r in report.results if r.name == "durability")
    assert durability.figures["applied_twice"] == 0

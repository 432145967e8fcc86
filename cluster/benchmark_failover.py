"""`etcdlite benchmark failover`: election, leader transfer and catch-up times.

These need to kill and restart members, so the command runs its OWN
throw-away cluster (ipc:// sockets under a temporary directory, default
settings otherwise: 100 ms heartbeat, 1 s election timeout, snapshot every
10,000 entries) rather than touching a cluster someone else supervises.
Every process it starts is killed when it ends, however it ends.

Three measurements, each repeated `rounds` times:

- election: kill -9 the leader; time until the survivors agree on a new
  leader, and until a put is acknowledged.
- transfer: `move_leader` to a follower; time until the call returns (the
  target leads) and until a put is acknowledged.
- catch-up: kill -9 a follower, write `catch_up_keys` keys, restart it; time
  from the restart until its applied index reaches the leader's (and, of
  that, how long the process took to answer at all). `via_snapshot` says
  whether the leader had to send a snapshot (the backlog crossed a snapshot
  and fell out of the kept log tail) rather than entries.

Times are wall-clock from the client's side and include polling (every
`poll_s`), so they are upper bounds accurate to about one poll.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cluster import benchmark_workloads as wl
from cluster.benchmark import LoadSpec, run_load
from cluster.client import Client
from cluster.config import dump_toml, local_cluster_ipc
from cluster.errors import EtcdliteError

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent
poll_s = 0.01
wait_s_max = 60.0


def wait_for(predicate: Callable[[], T | None], what: str, timeout_s: float = wait_s_max) -> T:
    """Poll until `predicate` returns something truthy (cluster errors count as "not yet")."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(EtcdliteError):
            value = predicate()
            if value:
                return value
        time.sleep(poll_s)
    raise TimeoutError(f"gave up after {timeout_s:.0f}s waiting for {what}")


class ScratchCluster:
    """Member processes of a temporary cluster; `close()` kills them all and deletes it."""

    def __init__(self, members: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="elbench-"))
        cfg = local_cluster_ipc(members, self.root)
        self.config = dataclasses.replace(cfg, data_dir=self.root / "data")
        self.config_path = self.root / "cluster.toml"
        self.config_path.write_text(dump_toml(self.config))
        self.names = [m.name for m in self.config.members]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def endpoint(self, name: str) -> str:
        return self.config.member(name).client_url

    def name_of(self, member_id: int) -> str | None:
        spec = self.config.member_by_id(member_id)
        return None if spec is None else spec.name

    def start(self, name: str) -> None:
        with open(self.root / f"{name}.log", "ab") as logf:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "cluster.member", "--config", str(self.config_path),
                 "--name", name],
                cwd=REPO, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait(timeout=10)

    def running(self) -> list[str]:
        return [n for n in self.names if n in self.procs]

    def status(self, name: str, timeout_s: float = 0.5) -> Any:
        with Client([self.endpoint(name)], timeout_s=timeout_s) as c:
            return c.status()

    def leader(self) -> str | None:
        """The leader every running member agrees on, if there is one."""
        leaders = {self.status(n).leader for n in self.running()}
        if len(leaders) != 1 or 0 in leaders:
            return None
        name = self.name_of(leaders.pop())
        return name if name in self.running() else None

    def client(self, names: list[str] | None = None, timeout_s: float = 5.0) -> Client:
        return Client([self.endpoint(n) for n in (names or self.running())], timeout_s=timeout_s)

    def close(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self.procs.clear()
        shutil.rmtree(self.root, ignore_errors=True)


def _put_once(pc: ScratchCluster, names: list[str]) -> bool:
    with pc.client(names, timeout_s=1.0) as c:
        c.put("failover-probe", "x")
    return True


def _caught_up(pc: ScratchCluster, name: str) -> bool:
    leader = pc.leader()
    if leader is None:
        return False
    return bool(pc.status(name).applied_index >= pc.status(leader).applied_index)


def measure_election(pc: ScratchCluster) -> dict[str, float]:
    old = wait_for(pc.leader, "a leader")
    _put_once(pc, pc.running())
    pc.kill(old)
    t0 = time.perf_counter()
    wait_for(lambda: (leader := pc.leader()) is not None and leader != old, "a new leader")
    leader_s = time.perf_counter() - t0
    wait_for(lambda: _put_once(pc, pc.running()), "a write after the election")
    write_s = time.perf_counter() - t0
    pc.start(old)
    wait_for(lambda: old in pc.running() and _caught_up(pc, old), f"{old} to rejoin")
    return {"new_leader_s": leader_s, "first_write_s": write_s}


def measure_transfer(pc: ScratchCluster) -> dict[str, float]:
    old = wait_for(pc.leader, "a leader")
    target = next(n for n in pc.running() if n != old)
    wait_for(lambda: _caught_up(pc, target), f"{target} to be caught up")
    t0 = time.perf_counter()
    with pc.client(timeout_s=10.0) as c:
        c.move_leader(pc.config.member(target).member_id)
    moved_s = time.perf_counter() - t0
    wait_for(lambda: _put_once(pc, pc.running()), "a write after the transfer")
    write_s = time.perf_counter() - t0
    return {"transfer_s": moved_s, "first_write_s": write_s}


def measure_catch_up(pc: ScratchCluster, keys: int) -> dict[str, float]:
    leader = wait_for(pc.leader, "a leader")
    follower = next(n for n in pc.running() if n != leader)
    pc.kill(follower)
    survivors = pc.running()
    spec = LoadSpec(tuple(pc.endpoint(n) for n in survivors), clients=16, conns=2,
                    total=keys, timeout_s=10.0)
    result = run_load(spec, wl.put_workload(wl.KeySpec(16, keys, sequential=True), 256))
    if result.errors:
        raise RuntimeError(f"writing the backlog failed: {dict(result.errors)}")
    behind = pc.status(leader).applied_index
    log_path = pc.root / f"{follower}.log"
    log_offset = log_path.stat().st_size
    pc.start(follower)
    t0 = time.perf_counter()
    wait_for(lambda: pc.status(follower, 0.2), f"{follower} to answer")
    up_s = time.perf_counter() - t0
    wait_for(lambda: pc.status(follower).applied_index >= behind, f"{follower} to catch up")
    total_s = time.perf_counter() - t0
    with log_path.open("rb") as f:  # did the leader send a snapshot or log entries?
        f.seek(log_offset)
        via_snapshot = b"installed snapshot" in f.read()
    return {"entries_behind": float(keys), "process_up_s": up_s, "caught_up_s": total_s,
            "via_snapshot": float(via_snapshot), "write_backlog_s": result.elapsed_s}


def run_failover(members: int = 3, rounds: int = 3, catch_up_keys: int = 10_000,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every measurement `rounds` times on a scratch cluster; returns the samples."""
    pc = ScratchCluster(members)
    samples: dict[str, list[dict[str, float]]] = {"election": [], "transfer": [],
                                                  "catch_up": []}
    try:
        for name in pc.names:
            pc.start(name)
        wait_for(pc.leader, "the first leader")
        measures: list[tuple[str, Callable[[], dict[str, float]]]] = [
            ("election", functools.partial(measure_election, pc)),
            ("transfer", functools.partial(measure_transfer, pc)),
            ("catch_up", functools.partial(measure_catch_up, pc, catch_up_keys)),
        ]
        for kind, measure in measures:
            for r in range(rounds):
                sample = measure()
                samples[kind].append(sample)
                if progress is not None:
                    progress(f"{kind} round {r + 1}: " + ", ".join(
                        f"{k}={v:.3f}" if k.endswith("_s") else f"{k}={v:.0f}"
                        for k, v in sample.items()))
    finally:
        pc.close()
    return {"members": members, "rounds": rounds, "catch_up_keys": catch_up_keys,
            "election_timeout_ms": pc.config.election_timeout_ms,
            "heartbeat_interval_ms": pc.config.heartbeat_interval_ms,
            "snapshot_count": pc.config.snapshot_count, "samples": samples}


def medians(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Median of every measured field, per measurement."""
    out: dict[str, dict[str, float]] = {}
    for kind, rows in result["samples"].items():
        if rows:
            out[kind] = {key: sorted(r[key] for r in rows)[len(rows) // 2] for key in rows[0]}
    return out

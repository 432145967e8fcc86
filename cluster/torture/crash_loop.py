"""`etcdlite torture --crash-loop N`: kill -9 during heavy write bursts, N times.

Each cycle: writers put unique keys as fast as they can; part-way through the
burst a victim is killed with SIGKILL: a random follower, the leader, or (every
fifth cycle) every member at once, so that nothing survives but what was
fsynced. The burst goes on against the survivors, then the victims restart and
must serve again, the members must agree, and every member must hold every
write acknowledged in that cycle, with its value, and no write that definitely
failed. At the end all cycles' keys are checked once more on every member.

Acknowledged means durable: a single lost acknowledged write, or a member that
does not come back, is a violation.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from cluster.client_async import AsyncClient
from cluster.errors import EtcdliteError
from cluster.torture.history import CheckResult, Outcome, outcome_of
from cluster.torture.procs import TortureCluster

restart_s_max = 30.0


@dataclass
class CrashLoopConfig:
    cycles: int = 100
    members: int = 3
    writers: int = 8
    burst_s: float = 1.5
    seed: int = field(default_factory=lambda: random.randrange(1 << 32))
    say: Callable[[str], None] = print


@dataclass
class _Cycle:
    acked: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    indeterminate: int = 0


async def _writer(c: AsyncClient, prefix: str, cycle: _Cycle, stop_at: float) -> None:
    i = 0
    while time.monotonic() < stop_at:
        key, value = f"{prefix}{i}", f"v{i}-{time.monotonic():.6f}"
        i += 1
        try:
            await c.put(key, value)
            cycle.acked[key] = value
        except EtcdliteError as exc:
            if outcome_of(exc) is Outcome.FAIL:
                cycle.failed[key] = value
            else:
                cycle.indeterminate += 1


async def _read_all(cluster: TortureCluster, name: str, prefix: str) -> dict[str, str] | None:
    try:
        async with AsyncClient([cluster.endpoint(name)], timeout_s=10.0) as c:
            r = await c.get(prefix, prefix=True, serializable=True)
    except EtcdliteError:
        return None
    return {kv.key.decode(): kv.value.decode() for kv in r.kvs}


async def _wait_caught_up(cluster: TortureCluster, timeout_s: float) -> bool:
    with trio.move_on_after(timeout_s):
        while True:
            statuses = [await cluster.status(n, 1.0) for n in cluster.names]
            if all(statuses) and len({s.applied_index for s in statuses if s}) == 1 and \
                    len({s.leader for s in statuses if s} - {0}) == 1:
                return True
            await trio.sleep(0.1)
    return False


async def run_crash_loop(cfg: CrashLoopConfig) -> CheckResult:
    """Run the cycles; the result's violations list every lost write or stuck member."""
    rng = random.Random(cfg.seed)
    res = CheckResult("crash-loop")
    acked_total: dict[str, str] = {}
    indeterminate = failed = 0
    restarts: list[float] = []
    with TortureCluster(cfg.members, snapshot_count=5000) as cluster:
        cfg.say(f"crash loop: seed {cfg.seed}, {cfg.cycles} cycles, {cfg.members} members "
                f"under {cluster.root}")
        cluster.start_all()
        if await cluster.wait_for_leader(30) is None:
            res.violations.append("no leader at the start:\n" + cluster.logs_tail())
            return res
        started = time.monotonic()
        for n in range(cfg.cycles):
            prefix = f"c/{n:04d}/"
            cycle = _Cycle()
            leader = await cluster.leader()
            if n % 5 == 4:
                victims, what = cluster.names, "every member"
            elif leader is not None and rng.random() < 0.5:
                victims, what = [leader], "the leader"
            else:
                victims = [rng.choice([m for m in cluster.names if m != leader])]
                what = "a follower"
            burst_end = time.monotonic() + cfg.burst_s
            async with trio.open_nursery() as nursery:
                clients = [AsyncClient(rng.sample(cluster.endpoints(), len(cluster.names)),
                                       timeout_s=1.0) for _ in range(cfg.writers)]
                for w, c in enumerate(clients):
                    nursery.start_soon(_writer, c, f"{prefix}{w}/", cycle, burst_end)
                await trio.sleep(rng.uniform(0.3, 0.8) * cfg.burst_s)
                for v in victims:
                    cluster.kill(v)
            for c in clients:
                c.close()
            restart_at = time.monotonic()
            for v in victims:
                cluster.start(v)
            if not await _wait_caught_up(cluster, restart_s_max):
                res.violations.append(f"cycle {n}: members did not come back and agree within "
                                      f"{restart_s_max:.0f} s after killing {what}\n"
                                      + cluster.logs_tail(1500))
                break
            restarts.append(time.monotonic() - restart_at)
            lost = await _check_cycle(cluster, prefix, cycle)
            res.checked += len(cycle.acked)
            res.violations += [f"cycle {n} ({what} killed): {line}" for line in lost]
            acked_total |= cycle.acked
            indeterminate += cycle.indeterminate
            failed += len(cycle.failed)
            cfg.say(f"cycle {n + 1}/{cfg.cycles}: killed {what} ({','.join(victims)}); "
                    f"{len(cycle.acked)} acked, {cycle.indeterminate} indeterminate, "
                    f"back in {restarts[-1]:.2f} s" + (f"; {len(lost)} LOST" if lost else ""))
            if lost:
                break
        for name in cluster.names:
            have = await _read_all(cluster, name, "c/")
            missing = [k for k, v in acked_total.items() if have is None or have.get(k) != v]
            if missing:
                res.violations.append(f"{name} lacks {len(missing)} acknowledged writes at "
                                      f"the end, e.g. {missing[:5]}")
        res.figures |= {
            "cycles": len(restarts), "acknowledged": len(acked_total),
            "indeterminate": indeterminate, "failed": failed,
            "restart_to_agreement_s_max": round(max(restarts, default=0.0), 2),
            "writes_per_s": round(len(acked_total) / (time.monotonic() - started), 1)}
    return res


async def _check_cycle(cluster: TortureCluster, prefix: str, cycle: _Cycle) -> list[str]:
    """Every member holds every acknowledged write and no definitely failed one."""
    problems = []
    for name in cluster.names:
        have = await _read_all(cluster, name, prefix)
        if have is None:
            problems.append(f"{name} could not be read")
            continue
        lost = {k: v for k, v in cycle.acked.items() if have.get(k) != v}
        if lost:
            sample = ", ".join(f"{k}={v} (has {have.get(k)})" for k, v in list(lost.items())[:5])
            problems.append(f"{name} lost {len(lost)} acknowledged writes: {sample}")
        ghosts = [k for k, v in cycle.failed.items() if have.get(k) == v]
        if ghosts:
            problems.append(f"{name} holds {len(ghosts)} writes that failed: {ghosts[:5]}")
    return problems

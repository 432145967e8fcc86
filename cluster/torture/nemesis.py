"""The nemesis: one fault at a time, held for a while, then healed, and recorded.

Faults (the names `--faults` takes; `all` is every one of them):

- kill: kill -9 a random member (the leader half of the time), restart it after the hold.
- kill-all: kill -9 every member at once, restart them all (acknowledged means fsynced).
- pause: SIGSTOP a random member (the leader half of the time), SIGCONT after the hold.
- partition: cut the peer links between two sides (one member alone, the leader
  half of the time, or a random minority), through the transport's fault control
  files; clients still reach every member.
- link: lossy, slow, reordering peer links (random drop/delay/jitter rules).
- dup: peer frames delivered twice (and a little late).
- slow-disk: every WAL commit of one member, or of all, stalls 20-100 ms.
- churn: remove a follower and add a fresh member under a new name (a removed
  member id can never rejoin), then promote it once it has caught up.

Between faults the cluster gets a calm period, so that the history has both
healthy and faulty stretches and the checkers see recovery too.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from actors.fault_injection import FaultPlan, LinkRule
from cluster.client_async import AsyncClient
from cluster.errors import EtcdliteError
from cluster.torture.history import Fault
from cluster.torture.procs import TortureCluster

log = logging.getLogger("etcdlite.torture")

FAULTS = ("kill", "kill-all", "pause", "partition", "link", "dup", "slow-disk", "churn")


def parse_faults(text: str) -> tuple[str, ...]:
    """`all`, `none` or a comma-separated list of FAULTS."""
    if text in ("all", ""):
        return FAULTS
    if text == "none":
        return ()
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    return names


@dataclass
class Nemesis:
    cluster: TortureCluster
    faults: tuple[str, ...]
    rng: random.Random
    calm_s: tuple[float, float] = (1.0, 3.0)
    hold_s: tuple[float, float] = (2.0, 5.0)
    log_line: Callable[[str], None] = print
    members_changed: Callable[[], None] = lambda: None
    injected: list[Fault] = field(default_factory=list)
    _churned: int = 0

    async def run_until(self, stop_at: float) -> None:
        """Inject faults until `stop_at`; always leaves the cluster healed."""
        if not self.faults:
            return
        try:
            while True:
                await trio.sleep(self.rng.uniform(*self.calm_s))
                hold = self.rng.uniform(*self.hold_s)
                if time.monotonic() + hold >= stop_at:
                    break
                kind = self.rng.choice(self.faults)
                await self.inject(kind, hold)
        finally:
            self.cluster.heal()

    async def inject(self, kind: str, hold_s: float) -> None:
        start = time.monotonic()
        target, detail, heal = await getattr(self, "_" + kind.replace("-", "_"))()
        self.log_line(f"nemesis: {kind} {target} {detail}".rstrip())
        await trio.sleep(hold_s)
        await heal()
        self.injected.append(Fault(kind, target, start, time.monotonic(), detail))
        self.log_line(f"nemesis: healed {kind} {target}")

    async def _victim(self) -> str:
        """The leader half of the time (the interesting case), else any running member."""
        running = self.cluster.running()
        if self.rng.random() < 0.5:
            leader = await self.cluster.leader()
            if leader is not None:
                return leader
        return self.rng.choice(running)

    async def _kill(self) -> tuple[str, str, Callable[[], Awaitable[None]]]:
        name = await self._victim()
        self.cluster.kill(name)

        async def heal() -> None:
            self.cluster.start(name)
        return name, "kill -9", heal

    async def _kill_all(self) -> tuple[str, str, Callable[[], Awaitable[None]]]:
        names = self.cluster.running()
        for name in names:
            self.cluster.kill(name)

        async def heal() -> None:
            self.cluster.start_all()
        return ",".join(names), "kill -9 every member", heal

    async def _pause(self) -> tuple[str, str, Callable[[], Awaitable[None]]]:
        name = await self._victim()
        self.cluster.pause(name)

        async def heal() -> None:
            self.cluster.resume(name)
        return name, "SIGSTOP", heal

    async def _partition(self) -> tuple[str, str, Callable[[], Awaitable[None]]]:
        names = self.cluster.names
        minority = [await self._victim()]
        if len(names) >= 5 and self.rng.random() < 0.5:
            others = [n for n in names if n not in minority]
            minority.append(self.rng.choice(others))
        majority = [n for n in names if n not in minority]
        for side, other in ((minority, majority), (majority, minority)):
            ids = frozenset(self.cluster.member_id(n) for n in other)
            plan = FaultPlan(links={pid: LinkRule(drop=1.0) for pid in ids}, block_from=ids)
            for name in side:
                self.cluster.set_faults(name, plan)

        async def heal() -> None:
            self.cluster.clear_faults()
        return ",".join(minority), f"partitioned from {','.join(majority)}", heal

    async def _link(self) -> tuple[str, str, Callable[[], Awaitable[None]]]:
        rng = self.rng
        names = self.cluster.names
        for name in names:
            links = {}
            for peer in names:
                if peer != name and rng.random() < 0.6:
                    links[self.cluster.member_id(peer)] = LinkRule(
                        drop=rng.choice((0.0, 0.1, 0.3)), delay_s=rng.uniform(0, 0.1),
                        jitter_s=rng.uniform(0, 0.1))
            self.cluster.set_faults(name, FaultPlan(links=links))

        async def heal() -> None:
            self.cluster.clear_faults()
        return "links", "drop/delay/reorder", heal

    async def _dup(self) -> tuple[str, str, Callable[[], Awaitable[None]]]:
        """Every peer frame may arrive twice (and late): what Raft must shrug off. Known to
        apply forwarded proposals twice (see README "Fault testing")."""
        names = self.cluster.names
        p = self.rng.choice((0.1, 0.3))
        for name in names:
            links = {self.cluster.member_id(peer): LinkRule(dup=p, jitter_s=0.02)
                     for peer in names if peer != name}
            self.cluster.set_faults(name, FaultPlan(links=links))

        async def heal() -> None:
            self.cluster.clear_faults()
        return "links", f"duplicate {p:.0%} of peer frames", heal

    async def _slow_disk(self) -> tuple[str, str, Callable[[], Awaitable[None]]]:
        delay = self.rng.uniform(0.02, 0.1)
        names = self.cluster.names if self.rng.random() < 0.3 else [await self._victim()]
        for name in names:
            self.cluster.set_faults(name, FaultPlan(fsync_delay_s=delay))

        async def heal() -> None:
            self.cluster.clear_faults()
        return ",".join(names), f"fsync +{delay * 1000:.0f} ms", heal

    async def _churn(self) -> tuple[str, str, Callable[[], Awaitable[None]]]:
        """Remove a follower, then add a new member (new name: removed ids never rejoin)."""
        cluster = self.cluster
        leader = await cluster.wait_for_leader(10.0)
        followers = [n for n in cluster.running() if n != leader]
        if leader is None or not followers:
            return "-", "skipped (no leader)", _nothing
        victim = self.rng.choice(followers)
        endpoints = [cluster.endpoint(n) for n in cluster.running() if n != victim]
        try:
            async with AsyncClient(endpoints, timeout_s=5.0) as c:
                await c.member_remove(cluster.member_id(victim))
        except EtcdliteError as exc:
            return victim, f"remove failed ({exc.code.value}); skipped", _nothing
        cluster.removed.add(victim)
        cluster.kill(victim)
        self._churned += 1
        name = f"n{self._churned}"
        spec = cluster.add_member_spec(name)
        try:
            async with AsyncClient(endpoints, timeout_s=5.0) as c:
                await c.member_add(name, [spec.peer_url], [spec.client_url], is_learner=True)
        except EtcdliteError as exc:
            return victim, f"removed; adding {name} failed ({exc.code.value})", _nothing
        cluster.start(name)
        self.members_changed()

        async def heal() -> None:
            await _promote(cluster, endpoints, spec.member_id)
        return victim, f"removed; added {name} as a learner", heal


async def _nothing() -> None:
    return


async def _promote(cluster: TortureCluster, endpoints: list[str], member_id: int) -> None:
    """Promote the learner once it has caught up (the leader refuses before that)."""
    with trio.move_on_after(30):
        while True:
            try:
                async with AsyncClient(endpoints, timeout_s=2.0) as c:
                    await c.member_promote(member_id)
                return
            except EtcdliteError:
                await trio.sleep(0.3)
    log.warning("learner %x was not promoted within 30 s", member_id)

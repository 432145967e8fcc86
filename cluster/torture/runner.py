"""One torture run, start to verdict: cluster up, workload + nemesis, heal, gather, check.

The order at the end matters. Faults are healed and every member must catch
up (same applied index) before anything is judged; then the final linearizable
reads are made (part of the history, so a lost write shows up as a stale read);
then the watchers must reach the last revision; then each member's full MVCC
history, HashKV and live keys are gathered; last, every member is killed -9
and each SQLite file is checked, so the files judged are crash images.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from cluster.client_async import AsyncClient
from cluster.errors import EtcdliteError
from cluster.torture import checker_durability as dur
from cluster.torture.checker_linear import check_linearizable, check_revision_order
from cluster.torture.checker_watch import check_watches
from cluster.torture.final_state import MvccHistory, fetch_history
from cluster.torture.history import KV, CheckResult, F, History
from cluster.torture.nemesis import Nemesis
from cluster.torture.procs import TortureCluster
from cluster.torture.report import Report, figures_of
from cluster.torture.workload import (
    PREFIX,
    Client,
    EndpointBook,
    Recorder,
    Watcher,
    WorkloadConfig,
    key_name,
)

converge_s_max = 60.0
"""After healing, how long members may take to agree before it counts as a failure."""


class RunAborted(Exception):
    """The run could not get going (no leader at the start): no verdict either way."""


@dataclass
class RunConfig:
    members: int = 3
    time_s: float = 60.0
    faults: tuple[str, ...] = ("kill", "pause", "partition")
    seed: int = field(default_factory=lambda: random.randrange(1 << 32))
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    bug: str = ""
    keep: bool = False
    out_dir: Path | None = None
    snapshot_count: int = 2000
    say: Callable[[str], None] = print


async def run(cfg: RunConfig) -> Report:
    """Run once; the returned report carries every checker's result and the figures."""
    rng = random.Random(cfg.seed)
    history = History(meta={"seed": cfg.seed, "members": cfg.members, "time_s": cfg.time_s,
                            "faults": list(cfg.faults), "bug": cfg.bug})
    extra: list[CheckResult] = []
    with TortureCluster(cfg.members, bug=cfg.bug, keep=cfg.keep,
                        snapshot_count=cfg.snapshot_count) as cluster:
        cfg.say(f"torture: seed {cfg.seed}, {cfg.members} members under {cluster.root}, "
                f"{cfg.time_s:.0f} s, faults {','.join(cfg.faults) or 'none'}"
                + (f", BUG {cfg.bug}" if cfg.bug else ""))
        cluster.start_all()
        if await cluster.wait_for_leader(30) is None:
            raise RunAborted("no leader within 30 s of starting the cluster:\n"
                             + cluster.logs_tail())
        rec = Recorder(history, cfg.workload.clients)
        book = EndpointBook(cluster.endpoints())
        nemesis = Nemesis(cluster, cfg.faults, random.Random(rng.random()), log_line=cfg.say,
                          members_changed=lambda: book.update(cluster.endpoints()))
        watchers = [Watcher(i, rec, book, cfg.workload.timeout_s,
                            random.Random(rng.random())) for i in range(cfg.workload.watchers)]
        started = time.monotonic()
        async with trio.open_nursery() as watching:
            for w in watchers:
                watching.start_soon(w.run)
            stop_at = started + cfg.time_s
            async with trio.open_nursery() as work:
                for _ in range(cfg.workload.clients):
                    client = Client(rec, book, cfg.workload, random.Random(rng.random()))
                    work.start_soon(client.run_until, stop_at)
                work.start_soon(nemesis.run_until, stop_at)
            history.faults = nemesis.injected
            history.meta["workload_s"] = time.monotonic() - started
            cfg.say("torture: workload done, faults healed; waiting for the members to agree")
            converged = await _converge(cluster)
            if converged is None:
                extra.append(CheckResult("converged", violations=[
                    f"members did not agree within {converge_s_max:.0f} s of healing"]))
            book.update(cluster.endpoints())
            final = Client(rec, book, cfg.workload, random.Random(0))
            for i in range(cfg.workload.keys):
                await final.one(F.GET, key_name(i))
            final.client.close()
            final_rev = (await _converge(cluster) or 0)
            for w in watchers:
                await w.wait_caught_up(final_rev, 30.0)
            watching.cancel_scope.cancel()
        members = await _gather(cluster, final_rev)
        for name in cluster.running():
            cluster.kill(name)
        integrity = _integrity(cluster)
        logs = cluster.logs_tail(20000)
    history.meta["final_revision"] = final_rev
    history.truth = next((list(m.history) for m in members if not m.error), [])
    report = check(history, members, integrity, extra)
    out_dir = cfg.out_dir or (None if report.ok else Path(f"torture-{cfg.seed}"))
    if out_dir is not None:
        report.save(out_dir, history, logs)
        report.saved_to = out_dir
    return report


def check(history: History, members: list[dur.MemberFinal], integrity: dict[str, str],
          extra: list[CheckResult] | None = None) -> Report:
    """Run every checker over a finished run (also usable on a saved history)."""
    results = list(extra or [])
    results.append(dur.check_agreement(members))
    healthy = [m for m in members if not m.error]
    hist = MvccHistory(healthy[0].history if healthy else ())
    linear = check_linearizable(history.ops, hist if healthy else None)
    results += [linear.result, check_revision_order(history.ops)]
    if healthy:
        results += [dur.check_durability(history.ops, hist, healthy[0].live),
                    dur.check_reads(history.ops, hist)]
        if history.watches:
            results.append(check_watches(history.watches, hist, history.ops, PREFIX))
    results.append(dur.check_integrity(integrity))
    return Report(results, figures_of(history), linear.failing)


def recheck(path: Path) -> Report:
    """Run the checkers again on a saved history.jsonl (agreement and SQLite integrity
    were judged during the run and are not repeated)."""
    history = History.load(path)
    truth = dur.MemberFinal("saved", history.meta.get("final_revision", 0),
                            tuple(history.truth), None, {})
    report = check(history, [truth] if history.truth else [], {})
    report.results = [r for r in report.results
                      if r.name not in ("replicas-agree", "sqlite-integrity", "durability")
                      ] + [dur.check_durability(history.ops, MvccHistory(history.truth))]
    return report


async def _converge(cluster: TortureCluster) -> int | None:
    """Wait for one leader and every member at the same applied index; the revision."""
    with trio.move_on_after(converge_s_max):
        while True:
            statuses = [await cluster.status(n, 1.0) for n in cluster.names]
            known = [s for s in statuses if s is not None]
            if len(known) == len(statuses) and known:
                applied = {s.applied_index for s in known}
                leaders = {s.leader for s in known}
                if len(applied) == 1 and len(leaders) == 1 and 0 not in leaders:
                    return known[0].revision
            await trio.sleep(0.2)
    return None


async def _gather(cluster: TortureCluster, revision: int) -> list[dur.MemberFinal]:
    members = []
    for name in cluster.names:
        endpoint = cluster.endpoint(name)
        try:
            events = await fetch_history(endpoint, revision)
            async with AsyncClient([endpoint], timeout_s=10.0) as c:
                hashed = await c.hash_kv(endpoint, revision)
                live = await c.get(PREFIX, prefix=True, serializable=True)
        except EtcdliteError as exc:
            members.append(dur.MemberFinal(name, -1, (), None, {}, error=str(exc)))
            continue
        members.append(dur.MemberFinal(
            name, live.header.revision, tuple(events), hashed.hash,
            {kv.key.decode(): KV(kv.key.decode(), kv.value.decode(), kv.mod_revision, kv.lease)
             for kv in live.kvs}))
    return members


def _integrity(cluster: TortureCluster) -> dict[str, str]:
    """`PRAGMA integrity_check` of every SQLite file of every data dir (crash images)."""
    out = {}
    for db in sorted(cluster.config.data_dir.glob("*/*.db")):
        try:
            conn = sqlite3.connect(db)
            try:
                rows = conn.execute("PRAGMA integrity_check").fetchall()
            finally:
                conn.close()
            out[str(db.relative_to(cluster.root))] = "; ".join(str(r[0]) for r in rows)
        except sqlite3.Error as exc:
            out[str(db.relative_to(cluster.root))] = f"cannot open: {exc}"
    return out

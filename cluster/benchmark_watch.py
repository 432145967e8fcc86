"""`etcdlite benchmark watch-latency`: how long a put takes to reach its watchers.

`watchers` watches on one key are opened (spread over the endpoints, as the
load engine spreads connections), then `put_total` puts of that key are sent
at `put_rate` per second. A sample is one (put, watcher) pair: from the
moment the put was sent to the moment that watcher's iterator yielded the
event, so it includes commit, apply, the long-poll wake-up and the reply.
Puts and events are matched by revision after the run, so matching costs
nothing while measuring.

A watch here is a long-poll (cluster.client_watch): after each reply the
watcher polls again, so events landing between two polls arrive together
with the next reply; the figures show what a user of `AsyncClient.watch`
gets, which is the point. Runs under trio only: watches are trio iterators.
"""

from __future__ import annotations

import resource
import time
from collections import Counter
from dataclasses import dataclass, field

import trio

from cluster.benchmark import error_kind
from cluster.benchmark_workloads import value_of
from cluster.client_async import AsyncClient
from cluster.errors import EtcdliteError

deliver_wait_s_max = 10.0
"""After the last put, how long watchers may take to report it before missing
events are counted as errors."""


@dataclass(frozen=True, slots=True)
class WatchLoad:
    endpoints: tuple[str, ...]
    watchers: int = 10
    put_total: int = 1000
    put_rate: float = 100.0
    key: bytes = b"watch-latency"
    val_size: int = 256
    timeout_s: float = 5.0


@dataclass(slots=True)
class WatchResult:
    latencies_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    client_cpu_s: float = 0.0
    puts_acknowledged: int = 0


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def match_latencies(put_started: dict[int, float], seen: list[dict[int, float]]
                    ) -> tuple[list[float], int]:
    """Pair each acknowledged put (revision -> send time) with each watcher's
    receive time of that revision. Returns the latencies and how many
    (put, watcher) pairs never arrived."""
    latencies, missing = [], 0
    for received in seen:
        for revision, sent in put_started.items():
            got = received.get(revision)
            if got is None:
                missing += 1
            else:
                latencies.append(got - sent)
    return latencies, missing


async def _run(load: WatchLoad) -> WatchResult:
    out = WatchResult()
    value = value_of(load.val_size)
    seen: list[dict[int, float]] = [{} for _ in range(load.watchers)]
    put_started: dict[int, float] = {}
    n_endpoints = len(load.endpoints)
    clients = [AsyncClient(load.endpoints[i % n_endpoints:] + load.endpoints[:i % n_endpoints],
                           timeout_s=load.timeout_s) for i in range(load.watchers)]
    writer = AsyncClient(load.endpoints, timeout_s=load.timeout_s)
    watches = [c.watch(load.key) for c in clients]
    final_revision = 0  # set once every put is answered; then watchers may finish
    all_seen = trio.Event()

    async def follow(index: int) -> None:
        received = seen[index]
        async for response in watches[index]:
            now = time.perf_counter()
            for event in response.events:
                received[event.kv.mod_revision] = now
            if final_revision and all(final_revision in s for s in seen):
                all_seen.set()

    try:
        for w in watches:
            await w.start()  # every watch is in place before the first put
        cpu0 = _cpu_s()
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for i in range(load.watchers):
                nursery.start_soon(follow, i)
            for i in range(load.put_total):
                delay = started + i / load.put_rate - time.perf_counter()
                if delay > 0:
                    await trio.sleep(delay)
                t0 = time.perf_counter()
                try:
                    result = await writer.put(load.key, value)
                except EtcdliteError as exc:
                    out.errors[f"put:{error_kind(exc)}"] += 1
                    continue
                put_started[result.header.revision] = t0
            out.puts_acknowledged = len(put_started)
            final_revision = max(put_started, default=0)
            if not final_revision or all(final_revision in s for s in seen):
                all_seen.set()
            with trio.move_on_after(deliver_wait_s_max):
                await all_seen.wait()
            for w in watches:
                w.cancel()
            nursery.cancel_scope.cancel()
        out.elapsed_s = time.perf_counter() - started
        out.client_cpu_s = _cpu_s() - cpu0
    finally:
        for w in watches:
            w.cancel()
        for c in (*clients, writer):
            c.close()
    out.latencies_s, missing = match_latencies(put_started, seen)
    if missing:
        out.errors["event_not_delivered"] += missing
    return out


def run_watch_latency(load: WatchLoad) -> WatchResult:
    """Blocking entry point for the CLI."""
    if load.watchers < 1 or load.put_total < 1 or load.put_rate <= 0:
        raise ValueError("watchers, put total and put rate must be positive")
    result: WatchResult = trio.run(_run, load)
    return result

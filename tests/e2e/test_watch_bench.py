"""Watch figures on a real 3-member cluster (slow: run with `-m slow -s`).

Measures events/s delivered to one watcher catching up from history and
following live writers, and the latency from a put's start to its event
arriving at a watcher on another member.
"""

from __future__ import annotations

import statistics
import threading
import time

import pytest

from cluster.client import Op
from tests.e2e.harness import ProcessCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_watch_throughput_and_latency(make_cluster) -> None:
    pc: ProcessCluster = make_cluster(3)
    pc.wait_for_leader(15)
    leader = pc.wait_for_leader(15)
    follower = next(n for n in pc.names if n != leader)

    # Catch-up from history: 200 txns of 50 puts = 10,000 events in 200 revisions.
    with pc.client() as c:
        start = c.put("bench/start", "x").header.revision
        for t in range(200):
            c.txn([], [Op.put(f"bench/{t}/{i}", "v" * 100) for i in range(50)], [])
        last = c.get("bench/start").header.revision
    with pc.client([follower]) as c, c.watch("bench/", prefix=True, start_revision=start) as w:
        began = time.monotonic()
        count = 0
        for resp in w:
            count += len(resp.events)
            if w.next_revision > last:
                break
        catch_up_s = time.monotonic() - began
    print(f"\ncatch-up: {count} events in {catch_up_s:.2f}s = {count / catch_up_s:,.0f} events/s")

    # The same writers without any watcher, for comparison.
    plain: list[int] = []

    def plain_writer(t: int) -> None:
        with pc.client([leader]) as c:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                plain.append(c.put(f"plain/{t}", "x").header.revision)

    threads = [threading.Thread(target=plain_writer, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"no watcher: 8 writers do {len(plain) / 3:,.0f} puts/s")

    # Live: 8 writer threads, one watcher on a follower.
    received: dict[int, float] = {}
    stop = threading.Event()
    acked: list[int] = []

    def writer(t: int) -> None:
        with pc.client([leader]) as c:
            i = 0
            while not stop.is_set():
                acked.append(c.put(f"live/{t}/{i % 10}", "x").header.revision)
                i += 1

    with pc.client([follower]) as c, c.watch("live/", prefix=True, progress_notify=True,
                                              poll_timeout_s=0.5) as w:
        threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
        began = time.monotonic()
        for t in threads:
            t.start()
        for resp in w:
            now = time.monotonic()
            for e in resp.events:
                received[e.kv.mod_revision] = now
            if now - began > 5:
                stop.set()
            if stop.is_set() and not any(t.is_alive() for t in threads) \
                    and w.next_revision > max(acked):
                break
        live_s = max(received.values()) - began
    assert set(acked) <= set(received)
    print(f"live: {len(received)} events in {live_s:.2f}s = {len(received) / live_s:,.0f}"
          " events/s (8 writers)")

    # Latency: one writer, one put at a time; the watcher is on another member.
    arrivals: dict[int, float] = {}
    with pc.client([follower]) as c, c.watch("lat", progress_notify=True,
                                              poll_timeout_s=0.5) as w:
        done = threading.Event()

        def follow() -> None:
            for resp in w:
                for e in resp.events:
                    arrivals[e.kv.mod_revision] = time.monotonic()
                if done.is_set():
                    return

        follower_thread = threading.Thread(target=follow)
        follower_thread.start()
        sent: dict[int, float] = {}
        acks: dict[int, float] = {}
        with pc.client([leader]) as wc:
            for i in range(200):
                t0 = time.monotonic()
                rev = wc.put("lat", str(i)).header.revision
                sent[rev], acks[rev] = t0, time.monotonic()
                time.sleep(0.005)
        time.sleep(0.2)
        done.set()
        follower_thread.join(timeout=5)
    lat_ms = sorted((arrivals[r] - t0) * 1000 for r, t0 in sent.items() if r in arrivals)
    ack_ms = sorted((acks[r] - t0) * 1000 for r, t0 in sent.items())
    print(f"put start -> put acknowledged: p50 {statistics.median(ack_ms):.1f} ms")
    assert len(lat_ms) == len(sent)
    print(f"put start -> event at a watcher on a follower: p50 {statistics.median(lat_ms):.1f} ms,"
          f" p99 {lat_ms[int(len(lat_ms) * 0.99) - 1]:.1f} ms")

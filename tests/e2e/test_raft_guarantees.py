"""Pre-vote under a paused follower, and linearizable reads at followers (real processes)."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from tests.e2e.harness import wait_until

pytestmark = pytest.mark.e2e


def test_paused_follower_rejoining_does_not_disrupt_the_leader(make_cluster) -> None:
    pc = make_cluster(3)
    leader = pc.wait_for_leader(15)
    term = pc.status(leader).term
    follower = next(n for n in pc.names if n != leader)
    pc.kill(follower, signal.SIGSTOP)
    try:
        with pc.client([leader]) as c:
            deadline = time.monotonic() + 5
            i = 0
            while time.monotonic() < deadline:  # keep the leader busy for 5 s
                c.put(f"p/{i}", "x")
                i += 1
    finally:
        pc.kill(follower, signal.SIGCONT)
    wait_until(lambda: pc.status(follower).applied_index >= pc.status(leader).applied_index,
               10, "the paused follower to catch up")
    assert pc.leader() == leader
    assert {pc.status(n).term for n in pc.names} == {term}, "pre-vote failed: term moved"


def test_linearizable_follower_reads_never_go_back_in_time(make_cluster) -> None:
    """A read that starts after a write was acknowledged sees it (or something newer)."""
    pc = make_cluster(3)
    leader = pc.wait_for_leader(15)
    followers = [n for n in pc.names if n != leader]
    last_acked = [0]
    stop = threading.Event()
    violations: list[str] = []

    def writer() -> None:
        with pc.client([leader]) as c:
            i = 1
            while not stop.is_set():
                c.put("counter", str(i))
                last_acked[0] = i
                i += 1

    def reader(name: str) -> None:
        with pc.client([name]) as c:
            while not stop.is_set():
                floor = last_acked[0]
                r = c.get("counter")
                seen = int(r.kvs[0].value) if r.kvs else 0
                if seen < floor:
                    violations.append(f"{name} read {seen} after {floor} was acknowledged")

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader, args=(n,)) for n in followers]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: last_acked[0] >= 300, 30, "300 acknowledged writes")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert not violations, violations[:5]

"""Watch on real 3-member clusters: one test per guarantee (etcd's watch API guarantees).

Ordered, unique, reliable, atomic, resumable, bookmarkable, plus prev_kv,
filters, compaction, a slow watcher, and a kill -9 of the watcher's member.
Tests that do not compact or kill share one cluster (each on its own keys).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import trio

from cluster import limits
from cluster.client import AsyncClient, Compare, Event, Op, Watch, WatchResponse
from cluster.errors import EtcdliteError, TimeoutError_
from tests.e2e.harness import ProcessCluster

pytestmark = pytest.mark.e2e

POLL_S = 0.5
"""Short long-polls, so idle watches report progress (and tests stop) quickly."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[ProcessCluster]:
    pc = ProcessCluster(3)
    try:
        pc.start_all()
        pc.wait_for_leader(15)
        yield pc
    finally:
        pc.close()


def drain(watch: Watch, until_revision: int, timeout_s: float = 10.0
          ) -> tuple[list[Event], list[WatchResponse]]:
    """Every event up to `until_revision` (the watch must report progress)."""
    events: list[Event] = []
    responses: list[WatchResponse] = []
    deadline = time.monotonic() + timeout_s
    for response in watch:
        responses.append(response)
        events.extend(response.events)
        if watch.next_revision > until_revision:
            return events, responses
        assert time.monotonic() < deadline, f"stuck at {watch.next_revision} < {until_revision}"
    raise AssertionError("watch ended early")


def write_puts(pc: ProcessCluster, prefix: str, count: int, keys: int = 10) -> list[int]:
    with pc.client() as c:
        return [c.put(f"{prefix}{i % keys}", f"v{i}").header.revision for i in range(count)]


def test_events_arrive_in_strictly_increasing_revision_order(cluster: ProcessCluster) -> None:
    with cluster.client() as c, c.watch("ord/", prefix=True, progress_notify=True,
                                         poll_timeout_s=POLL_S) as w:
        revisions = write_puts(cluster, "ord/", 200)
        events, _ = drain(w, revisions[-1])
    seen = [e.kv.mod_revision for e in events]
    assert seen == sorted(set(seen))
    assert seen == revisions


def test_no_event_is_delivered_twice_across_many_polls(cluster: ProcessCluster) -> None:
    # A concurrent writer and short polls: many replies, some empty, some mid-burst.
    with cluster.client() as c, c.watch("uniq/", prefix=True, progress_notify=True,
                                         poll_timeout_s=0.05) as w:
        written: list[int] = []
        writer = threading.Thread(
            target=lambda: written.extend(write_puts(cluster, "uniq/", 300, 3)))
        writer.start()
        events: list[Event] = []
        responses = 0
        deadline = time.monotonic() + 20
        for response in w:  # consumed while the writer writes
            responses += 1
            events.extend(response.events)
            if written and w.next_revision > written[-1]:
                break
            assert time.monotonic() < deadline
        writer.join(timeout=30)
    ids = [(e.kv.key, e.kv.mod_revision) for e in events]
    assert len(ids) == len(set(ids)) == 300
    assert responses > 10


def test_every_revision_written_in_the_range_is_delivered(cluster: ProcessCluster) -> None:
    with cluster.client() as c:
        start = c.put("rel/0", "first").header.revision
        written = {start}
        for i in range(100):
            written.add(c.put(f"rel/{i % 7}", str(i)).header.revision)
            c.put("elsewhere", str(i))  # revisions outside the range leave gaps, not losses
            if i % 10 == 0:
                written.add(c.delete(f"rel/{i % 7}").header.revision)
        with c.watch("rel/", prefix=True, start_revision=start, progress_notify=True,
                     poll_timeout_s=POLL_S) as w:
            events, _ = drain(w, max(written))
    assert {e.kv.mod_revision for e in events} == written


def test_a_txn_arrives_as_one_revision_in_one_response(cluster: ProcessCluster) -> None:
    with cluster.client() as c, c.watch("atom/", prefix=True, progress_notify=True,
                                         poll_timeout_s=POLL_S) as w:
        c.put("atom/x", "before")
        r = c.txn([Compare.version("atom/a", "=", 0)],
                  [Op.put("atom/a", "1"), Op.put("atom/b", "2"), Op.delete("atom/x")], [])
        assert r.succeeded
        _, responses = drain(w, r.header.revision)
    with_txn = [resp for resp in responses
                if any(e.kv.mod_revision == r.header.revision for e in resp.events)]
    assert len(with_txn) == 1
    txn_events = [e for e in with_txn[0].events if e.kv.mod_revision == r.header.revision]
    assert [(e.type.value, e.kv.key) for e in txn_events] == [
        ("put", b"atom/a"), ("put", b"atom/b"), ("delete", b"atom/x")]


def test_resuming_from_the_last_revision_plus_one_yields_exactly_the_rest(
        cluster: ProcessCluster) -> None:
    revisions = write_puts(cluster, "res/", 60, keys=4)
    with cluster.client() as c:
        with c.watch("res/", prefix=True, start_revision=revisions[0]) as w:
            first: list[Event] = []
            for resp in w:
                first.extend(resp.events)
                if len(first) >= 25:
                    break
        resume_at = first[-1].kv.mod_revision + 1
        # Another member this time: any member's history is the same history.
        with cluster.client(list(reversed(cluster.names))) as c2, c2.watch(
                "res/", prefix=True, start_revision=resume_at, progress_notify=True,
                poll_timeout_s=POLL_S) as w2:
            rest, _ = drain(w2, revisions[-1])
    assert [e.kv.mod_revision for e in first + rest] == revisions


def test_progress_notification_means_everything_up_to_its_revision_arrived(
        cluster: ProcessCluster) -> None:
    with cluster.client() as c, c.watch("bm/", prefix=True, progress_notify=True,
                                         poll_timeout_s=0.3) as w:
        revisions = write_puts(cluster, "bm/", 30)
        delivered: set[int] = set()
        for resp in w:
            if resp.is_progress_notify:
                assert not resp.events
                assert {r for r in revisions if r <= resp.header.revision} <= delivered
                if resp.header.revision >= revisions[-1]:
                    break
            delivered.update(e.kv.mod_revision for e in resp.events)
    assert delivered == set(revisions)


def test_prev_kv_is_the_version_before_each_event(cluster: ProcessCluster) -> None:
    with cluster.client() as c, c.watch("pkv", prev_kv=True, progress_notify=True,
                                         poll_timeout_s=POLL_S) as w:
        c.put("pkv", "1")
        c.put("pkv", "2")
        last = c.delete("pkv").header.revision
        events, _ = drain(w, last)
    assert [(e.type.value, e.kv.value, e.prev_kv and e.prev_kv.value) for e in events] == [
        ("put", b"1", None), ("put", b"2", b"1"), ("delete", b"", b"2")]
    assert events[1].prev_kv is not None
    assert events[1].prev_kv.mod_revision == events[0].kv.mod_revision


def test_noput_and_nodelete_filters(cluster: ProcessCluster) -> None:
    with cluster.client() as c:
        start = c.put("flt/a", "1").header.revision
        c.delete("flt/a")
        c.put("flt/b", "2")
        last = c.delete("flt/b").header.revision
        for filters, kept in ((["noput"], "delete"), (["nodelete"], "put")):
            with c.watch("flt/", prefix=True, start_revision=start, filters=filters,
                         progress_notify=True, poll_timeout_s=POLL_S) as w:
                events, _ = drain(w, last)
            assert [e.type.value for e in events] == [kept, kept]


def test_watch_from_a_compacted_revision_is_canceled_with_the_compact_revision(
        make_cluster) -> None:
    pc = make_cluster(3)
    pc.wait_for_leader(15)
    revisions = write_puts(pc, "cmp/", 20, keys=2)
    with pc.client() as c:
        c.compact(revisions[10])
        with c.watch("cmp/", prefix=True, start_revision=revisions[5]) as w:
            responses = list(w)  # ends after the canceled response
        assert len(responses) == 1
        assert responses[0].canceled
        assert responses[0].compact_revision == revisions[10]
        assert "compacted" in responses[0].cancel_reason
        with c.watch("cmp/", prefix=True, start_revision=revisions[10]) as w:
            first = next(iter(w))
        assert first.events[0].kv.mod_revision == revisions[10]


def test_a_watcher_that_does_not_poll_blocks_no_write_and_catches_up(
        cluster: ProcessCluster) -> None:
    with cluster.client() as c, c.watch("slow/", prefix=True, progress_notify=True,
                                         poll_timeout_s=POLL_S) as w:
        started = time.monotonic()
        threads = [threading.Thread(target=write_puts, args=(cluster, f"slow/{t}/", 125))
                   for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        writes_s = time.monotonic() - started
        last = c.get("slow/", prefix=True).header.revision
        events, _ = drain(w, last)
    assert len(events) == 1000
    assert len({(e.kv.key, e.kv.mod_revision) for e in events}) == 1000
    print(f"1000 writes in {writes_s:.2f}s while a watcher did not poll; it caught up")


def test_watch_survives_kill_9_of_its_member_without_loss_or_duplicates(make_cluster) -> None:
    pc = make_cluster(3)
    victim = pc.wait_for_leader(15)  # the hardest member to lose: writes stall too
    others = [n for n in pc.names if n != victim]
    acknowledged: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        with pc.client(others, timeout_s=2.0) as c:
            i = 0
            while not stop.is_set():
                # A failed put may or may not have been applied: the watch says which.
                with contextlib.suppress(TimeoutError_, EtcdliteError):
                    acknowledged.append(c.put(f"kill/{i % 5}", str(i)).header.revision)
                i += 1

    with pc.client([victim, *others]) as c, c.watch("kill/", prefix=True, progress_notify=True,
                                                    poll_timeout_s=POLL_S) as w:
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        events: list[Event] = []
        members: list[int] = []
        try:
            killed = False
            for resp in w:
                events.extend(resp.events)
                members.append(resp.header.member_id)
                if not killed and len(events) >= 30:
                    pc.kill(victim)
                    killed = True
                if killed and len(acknowledged) > 0 and len(events) >= 30 + 60:
                    break
        finally:
            stop.set()
            thread.join(timeout=30)
        with pc.client(others) as c2:
            last = c2.get("kill/", prefix=True).header.revision
        more, _ = drain(w, last, timeout_s=15)
        events.extend(more)
    revisions = [e.kv.mod_revision for e in events]
    assert revisions == sorted(set(revisions)), "every event once, in order"
    assert set(acknowledged) <= set(revisions), "no acknowledged write missed"
    assert members[0] == pc.member_id(victim)
    assert members[-1] != pc.member_id(victim)
    # Ground truth: the survivors' history of the range is exactly what was watched.
    with pc.client(others) as c3, c3.watch("kill/", prefix=True, start_revision=1,
                                           progress_notify=True, poll_timeout_s=POLL_S) as w3:
        truth, _ = drain(w3, last)
    assert [(e.kv.key, e.kv.mod_revision, e.kv.value) for e in events] == [
        (e.kv.key, e.kv.mod_revision, e.kv.value) for e in truth]


async def test_async_watch_delivers_and_cancels(cluster: ProcessCluster) -> None:
    endpoints = [cluster.endpoint(n) for n in cluster.names]
    async with AsyncClient(endpoints) as c, c.watch("aw/", prefix=True) as w:
        revisions = [(await c.put(f"aw/{i}", "x")).header.revision for i in range(5)]
        seen: list[int] = []
        async for resp in w:
            seen.extend(e.kv.mod_revision for e in resp.events)
            if len(seen) >= 5:
                w.cancel()
        assert seen == revisions
    with trio.fail_after(5):
        async with AsyncClient(endpoints) as c, c.watch("aw/idle") as w:
            async def cancel_soon() -> None:
                await trio.sleep(0.3)
                w.cancel()  # interrupts a parked poll
            async with trio.open_nursery() as nursery:
                nursery.start_soon(cancel_soon)
                assert [r async for r in w] == []


def test_a_parked_watch_does_not_delay_unary_requests(cluster: ProcessCluster) -> None:
    name = cluster.names[0]
    watches = []
    with cluster.client([name]) as c:
        try:
            for i in range(100):
                watches.append(c.watch(f"idle/{i}", poll_timeout_s=20))
            threads = [threading.Thread(target=lambda w=w: list(w), daemon=True)
                       for w in watches]
            for t in threads:
                t.start()
            time.sleep(1.0)  # the member does not report parked polls; give them time to park
            started = time.monotonic()
            for i in range(20):
                c.put(f"unary/{i}", "x")
                c.get(f"unary/{i}")
            per_call_ms = (time.monotonic() - started) / 40 * 1000
        finally:
            for w in watches:
                w.cancel()
    assert per_call_ms < 100, per_call_ms
    print(f"unary call with 100 parked watch polls on the member: {per_call_ms:.1f} ms")


def test_cli_watch_prints_like_etcdctl_and_runs_a_command_per_event(
        cluster: ProcessCluster) -> None:
    endpoints = ",".join(cluster.endpoint(n) for n in cluster.names)
    with cluster.client() as c:
        start = c.put("cli/a", "1").header.revision
        c.put("cli/a", "2")
        last = c.delete("cli/a").header.revision
    base = [sys.executable, "-m", "cluster", "--endpoints", endpoints, "watch"]
    printed = _run_until([*base, "--rev", str(start), "--prefix", "cli/", "--prev-kv"], 13)
    assert printed == ["PUT", "cli/a", "1", "PUT", "cli/a", "1", "cli/a", "2",
                       "DELETE", "cli/a", "2", "cli/a", ""]
    script = 'echo "$ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE"'
    ran = _run_until([*base, "--rev", str(last), "cli/a", "--", "sh", "-c", script], 4)
    assert ran == ["DELETE", "cli/a", "", '"DELETE" "cli/a" ""']


def _run_until(argv: list[str], lines: int, timeout_s: float = 10.0) -> list[str]:
    """Run a never-ending `etcdlite watch` until it has printed `lines` lines."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        out = [proc.stdout.readline().rstrip("\n") for _ in range(lines)]
    finally:
        timer.cancel()
        proc.kill()
        proc.communicate()
    return out


async def test_polls_over_the_parking_cap_move_to_another_member(cluster: ProcessCluster) -> None:
    first = cluster.names[0]
    endpoints = [cluster.endpoint(n) for n in cluster.names]
    count = limits.watch_polls_waiting_max + 20
    served_by: dict[int, int] = {}
    async with AsyncClient(endpoints) as c:
        watches = [c.watch(f"cap/{i}", poll_timeout_s=20) for i in range(count)]

        async def follow(i: int) -> None:
            async with watches[i] as w:
                async for resp in w:
                    served_by[i] = resp.header.member_id
                    return

        with trio.fail_after(15):
            async with trio.open_nursery() as nursery:
                for i in range(count):
                    nursery.start_soon(follow, i)
                await trio.sleep(2)  # every poll parks (or is refused and moves on)
                started = trio.current_time()
                await c.get("cap/unary")  # the member still serves unary requests
                unary_s = trio.current_time() - started
                for i in range(count):
                    await c.put(f"cap/{i}", "x")
    assert len(served_by) == count
    on_first = sum(1 for m in served_by.values() if m == cluster.member_id(first))
    assert on_first <= limits.watch_polls_waiting_max
    assert on_first < count
    assert unary_s < 1.0

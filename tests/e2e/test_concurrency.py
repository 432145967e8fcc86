"""Locks and elections (cluster.concurrency, cluster.election) and their CLI on real clusters."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cluster.cli import cli as cli_group
from cluster.client import Client, Op
from cluster.concurrency import Mutex, Session
from cluster.election import Election, NoElectionLeaderError
from tests.e2e.harness import REPO, ProcessCluster, wait_until

pytestmark = pytest.mark.e2e

FAST = {"heartbeat_interval_ms": 50, "election_timeout_ms": 500}


class NoWatchClient:
    """A client without `watch`: the recipes must fall back to polling."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        if name == "watch":
            raise AttributeError(name)
        return getattr(self._client, name)


def run_counter_workers(pc: ProcessCluster, wrap: Any, workers: int, rounds: int) -> int:
    """`workers` threads increment one counter `rounds` times each under one mutex, with a
    plain read-then-write (a lost update would show); returns the most holders seen at once."""
    inside = 0
    most = 0
    guard = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        nonlocal inside, most
        try:
            with pc.client() as c, Session(wrap(c), ttl=5) as session:
                mutex = Mutex(session, "counter-lock")
                for _ in range(rounds):
                    with mutex:
                        with guard:
                            inside += 1
                            most = max(most, inside)
                        value = int(c.get("counter").value_str or "0")
                        time.sleep(0.005)  # widen the read-modify-write window
                        c.put("counter", str(value + 1))
                        with guard:
                            inside -= 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    return most


def test_mutex_gives_mutual_exclusion_to_three_clients(make_cluster) -> None:
    pc = make_cluster(3, **FAST)
    pc.wait_for_leader(15)
    assert run_counter_workers(pc, lambda c: c, workers=3, rounds=6) == 1
    with pc.client() as c:
        assert c.get("counter").value_str == "18"
        assert c.get("counter-lock/", prefix=True).kvs == ()  # every key released


def test_mutex_by_polling_when_the_client_has_no_watch(make_cluster) -> None:
    pc = make_cluster(3, **FAST)
    pc.wait_for_leader(15)
    assert run_counter_workers(pc, NoWatchClient, workers=2, rounds=4) == 1
    with pc.client() as c:
        assert c.get("counter").value_str == "8"


def test_mutex_is_fair_by_create_revision_and_session_expiry_releases_it(
        make_cluster) -> None:
    pc = make_cluster(3, **FAST)
    pc.wait_for_leader(15)
    order: list[str] = []
    with pc.client() as c:
        a = Session(c, ttl=2)
        first = Mutex(a, "fair")
        first.lock()
        fence = first.owner_compare()
        sessions = {name: Session(c, ttl=5) for name in ("b", "c")}
        mutexes = {name: Mutex(s, "fair") for name, s in sessions.items()}

        def take(name: str) -> None:
            mutexes[name].lock(timeout_s=15)
            order.append(name)
            time.sleep(0.2)
            mutexes[name].unlock()

        threads = []
        for queued, name in enumerate(("b", "c"), start=2):
            t = threading.Thread(target=take, args=(name,))
            t.start()
            threads.append(t)
            wait_until(lambda n=queued: len(c.get("fair/", prefix=True).kvs) == n, 5,
                       f"{name} to queue")
        assert first.is_owner()
        a.orphan()  # the holder "crashes": it stops renewing, the lease expires
        released_at = time.monotonic()
        for t in threads:
            t.join(20)
        assert order == ["b", "c"]
        assert time.monotonic() - released_at < 8
        assert not first.is_owner()
        # The old holder's fencing guard no longer passes: its writes are refused.
        late = c.txn([fence], [Op.put("guarded", "stale holder")], [])
        assert not late.succeeded
        assert c.get("guarded").kvs == ()
        assert mutexes["b"].revision == 0  # unlocked
        for s in sessions.values():
            s.close()


def test_election_campaign_proclaim_observe_resign(make_cluster) -> None:
    pc = make_cluster(3, **FAST)
    pc.wait_for_leader(15)
    with pc.client() as c:
        s1, s2 = Session(c, ttl=5), Session(c, ttl=5)
        e1, e2 = Election(s1, "leader"), Election(s2, "leader")
        with pytest.raises(NoElectionLeaderError):
            e1.leader()
        e1.campaign("alpha")
        assert e1.leader().value == b"alpha"
        seen: list[str] = []
        stop = threading.Event()

        def observe() -> None:
            for kv in Election(s1, "leader").observe(stop):
                seen.append(kv.value_str)

        observer = threading.Thread(target=observe)
        observer.start()
        wait_until(lambda: seen == ["alpha"], 5, "the observer to see the first leader")
        second = threading.Thread(target=e2.campaign, args=("beta",))
        second.start()
        wait_until(lambda: len(c.get("leader/", prefix=True).kvs) == 2, 5, "beta to queue")
        e1.proclaim("alpha-2")
        wait_until(lambda: seen == ["alpha", "alpha-2"], 5, "the proclamation")
        assert second.is_alive()  # still waiting: alpha leads
        e1.resign()
        second.join(10)
        assert not second.is_alive()
        assert e2.leader().value == b"beta"
        wait_until(lambda: seen == ["alpha", "alpha-2", "beta"], 5, "the new leader")
        stop.set()
        observer.join(5)
        s1.close()
        s2.close()


def cli(pc: ProcessCluster, *args: str) -> Result:
    """The CLI in-process (a subprocess per command costs seconds on a loaded machine)."""
    env = {"ETCDLITE_ENDPOINTS": ",".join(pc.endpoint(n) for n in pc.names)}
    return CliRunner().invoke(cli_group, list(args), env=env, catch_exceptions=False)


def test_cli_leases_and_lock(make_cluster, tmp_path: Path) -> None:
    pc = make_cluster(3, **FAST)
    pc.wait_for_leader(15)
    lease_id = cli(pc, "lease", "grant", "30").stdout.split()[1]
    assert cli(pc, "put", "--lease", lease_id, "k", "v").exit_code == 0
    assert "k" in cli(pc, "lease", "timetolive", lease_id, "--keys").stdout
    assert cli(pc, "lease", "keep-alive", "--once", lease_id).stdout == \
        f"lease {lease_id} keepalived with TTL(30)\n"
    assert lease_id in cli(pc, "lease", "list").stdout
    assert cli(pc, "lease", "revoke", lease_id).exit_code == 0
    gone = cli(pc, "lease", "keep-alive", "--once", lease_id)
    assert gone.exit_code == 1
    assert "lease_not_found" in gone.stderr

    seen = tmp_path / "seen"
    held = cli(pc, "lock", "job", "--", sys.executable, "-c",
               "import os, sys; open(sys.argv[1], 'w').write("
               "os.environ['ETCD_LOCK_KEY'] + ' ' + os.environ['ETCD_LOCK_REV']);"
               " raise SystemExit(7)", str(seen))
    key, revision = seen.read_text().split()
    assert held.exit_code == 7
    assert held.stdout == f"{key}\n"
    assert key.startswith("job/")
    assert int(revision) > 0
    with pc.client() as c:
        assert c.get("job/", prefix=True).kvs == ()  # released after the command


def test_cli_elect_and_listen(make_cluster) -> None:
    pc = make_cluster(3, **FAST)
    pc.wait_for_leader(15)
    env = {**os.environ, "ETCDLITE_ENDPOINTS": ",".join(pc.endpoint(n) for n in pc.names)}
    leader = subprocess.Popen([sys.executable, "-m", "cluster", "elect", "web", "node-a"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    listener = subprocess.Popen([sys.executable, "-m", "cluster", "elect", "web", "-l"],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert leader.stdout is not None
        assert listener.stdout is not None
        elected_key = leader.stdout.readline().strip()
        assert leader.stdout.readline().strip() == "node-a"
        assert listener.stdout.readline().strip() == elected_key
        assert listener.stdout.readline().strip() == "node-a"
        leader.send_signal(signal.SIGINT)  # Ctrl-C: resign by revoking the session
        assert leader.wait(10) == 0
        with pc.client() as c:
            wait_until(lambda: not c.get("web/", prefix=True).kvs, 5, "the leader key to go")
    finally:
        for p in (leader, listener):
            if p.poll() is None:
                p.kill()
            p.wait(10)
            if p.stdout is not None:
                p.stdout.close()

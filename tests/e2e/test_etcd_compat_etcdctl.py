"""etcdctl 3.4 (Debian's etcd-client, unchanged) against a real 3-member etcdlite cluster.

Each test drives etcdctl exactly as a user would and checks its output against
etcd's semantics (revisions, prev-kv, leases, compaction). One cluster serves
the whole module; tests use their own key prefixes.
"""

from __future__ import annotations

import base64
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.snapshot_file import snapshot_status
from tests.e2e.etcd_tools import (
    Etcdctl,
    etcd_cluster,
    etcdctl_bin,  # noqa: F401 - fixture
    read_lines,
    snapshot_digest_ok,
)
from tests.e2e.harness import ProcessCluster, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster() -> Iterator[ProcessCluster]:
    yield from etcd_cluster(3)


@pytest.fixture
def ctl(etcdctl_bin: str, cluster: ProcessCluster) -> Etcdctl:  # noqa: F811
    return Etcdctl(etcdctl_bin, cluster)


def _rev(ctl: Etcdctl) -> int:
    return int(ctl.json("get", "nothing-here")["header"]["revision"])


def test_put_get_with_prefix_limit_sort_keys_only_and_json(ctl: Etcdctl) -> None:
    for k, v in (("p/a", "1"), ("p/b", "2"), ("p/c", "3")):
        assert ctl.out("put", k, v) == "OK\n"
    assert ctl.out("get", "p/a") == "p/a\n1\n"
    assert ctl.out("get", "p/", "--prefix") == "p/a\n1\np/b\n2\np/c\n3\n"
    assert ctl.out("get", "p/", "--prefix", "--limit", "2") == "p/a\n1\np/b\n2\n"
    assert ctl.out("get", "p/", "--prefix", "--keys-only") == "p/a\n\np/b\n\np/c\n\n"
    assert ctl.out("get", "p/", "--prefix", "--sort-by=KEY", "--order=DESCEND") == \
        "p/c\n3\np/b\n2\np/a\n1\n"
    assert ctl.out("get", "p/b", "--print-value-only") == "2\n"
    assert ctl.out("get", "p/b", "p/c") == "p/b\n2\n"  # [key, range_end)
    got = ctl.json("get", "p/", "--prefix", "--limit", "1")
    assert got["count"] == 3
    assert got["more"] is True
    assert base64.b64decode(got["kvs"][0]["key"]) == b"p/a"
    header = got["header"]
    assert header["cluster_id"] > 0
    assert header["member_id"] in {ctl.cluster.member_id(n) for n in ctl.cluster.names}
    assert header["raft_term"] >= 1
    assert header["revision"] >= 4


def test_get_at_an_old_revision_and_mod_revisions(ctl: Etcdctl) -> None:
    ctl.out("put", "r/k", "one")
    first = ctl.json("get", "r/k")["kvs"][0]
    ctl.out("put", "r/k", "two")
    now = ctl.json("get", "r/k")["kvs"][0]
    assert now["version"] == first["version"] + 1
    assert now["create_revision"] == first["create_revision"]
    assert now["mod_revision"] > first["mod_revision"]
    assert ctl.out("get", "r/k", f"--rev={first['mod_revision']}") == "r/k\none\n"
    future = ctl.run("get", "r/k", "--rev=99999999", check=False)
    assert future.returncode != 0
    assert "required revision is a future revision" in future.stderr


def test_del_single_prefix_and_prev_kv(ctl: Etcdctl) -> None:
    for k in ("d/1", "d/2", "d/3"):
        ctl.out("put", k, "x")
    assert ctl.out("del", "d/1") == "1\n"
    assert ctl.out("del", "d/1") == "0\n"
    assert ctl.out("del", "d/2", "--prev-kv") == "1\nd/2\nx\n"
    ctl.out("put", "d/4", "y")
    assert ctl.out("del", "d/", "--prefix") == "2\n"
    assert ctl.out("get", "d/", "--prefix") == ""


def test_txn_from_stdin_takes_the_branch_its_compares_choose(ctl: Etcdctl) -> None:
    ctl.out("put", "t/k", "v1")
    script = 'value("t/k") = "v1"\n\nput t/k v2\nget t/other\n\nput t/k failed\n\n'
    assert ctl.out("txn", stdin=script) == "SUCCESS\n\nOK\n\n"
    assert ctl.out("get", "t/k", "--print-value-only") == "v2\n"
    assert ctl.out("txn", stdin=script) == "FAILURE\n\nOK\n"
    assert ctl.out("get", "t/k", "--print-value-only") == "failed\n"
    mod = ctl.json("get", "t/k")["kvs"][0]["mod_revision"]
    guarded = f'mod("t/k") = "{mod}"\n\nput t/k guarded\n\n\n'
    assert ctl.out("txn", stdin=guarded).startswith("SUCCESS")


def test_watch_prefix_from_a_revision_with_prev_kv(ctl: Etcdctl) -> None:
    start = _rev(ctl) + 1
    with ctl.background("watch", "w/", "--prefix", "--prev-kv", f"--rev={start}") as watch:
        ctl.out("put", "w/a", "1")
        ctl.out("put", "w/a", "2")
        ctl.out("del", "w/a")
        lines = read_lines(watch, 3 + 5 + 5)
    assert lines == ["PUT", "w/a", "1",
                     "PUT", "w/a", "1", "w/a", "2",
                     "DELETE", "w/a", "2", "w/a", ""]


def test_watch_replays_history_and_sees_a_live_writer(ctl: Etcdctl) -> None:
    ctl.out("put", "h/k", "old")
    rev = ctl.json("get", "h/k")["kvs"][0]["mod_revision"]
    with ctl.background("watch", "h/k", f"--rev={rev}") as watch:
        assert read_lines(watch, 3) == ["PUT", "h/k", "old"]
        ctl.out("put", "h/k", "new", names=["m2"])  # another etcdctl, another member
        assert read_lines(watch, 3) == ["PUT", "h/k", "new"]


def test_lease_grant_attach_keepalive_timetolive_list_revoke(ctl: Etcdctl) -> None:
    granted = ctl.out("lease", "grant", "60").split()
    assert granted[0] == "lease"
    assert granted[3:] == ["with", "TTL(60s)"]
    lease = granted[1]
    assert ctl.out("put", "l/k", "v", f"--lease={lease}") == "OK\n"
    ttl = ctl.out("lease", "timetolive", lease, "--keys")
    assert ttl.startswith(f"lease {lease} granted with TTL(60s), remaining(")
    assert ttl.rstrip().endswith("attached keys([l/k])")
    assert ctl.out("lease", "keep-alive", "--once", lease) == \
        f"lease {lease} keepalived with TTL(60)\n"
    assert lease in ctl.out("lease", "list").split()
    assert ctl.out("lease", "revoke", lease) == f"lease {lease} revoked\n"
    assert ctl.out("get", "l/k") == ""
    assert ctl.out("lease", "timetolive", lease) == f"lease {lease} already expired\n"
    missing = ctl.run("lease", "revoke", lease, check=False)
    assert missing.returncode != 0
    assert "requested lease not found" in missing.stderr


def test_compaction_makes_old_revisions_unreadable(ctl: Etcdctl) -> None:
    ctl.out("put", "c/k", "1")
    old = ctl.json("get", "c/k")["kvs"][0]["mod_revision"]
    ctl.out("put", "c/k", "2")
    now = _rev(ctl)
    assert ctl.out("compaction", str(now)) == f"compacted revision {now}\n"
    gone = ctl.run("get", "c/k", f"--rev={old}", check=False)
    assert gone.returncode != 0
    assert "required revision has been compacted" in gone.stderr
    again = ctl.run("compaction", str(old), check=False)
    assert "required revision has been compacted" in again.stderr
    assert ctl.out("get", "c/k", "--print-value-only") == "2\n"
    with ctl.background("watch", "c/k", f"--rev={old}") as watch:
        watch.wait(timeout=15)
        assert watch.stderr is not None
        assert watch.stdout is not None
        said = watch.stderr.read() + watch.stdout.read()
    assert "required revision has been compacted" in said


def test_member_list_names_every_member_with_its_etcd_endpoint(ctl: Etcdctl) -> None:
    rows = [line.split(", ") for line in ctl.out("member", "list").splitlines()]
    pc = ctl.cluster
    assert sorted(r[2] for r in rows) == sorted(pc.names)
    for member_id, status, name, _peers, clients, learner in rows:
        assert status == "started"
        assert learner == "false"
        assert int(member_id, 16) == pc.member_id(name)
        assert clients == f"http://{pc.etcd_endpoint(name)}"


def test_endpoint_status_and_health_on_the_whole_cluster(ctl: Etcdctl) -> None:
    # --cluster dials the client URLs that MemberList reports: they must be etcd's.
    statuses = ctl.json("endpoint", "status", "--cluster", names=["m1"])
    assert len(statuses) == 3
    leaders = {s["Status"]["leader"] for s in statuses}
    assert len(leaders) == 1
    assert leaders.pop() in {ctl.cluster.member_id(n)
                                                   for n in ctl.cluster.names}
    for s in statuses:
        assert s["Status"]["version"] == "3.4.0"
        assert s["Status"]["dbSize"] > 0
        assert s["Status"]["raftIndex"] >= 3
    health = ctl.run("endpoint", "health", "--cluster", names=["m1"])
    said = health.stdout + health.stderr  # etcdctl 3.4 reports health on stderr
    assert said.count("is healthy: successfully committed proposal") == 3
    hashes = ctl.json("endpoint", "hashkv", "--cluster", names=["m1"])
    assert len({h["HashKV"]["hash"] for h in hashes}) == 1


def test_alarm_list_is_empty_and_defrag_runs_on_every_endpoint(ctl: Etcdctl) -> None:
    assert ctl.out("alarm", "list") == ""
    out = ctl.out("defrag")
    for name in ctl.cluster.names:
        assert f"Finished defragmenting etcd member[{ctl.cluster.etcd_endpoint(name)}]" in out


def test_snapshot_save_writes_the_db_and_its_sha256(ctl: Etcdctl, tmp_path: Path) -> None:
    ctl.out("put", "s/k", "in the snapshot")
    path = tmp_path / "snap.db"
    saved = ctl.run("snapshot", "save", str(path), names=["m1"])
    assert f"Snapshot saved at {path}" in saved.stdout + saved.stderr
    assert snapshot_digest_ok(path)
    # The db inside is etcd's bbolt layout: etcdctl reads it, and so does etcdlite.
    status = ctl.json("snapshot", "status", str(path))
    assert status["revision"] == snapshot_status(path).revision >= 2


def test_lock_is_exclusive_and_released_on_interrupt(ctl: Etcdctl) -> None:
    with ctl.background("lock", "lk") as first:
        (held,) = read_lines(first, 1)
        assert held.startswith("lk/")
        with ctl.background("lock", "lk") as second:
            with pytest.raises(AssertionError):
                read_lines(second, 1, timeout_s=1.5)  # still waiting
            first.send_signal(signal.SIGINT)  # etcdctl unlocks on Ctrl-C
            (next_holder,) = read_lines(second, 1)
            assert next_holder.startswith("lk/")
            assert next_holder != held


def test_elect_campaign_observe_and_hand_over(ctl: Etcdctl) -> None:
    with ctl.background("elect", "el", "p1") as one:
        key1, value1 = read_lines(one, 2)
        assert key1.startswith("el/")
        assert value1 == "p1"
        with ctl.background("elect", "-l", "el") as observer:
            assert read_lines(observer, 2) == [key1, "p1"]
            with ctl.background("elect", "el", "p2") as two:
                one.send_signal(signal.SIGINT)  # resigns
                key2, value2 = read_lines(two, 2)
                assert value2 == "p2"
                assert key2 != key1
                assert read_lines(observer, 2) == [key2, "p2"]


def test_move_leader_hands_leadership_to_the_named_member(ctl: Etcdctl) -> None:
    pc = ctl.cluster
    leader = pc.wait_for_leader()
    target = next(n for n in pc.names if n != leader)
    out = ctl.out("move-leader", f"{pc.member_id(target):x}")
    assert out.strip() == (f"Leadership transferred from {pc.member_id(leader):x} "
                           f"to {pc.member_id(target):x}")
    assert wait_until(lambda: pc.leader() == target, 10, "the new leader")


def test_endpoint_health_reports_a_member_without_quorum_unhealthy(
        etcdctl_bin: str, make_cluster: Any) -> None:  # noqa: F811
    pc = make_cluster(3, start=False, etcd=True)
    pc.start_all()
    pc.wait_for_leader(20)
    ctl = Etcdctl(etcdctl_bin, pc)
    wait_until(lambda: ctl.run("endpoint", "health", names=["m1"], check=False).returncode == 0,
               20, "m1 healthy")
    pc.kill("m2")
    pc.kill("m3")
    sick = ctl.run("endpoint", "health", "--command-timeout=3s", names=["m1"], check=False)
    assert sick.returncode != 0
    assert f"{pc.etcd_endpoint('m1')} is unhealthy" in sick.stdout + sick.stderr


def test_member_add_promote_remove_through_followers(ctl: Etcdctl) -> None:
    pc = ctl.cluster
    leader = pc.wait_for_leader()
    follower = next(n for n in pc.names if n != leader)
    added = ctl.out("member", "add", "m9", "--peer-urls=http://127.0.0.1:9", "--learner",
                    names=[follower])
    assert 'ETCD_INITIAL_CLUSTER_STATE="existing"' in added
    rows = [r.split(", ") for r in ctl.out("member", "list").splitlines()]
    (new,) = [r for r in rows if r[1] == "unstarted"]
    assert (new[3], new[5]) == ("tcp://127.0.0.1:9", "true")  # http:// taken as nng tcp://
    refused = ctl.run("member", "promote", new[0], names=[follower], check=False)
    assert "can only promote a learner member which is in sync with leader" in refused.stderr
    removed = ctl.out("member", "remove", new[0], names=[follower])
    assert removed.split()[:3] == ["Member", new[0], "removed"]  # etcdctl pads ids with %16x
    assert len(ctl.out("member", "list").splitlines()) == 3

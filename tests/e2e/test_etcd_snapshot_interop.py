"""Snapshots cross between etcdlite and a real etcd 3.4, both ways, through etcd's tools.

- etcdlite -> etcd: `etcdctl snapshot save` against an etcdlite member gives a
  bbolt file that `etcdctl snapshot status` reads (after bbolt's consistency
  check) and `etcdctl snapshot restore` turns into a data dir a real etcd
  starts from, serving the same keys, revisions and leases.
- etcd -> etcdlite: `etcdctl snapshot save` against a real etcd gives a file
  `etcdlite snapshot status` reads and `etcdlite snapshot restore` seeds a new
  etcdlite cluster from, with the same keys and revisions.

The real etcd is Debian's `etcd-server` (installed on first use like etcdctl;
the tests skip, saying why, where it cannot be). It listens on loopback only.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cluster.cli import cli
from tests.e2e.etcd_tools import (
    Etcdctl,
    _accepts,
    etcd_bin,  # noqa: F401 - fixture
    etcdctl_bin,  # noqa: F401 - fixture
    real_etcd,
    snapshot_digest_ok,
)
from tests.e2e.harness import ProcessCluster, wait_until

pytestmark = pytest.mark.e2e


def ctl(binary: str, endpoint: str | None, *args: str, timeout_s: float = 30) -> str:
    argv = [binary, *([f"--endpoints={endpoint}"] if endpoint else []), *args]
    done = subprocess.run(argv, env={**os.environ, "ETCDCTL_API": "3"}, capture_output=True,
                          text=True, timeout=timeout_s, check=False)
    assert done.returncode == 0, f"etcdctl {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def write_workload(put: Callable[..., Any]) -> None:
    """The same history on either side: puts, overwrites, a txn, a delete, a lease."""
    for i in range(30):
        put("put", f"k/{i:02d}", f"v{i}")
    put("put", "k/00", "again")
    put("txn", stdin='value("k/01") = "v1"\n\nput k/01 txn-ok\nput k/new born\n\n\n')
    put("del", "k/02")
    lease = put("lease", "grant", "600").split()[1]
    put("put", "leased", "yes", f"--lease={lease}")


def key_space(binary: str, endpoint: str) -> tuple[int, list[tuple[Any, ...]], list[str]]:
    """(revision, every key's fields, lease ids) as etcdctl prints them."""
    got = json.loads(ctl(binary, endpoint, "get", "", "--from-key", "-w", "json"))
    kvs = [(kv["key"], kv.get("value"), kv["create_revision"], kv["mod_revision"],
            kv["version"], kv.get("lease", 0)) for kv in got["kvs"]]
    leases = ctl(binary, endpoint, "lease", "list").split()[2:]
    return got["header"]["revision"], kvs, sorted(leases)


def test_etcdlite_snapshot_is_read_by_etcdctl_and_restores_into_a_real_etcd(
        etcdctl_bin: str, etcd_bin: str, make_cluster: Callable[..., ProcessCluster],  # noqa: F811
        tmp_path: Path) -> None:
    pc = make_cluster(3, etcd=True)
    pc.wait_for_leader(20)
    for name in pc.names:
        wait_until(lambda n=name: _accepts(pc.etcd_endpoint(n)), 20, f"{name}'s etcd port")
    lite = Etcdctl(etcdctl_bin, pc)
    write_workload(lambda *a, stdin=None: lite.out(*a, stdin=stdin))
    m1 = pc.etcd_endpoint("m1")
    revision, kvs, leases = key_space(etcdctl_bin, m1)  # linearizable: m1 is caught up
    snap = tmp_path / "from-etcdlite.db"
    ctl(etcdctl_bin, m1, "snapshot", "save", str(snap))
    assert snapshot_digest_ok(snap)

    status = json.loads(ctl(etcdctl_bin, None, "snapshot", "status", str(snap), "-w", "json"))
    assert status["revision"] == revision
    # 30 puts + overwrite + 2 txn puts + tombstone + leased, plus etcd's bookkeeping
    # entries (consistent index, cluster version, 3 members, 1 lease, authEnabled and
    # authRevision).
    assert status["totalKey"] == 35 + 1 + 1 + 3 + 1 + 2
    assert status["totalSize"] == snap.stat().st_size - 32

    data_dir = tmp_path / "etcd-restored"
    ctl(etcdctl_bin, None, "snapshot", "restore", str(snap), "--data-dir", str(data_dir))
    with real_etcd(etcd_bin, data_dir, tmp_path / "etcd.log") as etcd:
        assert key_space(etcdctl_bin, etcd) == (revision, kvs, leases)
        after = json.loads(ctl(etcdctl_bin, etcd, "put", "k/00", "in etcd", "-w", "json"))
        assert after["header"]["revision"] == revision + 1


def test_a_real_etcd_snapshot_seeds_an_etcdlite_cluster(
        etcdctl_bin: str, etcd_bin: str, make_cluster: Callable[..., ProcessCluster],  # noqa: F811
        tmp_path: Path) -> None:
    snap = tmp_path / "from-etcd.db"
    with real_etcd(etcd_bin, tmp_path / "etcd-data", tmp_path / "etcd.log") as etcd:
        write_workload(lambda *a, stdin=None: _ctl_stdin(etcdctl_bin, etcd, a, stdin))
        ctl(etcdctl_bin, etcd, "compaction", "5")
        revision, kvs, leases = key_space(etcdctl_bin, etcd)
        ctl(etcdctl_bin, etcd, "snapshot", "save", str(snap))

    runner = CliRunner()
    status = json.loads(runner.invoke(cli, ["-w", "json", "snapshot", "status", str(snap)],
                                      catch_exceptions=False).stdout)
    assert (status["revision"], status["compactRevision"]) == (revision, 5)

    new = make_cluster(3, start=False, etcd=True)
    initial = ",".join(f"{m.name}={m.peer_url}" for m in new.config.members)
    for m in new.config.members:
        done = runner.invoke(cli, ["snapshot", "restore", str(snap), "--name", m.name,
                                   "--data-dir", str(new.config.data_dir / m.name),
                                   "--initial-cluster", initial,
                                   "--initial-cluster-token", new.config.token],
                             catch_exceptions=False)
        assert done.exit_code == 0, done.output
    new.start_all()
    new.wait_for_leader(20)
    endpoint = new.etcd_endpoint("m2")
    wait_until(lambda: _accepts(endpoint), 20, "m2's etcd port")
    assert key_space(etcdctl_bin, endpoint) == (revision, kvs, leases)
    lite = Etcdctl(etcdctl_bin, new)
    assert "required revision has been compacted" in lite.run(
        "get", "k/00", "--rev=4", check=False).stderr


def _ctl_stdin(binary: str, endpoint: str, args: tuple[str, ...], stdin: str | None,
               check: bool = True) -> str:
    """stdout (with check) or stdout + stderr (without) of one etcdctl call."""
    done = subprocess.run([binary, f"--endpoints={endpoint}", *args],
                          env={**os.environ, "ETCDCTL_API": "3"}, input=stdin,
                          capture_output=True, text=True, timeout=30, check=False)
    if not check:
        return done.stdout + done.stderr
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_users_roles_and_auth_travel_to_a_real_etcd(
        etcdctl_bin: str, etcd_bin: str, make_cluster: Callable[..., ProcessCluster],  # noqa: F811
        tmp_path: Path) -> None:
    """bcrypt hashes made by etcdlite log in on etcd; permissions mean the same there."""
    pc = make_cluster(1, etcd=True)
    pc.wait_for_leader(20)
    lite = pc.etcd_endpoint("m1")
    wait_until(lambda: _accepts(lite), 20, "m1's etcd port")
    for args in (("user", "add", "root:rootpw"), ("user", "grant-role", "root", "root"),
                 ("role", "add", "app"),
                 ("role", "grant-permission", "app", "read", "app/", "--prefix"),
                 ("user", "add", "alice:alicepw"), ("user", "grant-role", "alice", "app"),
                 ("put", "app/x", "v"), ("auth", "enable")):
        ctl(etcdctl_bin, lite, *args)
    snap = tmp_path / "with-auth.db"
    ctl(etcdctl_bin, lite, "--user", "root:rootpw", "snapshot", "save", str(snap))
    data_dir = tmp_path / "etcd-restored"
    ctl(etcdctl_bin, None, "snapshot", "restore", str(snap), "--data-dir", str(data_dir))
    with real_etcd(etcd_bin, data_dir, tmp_path / "etcd.log") as etcd:
        assert ctl(etcdctl_bin, etcd, "--user", "alice:alicepw", "get", "app/x",
                   "--print-value-only") == "v\n"
        denied = _ctl_stdin(etcdctl_bin, etcd, ("--user", "alice:alicepw", "put", "app/x",
                                                 "w"), None, check=False)
        assert "etcdserver: permission denied" in denied
        anonymous = _ctl_stdin(etcdctl_bin, etcd, ("get", "app/x"), None, check=False)
        assert "etcdserver: user name is empty" in anonymous
        wrong = _ctl_stdin(etcdctl_bin, etcd, ("--user", "alice:nope", "get", "app/x"), None,
                           check=False)
        assert "authentication failed" in wrong

"""etcd's way of growing a cluster, end to end, with etcdctl 3.4 and no etcdlite config.

`etcdctl member add m4 --peer-urls=http://host:port` registers a member that has
an id and a peer URL but no name ("unstarted"); the new member is then started
from the ETCD_* lines etcdctl prints, finds its id in the running cluster by its
peer URL, joins, and publishes its name and client URLs through the log.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.client import Client
from cluster.client_types import Status
from cluster.config import find_free_ports
from tests.e2e.etcd_tools import (
    Etcdctl,
    etcd_cluster,
    etcdctl_bin,  # noqa: F401 - fixture
)
from tests.e2e.harness import ProcessCluster, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def cluster() -> Iterator[ProcessCluster]:
    yield from etcd_cluster(3)


def _rows(ctl: Etcdctl) -> list[list[str]]:
    """etcdctl member list: ID, STATUS, NAME, PEER ADDRS, CLIENT ADDRS, IS LEARNER."""
    return [line.split(", ") for line in ctl.out("member", "list").splitlines()]


class NewMember:
    """A member added with `etcdctl member add m4 --peer-urls=http://127.0.0.1:PORT` and
    started from the ETCD_* lines etcdctl printed (plus ETCD_DATA_DIR), as etcd's docs
    say; by the tcp convention its native endpoint is PORT-2 and its etcd one PORT-1."""

    def __init__(self, ctl: Etcdctl, peer_port: int) -> None:
        self.ctl = ctl
        self.peer_url = f"tcp://127.0.0.1:{peer_port}"  # what http:// registers as
        self.etcd_endpoint = f"127.0.0.1:{peer_port - 1}"
        self.native = f"tcp://127.0.0.1:{peer_port - 2}"
        added = ctl.out("member", "add", "m4", f"--peer-urls=http://127.0.0.1:{peer_port}")
        found = re.search(r"Member\s+([0-9a-f]+) added", added)
        assert found is not None, added
        self.id = int(found.group(1), 16)
        self.env = dict(re.findall(r'^(ETCD_[A-Z_]+)="(.*)"$', added, re.MULTILINE))
        assert self.env["ETCD_NAME"] == "m4"
        assert self.env["ETCD_INITIAL_CLUSTER_STATE"] == "existing"
        assert f"m4={self.peer_url}" in self.env["ETCD_INITIAL_CLUSTER"].split(",")
        self.run_env: dict[str, str] = {}

    def start(self, data_dir: Path) -> None:
        self.run_env = {**self.env, "ETCD_DATA_DIR": str(data_dir)}
        self.ctl.cluster.start("m4", env=self.run_env)

    def row(self) -> list[str]:
        """Its row of `etcdctl member list` ([] if it is not there)."""
        return next((r for r in _rows(self.ctl) if int(r[0], 16) == self.id), [])

    def status(self) -> Status:
        def ask() -> Status:
            with Client([self.native], timeout_s=1.0) as c:
                return c.status()
        return wait_until(ask, 20, "m4 to serve")

    def wait_started(self) -> list[str]:
        def started() -> list[str]:
            row = self.row()
            return row if row and row[1] == "started" else []
        return wait_until(started, 30, "m4 to publish its name", interval_s=0.3)


def _etcdctl_at(binary: str, endpoint: str, *args: str) -> str:
    """etcdctl against one endpoint that is not in the harness config (m4's); its stdout,
    or "" if it failed (callers poll with wait_until)."""
    done = subprocess.run([binary, f"--endpoints={endpoint}", "--dial-timeout=3s",
                           "--command-timeout=10s", *args], capture_output=True, text=True,
                          timeout=30, check=False, env={**os.environ, "ETCDCTL_API": "3"})
    return done.stdout if done.returncode == 0 else ""


def test_member_added_by_etcdctl_joins_by_peer_url_publishes_its_name_and_keeps_it(
        etcdctl_bin: str, cluster: ProcessCluster) -> None:  # noqa: F811
    pc, ctl = cluster, Etcdctl(etcdctl_bin, cluster)
    ctl.out("put", "before/join", "v1")
    m4 = NewMember(ctl, find_free_ports(3) + 2)
    assert m4.row() == [f"{m4.id:x}", "unstarted", "", m4.peer_url, "", "false"]
    m4.start(pc.root / "data" / "m4")
    assert m4.status().member_id == m4.id  # took over the id registered by member add
    row = m4.wait_started()
    etcd_endpoint = m4.etcd_endpoint
    assert row[2:] == ["m4", m4.peer_url, f"http://{etcd_endpoint}", "false"]
    # It caught up: a linearizable read on m4 sees what was written before it joined,
    # and its own serializable (local) copy holds it too.
    assert _etcdctl_at(etcdctl_bin, etcd_endpoint, "get", "before/join",
                       "--print-value-only") == "v1\n"
    assert _etcdctl_at(etcdctl_bin, etcd_endpoint, "get", "before/join", "--consistency=s",
                       "--print-value-only") == "v1\n"
    assert _etcdctl_at(etcdctl_bin, etcd_endpoint, "put", "from/m4", "x") == "OK\n"
    assert ctl.out("get", "from/m4", "--print-value-only", names=["m1"]) == "x\n"

    # A restart keeps the id and the name; nothing is published again.
    pc.stop("m4")
    ctl.out("put", "while/down", "v2")
    pc.start("m4", env=m4.run_env)

    def m4_local_read() -> bool:
        out = _etcdctl_at(etcdctl_bin, etcd_endpoint, "get", "while/down", "--consistency=s",
                          "--print-value-only")
        return out == "v2\n"
    wait_until(m4_local_read, 20, "m4 to be back and caught up", interval_s=0.3)
    assert m4.status().member_id == m4.id
    assert m4.row() == row
    log = pc.log_path("m4").read_text()
    assert log.count("takes over member") == 1
    assert log.count("published its name") == 1


def test_a_removed_member_is_replaced_at_the_same_peer_url(
        etcdctl_bin: str, cluster: ProcessCluster) -> None:  # noqa: F811
    """etcd's recipe for a dead member: remove it, add one at the same peer URL, start it
    with an empty data dir. The removed id never rejoins; the new member gets another."""
    pc, ctl = cluster, Etcdctl(etcdctl_bin, cluster)
    peer_port = find_free_ports(3) + 2
    old = NewMember(ctl, peer_port)
    old.start(pc.root / "data" / "m4-old")
    old.wait_started()
    removed = ctl.out("member", "remove", f"{old.id:x}")
    assert removed.split()[:3] == ["Member", f"{old.id:x}", "removed"]
    pc.stop("m4")
    ctl.out("put", "after/replace", "v3")
    new = NewMember(ctl, peer_port)
    assert new.id != old.id
    assert new.row()[1:3] == ["unstarted", ""]
    new.start(pc.root / "data" / "m4-new")
    assert new.status().member_id == new.id
    assert new.wait_started()[2] == "m4"
    assert _etcdctl_at(etcdctl_bin, new.etcd_endpoint, "get", "after/replace",
                       "--print-value-only") == "v3\n"
    assert len(_rows(ctl)) == 4

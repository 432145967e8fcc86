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
    # The etcd convention for a tcp peer URL P: etcd endpoint P-1, native endpoint P-2.
    base = find_free_ports(3)
    peer_port, etcd_endpoint, native = base + 2, f"127.0.0.1:{base + 1}", f"tcp://127.0.0.1:{base}"

    added = ctl.out("member", "add", "m4", f"--peer-urls=http://127.0.0.1:{peer_port}")
    new_id = int(re.search(r"Member\s+([0-9a-f]+) added", added).group(1), 16)  # type: ignore[union-attr]
    env = dict(re.findall(r'^(ETCD_[A-Z_]+)="(.*)"$', added, re.MULTILINE))
    assert env["ETCD_NAME"] == "m4"
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == "existing"
    assert f"m4=tcp://127.0.0.1:{peer_port}" in env["ETCD_INITIAL_CLUSTER"].split(",")
    (row,) = [r for r in _rows(ctl) if int(r[0], 16) == new_id]
    assert row == [f"{new_id:x}", "unstarted", "", f"tcp://127.0.0.1:{peer_port}", "", "false"]

    # Started exactly as etcd's docs say: the printed variables plus a data dir.
    run_env = {**env, "ETCD_DATA_DIR": str(pc.root / "data" / "m4")}
    pc.start("m4", env=run_env)

    def m4_status() -> Status:
        with Client([native], timeout_s=1.0) as c:
            return c.status()
    status = wait_until(m4_status, 20, "m4 to serve")
    assert status.member_id == new_id  # took over the id registered by member add

    def m4_started() -> list[str]:
        rows = [r for r in _rows(ctl) if int(r[0], 16) == new_id]
        return rows[0] if rows and rows[0][1] == "started" else []
    row = wait_until(m4_started, 30, "m4 to publish its name", interval_s=0.3)
    assert row[2:] == ["m4", f"tcp://127.0.0.1:{peer_port}", f"http://{etcd_endpoint}", "false"]
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
    pc.start("m4", env=run_env)

    def m4_local_read() -> bool:
        out = _etcdctl_at(etcdctl_bin, etcd_endpoint, "get", "while/down", "--consistency=s",
                          "--print-value-only")
        return out == "v2\n"
    wait_until(m4_local_read, 20, "m4 to be back and caught up", interval_s=0.3)
    assert wait_until(m4_status, 5, "m4 status").member_id == new_id
    assert m4_started() == row
    log = pc.log_path("m4").read_text()
    assert log.count("takes over member") == 1
    assert log.count("published its name") == 1

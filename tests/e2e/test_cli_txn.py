"""`etcdlite txn` against a real cluster."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cluster.cli import cli

pytestmark = pytest.mark.e2e


def test_txn_from_stdin_takes_the_right_branch(make_cluster) -> None:
    pc = make_cluster(3)
    pc.wait_for_leader(15)
    endpoints = ",".join(pc.endpoint(n) for n in pc.names)
    with pc.client() as c:
        c.put("k", "v1")
    runner = CliRunner()
    script = 'value("k") = "v1"\n\nput k v2\nget k\n\nput k failed\n'
    r = runner.invoke(cli, ["--endpoints", endpoints, "txn"], input=script)
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == ["SUCCESS", "", "OK", "", "k", "v2"]
    r = runner.invoke(cli, ["--endpoints", endpoints, "txn"], input=script)
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == ["FAILURE", "", "OK"]
    with pc.client() as c:
        assert c.get("k").kvs[0].value == b"failed"
    r = runner.invoke(cli, ["--endpoints", endpoints, "txn"], input='bogus("k") = 1\n')
    assert r.exit_code == 1

"""`etcdlite benchmark put` against real member processes: it runs and reports, no timing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.e2e.harness import REPO

pytestmark = pytest.mark.e2e


def test_benchmark_put_reports_every_field_and_no_errors(make_cluster) -> None:
    pc = make_cluster(3)
    pc.wait_for_leader(15)
    endpoints = ",".join(pc.endpoint(n) for n in pc.names)
    done = subprocess.run(
        [sys.executable, "-m", "cluster", "--endpoints", endpoints, "benchmark", "put",
         "--total", "200", "--clients", "4", "--conns", "2", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["name"] == "put"
    assert report["requests"] == 200
    assert report["error_count"] == 0
    assert report["errors"] == {}
    for field in ("requests_per_s", "average_s", "stddev_s", "fastest_s", "slowest_s",
                  "elapsed_s", "client_cpu_s"):
        assert report[field] >= 0, field
    assert set(report["percentiles_s"]) >= {"p50", "p90", "p99"}
    assert sum(count for _, count in report["histogram"]) == 200
    assert report["params"]["clients"] == 4
    assert report["params"]["total"] == 200
    assert report["environment"]["leader"] in pc.names
    with pc.client() as c:  # the puts really happened (one key, overwritten)
        assert c.get(b"\0" * 8).kvs[0].version == 200

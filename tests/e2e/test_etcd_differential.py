"""Differential: the same etcdctl session against a real etcd 3.4 and against etcdlite.

Both stores start empty at revision 1, so one command sequence must give the
same revisions, the same values and versions, the same errors in the same
words. What legitimately differs is normalised away before comparing: cluster
and member ids, Raft terms, lease ids (random on both sides) and a remaining
TTL that may have ticked. Everything else must be byte-identical output of the
same etcdctl binary. The real etcd is Debian's etcd-server, on loopback.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.etcd_tools import (
    _accepts,
    etcd_bin,  # noqa: F401 - fixture
    etcd_cluster,
    etcdctl_bin,  # noqa: F401 - fixture
    real_etcd,
)
from tests.e2e.harness import ProcessCluster

pytestmark = pytest.mark.e2e

TXN = 'value("a") = "10"\nmod("b") > "0"\n\nput a from-txn\nget b\ndel c\n\nput a lost\n\n'
TXN_FAILS = 'version("a") = "99"\n\nput a never\n\nget a\nput z failure-branch\n\n'

# (etcdctl arguments, stdin). "{lease}" is the lease the session granted.
SESSION: list[tuple[tuple[str, ...], str | None]] = [
    (("put", "a", "1"), None),
    (("put", "b", "2"), None),
    (("put", "c", "3"), None),
    (("put", "a", "10", "--prev-kv", "-w", "json"), None),
    (("get", "a", "-w", "json"), None),
    (("get", "a", "--prefix", "-w", "json"), None),
    (("get", "a", "z", "-w", "json"), None),
    (("get", "a", "z", "--limit", "2", "-w", "json"), None),
    (("get", "a", "z", "--sort-by", "MODIFY", "--order", "DESCEND"), None),
    (("get", "a", "z", "--sort-by", "VALUE", "--order", "ASCEND", "--keys-only"), None),
    (("get", "a", "z", "--order", "DESCEND", "-w", "fields"), None),
    (("get", "a", "--rev", "2", "-w", "json"), None),
    (("get", "", "--from-key", "--print-value-only"), None),
    (("get", "a", "--consistency", "s", "-w", "json"), None),
    (("txn", "-w", "json"), TXN),
    (("txn",), TXN_FAILS),
    (("del", "b", "--prev-kv", "-w", "json"), None),
    (("del", "nothing-here"), None),
    (("put", "", "x"), None),
    (("compaction", "3"), None),
    (("get", "a", "--rev", "2"), None),
    (("get", "a", "--rev", "1000"), None),
    (("compaction", "1000"), None),
    (("lease", "grant", "60"), None),
    (("put", "leased", "v", "--lease", "{lease}"), None),
    (("lease", "timetolive", "{lease}", "--keys", "-w", "json"), None),
    (("get", "leased", "-w", "json"), None),
    (("lease", "revoke", "{lease}"), None),
    (("lease", "revoke", "{lease}"), None),
    (("get", "leased"), None),
    (("lease", "timetolive", "{lease}"), None),
    (("put", "nolease", "v", "--lease", "1234abcd"), None),
    (("watch", "a", "--rev", "4", "--prev-kv"), None),
    (("watch", "a", "--rev", "1"), None),
    (("put", "a", "--ignore-value", "--prev-kv", "-w", "json"), None),
    (("put", "fresh", "--ignore-value"), None),
    (("put", "a", "v", "--ignore-lease"), None),
    (("alarm", "list"), None),
    (("lease", "list"), None),
    (("del", "", "--from-key", "-w", "json"), None),
    (("get", "", "--from-key", "-w", "json"), None),
    # Authentication last: once enabled, every command needs --user.
    (("user", "add", "root:rootpw"), None),
    (("user", "add", "root:again"), None),
    (("user", "grant-role", "root", "root"), None),
    (("role", "add", "app"), None),
    (("role", "grant-permission", "app", "readwrite", "app/", "--prefix"), None),
    (("role", "grant-permission", "app", "read", "cfg"), None),
    (("role", "grant-permission", "app", "write", "a", "c"), None),
    (("role", "get", "app"), None),
    (("role", "get", "nosuchrole"), None),
    (("user", "add", "alice:alicepw"), None),
    (("user", "grant-role", "alice", "app"), None),
    (("user", "grant-role", "alice", "nosuchrole"), None),
    (("user", "get", "alice"), None),
    (("user", "get", "alice", "--detail"), None),
    (("user", "list"), None),
    (("role", "list"), None),
    (("auth", "enable"), None),
    (("get", "app/x"), None),
    (("--user", "alice:alicepw", "put", "app/x", "1"), None),
    (("--user", "alice:alicepw", "get", "app/x", "--print-value-only"), None),
    (("--user", "alice:alicepw", "put", "cfg", "1"), None),
    (("--user", "alice:alicepw", "get", "other"), None),
    (("--user", "alice:wrong", "get", "app/x"), None),
    (("--user", "root:rootpw", "role", "revoke-permission", "app", "cfg"), None),
    (("--user", "root:rootpw", "user", "revoke-role", "alice", "app"), None),
    (("--user", "alice:alicepw", "get", "app/x"), None),
    (("--user", "root:rootpw", "user", "delete", "alice"), None),
    (("--user", "root:rootpw", "role", "delete", "app"), None),
    (("--user", "root:rootpw", "auth", "disable"), None),
    (("user", "list"), None),
]

_LEASE_HEX = re.compile(r"\b[0-9a-f]{16}\b")
_FIELDS_IDS = re.compile(r'^"(ClusterID|MemberID|RaftTerm)" : \d+$', re.M)


def run(binary: str, endpoints: str, args: tuple[str, ...], stdin: str | None) -> str:
    """stdout + stderr of one etcdctl call; a watch is stopped after its history."""
    argv = [binary, f"--endpoints={endpoints}", "--command-timeout=10s", *args]
    env = {**os.environ, "ETCDCTL_API": "3"}
    if args[0] == "watch":
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            out, _ = proc.communicate(timeout=3)  # a watch never ends by itself
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate(timeout=10)
        return out
    done = subprocess.run(argv, env=env, input=stdin, capture_output=True, text=True,
                          timeout=30, check=False)
    return f"{done.stdout}{done.stderr}".replace(" (-1)", "")


def _log_line(line: str) -> str:
    """etcdctl's client log lines carry times and connection ids: keep only the error."""
    if line.startswith('{"level":'):
        with contextlib.suppress(ValueError):
            return f"log: {json.loads(line).get('error', '')}"
    return line


def normalise(text: str, lease: int | None) -> Any:
    """Ids, terms and ticking TTLs out; JSON parsed so that key order cannot matter."""
    lines: list[str] = []
    for line in (_log_line(raw) for raw in text.split("\n")):
        # clientv3 logs a retried call once per endpoint it tried: 1 on etcd, 3 here.
        if not (line.startswith("log: ") and lines and lines[-1] == line):
            lines.append(line)
    text = "\n".join(lines)
    if lease is not None:
        text = text.replace(format(lease, "016x"), "LEASE").replace(str(lease), '"LEASE"')
    text = _LEASE_HEX.sub("ID", text)
    text = _FIELDS_IDS.sub(r'"\1" : X', text)
    try:
        doc = json.loads(text)
    except ValueError:
        return text
    return _scrub(doc)


def _scrub(doc: Any) -> Any:
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            if k in ("cluster_id", "member_id", "raft_term"):
                v = "X"
            elif k == "TTL" and isinstance(v, int) and 55 <= v <= 60:
                v = "about 60"
            out[k] = _scrub(v)
        return out
    if isinstance(doc, list):
        return [_scrub(v) for v in doc]
    return doc


def play(binary: str, endpoints: str) -> Iterator[tuple[tuple[str, ...], Any]]:
    lease: int | None = None
    for args, stdin in SESSION:
        if lease is not None:
            args = tuple(a.replace("{lease}", format(lease, "x")) for a in args)
        out = run(binary, endpoints, args, stdin)
        if args[:2] == ("lease", "grant"):
            lease = int(out.split()[1], 16)
        yield args, normalise(out, lease)


@pytest.fixture(scope="module")
def etcdlite() -> Iterator[ProcessCluster]:
    yield from etcd_cluster(3)


def test_an_etcdctl_session_prints_the_same_on_etcd_and_etcdlite(
        etcdctl_bin: str, etcd_bin: str, etcdlite: ProcessCluster,  # noqa: F811
        tmp_path: Path) -> None:
    lite_endpoints = ",".join(etcdlite.etcd_endpoint(n) for n in etcdlite.names)
    lite = list(play(etcdctl_bin, lite_endpoints))
    with real_etcd(etcd_bin, tmp_path / "etcd", tmp_path / "etcd.log") as endpoint:
        assert _accepts(endpoint)
        real = list(play(etcdctl_bin, endpoint))
    differences = [(args, want, got) for (args, want), (_, got) in zip(real, lite, strict=True)
                   if want != got]
    assert not differences, "\n\n".join(
        f"etcdctl {' '.join(a)}\n  etcd:     {w!r}\n  etcdlite: {g!r}"
        for a, w, g in differences)

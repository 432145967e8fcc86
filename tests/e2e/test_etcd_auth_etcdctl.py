"""etcd authentication with the real etcdctl 3.4 against a 3-member etcdlite cluster.

One scenario, in order, as an operator would run it: create root and a reader,
enable auth, use tokens on every member, watch, revoke, disable. Then restart a
member and check that it still knows the users (auth state is in state.db), and
the HTTP gateway's Authorization header.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.e2e.etcd_tools import (
    Etcdctl,
    etcd_cluster,
    etcdctl_bin,  # noqa: F401 - fixture
    read_lines,
)
from tests.e2e.harness import ProcessCluster, wait_until

pytestmark = pytest.mark.e2e

ROOT = "--user=root:rootpw"
READER = "--user=reader:readpw"


@pytest.fixture(scope="module")
def cluster() -> Iterator[ProcessCluster]:
    yield from etcd_cluster(3)


@pytest.fixture
def ctl(etcdctl_bin: str, cluster: ProcessCluster) -> Etcdctl:  # noqa: F811
    return Etcdctl(etcdctl_bin, cluster)


def fails(ctl: Etcdctl, *args: str, names: list[str] | None = None) -> str:
    done = ctl.run(*args, names=names, check=False)
    assert done.returncode != 0, done.stdout
    return done.stderr


def _post(url: str, body: dict[str, object], token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = token
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_auth_lifecycle_with_etcdctl(ctl: Etcdctl, cluster: ProcessCluster) -> None:
    first, second, third = cluster.names
    assert "root user does not exist" in fails(ctl, "auth", "enable")
    assert ctl.out("user", "add", "root:rootpw") == "User root created\n"
    assert "user name already exists" in fails(ctl, "user", "add", "root:other")
    assert ctl.out("role", "add", "root") == "Role root created\n"
    assert ctl.out("user", "grant-role", "root", "root") == "Role root is granted to user root\n"
    ctl.out("user", "add", "reader:readpw")
    ctl.out("role", "add", "app-reader")
    ctl.out("role", "grant-permission", "app-reader", "--prefix=true", "read", "app/")
    ctl.out("user", "grant-role", "reader", "app-reader")
    ctl.out("put", "app/x", "one")
    ctl.out("put", "other/y", "two")
    assert ctl.out("auth", "enable") == "Authentication Enabled\n"

    # No user: etcd's message. Status and member list stay open, as in etcd
    # (etcdctl's endpoint health reads a key, so it needs a user, in etcd 3.4 too).
    assert "user name is empty" in fails(ctl, "get", "app/x")
    assert "user name is empty" in fails(ctl, "put", "app/x", "v")
    ctl.out("endpoint", "status")
    ctl.out("member", "list")
    ctl.out(ROOT, "endpoint", "health")
    assert "authentication failed" in fails(ctl, "--user=root:wrong", "get", "app/x")

    # Root may do anything, on any member (the token is checked by each of them).
    for name in cluster.names:
        assert ctl.out(ROOT, "get", "app/x", names=[name]) == "app/x\none\n"
    assert ctl.out(ROOT, "put", "app/x", "two", names=[third]) == "OK\n"
    assert "reader" in ctl.out(ROOT, "user", "list")
    role = ctl.out(ROOT, "role", "get", "app-reader")
    assert "[app/, app0) (prefix app/)" in role

    # The reader: READ on the prefix app/ and nothing else.
    assert ctl.out(READER, "get", "app/x", names=[second]) == "app/x\ntwo\n"
    assert ctl.out(READER, "get", "app/", "--prefix") == "app/x\ntwo\n"
    assert "permission denied" in fails(ctl, READER, "put", "app/x", "three")
    assert "permission denied" in fails(ctl, READER, "get", "other/y")
    assert "permission denied" in fails(ctl, READER, "get", "", "--prefix")
    assert "permission denied" in fails(ctl, READER, "del", "app/x")
    assert "permission denied" in fails(ctl, READER, "user", "list")
    assert "permission denied" in fails(ctl, READER, "compaction", "1")
    # A txn needs every compare and op allowed.
    txn = 'value("app/x") = "two"\n\nput app/x three\n\n\n'
    assert "permission denied" in ctl.run(READER, "txn", stdin=txn, check=False).stderr
    read_only = 'value("app/x") = "two"\n\nget app/x\n\n\n'
    assert ctl.out(READER, "txn", stdin=read_only) == "SUCCESS\n\napp/x\ntwo\n"

    # Watch with a user: events on the permitted prefix arrive; elsewhere it is refused.
    rev = int(ctl.json(ROOT, "put", "app/w", "seen")["header"]["revision"])
    with ctl.background(READER, "watch", "--prefix", "app/", f"--rev={rev}",
                        names=[first]) as watch:
        assert read_lines(watch, 3) == ["PUT", "app/w", "seen"]
        ctl.out(ROOT, "put", "app/w", "again", names=[third])
        assert read_lines(watch, 3) == ["PUT", "app/w", "again"]
    denied = ctl.run(READER, "watch", "other/", "--prefix", check=False, timeout_s=15)
    assert "permission denied" in denied.stderr

    # Revoking the role takes effect at once (permissions are looked up per request).
    ctl.out(ROOT, "user", "revoke-role", "reader", "app-reader")
    assert "permission denied" in fails(ctl, READER, "get", "app/x")
    ctl.out(ROOT, "user", "grant-role", "reader", "app-reader")

    # Auth state survives a member restart (it is applied state in state.db).
    cluster.kill(second)
    cluster.start(second)
    cluster.wait_for_leader(20)
    wait_until(lambda: ctl.run(READER, "get", "app/x", names=[second], check=False
                               ).returncode == 0, 30, "restarted member serving the reader")
    assert "permission denied" in fails(ctl, READER, "put", "app/x", "v", names=[second])

    # The HTTP gateway: token from /v3/auth/authenticate, sent as Authorization.
    base = "http://" + cluster.etcd_endpoint(first)
    status, body = _post(base + "/v3/auth/authenticate", {"name": "reader",
                                                          "password": "readpw"})
    assert status == 200, body
    token = body["token"]
    status, body = _post(base + "/v3/kv/range", {"key": "YXBwL3g="}, token)  # app/x
    assert status == 200, body
    assert body["kvs"][0]["value"] == "dHdv"  # two
    status, body = _post(base + "/v3/kv/put", {"key": "YXBwL3g=", "value": "eA=="}, token)
    assert status == 403, body
    assert body["message"] == "etcdserver: permission denied"
    status, body = _post(base + "/v3/kv/range", {"key": "YXBwL3g="})
    assert body["message"] == "etcdserver: user name is empty", body
    status, body = _post(base + "/v3/kv/range", {"key": "YXBwL3g="}, "forged.1.2.3")
    assert status == 401, body
    assert body["message"] == "etcdserver: invalid auth token"

    # Root cannot be deleted while auth is on; disabling opens the cluster again.
    assert "invalid auth management" in fails(ctl, ROOT, "user", "delete", "root")
    assert "permission denied" in fails(ctl, READER, "auth", "disable")
    assert ctl.out(ROOT, "auth", "disable") == "Authentication Disabled\n"
    assert ctl.out("get", "other/y") == "other/y\ntwo\n"
    assert ctl.out("put", "other/y", "three") == "OK\n"
    ctl.out("user", "delete", "reader")
    assert "user name not found" in fails(ctl, "user", "get", "reader")

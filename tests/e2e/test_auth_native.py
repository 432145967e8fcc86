"""Authentication through the native protocol and the Python client, in real processes.

The client authenticates lazily and again when auth is switched on under it;
tokens work on every member; auth state reaches a member that joins after the
log was truncated, through the snapshot it installs.
"""

from __future__ import annotations

import pytest

from cluster import codec
from cluster.auth_types import INVALID_AUTH_TOKEN, PERMISSION_DENIED, USER_EMPTY
from cluster.client import Client
from cluster.errors import AuthError, PermissionDeniedError
from tests.e2e.harness import wait_until
from tests.e2e.test_bad_input import raw_request

pytestmark = pytest.mark.e2e


def _endpoints(pc, names: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    return [pc.endpoint(n) for n in names]


def test_python_client_with_user_and_a_member_catching_up_by_snapshot(make_cluster) -> None:
    pc = make_cluster(3, snapshot_count=50)
    pc.wait_for_leader(15)
    eps = _endpoints(pc, pc.names)
    admin = Client(eps, user="root:rootpw", timeout_s=10)
    reader = Client(eps, user="reader", password="readpw", timeout_s=10)
    anonymous = Client(eps, timeout_s=10)
    try:
        admin.auth.user_add("root", "rootpw")
        admin.auth.user_grant_role("root", "root")
        admin.auth.user_add("reader", "readpw")
        admin.auth.role_add("app")
        admin.auth.role_grant_permission("app", "read", "app/", prefix=True)
        admin.auth.user_grant_role("reader", "app")
        anonymous.put("app/x", "1")
        assert reader.get("app/x").kvs[0].value_str == "1"  # auth off: no token sent
        admin.auth.enable()
        assert admin.auth.status().enabled

        # The reader's client notices "user name is empty", logs in, retries.
        assert reader.get("app/x").kvs[0].value_str == "1"
        with pytest.raises(PermissionDeniedError) as denied:
            reader.put("app/x", "2")
        assert denied.value.message == PERMISSION_DENIED
        with pytest.raises(AuthError) as empty:
            anonymous.get("app/x")
        assert empty.value.message == USER_EMPTY
        assert [p.key for p in admin.auth.role_get("app")] == [b"app/"]
        assert admin.auth.user_get("reader") == ["app"]
        assert admin.auth.user_list() == ["reader", "root"]

        # A watch with a user sees what the user may read.
        with reader.watch("app/", prefix=True) as watch:
            admin.put("app/w", "seen")
            event = next(iter(watch)).events[0]
            assert event.kv.key_str == "app/w"

        # Past a few snapshots, so that a new member can only catch up by one.
        for i in range(200):
            admin.put(f"app/k{i:03d}", "v")
        spec = pc.add_member_spec("m4")
        admin.member_add("m4", [spec.peer_url], [spec.client_url], is_learner=True)
        pc.start("m4")
        wait_until(lambda: "installed snapshot" in pc.log_path("m4").read_text(), 30,
                   "the new member to install the leader's snapshot")
        only_m4 = Client(_endpoints(pc, ["m4"]), user="reader:readpw", timeout_s=10)
        try:
            wait_until(lambda: only_m4.get("app/k199", serializable=True).count == 1, 20,
                       "m4 to serve the reader (users, roles and the secret came in the "
                       "snapshot)")
            with pytest.raises(PermissionDeniedError):
                only_m4.get("other", serializable=True)
        finally:
            only_m4.close()
        admin.auth.disable()
        assert anonymous.get("app/x").count == 1
    finally:
        for c in (admin, reader, anonymous):
            c.close()


def test_etcdlite_cli_user_role_auth_commands(make_cluster) -> None:
    from click.testing import CliRunner

    from cluster.cli import cli

    pc = make_cluster(3)
    pc.wait_for_leader(15)
    eps = ",".join(pc.endpoint(n) for n in pc.names)
    runner = CliRunner()

    def run(*args: str, code: int = 0, stdin: str | None = None) -> str:
        r = runner.invoke(cli, ["--endpoints", eps, *args], input=stdin)
        assert r.exit_code == code, r.output
        return r.output

    assert run("user", "add", "root:pw") == "User root created\n"
    # No root role yet: `auth enable` adds it and grants it to root, as etcdctl does.
    assert run("auth", "enable") == "Authentication Enabled\n"
    assert "user name is empty" in run("get", "k", code=1)
    root = "--user=root:pw"
    assert run(root, "role", "add", "app") == "Role app created\n"
    assert run(root, "role", "grant-permission", "app", "readwrite", "app/",
               "--prefix") == "Role app updated\n"
    # Prompts go to stderr, which CliRunner mixes into the output.
    assert run(root, "user", "add", "alice", stdin="apw\napw\n").endswith(
        "User alice created\n")
    run(root, "user", "grant-role", "alice", "app")
    assert run(root, "role", "get", "app") == (
        "Role app\nKV Read:\n\t[app/, app0)\nKV Write:\n\t[app/, app0)\n")
    assert run(root, "user", "get", "alice") == "User: alice\nRoles: app\n"
    assert run("--user=alice:apw", "put", "app/x", "1") == "OK\n"
    assert "permission denied" in run("--user=alice:apw", "put", "x", "1", code=1)
    # --user without a password asks for it.
    assert run("--user=alice", "get", "app/x", stdin="apw\n").endswith("app/x\n1\n")
    assert run(root, "auth", "status") == "Authentication Status: true\nAuthRevision: 9\n"
    assert run(root, "auth", "disable") == "Authentication Disabled\n"


def test_an_expired_token_is_refused_and_the_client_logs_in_again(make_cluster) -> None:
    """auth-token-ttl (etcd's --auth-token-ttl) of 1 s: a stale token is refused by
    every member with "invalid auth token", and the client renews it by itself."""
    pc = make_cluster(3, auth_token_ttl_s=1)
    pc.wait_for_leader(15)
    eps = _endpoints(pc, pc.names)
    admin = Client(eps, user="root:rootpw", timeout_s=10)
    try:
        admin.auth.user_add("root", "rootpw")
        admin.auth.user_grant_role("root", "root")
        admin.auth.enable()
        admin.put("k", "1")
        stale = admin.credentials.token
        assert stale is not None
        # The put above was served with `stale`; now every member must refuse it.
        for name in pc.names:  # expiry has a 1 s resolution: await it on every member
            wait_until(lambda n=name: _refused(pc, n, stale), 10, f"{name} to refuse it")
        assert admin.get("k").kvs[0].value_str == "1"  # logs in again, retries once
        assert admin.credentials.token not in (None, stale)
    finally:
        admin.close()


def _refused(pc, name: str, token: str) -> bool:  # type: ignore[no-untyped-def]
    """Whether member `name` answers a read carrying `token` with "invalid auth token"."""
    reply = raw_request(pc, name, codec.encode_frame(
        {"op": "range", "key": b"k", "auth_token": token}))
    return reply.get("error", {}).get("message") == INVALID_AUTH_TOKEN

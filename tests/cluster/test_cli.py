"""`etcdlite` through click's CliRunner against fake members: outputs and exit codes."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cluster.cli import cli
from cluster.errors import ErrorCode
from tests.fake_member import CLUSTER_ID, FakeMember, Script, running


@pytest.fixture
def fake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fm")


@pytest.fixture
def fakes(fake_dir: Path) -> Iterator[list[FakeMember]]:
    with running(fake_dir, 2) as members:
        yield members


def run(fakes: list[FakeMember], *args: str, stdin: bytes | None = None,
        endpoints: str | None = None) -> Result:
    """Invoke the CLI with the fakes as endpoints (given through the environment)."""
    env = {"ETCDLITE_ENDPOINTS": endpoints or ",".join(f.address for f in fakes)}
    return CliRunner().invoke(cli, list(args), input=stdin, env=env, catch_exceptions=False)


def test_put_prints_ok_and_sends_bytes(fakes: list[FakeMember]) -> None:
    result = run(fakes, "put", "greeting", "hello")
    assert (result.exit_code, result.stdout) == (0, "OK\n")
    assert fakes[0].requests[-1]["value"] == b"hello"


def test_put_reads_value_from_stdin(fakes: list[FakeMember]) -> None:
    assert run(fakes, "put", "k", stdin=b"line one\nline two").exit_code == 0
    assert fakes[0].store[b"k"]["value"] == b"line one\nline two"


def test_put_prev_kv_and_lease_in_hex(fakes: list[FakeMember]) -> None:
    run(fakes, "put", "k", "old")
    result = run(fakes, "put", "k", "new", "--prev-kv", "--lease", "ff")
    assert result.stdout == "OK\nk\nold\n"
    assert fakes[0].requests[-1]["lease"] == 0xFF


def test_put_json_is_etcdctl_shaped(fakes: list[FakeMember]) -> None:
    out = json.loads(run(fakes, "-w", "json", "put", "k", "v").stdout)
    assert out == {"header": {"cluster_id": CLUSTER_ID, "member_id": 1, "revision": 2,
                              "raft_term": 2}}


def test_get_prints_key_then_value_lines(fakes: list[FakeMember]) -> None:
    run(fakes, "put", "a/1", "x")
    run(fakes, "put", "a/2", "y")
    assert run(fakes, "get", "a/", "--prefix").stdout == "a/1\nx\na/2\ny\n"
    assert run(fakes, "get", "a/", "--prefix", "--print-value-only").stdout == "x\ny\n"
    assert run(fakes, "get", "a/", "--prefix", "--keys-only").stdout == "a/1\na/2\n"
    assert run(fakes, "get", "a/", "--prefix", "--count-only").stdout == "2\n"
    assert run(fakes, "get", "a/1").stdout == "a/1\nx\n"
    missing = run(fakes, "get", "nope")
    assert (missing.exit_code, missing.stdout) == (0, "")


def test_get_options_reach_the_request(fakes: list[FakeMember]) -> None:
    run(fakes, "get", "a", "z", "--limit", "2", "--rev", "3", "--sort-by", "MODIFY",
        "--consistency", "s")
    req = fakes[0].requests[-1]
    assert (req["key"], req["range_end"], req["limit"], req["revision"]) == (b"a", b"z", 2, 3)
    assert (req["sort_target"], req["sort_order"], req["serializable"]) == ("mod", "ascend", True)


def test_get_json_has_base64_kvs_count_and_header(fakes: list[FakeMember]) -> None:
    run(fakes, "put", "k", "v")
    for args in (("-w", "json", "get", "k"), ("get", "k", "-w", "json")):
        out = json.loads(run(fakes, *args).stdout)
        assert out["header"]["member_id"] == 1
        assert out["count"] == 1
        assert out["kvs"] == [{"key": base64.b64encode(b"k").decode(), "create_revision": 2,
                               "mod_revision": 2, "version": 1,
                               "value": base64.b64encode(b"v").decode()}]
        assert "more" not in out  # false fields are omitted, as etcdctl does


def test_get_table(fakes: list[FakeMember]) -> None:
    run(fakes, "put", "k", "v")
    out = run(fakes, "-w", "table", "get", "k").stdout
    assert "KEY" in out
    assert "| k " in out


def test_del_prints_count_and_prev_kvs(fakes: list[FakeMember]) -> None:
    run(fakes, "put", "a/1", "x")
    run(fakes, "put", "a/2", "y")
    assert run(fakes, "del", "a/1").stdout == "1\n"
    assert run(fakes, "del", "a/", "--prefix", "--prev-kv").stdout == "1\na/2\ny\n"
    assert run(fakes, "del", "gone").stdout == "0\n"


def test_del_json(fakes: list[FakeMember]) -> None:
    run(fakes, "put", "k", "v")
    out = json.loads(run(fakes, "-w", "json", "del", "k").stdout)
    assert out["deleted"] == 1
    assert "prev_kvs" not in out


def test_endpoint_status_simple_json_table(fakes: list[FakeMember]) -> None:
    simple = run(fakes, "endpoint", "status")
    assert simple.exit_code == 0
    lines = simple.stdout.splitlines()
    assert lines == [f"{fakes[0].address}, 1, m1, leader, 1, 2, 7, 7, 1, 24.6 kB",
                     f"{fakes[1].address}, 2, m2, leader, 1, 2, 7, 7, 1, 24.6 kB"]
    statuses = json.loads(run(fakes, "-w", "json", "endpoint", "status").stdout)
    assert [s["Endpoint"] for s in statuses] == [f.address for f in fakes]
    assert statuses[0]["Status"]["raftTerm"] == 2
    assert statuses[0]["Status"]["header"]["member_id"] == 1
    table = run(fakes, "-w", "table", "endpoint", "status").stdout
    for column in ("ENDPOINT", "ID", "NAME", "ROLE", "LEADER", "TERM", "REVISION", "DB SIZE"):
        assert column in table


def test_endpoint_status_hex_ids(fake_dir: Path) -> None:
    member = FakeMember(f"ipc://{fake_dir}/hex.sock", member_id=0x8E9E05C52164694D,
                        leader=0xABC).start()
    try:
        line = run([member], "endpoint", "status").stdout
    finally:
        member.stop()
    assert ", 8e9e05c52164694d, m1, leader, abc, " in line


def test_endpoint_status_reports_dead_endpoint_and_exits_3(
    fakes: list[FakeMember], fake_dir: Path
) -> None:
    endpoints = f"ipc://{fake_dir}/dead.sock,{fakes[0].address}"
    result = run(fakes, "endpoint", "status", endpoints=endpoints)
    assert result.exit_code == 3
    assert result.stdout.startswith(fakes[0].address)
    assert "Error: unavailable:" in result.stderr


def test_endpoint_health(fakes: list[FakeMember], fake_dir: Path) -> None:
    healthy = run(fakes, "endpoint", "health")
    assert healthy.exit_code == 0
    assert f"{fakes[0].address} is healthy" in healthy.stdout
    sick = run(fakes, "--command-timeout", "0.3", "-w", "json", "endpoint", "health",
               endpoints=f"{fakes[0].address},ipc://{fake_dir}/dead.sock")
    assert sick.exit_code == 3
    assert [c["health"] for c in json.loads(sick.stdout)] == [True, False]


def test_compaction_and_leases(fakes: list[FakeMember]) -> None:
    assert run(fakes, "compaction", "5", "--physical").stdout == "compacted revision 5\n"
    assert fakes[0].requests[-1] == {"v": 1, "op": "compact", "revision": 5, "physical": True}
    grant = run(fakes, "lease", "grant", "60").stdout
    lease_id = grant.split()[1]
    assert grant == f"lease {lease_id} granted, ttl 60s\n"
    assert run(fakes, "lease", "list").stdout == f"found 1 leases\n{lease_id}\n"
    assert "remaining ttl 60s" in run(fakes, "lease", "timetolive", lease_id).stdout
    assert "keepalived with TTL(60)" in run(fakes, "lease", "keep-alive", lease_id,
                                            "--once").stdout
    assert run(fakes, "lease", "revoke", lease_id).stdout == f"lease {lease_id} revoked\n"
    assert fakes[0].requests[-1] == {"v": 1, "op": "lease_revoke", "id": int(lease_id, 16)}


def test_lease_keep_alive_exits_1_when_the_lease_is_gone(fakes: list[FakeMember]) -> None:
    lease_id = run(fakes, "lease", "grant", "1").stdout.split()[1]
    for f in fakes:
        f.script("lease_keepalive", Script(error=ErrorCode.LEASE_NOT_FOUND, times=None))
    result = run(fakes, "lease", "keep-alive", lease_id)
    assert (result.exit_code, result.stdout) == (1, f"lease {lease_id} expired or revoked.\n")


@pytest.mark.parametrize(("code", "exit_code"), [
    (ErrorCode.COMPACTED, 1), (ErrorCode.LEASE_NOT_FOUND, 1), (ErrorCode.BAD_REQUEST, 1),
    (ErrorCode.UNAVAILABLE, 3), (ErrorCode.NO_LEADER, 3), (ErrorCode.TIMEOUT, 3),
])
def test_errors_go_to_stderr_with_code_and_exit_status(
    fakes: list[FakeMember], code: ErrorCode, exit_code: int
) -> None:
    for fake in fakes:
        fake.script("put", Script(error=code, message="went wrong", times=None))
    result = run(fakes, "--command-timeout", "0.3", "put", "k", "v")
    assert result.exit_code == exit_code
    assert result.stdout == ""
    assert result.stderr == f"Error: {code.value}: went wrong\n"


def test_unreachable_cluster_exits_3(fakes: list[FakeMember], fake_dir: Path) -> None:
    result = run(fakes, "--command-timeout", "0.3", "get", "k",
                 endpoints=f"ipc://{fake_dir}/dead.sock")
    assert result.exit_code == 3
    assert result.stderr.startswith("Error: unavailable: ")


@pytest.mark.parametrize("args", [
    ("get", "a", "--prefix", "--from-key"),
    ("get", "a", "z", "--prefix"),
    ("get",),
    ("put", "k", "v", "--lease", "not-hex"),
    ("--write-out", "yaml", "get", "k"),
    ("frobnicate",),
])
def test_usage_errors_exit_2(fakes: list[FakeMember], args: tuple[str, ...]) -> None:
    result = run(fakes, *args)
    assert result.exit_code == 2
    assert fakes[0].requests == []


def test_version_and_help() -> None:
    version = CliRunner().invoke(cli, ["--version"])
    assert version.exit_code == 0
    assert version.stdout.startswith("etcdlite, version ")
    help_text = CliRunner().invoke(cli, ["-h"]).stdout
    assert help_text.index("Examples:") < help_text.index("Exit codes:")
    assert "3  unavailable" in help_text


def test_endpoints_flag_overrides_environment(fakes: list[FakeMember], fake_dir: Path) -> None:
    result = run(fakes, "--endpoints", fakes[1].address, "put", "k", "v",
                 endpoints=f"ipc://{fake_dir}/dead.sock")
    assert result.exit_code == 0
    assert (fakes[0].ops(), fakes[1].ops()) == ([], ["put"])


def test_member_list_shows_a_member_without_a_name_as_unstarted(fake_dir: Path) -> None:
    """etcdctl's rule: added by etcd's MemberAdd and not joined yet means no name."""
    named = FakeMember(f"ipc://{fake_dir}/named.sock", member_id=0xA, name="m1").start()
    bare = FakeMember(f"ipc://{fake_dir}/bare.sock", member_id=0xB, name="").start()
    try:
        assert run([named], "member", "list").stdout.startswith("a, started, m1, ")
        assert run([bare], "member", "list").stdout.startswith("b, unstarted, , ")
    finally:
        named.stop()
        bare.stop()

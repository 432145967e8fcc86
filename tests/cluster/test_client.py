"""The native client against fake members: encoding, parsing, errors, failover, retry rule."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

from cluster.client import (
    DEFAULT_ENDPOINTS,
    AsyncClient,
    Client,
    Compare,
    KeyValue,
    Op,
    PutResult,
    RangeResult,
    ResponseHeader,
    prefix_range_end,
)
from cluster.client_transport import new_req_socket
from cluster.codec import encode_frame
from cluster.errors import (
    BadRequestError,
    ErrorCode,
    EtcdliteError,
    InternalError,
    NoLeaderError,
    TimeoutError_,
    UnavailableError,
)
from tests.fake_member import CLUSTER_ID, FakeMember, Script, running

ERROR_CLASSES = {cls.code: cls for cls in EtcdliteError.__subclasses__()}


@pytest.fixture
def fake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Short path: Unix socket paths are limited to ~107 bytes.
    return tmp_path_factory.mktemp("fm")


@pytest.fixture
def fakes(fake_dir: Path) -> Iterator[list[FakeMember]]:
    with running(fake_dir, 2) as members:
        yield members


@pytest.fixture
def dead(fake_dir: Path) -> str:
    """An endpoint nobody listens on: connecting is refused."""
    return f"ipc://{fake_dir}/dead.sock"


# --- request encoding ----------------------------------------------------------------

def test_put_sends_protocol_frame(fakes: list[FakeMember]) -> None:
    with Client([fakes[0].address]) as c:
        c.put("k", b"v", lease=5, prev_kv=True)
    assert fakes[0].requests == [
        {"v": 1, "op": "put", "key": b"k", "value": b"v", "lease": 5, "prev_kv": True},
    ]


def test_get_options_are_encoded(fakes: list[FakeMember]) -> None:
    with Client([fakes[0].address]) as c:
        c.get("a", prefix=True, limit=3, revision=7, serializable=True, keys_only=True,
              sort_order="descend", sort_target="mod", min_mod_revision=2)
        c.get("", prefix=True)
        c.get("m", from_key=True)
        c.get("a", range_end="c", count_only=True)
    first, all_keys, from_key, explicit = fakes[0].requests
    assert first == {"v": 1, "op": "range", "key": b"a", "range_end": b"b", "limit": 3,
                     "revision": 7, "serializable": True, "keys_only": True,
                     "sort_order": "descend", "sort_target": "mod", "min_mod_revision": 2}
    assert (all_keys["key"], all_keys["range_end"]) == (b"\0", b"\0")
    assert (from_key["key"], from_key["range_end"]) == (b"m", b"\0")
    assert (explicit["range_end"], explicit["count_only"]) == (b"c", True)


@pytest.mark.parametrize(("prefix", "end"), [
    (b"a", b"b"), (b"ab", b"ac"), (b"a\xff", b"b"), (b"\xff\xff", b"\0"), (b"", b"\0"),
])
def test_prefix_range_end(prefix: bytes, end: bytes) -> None:
    assert prefix_range_end(prefix) == end


def test_txn_encodes_compares_and_ops(fakes: list[FakeMember]) -> None:
    with Client([fakes[0].address]) as c:
        c.put("k", "v")
        r = c.txn([Compare.value("k", "=", "v"), Compare.version("k", ">", 0)],
                  [Op.put("k", "w", prev_kv=True), Op.get("k"), Op.delete("x", prefix=True)],
                  [Op.get("never")])
    assert fakes[0].requests[-1]["compare"] == [
        {"key": b"k", "target": "value", "result": "=", "value": b"v"},
        {"key": b"k", "target": "version", "result": ">", "value": 0},
    ]
    assert fakes[0].requests[-1]["success"][0] == {
        "put": {"key": b"k", "value": b"w", "prev_kv": True}}
    assert r.succeeded
    put, rng, dele = r.responses
    assert isinstance(put, PutResult)
    assert put.prev_kv is not None
    assert put.prev_kv.value == b"v"
    assert isinstance(rng, RangeResult)
    assert rng.value_str == "w"
    assert rng.header == r.header  # nested results inherit the txn header
    assert dele.deleted == 0  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", [
    lambda c: c.get("a", prefix=True, from_key=True),
    lambda c: c.get("a", limit=-1),
    lambda c: c.put(42, "v"),
    lambda c: c.get("a", sort_order="sideways"),
    lambda c: c.txn([Compare.value("a", "~", "b")], [], []),
    lambda c: c.txn(["not a compare"], [], []),
])
def test_bad_arguments_fail_before_sending(
    fakes: list[FakeMember], bad: Callable[[Client], object]
) -> None:
    with Client([fakes[0].address]) as c, pytest.raises(BadRequestError):
        bad(c)
    assert fakes[0].requests == []


# --- reply parsing -----------------------------------------------------------------

def test_results_are_dataclasses_with_bytes_and_str_views(fakes: list[FakeMember]) -> None:
    with Client([fakes[0].address]) as c:
        put = c.put(b"k1", "välue")
        c.put("k2", b"\xff")
        got = c.get("k", prefix=True, limit=1)
        missing = c.get("nope")
    assert put.header == ResponseHeader(cluster_id=CLUSTER_ID, member_id=1, revision=2,
                                        raft_term=2)
    assert got.kvs == (KeyValue(key=b"k1", value="välue".encode(), create_revision=2,
                                mod_revision=2, version=1, lease=0),)
    assert (got.count, got.more) == (2, True)
    assert got.kvs[0].key_str == "k1"
    assert got.value_str == "välue"
    assert missing.kvs == ()
    assert missing.kv is None
    assert missing.value_str is None


def test_delete_returns_count_and_prev_kvs(fakes: list[FakeMember]) -> None:
    with Client([fakes[0].address]) as c:
        c.put("a/1", "x")
        c.put("a/2", "y")
        r = c.delete("a/", prefix=True, prev_kv=True)
    assert r.deleted == 2
    assert [kv.value for kv in r.prev_kvs] == [b"x", b"y"]


def test_status_member_list_and_leases(fakes: list[FakeMember]) -> None:
    with Client([fakes[0].address]) as c:
        s = c.status()
        members = c.member_list().members
        grant = c.lease_grant(30)
        c.put("held", "1", lease=grant.id)
        ttl = c.lease_timetolive(grant.id, keys=True)
        assert c.lease_keepalive_once(grant.id).ttl == 30
        assert c.lease_leases().leases == (grant.id,)
        c.lease_revoke(grant.id)
        c.compact(2, physical=True)
    assert (s.endpoint, s.member_id, s.name, s.role, s.leader) == (
        fakes[0].address, 1, "m1", "leader", 1)
    assert (s.term, s.commit_index, s.applied_index, s.voters, s.is_learner) == (
        2, 7, 7, (1, 2, 3), False)
    assert members[0].client_urls == (fakes[0].address,)
    assert (ttl.ttl, ttl.granted_ttl, ttl.keys) == (30, 30, (b"held",))
    assert fakes[0].requests[-1] == {"v": 1, "op": "compact", "revision": 2, "physical": True}


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_error_code_raises_its_exception(fakes: list[FakeMember], code: ErrorCode) -> None:
    fakes[0].script("compact", Script(error=code, message=f"boom {code}", times=None))
    with Client([fakes[0].address], timeout_s=0.3) as c, pytest.raises(EtcdliteError) as info:
        c.compact(5)
    assert type(info.value) is ERROR_CLASSES[code]
    assert info.value.message == f"boom {code}"


@pytest.mark.parametrize("raw", [
    b"\xff\x00 not cbor",
    encode_frame({"ok": True}),  # no header, no fields
    encode_frame({"ok": "yes"}),
    b"\xa2av\x02bok\xf5",  # {"v": 2, "ok": true}: a protocol version we do not speak
    encode_frame({"ok": True, "header": {"cluster_id": 1, "member_id": 1, "revision": "x",
                                         "raft_term": 1}, "kvs": [], "count": 0}),
])
def test_malformed_reply_raises_internal_error(fakes: list[FakeMember], raw: bytes) -> None:
    fakes[0].script("range", Script(raw=raw))
    with Client([fakes[0].address]) as c, pytest.raises(InternalError):
        c.get("k")


# --- failover and the retry rule ------------------------------------------------------

def test_fails_over_when_first_endpoint_is_dead(fakes: list[FakeMember], dead: str) -> None:
    with Client([dead, fakes[1].address]) as c:
        c.put("k", "v")
        assert c.get("k").value_str == "v"
        assert c.current_endpoint == fakes[1].address
    assert fakes[1].ops() == ["put", "range"]


def test_write_is_not_resent_after_reply_timeout(fakes: list[FakeMember]) -> None:
    first, second = fakes
    first.script("put", Script(drop=True))
    with Client([first.address, second.address], timeout_s=0.5) as c:
        with pytest.raises(TimeoutError_, match="no reply in time; the write may or may not"):
            c.put("k", "v")
        assert first.dropped.wait(5)
        assert c.current_endpoint == second.address  # the next call starts elsewhere
    assert first.ops() == ["put"]
    assert second.ops() == []


@pytest.mark.parametrize("code", [ErrorCode.NO_LEADER, ErrorCode.NOT_LEADER])
def test_write_is_retried_when_refused_before_proposing(
    fakes: list[FakeMember], code: ErrorCode
) -> None:
    first, second = fakes
    first.script("put", Script(error=code))
    with Client([first.address, second.address]) as c:
        assert c.put("k", "v").header.member_id == 2
    assert (first.ops(), second.ops()) == (["put"], ["put"])


@pytest.mark.parametrize("code", [ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT])
def test_write_is_not_retried_when_it_may_have_been_proposed(
    fakes: list[FakeMember], code: ErrorCode
) -> None:
    first, second = fakes
    first.script("put", Script(error=code))
    with Client([first.address, second.address]) as c, pytest.raises(ERROR_CLASSES[code]):
        c.put("k", "v")
    assert second.ops() == []


def test_read_is_retried_after_reply_timeout(fakes: list[FakeMember]) -> None:
    first, second = fakes
    second.store[b"k"] = {"key": b"k", "value": b"from-2", "create_revision": 2,
                          "mod_revision": 2, "version": 1, "lease": 0}
    first.script("range", Script(drop=True))
    with Client([first.address, second.address], timeout_s=1.0) as c:
        assert c.get("k").value_str == "from-2"
    assert (first.ops(), second.ops()) == (["range"], ["range"])


@pytest.mark.parametrize("code", [ErrorCode.UNAVAILABLE, ErrorCode.NO_LEADER, ErrorCode.TIMEOUT])
def test_read_and_status_are_retried_on_retryable_errors(
    fakes: list[FakeMember], code: ErrorCode
) -> None:
    first, second = fakes
    first.script("range", Script(error=code))
    first.script("status", Script(error=code))
    with Client([first.address, second.address]) as c:
        assert c.get("k").header.member_id == 2
        assert c.status().member_id == 2


def test_retryable_error_everywhere_raises_it_at_the_deadline(fakes: list[FakeMember]) -> None:
    for fake in fakes:
        fake.script("put", Script(error=ErrorCode.NO_LEADER, times=None))
    with Client([f.address for f in fakes], timeout_s=0.3) as c, pytest.raises(NoLeaderError):
        c.put("k", "v")
    assert len(fakes[0].ops()) >= 2  # it kept trying both until the deadline


def test_all_endpoints_dead_raises_unavailable(dead: str, fake_dir: Path) -> None:
    with Client([dead, f"ipc://{fake_dir}/dead2.sock"], timeout_s=0.3) as c:
        with pytest.raises(UnavailableError, match="Connection refused"):
            c.get("k")
        with pytest.raises(UnavailableError):
            c.put("k", "v")


def test_status_of_a_given_endpoint_does_not_fail_over(
    fakes: list[FakeMember], dead: str
) -> None:
    with Client([dead, fakes[1].address]) as c:
        assert c.status(fakes[1].address).endpoint == fakes[1].address
        with pytest.raises(UnavailableError):
            c.status(dead)
    assert fakes[1].ops() == ["status"]


def test_reconnects_after_member_restart(fake_dir: Path) -> None:
    address = f"ipc://{fake_dir}/restart.sock"
    with Client([address], timeout_s=2.0) as c:
        member = FakeMember(address).start()
        try:
            c.put("k", "v")
        finally:
            member.stop()
        with Client([address], timeout_s=0.2) as other, pytest.raises(UnavailableError):
            other.get("k")
        member = FakeMember(address, name="again").start()
        try:
            assert c.status().name == "again"
        finally:
            member.stop()


def test_default_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETCDLITE_ENDPOINTS", raising=False)
    assert Client().endpoints == DEFAULT_ENDPOINTS == (
        "tcp://127.0.0.1:2378", "tcp://127.0.0.1:22378", "tcp://127.0.0.1:32378")
    monkeypatch.setenv("ETCDLITE_ENDPOINTS", "10.0.0.1:2378, ipc:///tmp/x.sock")
    assert Client().endpoints == ("tcp://10.0.0.1:2378", "ipc:///tmp/x.sock")
    assert Client(["h:1"]).endpoints == ("tcp://h:1",)


def test_bad_client_configuration_is_rejected() -> None:
    with pytest.raises(BadRequestError):
        Client([])
    with pytest.raises(BadRequestError):
        Client(["h:1"], timeout_s=0)


# --- AsyncClient (trio) ----------------------------------------------------------------

async def test_async_roundtrip_and_parsing(fakes: list[FakeMember]) -> None:
    async with AsyncClient([fakes[0].address]) as c:
        await c.put("k", "v")
        got = await c.get("k")
        r = await c.txn([Compare.value("k", "=", "v")], [Op.delete("k")], [])
        status = await c.status()
    assert got.value_str == "v"
    assert got.header.member_id == 1
    assert r.succeeded
    assert r.responses[0].deleted == 1
    assert status.endpoint == fakes[0].address


async def test_async_fails_over_when_first_endpoint_is_dead(
    fakes: list[FakeMember], dead: str
) -> None:
    async with AsyncClient([dead, fakes[1].address]) as c:
        await c.put("k", "v")
        assert (await c.get("k")).value_str == "v"
    assert fakes[1].ops() == ["put", "range"]


async def test_async_write_is_not_resent_after_reply_timeout(fakes: list[FakeMember]) -> None:
    first, second = fakes
    first.script("put", Script(drop=True))
    async with AsyncClient([first.address, second.address], timeout_s=0.5) as c:
        with pytest.raises(TimeoutError_):
            await c.put("k", "v")
    assert first.dropped.wait(5)
    assert (first.ops(), second.ops()) == (["put"], [])


async def test_async_read_is_retried_after_reply_timeout(fakes: list[FakeMember]) -> None:
    first, second = fakes
    first.script("range", Script(drop=True))
    async with AsyncClient([first.address, second.address], timeout_s=1.0) as c:
        assert (await c.get("k")).header.member_id == 2


async def test_async_concurrent_requests_share_a_socket(fakes: list[FakeMember]) -> None:
    results: list[RangeResult] = []
    async with AsyncClient([fakes[0].address]) as c:
        await c.put("k", "v")

        async def one() -> None:
            results.append(await c.get("k"))

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(one)
    assert [r.value_str for r in results] == ["v"] * 8


async def test_async_errors_are_typed(fakes: list[FakeMember]) -> None:
    fakes[0].script("range", Script(error=ErrorCode.COMPACTED, message="at 3"))
    async with AsyncClient([fakes[0].address]) as c:
        with pytest.raises(ERROR_CLASSES[ErrorCode.COMPACTED], match="at 3"):
            await c.get("k", revision=1)


def test_pending_write_is_not_resent_to_a_restarted_member(fake_dir: Path) -> None:
    """The member dies with a write pending and comes back: the write must not reach it."""
    address = f"ipc://{fake_dir}/bounce.sock"
    first = FakeMember(address).start()
    first.script("put", Script(drop=True))
    second: FakeMember | None = None
    try:
        with Client([address], timeout_s=1.5) as c, \
                concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(c.put, "k", "v")
            assert first.dropped.wait(5)
            first.stop()
            second = FakeMember(address, name="second").start()
            with pytest.raises(TimeoutError_, match="connection lost"):
                pending.result(timeout=10)
        assert second.ops() == []
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_req_socket_never_resends_by_itself() -> None:
    sock = new_req_socket(1.0)
    try:
        assert sock.resend_time == -1
    finally:
        sock.close()

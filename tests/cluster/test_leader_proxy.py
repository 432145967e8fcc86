"""LeaderProxy against a fake leader endpoint: relay, errors, markers, leader changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pynng
import pytest
import trio

from actors.leader_proxy import FORWARDED, LeaderProxy, is_forwarded, strip_forwarded
from cluster import codec
from cluster.errors import (
    LeaseNotFoundError,
    NoLeaderError,
    TimeoutError_,
    UnavailableError,
)
from cluster.messages import NONE


async def serve(url: str, received: list[dict[str, Any]], *, reply: dict[str, Any] | None,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """A leader that answers every request with `reply` (None: never answers)."""
    with pynng.Rep0(listen=url) as sock:
        task_status.started()
        while True:
            body = codec.decode_frame(await sock.arecv())
            received.append(body)
            if reply is None:
                await trio.sleep_forever()
            await sock.asend(codec.encode_frame(reply))


def proxy_for(urls: dict[int, str], leader: list[int], timeout_s: float = 2.0) -> LeaderProxy:
    return LeaderProxy(leader_id=lambda: leader[0], client_url_of=urls.get, timeout_s=timeout_s)


@pytest.fixture
def ipc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lp")


async def test_relays_the_leaders_reply_and_marks_the_frame(ipc: Path) -> None:
    url = f"ipc://{ipc}/leader.sock"
    received: list[dict[str, Any]] = []
    header = {"cluster_id": 1, "member_id": 7, "revision": 3, "raft_term": 2}
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: serve(url, received, task_status=task_status,
                                                      reply={"ok": True, "header": header,
                                                             "id": 5, "ttl": 9}))
        proxy = proxy_for({7: url}, [7])
        for _ in range(5):  # round robin over the pool, all relayed the same
            result = await proxy.forward({"v": 1, "op": "lease_keepalive", "id": 5})
            assert result == {"header": header, "id": 5, "ttl": 9}
        assert received[0] == {"v": 1, "op": "lease_keepalive", "id": 5, FORWARDED: 1}
        assert proxy.statistics().forwarded == 5
        assert proxy.statistics().sockets == 2
        proxy.close()
        nursery.cancel_scope.cancel()


async def test_relays_the_leaders_typed_error(ipc: Path) -> None:
    url = f"ipc://{ipc}/leader.sock"
    error = LeaseNotFoundError("lease not found").to_wire()
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: serve(url, [], task_status=task_status,
                                                      reply={"ok": False, "error": error}))
        proxy = proxy_for({7: url}, [7])
        with pytest.raises(LeaseNotFoundError):
            await proxy.forward({"v": 1, "op": "lease_keepalive", "id": 5})
        proxy.close()
        nursery.cancel_scope.cancel()


async def test_no_leader_unknown_address_and_unreachable_leader(ipc: Path) -> None:
    with pytest.raises(NoLeaderError):
        await proxy_for({}, [NONE]).forward({"op": "lease_leases"})
    with pytest.raises(NoLeaderError):
        await proxy_for({}, [7]).forward({"op": "lease_leases"})
    with pytest.raises(UnavailableError):
        await proxy_for({7: f"ipc://{ipc}/nobody.sock"}, [7]).forward({"op": "lease_leases"})


async def test_a_silent_leader_times_out(ipc: Path) -> None:
    url = f"ipc://{ipc}/leader.sock"
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: serve(url, [], task_status=task_status,
                                                      reply=None))
        proxy = proxy_for({7: url}, [7], timeout_s=0.3)
        with pytest.raises(TimeoutError_):
            await proxy.forward({"op": "lease_leases"})
        proxy.close()
        nursery.cancel_scope.cancel()


async def test_follows_the_leader_to_its_new_address(ipc: Path) -> None:
    old, new = f"ipc://{ipc}/old.sock", f"ipc://{ipc}/new.sock"
    got_old: list[dict[str, Any]] = []
    got_new: list[dict[str, Any]] = []
    ok = {"ok": True, "header": {}, "leases": []}
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: serve(old, got_old, reply=ok,
                                                      task_status=task_status))
        await nursery.start(lambda task_status: serve(new, got_new, reply=ok,
                                                      task_status=task_status))
        leader = [1]
        proxy = proxy_for({1: old, 2: new}, leader)
        await proxy.forward({"op": "lease_leases"})
        leader[0] = 2
        await proxy.forward({"op": "lease_leases"})
        assert (len(got_old), len(got_new)) == (1, 1)
        assert proxy.statistics().sockets == 1  # the old leader's pool was closed
        proxy.close()
        nursery.cancel_scope.cancel()


def test_forwarded_marker_helpers() -> None:
    body = {"op": "lease_leases", FORWARDED: 1}
    assert is_forwarded(body)
    assert strip_forwarded(body) == {"op": "lease_leases"}
    assert not is_forwarded({"op": "lease_leases"})

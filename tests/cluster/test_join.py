"""Which id a member runs as: derived, remembered in its data dir, or learned from the cluster."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from cluster.client_types import Member, MemberListResult, ResponseHeader
from cluster.config import MemberConfig, local_cluster_ipc, member_id_for
from cluster.errors import UnavailableError
from cluster.join import (
    Identity,
    IdentityMismatchError,
    JoinError,
    check_stored,
    learn_identity,
    match_member,
    read_stored,
    unnamed_member_id,
)
from cluster.member import Member as MemberProcess

DERIVED = 0xAAAA
OTHER = 0xBBBB


def _m(member_id: int, name: str, peer: str) -> Member:
    return Member(id=member_id, name=name, peer_urls=(peer,), client_urls=(),
                  is_learner=False)


@pytest.mark.parametrize(("members", "expected"), [
    pytest.param([_m(DERIVED, "m4", "tcp://h:4")], DERIVED, id="native-add-derived-id"),
    pytest.param([_m(OTHER, "", "tcp://h:4")], OTHER, id="etcd-add-unstarted-by-peer-url"),
    pytest.param([_m(OTHER, "m4", "tcp://h:4")], OTHER, id="published-before-dir-was-lost"),
    pytest.param([_m(OTHER, "", "tcp://h:9")], None, id="not-added-yet"),
    pytest.param([], None, id="member-has-not-applied-anything"),
])
def test_match_member_by_derived_id_then_by_peer_url(members: list[Member],
                                                     expected: int | None) -> None:
    found = match_member(members, name="m4", peer_url="tcp://h:4", derived_id=DERIVED)
    assert (found.id if found is not None else None) == expected


def test_a_peer_url_owned_by_another_named_member_is_refused() -> None:
    with pytest.raises(JoinError, match="belongs to member m2"):
        match_member([_m(OTHER, "m2", "tcp://h:4")], name="m4", peer_url="tcp://h:4",
                     derived_id=DERIVED)


@pytest.mark.parametrize(("stored_id", "stored_name", "expected"), [
    pytest.param(DERIVED, None, Identity(DERIVED), id="derived"),
    pytest.param(OTHER, "m4", Identity(OTHER, adopted=True), id="taken-over-for-this-name"),
])
def test_check_stored_accepts_own_ids(stored_id: int, stored_name: str | None,
                                      expected: Identity) -> None:
    assert check_stored(stored_id, stored_name, name="m4", derived_id=DERIVED) == expected


@pytest.mark.parametrize("stored_name", [None, "m5"])
def test_check_stored_refuses_another_members_data_dir(stored_name: str | None) -> None:
    with pytest.raises(IdentityMismatchError, match="this data dir holds member bbbb"):
        check_stored(OTHER, stored_name, name="m4", derived_id=DERIVED)


def test_unnamed_ids_skip_removed_ones_so_a_peer_url_can_be_added_again() -> None:
    first = unnamed_member_id("tcp://h:4", "tok", lambda i: False)
    assert first == member_id_for("", "tcp://h:4", "tok")
    second = unnamed_member_id("tcp://h:4", "tok", lambda i: i == first)
    third = unnamed_member_id("tcp://h:4", "tok", lambda i: i in (first, second))
    assert len({first, second, third}) == 3
    assert unnamed_member_id("tcp://h:5", "tok", lambda i: False) != first


# --- learning the id from the cluster (virtual clock, fake replies) -----------------------


def _joining_cfg(tmp_path: Path) -> MemberConfig:
    """m4 of a 4-member config with state existing, as etcdctl's ETCD_* lines give it."""
    cluster = dataclasses.replace(local_cluster_ipc(4, tmp_path), state="existing")
    return MemberConfig(cluster=cluster, me=cluster.member("m4"), data_dir=tmp_path / "m4")


def _reply(*members: Member, cluster_id: int = 0xC1) -> MemberListResult:
    return MemberListResult(header=ResponseHeader(cluster_id, 1, 1, 2), members=members)


def _asker(replies: Callable[[str, int], MemberListResult]) -> Callable[..., Any]:
    calls: list[str] = []

    async def ask(url: str) -> MemberListResult:
        calls.append(url)
        return replies(url, len(calls))
    ask.calls = calls  # type: ignore[attr-defined]
    return ask


async def test_learns_the_unstarted_id_once_a_lagging_member_catches_up(
        tmp_path: Path, autojump_clock: Any) -> None:
    cfg = _joining_cfg(tmp_path)
    me = cfg.cluster.member("m4")
    added = member_id_for("", me.peer_url, cfg.cluster.token)  # what etcd's MemberAdd registers
    m1 = cfg.cluster.member("m1")

    def replies(url: str, call: int) -> MemberListResult:
        if "m2" in url:
            raise UnavailableError("m2 is down")
        if call < 4:  # the first round: nobody has applied the member add yet
            return _reply(_m(m1.member_id, "m1", m1.peer_url))
        return _reply(_m(m1.member_id, "m1", m1.peer_url), _m(added, "", me.peer_url))
    ask = _asker(replies)
    identity = await learn_identity(cfg, ask=ask)
    assert identity == Identity(added, adopted=True,
                                peer_urls={m1.member_id: m1.peer_url, added: me.peer_url},
                                cluster_id=0xC1)
    assert len(ask.calls) == 4  # type: ignore[attr-defined]


async def test_a_member_added_the_native_way_keeps_its_derived_id(
        tmp_path: Path, autojump_clock: Any) -> None:
    cfg = _joining_cfg(tmp_path)
    me = cfg.cluster.member("m4")
    identity = await learn_identity(
        cfg, ask=_asker(lambda url, n: _reply(_m(me.member_id, "m4", me.peer_url))))
    assert (identity.member_id, identity.adopted) == (me.member_id, False)


async def test_gives_up_when_nobody_answers_or_nobody_knows_us(
        tmp_path: Path, autojump_clock: Any) -> None:
    cfg = _joining_cfg(tmp_path)

    def down(url: str, n: int) -> MemberListResult:
        raise UnavailableError("down")
    with pytest.raises(JoinError, match="no member of the cluster answered"):
        await learn_identity(cfg, ask=_asker(down), timeout_s=5)
    with pytest.raises(JoinError, match="add it first"):
        await learn_identity(cfg, ask=_asker(lambda url, n: _reply()), timeout_s=5)
    assert trio.current_time() >= 10


# --- the data dir remembers ---------------------------------------------------------------


def test_a_taken_over_id_survives_restarts_and_guards_the_data_dir(tmp_path: Path) -> None:
    cfg = _joining_cfg(tmp_path)
    first = MemberProcess(cfg, Identity(OTHER, adopted=True))
    assert first.id == OTHER
    first.close()
    assert read_stored(cfg.data_dir) == (OTHER, "m4")
    again = MemberProcess(cfg)  # a restart: nobody is asked, the dir knows
    assert (again.id, again.identity.adopted) == (OTHER, True)
    again.close()
    m3 = cfg.cluster.member("m3")
    with pytest.raises(IdentityMismatchError, match="holds member bbbb"):
        MemberProcess(dataclasses.replace(cfg, me=m3))


def test_a_native_member_records_its_derived_id_only(tmp_path: Path) -> None:
    cfg = _joining_cfg(tmp_path)
    assert read_stored(cfg.data_dir) is None
    member = MemberProcess(cfg)
    assert member.id == cfg.me.member_id
    member.close()
    assert read_stored(cfg.data_dir) == (cfg.me.member_id, None)

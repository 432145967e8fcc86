"""Which member id a member process is: derived, remembered, or learned from the cluster.

etcdlite derives member ids from (name, peer URL, token), so that every member
computes the same ids from the same config. A member added the native way
(`etcdlite member add NAME`, `supervisor.py --add-member`) is therefore found
under the id its own config derives. etcd's MemberAdd carries no name, so a
member added through etcd's API (`etcdctl member add NAME --peer-urls=...`)
is registered with an empty name and the id of that empty name: it is
"unstarted". As etcd's ValidateClusterAndAssignIDs does, a new member started
with an empty data dir and initial-cluster-state "existing" asks the running
cluster for its member list and, if its derived id is not there, takes over
the id of the unstarted member whose peer URL is its own. Once it has joined it
publishes its name and client URLs through the log (actors/member_publish.py).

The data dir remembers the id (wal.db meta `member_id`) and, for an id taken
over this way, the name it was taken for (`member_name`): a restart uses the
same id without asking anyone, and a data dir handed to another member is
still refused.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

from cluster.client_async import AsyncClient
from cluster.client_types import Member, MemberListResult
from cluster.config import MemberConfig, MemberSpec, member_id_for
from cluster.errors import EtcdliteError
from storage.wal import SqliteWal

log = logging.getLogger("etcdlite.join")

META_MEMBER_ID = "member_id"
META_MEMBER_NAME = "member_name"
"""Set only for an id taken over from an unstarted member (see the module docstring)."""

join_timeout_s_default = 30.0
"""How long a joining member keeps asking before it gives up (and exits, so that its
supervisor restarts it): long enough for a just-committed member add to reach every
member, short enough that a typo in initial-cluster is reported, not waited on."""
ask_timeout_s = 2.0
ask_retry_s = 0.5

AskMembers = Callable[[str], Awaitable[MemberListResult]]
"""A native client URL -> that member's applied member list (and its header)."""


class IdentityMismatchError(RuntimeError):
    """The data dir belongs to another member or cluster: refuse rather than corrupt it."""


class JoinError(RuntimeError):
    """A member joining an existing cluster could not find itself in it."""


@dataclass(frozen=True, slots=True)
class Identity:
    """The id this member process runs as.

    `adopted`: taken over from an unstarted member (not the derived id).
    `peer_urls`: every member's peer URL as the cluster reported it while joining
    (empty if the cluster was not asked): who to talk to before the log says.
    `cluster_id`: the id the cluster reported (0 = not asked); the config's own is
    wrong for a joining member, whose config lists itself under another id.
    """

    member_id: int
    adopted: bool = False
    peer_urls: Mapping[int, str] = field(default_factory=dict)
    cluster_id: int = 0


def advertised(cfg: MemberConfig) -> MemberSpec:
    """This member as the cluster list describes it: listen overrides change where
    it binds (cfg.me), never the URLs others know it by."""
    return cfg.cluster.member(cfg.me.name)


def check_stored(stored_id: int, stored_name: str | None, *, name: str,
                 derived_id: int) -> Identity:
    """The identity of a data dir that already holds one.

    Raises:
        IdentityMismatchError: the id is neither this member's derived id nor one
            taken over for this member's name (the dir belongs to someone else).
    """
    if stored_id == derived_id:
        return Identity(stored_id)
    if stored_name is not None and stored_name == name:
        return Identity(stored_id, adopted=True)
    owner = f" ({stored_name})" if stored_name else ""
    raise IdentityMismatchError(
        f"this data dir holds member {stored_id:x}{owner}; {name} is {derived_id:x}")


def match_member(members: Sequence[Member], *, name: str, peer_url: str,
                 derived_id: int) -> Member | None:
    """Find this member in the cluster's member list (pure; etcd matches by peer URL).

    The derived id wins (added the native way). Otherwise the member holding our
    peer URL is us if it has no name yet (added by etcd's MemberAdd, unstarted) or
    our name (it was us before our data dir was lost). None if neither is there yet.

    Raises:
        JoinError: our peer URL belongs to a member with another name.
    """
    for m in members:
        if m.id == derived_id:
            return m
    for m in members:
        if peer_url in m.peer_urls:
            if m.name in ("", name):
                return m
            raise JoinError(f"peer URL {peer_url} belongs to member {m.name} ({m.id:x}), "
                            f"not to {name}")
    return None


def unnamed_member_id(peer_url: str, token: str, is_removed: Callable[[int], bool]) -> int:
    """The id of a member added by etcd's MemberAdd (no name to derive it from).

    The new member never derives it (it learns it by peer URL), so the leader may
    choose: the empty name's id, or, if that id was removed before, the next one that
    was not. A peer URL can thus be added again after its member was removed, as in
    etcd, whose ids are random; a removed id itself still never rejoins. "#" cannot
    occur in a member name, so these ids never collide with derived ones.
    """
    member_id, attempt = member_id_for("", peer_url, token), 0
    while is_removed(member_id):
        attempt += 1
        member_id = member_id_for(f"#{attempt}", peer_url, token)
    return member_id


def read_stored(data_dir: Path) -> tuple[int, str | None] | None:
    """(member id, name it was taken over for) recorded in a data dir; None if blank."""
    path = data_dir / "wal.db"
    if not path.exists():
        return None
    wal = SqliteWal(path)
    try:
        have = wal.get_meta(META_MEMBER_ID)
        return None if have is None else (int(have), wal.get_meta(META_MEMBER_NAME))
    finally:
        wal.close()


async def _ask_native(client_url: str) -> MemberListResult:
    async with AsyncClient([client_url], timeout_s=ask_timeout_s) as c:
        return await c.member_list()


async def learn_identity(cfg: MemberConfig, *, ask: AskMembers = _ask_native,
                         timeout_s: float = join_timeout_s_default) -> Identity:
    """Ask the running cluster which id this new member has (state "existing", blank dir).

    Every other member of the config is asked over the native protocol, round after
    round, until one reports us: a member that has not applied the member add yet
    simply does not, so a later round (or another member) will.

    Raises:
        JoinError: no member answered, or none knows us, within `timeout_s`; or our
            peer URL belongs to another member.
    """
    me = advertised(cfg)
    endpoints = [m.client_url for m in cfg.cluster.members if m.name != me.name]
    if not endpoints:
        log.warning("%s: no other member to ask; joining as %x", me.name, me.member_id)
        return Identity(me.member_id)
    answered: set[str] = set()
    with trio.move_on_after(timeout_s):
        while True:
            for url in endpoints:
                try:
                    with trio.fail_after(ask_timeout_s * 2):
                        reply = await ask(url)
                except (EtcdliteError, OSError, trio.TooSlowError):
                    continue
                answered.add(url)
                found = match_member(reply.members, name=me.name, peer_url=me.peer_url,
                                     derived_id=me.member_id)
                if found is not None:
                    peers = {m.id: m.peer_urls[0] for m in reply.members if m.peer_urls}
                    adopted = found.id != me.member_id
                    if adopted:
                        log.info("%s takes over member %x (peer URL %s) from the cluster",
                                 me.name, found.id, me.peer_url)
                    return Identity(found.id, adopted=adopted, peer_urls=peers,
                                    cluster_id=reply.header.cluster_id)
            await trio.sleep(ask_retry_s)
    if not answered:
        raise JoinError(f"{me.name}: no member of the cluster answered at "
                        f"{', '.join(endpoints)} within {timeout_s:.0f}s")
    raise JoinError(
        f"{me.name}: the cluster has no member {me.member_id:x} and no unstarted member "
        f"with peer URL {me.peer_url}; add it first (etcdlite member add {me.name} "
        f"--peer-urls {me.peer_url}, or etcdctl member add {me.name} --peer-urls=...)")

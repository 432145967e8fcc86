"""`etcdlite member ...` and `etcdlite move-leader`: membership and leadership.

Member ids are printed and typed in hex, as etcdctl does. Changes are made by
the leader; the client finds it (a follower answers `not_leader`).
"""

from __future__ import annotations

import click

from cluster import cli_output as out
from cluster.cli_common import Settings, write_out_option
from cluster.client_types import Member, MemberListResult

MEMBER_ID = click.IntRange(min=1)


class _HexId(click.ParamType):
    name = "ID"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return int(str(value), 16)
        except ValueError:
            self.fail(f"{value!r} is not a hex member id", param, ctx)


HEX_ID = _HexId()


def _urls(text: str) -> list[str]:
    return [u.strip() for u in text.split(",") if u.strip()]


def _print_members(fmt: str, r: MemberListResult) -> None:
    if fmt == "json":
        out.echo_json({"header": out.header_json(r.header), "members": [
            {"ID": m.id, "name": m.name, "peerURLs": list(m.peer_urls),
             "clientURLs": list(m.client_urls), "isLearner": m.is_learner}
            for m in r.members]})
        return
    # etcdctl's rule: a member without a name (added by etcd's MemberAdd, not yet joined)
    # is "unstarted"; it gets its name when its process joins and publishes it.
    rows = [(f"{m.id:x}", "started" if m.name else "unstarted", m.name,
             ",".join(m.peer_urls), ",".join(m.client_urls), str(m.is_learner).lower())
            for m in r.members]
    if fmt == "table":
        out.echo_table(["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"],
                       rows)
    else:
        for row in rows:
            click.echo(", ".join(row))


@click.group("member")
def member_group() -> None:
    """List, add, remove, promote and update cluster members (ids in hex).

    \b
    Examples:
      etcdlite member list -w table
      etcdlite member add m4 --peer-urls tcp://127.0.0.1:42380 \\
          --client-urls tcp://127.0.0.1:42378 --learner
      etcdlite member promote 4bd1f2a3c5e6d7f8
      etcdlite member remove 4bd1f2a3c5e6d7f8
    """


@member_group.command("list")
@write_out_option
@click.pass_obj
def list_cmd(s: Settings) -> None:
    """List every member."""
    with s.client() as c:
        _print_members(s.write_out, c.member_list())


def _announce(verb: str, m: Member | None, r: MemberListResult) -> None:
    who = f"{m.id:x}" if m is not None else "?"
    click.echo(f"Member {who} {verb} in cluster {r.header.cluster_id:x}")


@member_group.command("add")
@click.argument("name")
@click.option("--peer-urls", required=True, help="Comma-separated peer URLs (tcp:// or ipc://).")
@click.option("--client-urls", default="", help="Comma-separated native client URLs.")
@click.option("--learner", is_flag=True, help="Add as a non-voting learner (promote later).")
@write_out_option
@click.pass_obj
def add_cmd(s: Settings, name: str, peer_urls: str, client_urls: str, learner: bool) -> None:
    """Add member NAME; then start it with initial-cluster-state existing."""
    with s.client() as c:
        r = c.member_add(name, _urls(peer_urls), _urls(client_urls), is_learner=learner)
    if s.write_out == "json":
        _print_members("json", r)
        return
    _announce("added", r.member, r)
    names = ",".join(f"{m.name}={m.peer_urls[0]}" for m in r.members if m.peer_urls)
    click.echo(f'\nETCD_NAME="{name}"\nETCD_INITIAL_CLUSTER="{names}"\n'
               'ETCD_INITIAL_CLUSTER_STATE="existing"')


@member_group.command("remove")
@click.argument("member_id", metavar="ID", type=HEX_ID)
@click.pass_obj
def remove_cmd(s: Settings, member_id: int) -> None:
    """Remove member ID (the leader too: it steps down after the removal)."""
    with s.client() as c:
        r = c.member_remove(member_id)
    click.echo(f"Member {member_id:x} removed from cluster {r.header.cluster_id:x}")


@member_group.command("promote")
@click.argument("member_id", metavar="ID", type=HEX_ID)
@click.pass_obj
def promote_cmd(s: Settings, member_id: int) -> None:
    """Promote learner ID to a voter once it has caught up with the leader."""
    with s.client() as c:
        r = c.member_promote(member_id)
    click.echo(f"Member {member_id:x} promoted in cluster {r.header.cluster_id:x}")


@member_group.command("update")
@click.argument("member_id", metavar="ID", type=HEX_ID)
@click.option("--peer-urls", required=True)
@click.pass_obj
def update_cmd(s: Settings, member_id: int, peer_urls: str) -> None:
    """Change the peer URLs of member ID."""
    with s.client() as c:
        r = c.member_update(member_id, _urls(peer_urls))
    click.echo(f"Member {member_id:x} updated in cluster {r.header.cluster_id:x}")


@click.command("move-leader")
@click.argument("target", metavar="ID", type=HEX_ID)
@click.pass_obj
def move_leader_cmd(s: Settings, target: int) -> None:
    """Hand leadership to voter ID without waiting for an election timeout."""
    with s.client() as c:
        c.move_leader(target)
    click.echo(f"Leadership transferred to {target:x}")

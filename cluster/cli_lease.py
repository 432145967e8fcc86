"""`etcdlite lease ...`: grant, revoke, inspect and keep leases alive.

Lease ids are printed and typed in hex (16 digits), as etcdctl does, so the
id is always the second word of `lease grant`'s output for scripts.
"""

from __future__ import annotations

import click

from cluster import cli_output as out
from cluster.cli_common import LEASE_ID, Settings, write_out_option
from cluster.client_types import LeaseKeepAliveResult


def _lease(lease_id: int) -> str:
    return f"{lease_id:016x}"


@click.group("lease")
def lease_group() -> None:
    """Grant, revoke, inspect and keep alive leases (ids in hex).

    \b
    Examples:
      etcdlite lease grant 60
      etcdlite put --lease 694d77aa9e38260f session alive
      etcdlite lease timetolive 694d77aa9e38260f --keys
      etcdlite lease keep-alive 694d77aa9e38260f
      etcdlite lease revoke 694d77aa9e38260f
    """


@lease_group.command("grant")
@click.argument("ttl", type=click.IntRange(min=1))
@write_out_option
@click.pass_obj
def grant_cmd(s: Settings, ttl: int) -> None:
    """Create a lease of TTL seconds and print its id."""
    with s.client() as c:
        r = c.lease_grant(ttl)
    if s.write_out == "json":
        out.echo_json({"header": out.header_json(r.header), "ID": r.id, "TTL": r.ttl})
    else:
        click.echo(f"lease {_lease(r.id)} granted, ttl {r.ttl}s")


@lease_group.command("revoke")
@click.argument("lease_id", metavar="ID", type=LEASE_ID)
@write_out_option
@click.pass_obj
def revoke_cmd(s: Settings, lease_id: int) -> None:
    """End lease ID now; every key attached to it is deleted."""
    with s.client() as c:
        r = c.lease_revoke(lease_id)
    if s.write_out == "json":
        out.echo_json({"header": out.header_json(r.header)})
    else:
        click.echo(f"lease {_lease(lease_id)} revoked")


@lease_group.command("timetolive")
@click.argument("lease_id", metavar="ID", type=LEASE_ID)
@click.option("--keys", is_flag=True, help="Also list the keys attached to the lease.")
@write_out_option
@click.pass_obj
def timetolive_cmd(s: Settings, lease_id: int, keys: bool) -> None:
    """Show the granted and remaining TTL of lease ID."""
    with s.client() as c:
        r = c.lease_timetolive(lease_id, keys=keys)
    out.print_timetolive(s.write_out, r)


@lease_group.command("list")
@write_out_option
@click.pass_obj
def list_cmd(s: Settings) -> None:
    """List the ids of all live leases."""
    with s.client() as c:
        r = c.lease_leases()
    if s.write_out == "json":
        out.echo_json({"header": out.header_json(r.header),
                       "leases": [{"ID": lease_id} for lease_id in r.leases]})
        return
    click.echo(f"found {len(r.leases)} leases")
    for lease_id in r.leases:
        click.echo(_lease(lease_id))


@lease_group.command("keep-alive")
@click.argument("lease_id", metavar="ID", type=LEASE_ID)
@click.option("--once", is_flag=True, help="Refresh once and exit.")
@write_out_option
@click.pass_obj
def keep_alive_cmd(s: Settings, lease_id: int, once: bool) -> None:
    """Refresh lease ID every third of its TTL until interrupted (Ctrl-C).

    Prints one line per renewal. Exits 1 with "lease ID expired or revoked."
    when the cluster no longer has the lease.
    """

    def show(r: LeaseKeepAliveResult) -> None:
        if s.write_out == "json":
            out.echo_json({"header": out.header_json(r.header), "ID": r.id, "TTL": r.ttl})
        else:
            click.echo(f"lease {_lease(r.id)} keepalived with TTL({r.ttl})")

    with s.client() as c:
        if once:
            show(c.lease_keepalive_once(lease_id))
            return
        with c.lease_keepalive(lease_id, on_renew=show) as ka:
            try:
                ka.wait_lost()
            except KeyboardInterrupt:
                return
    click.echo(f"lease {_lease(lease_id)} expired or revoked.")
    raise click.exceptions.Exit(1)

"""`etcdlite`: the command line for an etcdlite cluster, shaped like etcdctl.

Every command is a thin layer over `cluster.client.Client`; printing lives in
`cluster.cli_output`, lease commands in `cluster.cli_lease`. Errors from the
cluster arrive as typed exceptions and are turned into "Error: <code>:
<message>" on stderr with a documented exit code, in one place
(`cli_common.ErrorMappingGroup`), so no command handles them itself.
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

import click

from cluster import cli_output as out
from cluster.cli_auth import auth_group, resolve_user, role_group, user_group
from cluster.cli_benchmark import benchmark_group, check_group
from cluster.cli_common import LEASE_ID, ErrorMappingGroup, Settings, arg_bytes, write_out_option
from cluster.cli_concurrency import elect_cmd, lock_cmd
from cluster.cli_lease import lease_group
from cluster.cli_maintenance import (
    alarm_group,
    defrag_cmd,
    endpoint_hashkv_cmd,
    endpoint_health_cmd,
)
from cluster.cli_member import member_group, move_leader_cmd
from cluster.cli_snapshot import snapshot_group
from cluster.cli_txn import txn_cmd
from cluster.cli_watch import watch_cmd
from cluster.client_transport import ENDPOINTS_ENV, resolve_endpoints
from cluster.errors import EtcdliteError
from cluster.torture.cli import torture_cmd


def _version() -> str:
    try:
        return metadata.version("etcdlite")
    except metadata.PackageNotFoundError:  # run from a checkout: ask pyproject.toml
        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            with pyproject.open("rb") as f:
                return str(tomllib.load(f)["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


_SORT_TARGETS = {"key": "key", "create": "create", "modify": "mod", "version": "version",
                 "value": "value"}


@click.group(cls=ErrorMappingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", prog_name="etcdlite")
@click.option("--endpoints", envvar=ENDPOINTS_ENV, show_envvar=True, metavar="URLS",
              help="Comma-separated native endpoints (tcp://host:port, ipc:///path or "
                   "host:port). Default: the local 3-member cluster.")
@click.option("--command-timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True),
              default=5.0, show_default=True, help="Deadline of one command, in seconds.")
@click.option("-w", "--write-out", type=click.Choice(out.FORMATS), default="simple",
              show_default=True, help="Output format.")
@click.option("--user", envvar="ETCDLITE_USER", show_envvar=True, metavar="NAME[:PASSWORD]",
              help="Authenticate as this user (asks for the password if not given).")
@click.pass_context
def cli(ctx: click.Context, endpoints: str | None, timeout_s: float, write_out: str,
        user: str | None) -> None:
    """Talk to an etcdlite cluster (etcd v3 rebuilt in Python).

    \b
    Examples:
      etcdlite put greeting hello
      etcdlite get greeting
      etcdlite get --prefix '' -w json
      etcdlite del greeting
      etcdlite endpoint status -w table
      etcdlite lease grant 60
      etcdlite snapshot save backup.db
      etcdlite --endpoints tcp://10.0.0.1:2378,tcp://10.0.0.2:2378 get foo
      etcdlite --user root:secret user list

    With neither --endpoints nor $ETCDLITE_ENDPOINTS, commands go to the local
    cluster started by `python supervisor.py --members 3`.

    \b
    Exit codes:
      0  success
      1  the cluster reported an error, or the input was rejected
      2  usage error (unknown flag, missing argument)
      3  unavailable: no endpoint reachable, no leader, or timed out
    """
    try:
        resolved = resolve_endpoints(endpoints)
    except EtcdliteError as exc:
        raise click.BadParameter(exc.message, param_hint="--endpoints") from None
    ctx.obj = Settings(resolved, timeout_s, write_out, resolve_user(user))


@cli.command("put")
@click.argument("key")
@click.argument("value", required=False)
@click.option("--lease", type=LEASE_ID, default="0", help="Attach the key to this lease (hex id).")
@click.option("--prev-kv", is_flag=True, help="Also print the key-value it replaced.")
@click.option("--ignore-value", is_flag=True, help="Keep the current value (change the lease).")
@click.option("--ignore-lease", is_flag=True, help="Keep the current lease (change the value).")
@write_out_option
@click.pass_obj
def put_cmd(s: Settings, key: str, value: str | None, lease: int, prev_kv: bool,
            ignore_value: bool, ignore_lease: bool) -> None:
    """Write KEY=VALUE; prints OK.

    \b
    Examples:
      etcdlite put greeting hello
      echo -n hello | etcdlite put greeting
      etcdlite put --lease 694d77aa9e38260f session alive

    Without VALUE (and without --ignore-value) the value is read from stdin.
    """
    if value is not None:
        data = arg_bytes(value)
    elif ignore_value:
        data = b""
    else:
        data = sys.stdin.buffer.read()
    with s.client() as c:
        result = c.put(arg_bytes(key), data, lease=lease, prev_kv=prev_kv,
                       ignore_value=ignore_value, ignore_lease=ignore_lease)
    out.print_put(s.write_out, result)


def _range_flags(range_end: str | None, prefix: bool, from_key: bool) -> None:
    if sum((range_end is not None, prefix, from_key)) > 1:
        raise click.UsageError("use only one of RANGE_END, --prefix and --from-key")


@cli.command("get")
@click.argument("key")
@click.argument("range_end", required=False)
@click.option("--prefix", is_flag=True, help="Every key starting with KEY.")
@click.option("--from-key", is_flag=True, help="Every key >= KEY (byte order).")
@click.option("--limit", type=click.IntRange(min=0), default=0, help="At most this many keys.")
@click.option("--rev", type=click.IntRange(min=0), default=0, help="Read at this revision.")
@click.option("--sort-by", type=click.Choice(list(_SORT_TARGETS), case_sensitive=False),
              help="Sort the result by this field.")
@click.option("--order", type=click.Choice(["ascend", "descend"], case_sensitive=False),
              help="Sort direction (ascend when only --sort-by is given).")
@click.option("--keys-only", is_flag=True, help="Print keys without values.")
@click.option("--count-only", is_flag=True, help="Print only the number of keys.")
@click.option("--print-value-only", is_flag=True, help="Print values without keys.")
@click.option("--consistency", type=click.Choice(["l", "s"]), default="l", show_default=True,
              help="l: linearizable, s: serializable (local, possibly stale).")
@write_out_option
@click.pass_obj
def get_cmd(s: Settings, key: str, range_end: str | None, prefix: bool, from_key: bool,
            limit: int, rev: int, sort_by: str | None, order: str | None, keys_only: bool,
            count_only: bool, print_value_only: bool, consistency: str) -> None:
    """Read KEY, or the range [KEY, RANGE_END); prints key then value lines.

    \b
    Examples:
      etcdlite get greeting
      etcdlite get --prefix /config/ --keys-only
      etcdlite get a z --limit 10 --sort-by modify --order descend
      etcdlite get --from-key '' --rev 12 -w json
    """
    _range_flags(range_end, prefix, from_key)
    sort_order = order.lower() if order else ("ascend" if sort_by else None)
    with s.client() as c:
        result = c.get(
            arg_bytes(key), range_end=None if range_end is None else arg_bytes(range_end),
            prefix=prefix, from_key=from_key, limit=limit, revision=rev,
            serializable=consistency == "s", keys_only=keys_only, count_only=count_only,
            sort_order=sort_order, sort_target=_SORT_TARGETS[sort_by.lower()] if sort_by else None,
        )
    out.print_get(s.write_out, result, keys_only=keys_only, count_only=count_only,
                  value_only=print_value_only)


@cli.command("del")
@click.argument("key")
@click.argument("range_end", required=False)
@click.option("--prefix", is_flag=True, help="Every key starting with KEY.")
@click.option("--from-key", is_flag=True, help="Every key >= KEY (byte order).")
@click.option("--prev-kv", is_flag=True, help="Also print the deleted key-values.")
@write_out_option
@click.pass_obj
def del_cmd(s: Settings, key: str, range_end: str | None, prefix: bool, from_key: bool,
            prev_kv: bool) -> None:
    """Delete KEY, or the range [KEY, RANGE_END); prints how many keys were deleted.

    \b
    Examples:
      etcdlite del greeting
      etcdlite del --prefix /sessions/ --prev-kv
    """
    _range_flags(range_end, prefix, from_key)
    with s.client() as c:
        result = c.delete(
            arg_bytes(key), range_end=None if range_end is None else arg_bytes(range_end),
            prefix=prefix, from_key=from_key, prev_kv=prev_kv,
        )
    out.print_delete(s.write_out, result)


@cli.command("compaction")
@click.argument("revision", type=click.IntRange(min=1))
@click.option("--physical", is_flag=True, help="Wait until the space is really reclaimed.")
@write_out_option
@click.pass_obj
def compaction_cmd(s: Settings, revision: int, physical: bool) -> None:
    """Discard history at or below REVISION (latest versions of live keys stay).

    \b
    Example:
      etcdlite compaction 1200
    """
    with s.client() as c:
        result = c.compact(revision, physical=physical)
    if s.write_out == "json":
        out.echo_json({"header": out.header_json(result.header)})
    else:
        click.echo(f"compacted revision {revision}")


@cli.group("endpoint", cls=ErrorMappingGroup)
def endpoint_group() -> None:
    """Inspect each endpoint given by --endpoints.

    \b
    Examples:
      etcdlite endpoint status -w table
      etcdlite endpoint health
    """


def _report(failures: list[tuple[str, EtcdliteError]], total: int) -> None:
    """Print every per-endpoint failure, then fail the command with the first one's code."""
    for endpoint, exc in failures:
        where = "" if endpoint in exc.message else f" (endpoint {endpoint})"
        click.echo(f"Error: {exc.code.value}: {exc.message}{where}", err=True)
    if failures:
        first = failures[0][1]
        raise type(first)(f"{len(failures)} of {total} endpoints failed")


@endpoint_group.command("status")
@write_out_option
@click.pass_obj
def endpoint_status_cmd(s: Settings) -> None:
    """Show each member's id, role, leader, term, indexes, revision and db size."""
    statuses, failures = [], []
    with s.client() as c:
        for endpoint in s.endpoints:
            try:
                statuses.append(c.status(endpoint))
            except EtcdliteError as exc:
                failures.append((endpoint, exc))
    out.print_status(s.write_out, statuses)
    _report(failures, len(s.endpoints))


endpoint_group.add_command(endpoint_health_cmd)
endpoint_group.add_command(endpoint_hashkv_cmd)
cli.add_command(lease_group)
cli.add_command(defrag_cmd)
cli.add_command(alarm_group)
cli.add_command(snapshot_group)
cli.add_command(lock_cmd)
cli.add_command(elect_cmd)
cli.add_command(member_group)
cli.add_command(txn_cmd)
cli.add_command(move_leader_cmd)
cli.add_command(watch_cmd)
cli.add_command(benchmark_group)
cli.add_command(check_group)
cli.add_command(torture_cmd)
cli.add_command(user_group)
cli.add_command(role_group)
cli.add_command(auth_group)


def main() -> None:
    """Console-script entry point (`etcdlite`)."""
    cli(prog_name="etcdlite")

"""`etcdlite snapshot save|status|restore`: back up a cluster, inspect, start anew from it.

`save` talks to a member; `status` and `restore` work on the file alone
(like etcdutl), see `cluster.snapshot_file`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import click

from cluster import cli_output as out
from cluster.cli_common import Settings, write_out_option
from cluster.client_maintenance import SNAPSHOT_FORMATS
from cluster.config import DEFAULT_TOKEN, resolve_member_config
from cluster.errors import BadRequestError
from cluster.snapshot_file import restore_snapshot, snapshot_status


@click.group("snapshot")
def snapshot_group() -> None:
    """Save a cluster's state to a file, inspect a file, or restore a new cluster from it.

    \b
    Examples:
      etcdlite snapshot save backup.db
      etcdlite snapshot status backup.db -w table
      etcdlite snapshot restore backup.db --name m1 --data-dir data/m1 \\
          --initial-cluster m1=tcp://127.0.0.1:2380,m2=tcp://127.0.0.1:22380 \\
          --initial-cluster-token restored-1
    """


@snapshot_group.command("save")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(SNAPSHOT_FORMATS), default="etcdlite",
              show_default=True,
              help="etcdlite: the member's state.db; etcd: etcd's bbolt backend file, "
                   "which etcdctl snapshot status/restore read.")
@write_out_option
@click.pass_obj
def save_cmd(s: Settings, file: Path, fmt: str) -> None:
    """Save a consistent copy of one member's key space (the first endpoint that
    answers) to FILE, checked against the member's sha256.

    The member copies its state.db with SQLite's backup API while it keeps
    serving; --command-timeout bounds each step (the copy, then each 4 MiB
    chunk), so raise it for very large stores. Either format can be restored
    by `etcdlite snapshot restore`.
    """
    with s.client() as c:
        info = c.snapshot_save(file, fmt=fmt)
    if s.write_out == "json":
        out.echo_json({"endpoint": info.endpoint, "path": str(info.path), "size": info.size,
                       "sha256": info.sha256, "revision": info.revision,
                       "took_s": round(info.took_s, 3)})
        return
    rate = info.size / 1e6 / info.took_s if info.took_s > 0 else 0.0
    click.echo(f"Snapshot saved at {info.path} (from {info.endpoint}: revision "
               f"{info.revision}, {out.human_bytes(info.size)} in {info.took_s:.2f}s, "
               f"{rate:.1f} MB/s, sha256 {info.sha256[:16]}...)")


@snapshot_group.command("status")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@write_out_option
@click.pass_obj
def status_cmd(s: Settings, file: Path) -> None:
    """Print a snapshot FILE's hash, revision, total keys and total size.

    The hash is the same as `etcdlite endpoint hashkv --rev REVISION` would give
    on a member holding that history; total keys counts stored key versions.
    """
    st = snapshot_status(file)
    if s.write_out == "json":
        out.echo_json({"hash": st.hash, "revision": st.revision, "totalKey": st.total_keys,
                       "totalSize": st.total_size, "liveKeys": st.live_keys,
                       "compactRevision": st.compact_revision})
    elif s.write_out == "table":
        out.echo_table(["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"],
                       [(f"{st.hash:08x}", st.revision, st.total_keys,
                         out.human_bytes(st.total_size))])
    else:
        click.echo(f"{st.hash:08x}, {st.revision}, {st.total_keys}, "
                   f"{out.human_bytes(st.total_size)}")


@snapshot_group.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="This member's name in --initial-cluster.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The new member's data dir (must not exist or be empty). "
                   "Default: <name>.etcdlite")
@click.option("--initial-cluster", default=None, metavar="NAME=URL,...",
              help="Every member of the new cluster and its peer URL.")
@click.option("--initial-cluster-token", default=DEFAULT_TOKEN, show_default=True,
              help="Identifies the new cluster; use a new one per restore.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Take the members from this cluster TOML instead.")
@write_out_option
@click.pass_obj
def restore_cmd(s: Settings, file: Path, name: str, data_dir: Path | None,
                initial_cluster: str | None, initial_cluster_token: str,
                config_path: Path | None) -> None:
    """Create the data dir of member NAME of a NEW cluster from snapshot FILE.

    Run it once per member, with the same --initial-cluster and token, then start
    each member on its dir (`python -m cluster.member --name NAME --data-dir DIR
    --initial-cluster ... --initial-cluster-token ...`). The new cluster has the
    snapshot's keys, history, leases and revision, and its own member and
    cluster ids; the old cluster's membership and alarms are not carried over.

    \b
    Example:
      etcdlite snapshot restore backup.db --name m1 --data-dir /var/lib/m1 \\
          --initial-cluster m1=tcp://10.0.0.1:2380,m2=tcp://10.0.0.2:2380,m3=tcp://10.0.0.3:2380 \\
          --initial-cluster-token restored-1
    """
    flags: dict[str, object] = {"initial-cluster-token": initial_cluster_token,
                                "initial-cluster-state": "new"}
    if initial_cluster is not None:
        flags["initial-cluster"] = initial_cluster
    elif config_path is None:
        raise click.UsageError("give --initial-cluster (or --config)")
    try:
        cfg = resolve_member_config(config_path=config_path, name=name, flags=flags, env={})
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None
    cfg = dataclasses.replace(cfg, data_dir=data_dir or Path(f"{name}.etcdlite"))
    result = restore_snapshot(file, cfg)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if s.write_out == "json":
        out.echo_json({"dataDir": os.fspath(result.data_dir), "name": result.name,
                       "memberID": result.member_id, "clusterID": result.cluster_id,
                       "revision": result.revision, "warnings": list(result.warnings)})
        return
    click.echo(f"restored snapshot {file} into {result.data_dir}: member {result.name} "
               f"({result.member_id:x}) of new cluster {result.cluster_id:x}, "
               f"revision {result.revision}")

"""Growing a running local cluster by one member (`supervisor.py --add-member`).

The running supervisor watches <data-dir>/cluster.toml and starts members
appended to it; this module does the cluster side of the change.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import click

from cluster.client import Client
from cluster.config import (
    cluster_id_for,
    dump_toml,
    find_free_ports,
    load_cluster_config,
    member_spec,
)
from cluster.errors import BadRequestError, EtcdliteError

LOCAL_BASE_PORTS = (2379, 22379, 32379, 42379, 52379, 62379, 12379)
"""DESIGN.md "Ports": member k's base port B_k (peer B_k+1, native client B_k-1)."""


def add_member(data_dir: Path, name: str, timeout_s: float = 60.0) -> None:
    """Grow the running local cluster in `data_dir` by one member, safely.

    The member is added as a learner through the cluster (member_add), appended
    to cluster.toml (the running supervisor notices and starts it with
    initial-cluster-state existing), and promoted to a voter once it has caught
    up, as etcd recommends.
    """
    path = data_dir.resolve() / "cluster.toml"
    if not path.exists():
        raise click.ClickException(f"no cluster in {data_dir}: start supervisor.py first")
    cfg = load_cluster_config(path)
    if any(m.name == name for m in cfg.members):
        raise click.ClickException(f"{name} is already a member")
    used = {m.peer_url for m in cfg.members}
    standard = {f"tcp://127.0.0.1:{b + 1}" for b in LOCAL_BASE_PORTS}
    if used <= standard:  # the default layout: take the next conventional slot
        base = next((b for b in LOCAL_BASE_PORTS if f"tcp://127.0.0.1:{b + 1}" not in used),
                    None)
        if base is None:
            raise click.ClickException("no free local port slot left (7 members at most)")
    else:
        base = find_free_ports(3) + 1  # client base-1, etcd base, peer base+1
    spec = member_spec(name, f"tcp://127.0.0.1:{base + 1}", f"tcp://127.0.0.1:{base - 1}",
                       f"http://127.0.0.1:{base}", token=cfg.token)
    with Client([m.client_url for m in cfg.members], timeout_s=10) as c:
        try:
            c.member_add(name, [spec.peer_url], [spec.client_url], is_learner=True)
        except EtcdliteError as exc:
            raise click.ClickException(f"member add failed: {exc}") from None
        click.echo(f"{name} ({spec.member_id:x}) added as a learner")
        members = (*cfg.members, spec)
        grown = replace(cfg, members=members, state="existing",
                        cluster_id=cluster_id_for(cfg.token, [m.member_id for m in members]))
        tmp = path.with_suffix(".toml.tmp")
        tmp.write_text(dump_toml(grown))
        tmp.replace(path)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                c.member_promote(spec.member_id)
                click.echo(f"{name} caught up and was promoted to a voter")
                return
            except BadRequestError:
                time.sleep(0.5)  # still catching up: promotion is refused until in sync
            except EtcdliteError as exc:
                click.echo(f"waiting to promote {name}: {exc}", err=True)
                time.sleep(0.5)
    raise click.ClickException(f"{name} did not catch up within {timeout_s:.0f}s; "
                               f"promote it later with: etcdlite member promote "
                               f"{spec.member_id:x}")

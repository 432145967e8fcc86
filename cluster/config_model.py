"""The configuration model: what a cluster and a member run with, ids, validation.

One `ClusterConfig` describes the whole initial cluster (every member of it
must agree on it, so member ids and the cluster id are derived from it, not
chosen). One `MemberConfig` is what a single member process runs with: the
cluster plus which member it is and where its data lives. Where the values
come from (TOML, flags, ETCD_* variables) is cluster/config.py's business;
import from there, the stable path for both halves.
"""

from __future__ import annotations

import hashlib
import math
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cluster.limits import request_bytes_max_default, txn_ops_max_default

DEFAULT_TOKEN = "etcdlite-local"
LOCAL_BASE_PORTS = (2379, 22379, 32379, 42379, 52379, 62379, 12379)
"""DESIGN.md "Ports": member k of the default local cluster is built around B_k."""
PEER_SCHEMES = ("tcp", "ipc")
"""nng transports we accept for peer and native client traffic."""
ELECTION_TO_HEARTBEAT_MIN = 5
ELECTION_TIMEOUT_MS_MAX = 50_000  # etcd's upper bound too: longer means minutes of unavailability
IPC_PATH_BYTES_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin

# Setting name -> (ClusterConfig field, parser). Names are etcd's flag names.
_DURATION = re.compile(r"(\d+(?:\.\d*)?)(h|m|s)")


@dataclass(frozen=True, slots=True)
class MemberSpec:
    """One member as every other member sees it (advertised addresses)."""

    name: str
    member_id: int
    peer_url: str
    client_url: str  # native nng client endpoint
    etcd_client_url: str = ""  # etcd-compatible endpoint; "" = none


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """The initial cluster; validated on construction (see `make_cluster_config`)."""

    token: str
    state: str
    data_dir: Path
    heartbeat_interval_ms: int
    election_timeout_ms: int
    snapshot_count: int
    max_request_bytes: int
    quota_backend_bytes: int
    max_txn_ops: int
    auth_token_ttl_s: int
    auto_compaction_mode: str
    auto_compaction_retention: str
    members: tuple[MemberSpec, ...]
    cluster_id: int

    def __post_init__(self) -> None:
        _validate_cluster(self)

    @property
    def heartbeat_ticks(self) -> int:
        """One tick is one heartbeat interval, so the leader beats every tick."""
        return 1

    @property
    def election_ticks(self) -> int:
        return self.election_timeout_ms // self.heartbeat_interval_ms

    @property
    def tick_interval_s(self) -> float:
        return self.heartbeat_interval_ms / 1000

    @property
    def auto_compaction_retention_s(self) -> float:
        """Periodic mode: history to keep, in seconds; 0 = auto compaction off."""
        if self.auto_compaction_mode != "periodic":
            return 0.0
        return parse_retention("periodic", self.auto_compaction_retention)

    @property
    def auto_compaction_retention_revisions(self) -> int:
        """Revision mode: revisions to keep; 0 = auto compaction off."""
        if self.auto_compaction_mode != "revision":
            return 0
        return int(parse_retention("revision", self.auto_compaction_retention))

    def member(self, name: str) -> MemberSpec:
        """The member called `name`; ValueError names the known ones otherwise."""
        for m in self.members:
            if m.name == name:
                return m
        known = ", ".join(m.name for m in self.members)
        raise ValueError(f"unknown member name {name!r}; this cluster has: {known}")

    def member_by_id(self, member_id: int) -> MemberSpec | None:
        return next((m for m in self.members if m.member_id == member_id), None)


@dataclass(frozen=True, slots=True)
class MemberConfig:
    """What one member process runs with. `me` carries its listen addresses."""

    cluster: ClusterConfig
    me: MemberSpec
    data_dir: Path

    @property
    def wal_path(self) -> Path:
        return self.data_dir / "wal.db"

    @property
    def state_path(self) -> Path:
        return self.data_dir / "state.db"

    @property
    def snapshot_dir(self) -> Path:
        return self.data_dir / "snapshots"


@dataclass(frozen=True, slots=True)
class _Settings:
    """Cluster-wide settings with etcd's defaults (the bottom of the precedence stack)."""

    token: str = DEFAULT_TOKEN
    state: str = "new"
    data_dir: Path = Path("data")
    heartbeat_interval_ms: int = 100
    election_timeout_ms: int = 1000
    snapshot_count: int = 10_000
    max_request_bytes: int = request_bytes_max_default
    quota_backend_bytes: int = 2 * 1024**3
    max_txn_ops: int = txn_ops_max_default
    auth_token_ttl_s: int = 300  # etcd's --auth-token-ttl default
    auto_compaction_mode: str = "periodic"
    auto_compaction_retention: str = "0"


# --- ids ---------------------------------------------------------------------------

def _id_from(parts: Sequence[bytes]) -> int:
    # 63 bits: fits SQLite INTEGER, CBOR and JSON numbers without sign trouble.
    digest = hashlib.sha256(b"\x00".join(parts)).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1) or 1


def member_id_for(name: str, peer_url: str, token: str) -> int:
    """Deterministic nonzero 63-bit id: every member derives the same ids from the same config."""
    return _id_from([b"member", token.encode(), name.encode(), peer_url.encode()])


def cluster_id_for(token: str, member_ids: Sequence[int]) -> int:
    ids = [i.to_bytes(8, "big") for i in sorted(member_ids)]
    return _id_from([b"cluster", token.encode(), *ids])


def member_spec(name: str, peer_url: str, client_url: str, etcd_client_url: str = "",
                *, token: str = DEFAULT_TOKEN) -> MemberSpec:
    return MemberSpec(name, member_id_for(name, peer_url, token), peer_url, client_url,
                      etcd_client_url)


def make_cluster_config(members: Sequence[tuple[str, str, str, str]], **settings: Any
                        ) -> ClusterConfig:
    """Build a validated config from (name, peer_url, client_url, etcd_client_url) tuples.

    `settings` are ClusterConfig field names (token, data_dir, ...); the rest
    take their defaults. Ids are derived, never passed in.
    """
    base = replace(_Settings(), **settings)
    specs = tuple(member_spec(*m, token=base.token) for m in members)
    values = {f.name: getattr(base, f.name) for f in fields(_Settings)}
    return ClusterConfig(**values, members=specs,
                         cluster_id=cluster_id_for(base.token, [m.member_id for m in specs]))


# --- ready-made clusters ---------------------------------------------------------

def default_local_cluster(members: int, data_dir: Path, base_host: str = "127.0.0.1",
                          **settings: Any) -> ClusterConfig:
    """The cluster `python supervisor.py --members N` runs: DESIGN.md's fixed ports."""
    if not 1 <= members <= len(LOCAL_BASE_PORTS):
        raise ValueError(f"the default local cluster has 1..{len(LOCAL_BASE_PORTS)} members")
    return make_cluster_config(
        [(f"m{k + 1}", f"tcp://{base_host}:{b + 1}", f"tcp://{base_host}:{b - 1}",
          f"http://{base_host}:{b}") for k, b in enumerate(LOCAL_BASE_PORTS[:members])],
        data_dir=data_dir, **settings)


def local_cluster_on_ports(members: int, data_dir: Path, first_port: int | None = None,
                           host: str = "127.0.0.1", **settings: Any) -> ClusterConfig:
    """A test cluster on 3*members consecutive ports (client, etcd client, peer per member).

    With `first_port=None` a free block is found first (racy like any port
    probe, but good enough for tests on one machine).
    """
    if first_port is None:
        first_port = find_free_ports(3 * members, host)
    return make_cluster_config(
        [(f"m{k + 1}", f"tcp://{host}:{p + 2}", f"tcp://{host}:{p}", f"http://{host}:{p + 1}")
         for k, p in enumerate(range(first_port, first_port + 3 * members, 3))],
        data_dir=data_dir, **settings)


def local_cluster_ipc(members: int, dir: Path, **settings: Any) -> ClusterConfig:
    """A test cluster on Unix sockets under `dir` (no port clashes); no etcd endpoint."""
    root = Path(dir).resolve()
    return make_cluster_config(
        [(f"m{k}", f"ipc://{root}/m{k}-peer.ipc", f"ipc://{root}/m{k}-client.ipc", "")
         for k in range(1, members + 1)],
        data_dir=root, **settings)


def find_free_ports(count: int, host: str = "127.0.0.1", start: int = 20_000) -> int:
    """First port of `count` consecutive ports that can all be bound right now."""
    port = start
    while port + count < 65_000:
        for offset in range(count):
            with socket.socket() as s:
                try:
                    s.bind((host, port + offset))
                except OSError:
                    port += offset + 1
                    break
        else:
            return port
    raise RuntimeError(f"no {count} consecutive free ports on {host}")


# --- validation --------------------------------------------------------------------

def parse_retention(mode: str, text: str) -> float:
    """Seconds (periodic: "1h", "30m", "1h30m", bare number = hours) or revisions (revision)."""
    text = text.strip()
    if mode == "revision":
        if not text.isdigit():
            raise ValueError(f"auto-compaction-retention {text!r}: revision mode needs a count")
        return int(text)
    if mode != "periodic":
        raise ValueError(f"auto-compaction-mode {mode!r}: expected periodic or revision")
    try:
        hours = float(text)
    except ValueError:
        pass
    else:
        if hours < 0 or not math.isfinite(hours):
            raise ValueError(f"auto-compaction-retention {text!r} must be >= 0")
        return hours * 3600
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"auto-compaction-retention {text!r}: use e.g. 1h, 30m, 1h30m or hours")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def nng_peer_url(url: str) -> str:
    """An etcd-style peer URL as the nng URL of the same endpoint: http://host:port is
    tcp://host:port, unix:///path is ipc:///path (what `etcdctl member add` stores
    too), so etcd's --initial-cluster strings work unchanged. Anything else is left
    for check_nng_url to judge; https is refused there, as etcdlite has no TLS."""
    parts = urlsplit(url)
    if parts.scheme == "http":
        return f"tcp://{parts.netloc}"
    if parts.scheme == "unix":
        return f"ipc://{parts.netloc}{parts.path}"
    return url


def check_nng_url(url: str, what: str) -> None:
    """tcp://host:port or ipc:///path only: the transports members speak."""
    parts = urlsplit(url)
    if parts.scheme in ("https", "unixs"):
        raise ValueError(f"{what} {url!r}: etcdlite has no TLS; use tcp:// (or http://)")
    if parts.scheme not in PEER_SCHEMES:
        raise ValueError(f"{what} {url!r}: scheme must be tcp:// or ipc://")
    if parts.scheme == "tcp":
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise ValueError(f"{what} {url!r}: expected tcp://host:port")
    elif len(url.removeprefix("ipc://").encode()) > IPC_PATH_BYTES_MAX:
        raise ValueError(f"{what} {url!r}: Unix socket paths must be short; use a shorter dir")


def _validate_cluster(c: ClusterConfig) -> None:
    if c.state not in ("new", "existing"):
        raise ValueError(f"initial-cluster-state {c.state!r}: expected new or existing")
    for name in ("heartbeat_interval_ms", "snapshot_count", "max_request_bytes",
                 "quota_backend_bytes", "max_txn_ops", "auth_token_ttl_s"):
        if getattr(c, name) <= 0:
            raise ValueError(f"{name} must be > 0, got {getattr(c, name)}")
    # etcd only demands election-timeout > heartbeat-interval. We demand 5x:
    # with less, one or two late heartbeats (a GC pause, a busy core: this is
    # Python) start an election, and a cluster that keeps electing serves nothing.
    if c.election_timeout_ms < ELECTION_TO_HEARTBEAT_MIN * c.heartbeat_interval_ms:
        raise ValueError(
            f"election-timeout ({c.election_timeout_ms} ms) must be at least "
            f"{ELECTION_TO_HEARTBEAT_MIN} x heartbeat-interval ({c.heartbeat_interval_ms} ms)")
    if c.election_timeout_ms > ELECTION_TIMEOUT_MS_MAX:
        raise ValueError(f"election-timeout must be <= {ELECTION_TIMEOUT_MS_MAX} ms")
    parse_retention(c.auto_compaction_mode, c.auto_compaction_retention)
    if not c.members:
        raise ValueError("a cluster needs at least one member")
    for what, values in (("name", [m.name for m in c.members]),
                         ("peer-url", [m.peer_url for m in c.members]),
                         ("client-url", [m.client_url for m in c.members])):
        if len(set(values)) != len(values):
            raise ValueError(f"duplicate member {what} in {values}")
    for m in c.members:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", m.name):
            raise ValueError(f"member name {m.name!r}: use letters, digits, '.', '_', '-'")
        check_nng_url(m.peer_url, f"{m.name} peer-url")
        check_nng_url(m.client_url, f"{m.name} client-url")
        if m.etcd_client_url and urlsplit(m.etcd_client_url).scheme not in ("http", "https"):
            raise ValueError(f"{m.name} etcd-client-url {m.etcd_client_url!r}: http(s):// only")
        # The config's ids are always derived. A running member may still use another
        # id: one added by etcd's MemberAdd takes its id over from the cluster when it
        # joins (cluster/join.py) and keeps it in its data dir, not in this config.
        if m.member_id != member_id_for(m.name, m.peer_url, c.token):
            raise ValueError(f"member {m.name}: id does not match its name, peer-url and token")
    if c.cluster_id != cluster_id_for(c.token, [m.member_id for m in c.members]):
        raise ValueError("cluster_id does not match the token and member ids")

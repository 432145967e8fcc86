"""Cluster and member configuration: TOML files, etcd-style flags and ETCD_* variables.

The model (dataclasses, ids, ready-made local clusters, validation) lives in
cluster/config_model.py and is re-exported here, so `cluster.config` stays the
one import path for configuration.

Precedence, as in etcd: flags > ETCD_* environment > config file > defaults.
A flag/env `data-dir` is the member's own directory (etcd's meaning, so a
docker-compose file can be reused); the file's `data-dir` is the parent of
all member directories (`<data-dir>/<name>`), which suits one laptop.
Relative paths are relative to the working directory, as in etcd.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cluster.config_model import (
    DEFAULT_TOKEN,
    ELECTION_TIMEOUT_MS_MAX,
    ELECTION_TO_HEARTBEAT_MIN,
    IPC_PATH_BYTES_MAX,
    LOCAL_BASE_PORTS,
    PEER_SCHEMES,
    ClusterConfig,
    MemberConfig,
    MemberSpec,
    check_nng_url,
    cluster_id_for,
    default_local_cluster,
    find_free_ports,
    local_cluster_ipc,
    local_cluster_on_ports,
    make_cluster_config,
    member_id_for,
    member_spec,
    nng_peer_url,
    parse_retention,
)

__all__ = [
    "DEFAULT_TOKEN", "ELECTION_TIMEOUT_MS_MAX", "ELECTION_TO_HEARTBEAT_MIN",
    "IPC_PATH_BYTES_MAX", "LOCAL_BASE_PORTS", "PEER_SCHEMES", "ClusterConfig",
    "MemberConfig", "MemberSpec", "check_nng_url", "cluster_id_for",
    "default_local_cluster", "dump_toml", "find_free_ports", "load_cluster_config",
    "local_cluster_ipc", "local_cluster_on_ports", "make_cluster_config", "member_id_for",
    "member_spec", "nng_peer_url", "parse_initial_cluster", "parse_retention",
    "resolve_member_config",
]


_INT_SETTINGS = {
    "heartbeat-interval": "heartbeat_interval_ms",
    "election-timeout": "election_timeout_ms",
    "snapshot-count": "snapshot_count",
    "max-request-bytes": "max_request_bytes",
    "quota-backend-bytes": "quota_backend_bytes",
    "max-txn-ops": "max_txn_ops",
    "auth-token-ttl": "auth_token_ttl_s",
}
_STR_SETTINGS = {
    "initial-cluster-token": "token",
    "initial-cluster-state": "state",
    "auto-compaction-mode": "auto_compaction_mode",
    "auto-compaction-retention": "auto_compaction_retention",
}
_MEMBER_KEYS = {"name", "peer-url", "client-url", "etcd-client-url"}


# --- files, flags and environment ------------------------------------------------

def _as_int(key: str, value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{key}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        return int(value)
    raise ValueError(f"{key}: expected an integer, got {value!r}")


def _settings_from(layer: Mapping[str, object], origin: str, *, strict: bool) -> dict[str, Any]:
    """etcd-named settings of one layer -> ClusterConfig field values."""
    out: dict[str, Any] = {}
    for key, value in layer.items():
        if key in _INT_SETTINGS:
            out[_INT_SETTINGS[key]] = _as_int(key, value)
        elif key in _STR_SETTINGS:
            if not isinstance(value, str | int) or isinstance(value, bool):
                raise ValueError(f"{origin}: {key} must be a string")
            out[_STR_SETTINGS[key]] = str(value)
        elif key == "data-dir" and strict:  # only the file's data-dir is cluster-wide
            out["data_dir"] = Path(str(value))
        elif strict:
            raise ValueError(f"{origin}: unknown setting {key!r}")
    return out


def _derived_urls(peer_url: str) -> tuple[str, str]:
    """Client urls next to a peer url: native client = peer port - 2, etcd = peer port - 1."""
    parts = urlsplit(peer_url)
    if parts.scheme == "ipc":
        stem = peer_url.removesuffix(".ipc").removesuffix("-peer")
        return f"{stem}-client.ipc", ""
    check_nng_url(peer_url, "peer-url")
    assert parts.port is not None
    return (f"tcp://{parts.hostname}:{parts.port - 2}",
            f"http://{parts.hostname}:{parts.port - 1}")


def _member_tuple(entry: Mapping[str, object], origin: str) -> tuple[str, str, str, str]:
    unknown = set(entry) - _MEMBER_KEYS
    if unknown:
        raise ValueError(f"{origin}: unknown member setting(s) {sorted(unknown)}")
    name, peer = entry.get("name"), entry.get("peer-url")
    if not isinstance(name, str) or not isinstance(peer, str):
        raise ValueError(f"{origin}: every [[member]] needs string name and peer-url")
    peer = nng_peer_url(peer)
    client, etcd = _derived_urls(peer)
    return (name, peer, str(entry.get("client-url", client)),
            str(entry.get("etcd-client-url", etcd)))


def parse_initial_cluster(text: str) -> list[tuple[str, str]]:
    """etcd's "m1=tcp://h:p,m2=tcp://h:p" -> [(name, peer_url)], one url per member
    (etcd's http:// and unix:// forms are taken as the same tcp:// / ipc:// endpoint)."""
    pairs: list[tuple[str, str]] = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise ValueError(f"initial-cluster item {item!r}: expected name=url")
        if any(n == name for n, _ in pairs):
            raise ValueError(f"initial-cluster: member {name!r} listed twice (one url each)")
        pairs.append((name.strip(), nng_peer_url(url.strip())))
    if not pairs:
        raise ValueError("initial-cluster is empty")
    return pairs


def _read_file(path: Path) -> tuple[dict[str, Any], list[tuple[str, str, str, str]]]:
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    unknown = set(doc) - {"cluster", "member"}
    if unknown:
        raise ValueError(f"{path}: unknown table(s) {sorted(unknown)}")
    settings = _settings_from(doc.get("cluster", {}), str(path), strict=True)
    members = [_member_tuple(m, str(path)) for m in doc.get("member", [])]
    return settings, members


def load_cluster_config(path: Path | str) -> ClusterConfig:
    """Read a cluster TOML file (see configs/); errors name the file and the setting."""
    settings, members = _read_file(Path(path))
    return make_cluster_config(members, **settings)


def _toml_str(value: str) -> str:
    # A JSON string literal is a valid TOML basic string (same escapes).
    return json.dumps(value, ensure_ascii=False)


def dump_toml(config: ClusterConfig) -> str:
    """The TOML text `load_cluster_config` reads back into an equal config."""
    c = config
    lines = [
        f"# etcdlite cluster (cluster-id {c.cluster_id:#x}); ids derive from token, names, urls",
        "[cluster]",
        f"initial-cluster-token = {_toml_str(c.token)}",
        f"initial-cluster-state = {_toml_str(c.state)}",
        f"data-dir = {_toml_str(str(c.data_dir))}",
        *(f"{key} = {getattr(c, attr)}" for key, attr in _INT_SETTINGS.items()),
        f"auto-compaction-mode = {_toml_str(c.auto_compaction_mode)}",
        f"auto-compaction-retention = {_toml_str(c.auto_compaction_retention)}",
    ]
    for m in c.members:
        lines += [
            "",
            "[[member]]",
            f"# member-id {m.member_id:#x}",
            f"name = {_toml_str(m.name)}",
            f"peer-url = {_toml_str(m.peer_url)}",
            f"client-url = {_toml_str(m.client_url)}",
            f"etcd-client-url = {_toml_str(m.etcd_client_url)}",
        ]
    return "\n".join(lines) + "\n"


def _env_layer(env: Mapping[str, str]) -> dict[str, str]:
    keys = [*_INT_SETTINGS, *_STR_SETTINGS, "name", "data-dir", "initial-cluster",
            "listen-client-urls", "listen-peer-urls"]
    return {k: env[v] for k in keys if (v := "ETCD_" + k.upper().replace("-", "_")) in env}


def _single_url(key: str, value: object) -> str:
    urls = [u.strip() for u in str(value).split(",") if u.strip()]
    if len(urls) != 1:
        raise ValueError(f"{key}: exactly one url is supported, got {value!r}")
    return urls[0]


def resolve_member_config(*, config_path: Path | None, name: str | None,
                          flags: Mapping[str, object], env: Mapping[str, str]) -> MemberConfig:
    """Merge flags > ETCD_* env > file > defaults into one member's configuration.

    Args:
        config_path: cluster TOML file, or None (then ETCD_CONFIG_FILE, if set).
        name: this member's name (the --name flag); falls back to ETCD_NAME, or
            to the only member of a one-member cluster.
        flags: etcd-named flags (dashes or underscores; None = not given).
            Keys this function does not know are left to the caller.
        env: usually os.environ.

    Raises:
        ValueError: an invalid value, an unknown member name, a bad url scheme.
    """
    flag_layer = {k.replace("_", "-"): v for k, v in flags.items() if v is not None}
    env_layer = _env_layer(env)
    if config_path is None and env.get("ETCD_CONFIG_FILE"):
        config_path = Path(env["ETCD_CONFIG_FILE"])
    settings: dict[str, Any] = {}
    file_members: list[tuple[str, str, str, str]] = []
    if config_path is not None:
        settings, file_members = _read_file(config_path)
    for layer, origin in ((env_layer, "environment"), (flag_layer, "flags")):
        settings.update(_settings_from(layer, origin, strict=False))
    name = name or _opt_str(flag_layer.get("name")) or env_layer.get("name")

    initial = flag_layer.get("initial-cluster", env_layer.get("initial-cluster"))
    members = file_members
    if initial is not None:
        by_name = {m[0]: m for m in file_members}
        members = []
        for n, peer in parse_initial_cluster(str(initial)):
            known = by_name.get(n)
            members.append(known if known and known[1] == peer else (n, peer, *_derived_urls(peer)))
    elif not members:
        # etcd with no flags starts a one-member cluster; so do we, on member 1's ports.
        b = LOCAL_BASE_PORTS[0]
        members = [(name or "default", f"tcp://127.0.0.1:{b + 1}", f"tcp://127.0.0.1:{b - 1}",
                    f"http://127.0.0.1:{b}")]
    cluster = make_cluster_config(members, **settings)
    if name is None:
        if len(cluster.members) != 1:
            raise ValueError("which member is this? pass --name or set ETCD_NAME")
        name = cluster.members[0].name
    me = cluster.member(name)
    # Listen overrides change where this member binds, never its id: the
    # others derived that id from the advertised urls in the cluster list.
    for key in ("listen-peer-urls", "listen-client-urls"):
        value = flag_layer.get(key, env_layer.get(key))
        if value is not None:
            url = _single_url(key, value)
            check_nng_url(url, key)
            if key == "listen-peer-urls":
                me = replace(me, peer_url=url)
            else:
                me = replace(me, client_url=url)
    data_dir = flag_layer.get("data-dir", env_layer.get("data-dir"))
    member_dir = Path(str(data_dir)) if data_dir is not None else cluster.data_dir / name
    return MemberConfig(cluster=cluster, me=me, data_dir=member_dir)


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)

"""/metrics in Prometheus' text format, with etcd's metric names where one exists.

Dashboards and alerts written for etcd query names like etcd_server_has_leader
and etcd_mvcc_db_total_size_in_bytes, so the same names carry the same
meaning here. The values come from the native `status` op (one call per
scrape) and from the etcd API's own counters; nothing is sampled in the
background. Metrics etcdlite has no honest value for are left out rather
than faked.
"""

from __future__ import annotations

from typing import Any

from actors.etcd_api import EtcdApi
from actors.etcd_bridge import TrioBridge
from cluster.etcd_errors import EtcdStatus


def _metric(out: list[str], name: str, kind: str, text: str, value: float | int,
            labels: str = "") -> None:
    out.append(f"# HELP {name} {text}")
    out.append(f"# TYPE {name} {kind}")
    out.append(f"{name}{labels} {value}")


async def render_metrics(api: EtcdApi, bridge: TrioBridge, mux: Any,
                         quota_bytes: int) -> str:
    """One scrape. If the member cannot answer `status`, only the counters are shown,
    with etcd_server_has_leader 0 (a scrape must not fail when the member is sick)."""
    out: list[str] = []
    try:
        s: dict[str, Any] | None = await api.native("status")
    except EtcdStatus:
        s = None
    leader = s["leader"] if s else 0
    member_id = s["member_id"] if s else 0
    _metric(out, "etcd_server_has_leader", "gauge",
            "1 if this member knows a leader, else 0.", int(leader != 0))
    _metric(out, "etcd_server_is_leader", "gauge",
            "1 if this member is the leader, else 0.", int(leader != 0 and leader == member_id))
    if s is not None:
        _metric(out, "etcd_server_is_learner", "gauge",
                "1 if this member is a learner, else 0.", int(s.get("is_learner", False)))
        _metric(out, "etcd_server_id", "gauge", "This member's id, as a label.", 1,
                f'{{server_id="{member_id:x}"}}')
        _metric(out, "etcd_server_proposals_committed_total", "gauge",
                "The Raft index this member knows to be committed.", s["commit_index"])
        _metric(out, "etcd_server_proposals_applied_total", "gauge",
                "The Raft index this member has applied.", s["applied_index"])
        _metric(out, "etcd_server_term", "gauge", "This member's current Raft term.", s["term"])
        _metric(out, "etcd_mvcc_db_total_size_in_bytes", "gauge",
                "Size of state.db on disk, free pages included.", s["db_size"])
        _metric(out, "etcd_mvcc_db_total_size_in_use_in_bytes", "gauge",
                "Size of state.db in use (without free pages).", s.get("db_size_in_use", 0))
        _metric(out, "etcd_debugging_mvcc_current_revision", "gauge",
                "The store's current revision.", s["revision"])
        _metric(out, "etcd_debugging_mvcc_compact_revision", "gauge",
                "The revision the store was last compacted at.", s["compact_revision"])
        _metric(out, "etcd_server_quota_backend_bytes", "gauge",
                "The configured --quota-backend-bytes.", quota_bytes)
        alarms = s.get("errors", [])
        _metric(out, "etcdlite_active_alarms", "gauge", "Alarms active in the cluster.",
                len(alarms))
    stats = bridge.statistics()
    _metric(out, "etcdlite_etcd_api_calls_total", "counter",
            "Native requests made on behalf of etcd API calls.", stats.calls)
    _metric(out, "etcdlite_etcd_api_calls_in_flight", "gauge",
            "etcd API calls being served now.", stats.in_flight)
    _metric(out, "etcdlite_etcd_api_calls_refused_total", "counter",
            "etcd API calls refused because too many were in flight.", stats.refused)
    _metric(out, "etcdlite_etcd_api_calls_failed_total", "counter",
            "etcd API calls that ended with an error.", stats.failed)
    if mux is not None:
        _metric(out, "etcdlite_etcd_connections_total", "counter",
                "Connections accepted on the etcd client port, by protocol.",
                mux.grpc_connections, '{protocol="grpc"}')
        out.append(f'etcdlite_etcd_connections_total{{protocol="http"}} {mux.http_connections}')
    return "\n".join(out) + "\n"

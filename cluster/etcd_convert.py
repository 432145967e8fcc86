"""etcd's protobuf messages <-> native request and reply maps (docs/protocol.md).

The etcd API of a member is a TRANSLATION onto the native protocol, never a
second data path: every gRPC or HTTP/JSON call becomes one native request map,
served by the same `ClientServer._dispatch` an nng client reaches, and the
native reply map becomes etcd's response message. Keeping the translation in
pure functions (no I/O, no grpc server) lets it be tested as tables, and makes
"what etcd field maps to what native argument" readable in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from cluster.etcdpb import kv_pb2, rpc_pb2

ETCD_API_VERSION = "3.4.0"
"""What Status and /version report: the etcd API level etcdlite speaks. Clients parse
it as semver to decide which calls exist, so it must be etcd's, not etcdlite's own."""

_SORT_ORDER = {0: "none", 1: "ascend", 2: "descend"}
_SORT_TARGET = {0: "key", 1: "version", 2: "create", 3: "mod", 4: "value"}
_CMP_RESULT = {0: "=", 1: ">", 2: "<", 3: "!="}
_CMP_TARGET = {0: ("version", "version"), 1: ("create", "create_revision"),
               2: ("mod", "mod_revision"), 3: ("value", "value"), 4: ("lease", "lease")}
_ALARM_ACTION = {0: "get", 1: "activate", 2: "deactivate"}
_ALARM_TYPE = {0: "NONE", 1: "NOSPACE", 2: "CORRUPT"}
_ALARM_TYPE_NUMBER = {name: number for number, name in _ALARM_TYPE.items()}
_WATCH_FILTER = {0: "noput", 1: "nodelete"}


def _enum(table: dict[int, str], value: int, what: str) -> str:
    """An unknown enum number is the client's error, not ours: let the native parser say
    so (it refuses names it does not know) rather than guessing a default."""
    return table.get(value, f"<{what} {value}>")


# --- headers and key-values ----------------------------------------------------------


def header(native: dict[str, Any] | None) -> rpc_pb2.ResponseHeader:
    h = native or {}
    return rpc_pb2.ResponseHeader(cluster_id=h.get("cluster_id", 0),
                                  member_id=h.get("member_id", 0),
                                  revision=h.get("revision", 0),
                                  raft_term=h.get("raft_term", 0))


def key_value(kv: dict[str, Any]) -> kv_pb2.KeyValue:
    return kv_pb2.KeyValue(key=kv["key"], value=kv["value"],
                           create_revision=kv["create_revision"],
                           mod_revision=kv["mod_revision"], version=kv["version"],
                           lease=kv["lease"])


# --- KV ------------------------------------------------------------------------------


def range_args(r: rpc_pb2.RangeRequest) -> dict[str, Any]:
    return {"key": r.key, "range_end": r.range_end, "limit": r.limit,
            "revision": r.revision, "serializable": r.serializable,
            "keys_only": r.keys_only, "count_only": r.count_only,
            "sort_order": _enum(_SORT_ORDER, r.sort_order, "sort order"),
            "sort_target": _enum(_SORT_TARGET, r.sort_target, "sort target"),
            "min_mod_revision": r.min_mod_revision, "max_mod_revision": r.max_mod_revision,
            "min_create_revision": r.min_create_revision,
            "max_create_revision": r.max_create_revision}


def put_args(r: rpc_pb2.PutRequest) -> dict[str, Any]:
    return {"key": r.key, "value": r.value, "lease": r.lease, "prev_kv": r.prev_kv,
            "ignore_value": r.ignore_value, "ignore_lease": r.ignore_lease}


def delete_args(r: rpc_pb2.DeleteRangeRequest) -> dict[str, Any]:
    return {"key": r.key, "range_end": r.range_end, "prev_kv": r.prev_kv}


def compare_args(c: rpc_pb2.Compare) -> dict[str, Any]:
    """etcd picks the operand by the target, whatever member of the oneof is set."""
    target, field = _CMP_TARGET.get(c.target, (f"<target {c.target}>", "version"))
    return {"key": c.key, "range_end": c.range_end, "target": target,
            "result": _enum(_CMP_RESULT, c.result, "compare result"),
            "value": getattr(c, field)}


def request_op_args(op: rpc_pb2.RequestOp) -> dict[str, Any]:
    which = op.WhichOneof("request")
    if which == "request_range":
        return {"range": range_args(op.request_range)}
    if which == "request_put":
        return {"put": put_args(op.request_put)}
    if which == "request_delete_range":
        return {"delete_range": delete_args(op.request_delete_range)}
    if which == "request_txn":
        return {"txn": txn_args(op.request_txn)}
    return {"<empty request op>": {}}  # refused by the native parser, as etcd refuses it


def txn_args(t: rpc_pb2.TxnRequest) -> dict[str, Any]:
    return {"compare": [compare_args(c) for c in t.compare],
            "success": [request_op_args(op) for op in t.success],
            "failure": [request_op_args(op) for op in t.failure]}


def range_response(d: dict[str, Any]) -> rpc_pb2.RangeResponse:
    return rpc_pb2.RangeResponse(header=header(d.get("header")),
                                 kvs=[key_value(kv) for kv in d["kvs"]],
                                 more=d["more"], count=d["count"])


def put_response(d: dict[str, Any]) -> rpc_pb2.PutResponse:
    out = rpc_pb2.PutResponse(header=header(d.get("header")))
    if d.get("prev_kv") is not None:
        out.prev_kv.CopyFrom(key_value(d["prev_kv"]))
    return out


def delete_response(d: dict[str, Any]) -> rpc_pb2.DeleteRangeResponse:
    return rpc_pb2.DeleteRangeResponse(header=header(d.get("header")), deleted=d["deleted"],
                                       prev_kvs=[key_value(kv) for kv in d["prev_kvs"]])


def _response_op(d: dict[str, Any], top_header: dict[str, Any] | None) -> rpc_pb2.ResponseOp:
    ((name, body),) = d.items()
    # Nested results carry no native header; etcd gives each one holding only the
    # revision the txn read or wrote at.
    body = {**body, "header": {"revision": (top_header or {}).get("revision", 0)}}
    if name == "range":
        return rpc_pb2.ResponseOp(response_range=range_response(body))
    if name == "put":
        return rpc_pb2.ResponseOp(response_put=put_response(body))
    if name == "delete_range":
        return rpc_pb2.ResponseOp(response_delete_range=delete_response(body))
    return rpc_pb2.ResponseOp(response_txn=txn_response(body))


def txn_response(d: dict[str, Any]) -> rpc_pb2.TxnResponse:
    top = d.get("header")
    return rpc_pb2.TxnResponse(header=header(top), succeeded=d["succeeded"],
                               responses=[_response_op(r, top) for r in d["responses"]])


# --- leases --------------------------------------------------------------------------


def lease_timetolive_response(d: dict[str, Any]) -> rpc_pb2.LeaseTimeToLiveResponse:
    return rpc_pb2.LeaseTimeToLiveResponse(header=header(d.get("header")), ID=d["id"],
                                           TTL=d["ttl"], grantedTTL=d["granted_ttl"],
                                           keys=list(d.get("keys", [])))


def lease_leases_response(d: dict[str, Any]) -> rpc_pb2.LeaseLeasesResponse:
    return rpc_pb2.LeaseLeasesResponse(header=header(d.get("header")),
                                       leases=[rpc_pb2.LeaseStatus(ID=i) for i in d["leases"]])


# --- cluster -------------------------------------------------------------------------


def etcd_peer_url(url: str) -> str:
    """etcdctl only accepts http(s)/unix(s) URLs; nng peers listen on tcp:// or ipc://.
    A host:port is the same endpoint under either scheme, so translate on the way in:
    `--peer-urls=http://10.0.0.4:2380` registers tcp://10.0.0.4:2380 and
    `unix:///run/m4-peer.ipc` registers ipc:///run/m4-peer.ipc. The member started
    afterwards advertises that endpoint in either form (cluster.config reads etcd's
    http:// and unix:// peer URLs the same way) to be recognised as the added member."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        return f"tcp://{parts.netloc}"
    if parts.scheme in ("unix", "unixs"):
        return f"ipc://{parts.netloc}{parts.path}"
    return url


def member(d: dict[str, Any], client_urls: Callable[[int], list[str] | None]
           ) -> rpc_pb2.Member:
    """etcd clients (etcdctl --cluster, endpoint discovery) dial a member's clientURLs,
    so they must be its etcd-compatible URLs rather than the native nng ones: those the
    member published itself (applied membership, known cluster-wide) first, else what
    `client_urls(id)` finds in this member's config, else the native ones. A member added
    by etcd's MemberAdd and not started yet has no name and no client URLs, as in etcd."""
    urls = list(d.get("etcd_client_urls") or []) or client_urls(d["id"])
    return rpc_pb2.Member(ID=d["id"], name=d["name"], peerURLs=d["peer_urls"],
                          clientURLs=urls if urls is not None else d["client_urls"],
                          isLearner=d["is_learner"])


def members(d: dict[str, Any], client_urls: Callable[[int], list[str] | None]
            ) -> list[rpc_pb2.Member]:
    return [member(m, client_urls) for m in d["members"]]


# --- maintenance ---------------------------------------------------------------------


def alarm_args(r: rpc_pb2.AlarmRequest) -> dict[str, Any]:
    return {"action": _enum(_ALARM_ACTION, r.action, "alarm action"),
            "member_id": r.memberID, "alarm": _enum(_ALARM_TYPE, r.alarm, "alarm")}


def alarm_response(d: dict[str, Any]) -> rpc_pb2.AlarmResponse:
    return rpc_pb2.AlarmResponse(
        header=header(d.get("header")),
        alarms=[rpc_pb2.AlarmMember(memberID=a["member_id"],
                                    alarm=a["alarm"] if a["alarm"] in _ALARM_TYPE_NUMBER
                                    else "NONE")
                for a in d["alarms"]])


def status_response(d: dict[str, Any]) -> rpc_pb2.StatusResponse:
    return rpc_pb2.StatusResponse(
        header=header(d.get("header")), version=ETCD_API_VERSION, dbSize=d["db_size"],
        leader=d["leader"], raftIndex=d["commit_index"], raftTerm=d["term"],
        raftAppliedIndex=d["applied_index"], errors=list(d.get("errors", [])),
        dbSizeInUse=d.get("db_size_in_use", 0), isLearner=d.get("is_learner", False))


# --- watch ---------------------------------------------------------------------------


def watch_poll_args(c: rpc_pb2.WatchCreateRequest, start_revision: int, timeout_ms: int
                    ) -> dict[str, Any]:
    return {"op": "watch_poll", "key": c.key, "range_end": c.range_end,
            "start_revision": start_revision, "prev_kv": c.prev_kv,
            "filters": [_enum(_WATCH_FILTER, f, "filter") for f in c.filters],
            "progress_notify": c.progress_notify, "timeout_ms": timeout_ms}


def event(e: dict[str, Any]) -> kv_pb2.Event:
    out = kv_pb2.Event(type=kv_pb2.Event.PUT if e["type"] == "put" else kv_pb2.Event.DELETE,
                       kv=key_value(e["kv"]))
    if e.get("prev_kv") is not None:
        out.prev_kv.CopyFrom(key_value(e["prev_kv"]))
    return out

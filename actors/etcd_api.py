"""The unary calls of etcd's v3 API, answered through the native protocol.

Each method takes etcd's request message and returns etcd's response message;
in between it builds ONE native request map (cluster.etcd_convert), sends it
across the bridge to `ClientServer._dispatch` and converts the reply back. No
method touches the member's state directly, so the etcd API has exactly the
native protocol's semantics: same validation, same linearizability, same
leader forwarding. Failures leave as `EtcdStatus` (etcd's code and text).

The methods are protocol neutral: the gRPC server (actors.etcd_grpc) and the
HTTP/JSON gateway (actors.etcd_http) both call them. The streaming calls
(Watch, LeaseKeepAlive, Snapshot) live in actors.etcd_streams.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, final

import grpc
from google.protobuf.message import Message

from actors.etcd_auth import EtcdAuth, with_token
from actors.etcd_bridge import TrioBridge
from cluster import etcd_convert as cv
from cluster.errors import EtcdliteError
from cluster.etcd_errors import EtcdStatus, status_for
from cluster.etcdpb import rpc_pb2 as pb

Handler = Callable[[Any], Awaitable[Message]]

REQUEST_TOO_LARGE = EtcdStatus(grpc.StatusCode.INVALID_ARGUMENT,
                               "etcdserver: request is too large")


@dataclass(frozen=True, slots=True)
class Method:
    """One unary method: its gRPC path, message classes and handler."""

    path: str
    request: type[Message]
    response: type[Message]
    handler: Handler


@final
class EtcdApi:
    """etcd's unary calls for one member.

    Args:
        bridge: carries native requests to the member's trio loop.
        client_urls_of: a member id -> its etcd client URLs, if the config knows
            them (what MemberList reports, so etcd clients dial etcd endpoints).
        max_request_bytes: etcd's --max-request-bytes; larger requests fail with
            "etcdserver: request is too large", as in etcd.
        member_id, cluster_id: this member, for headers the native reply lacks.
    """

    def __init__(self, bridge: TrioBridge, *,
                 client_urls_of: Callable[[int], list[str] | None],
                 max_request_bytes: int, member_id: int, cluster_id: int) -> None:
        self.bridge = bridge
        self._client_urls_of = client_urls_of
        self.max_request_bytes = max_request_bytes
        # The header of the last reply, for the rare etcd response that needs one
        # without a native call behind it (a keep-alive of an unknown lease).
        self.last_header: dict[str, Any] = {"cluster_id": cluster_id,
                                            "member_id": member_id}

    async def native(self, op: str, **args: Any) -> dict[str, Any]:
        """One native request; its reply map, or EtcdStatus with etcd's code and text."""
        try:
            reply = await self.bridge.call({"op": op, **with_token(args)})
        except EtcdliteError as exc:
            raise status_for(exc) from None
        if isinstance(reply.get("header"), dict):
            self.last_header = reply["header"]
        return reply

    def check_size(self, request: Message) -> None:
        if request.ByteSize() > self.max_request_bytes:
            raise REQUEST_TOO_LARGE

    # --- KV ---------------------------------------------------------------------------

    async def range(self, r: pb.RangeRequest) -> pb.RangeResponse:
        return cv.range_response(await self.native("range", **cv.range_args(r)))

    async def put(self, r: pb.PutRequest) -> pb.PutResponse:
        return cv.put_response(await self.native("put", **cv.put_args(r)))

    async def delete_range(self, r: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        return cv.delete_response(await self.native("delete_range", **cv.delete_args(r)))

    async def txn(self, r: pb.TxnRequest) -> pb.TxnResponse:
        return cv.txn_response(await self.native("txn", **cv.txn_args(r)))

    async def compact(self, r: pb.CompactionRequest) -> pb.CompactionResponse:
        d = await self.native("compact", revision=r.revision, physical=r.physical)
        return pb.CompactionResponse(header=cv.header(d.get("header")))

    # --- Lease ------------------------------------------------------------------------

    async def lease_grant(self, r: pb.LeaseGrantRequest) -> pb.LeaseGrantResponse:
        d = await self.native("lease_grant", ttl=r.TTL, id=r.ID)
        return pb.LeaseGrantResponse(header=cv.header(d.get("header")), ID=d["id"],
                                     TTL=d["ttl"])

    async def lease_revoke(self, r: pb.LeaseRevokeRequest) -> pb.LeaseRevokeResponse:
        d = await self.native("lease_revoke", id=r.ID)
        return pb.LeaseRevokeResponse(header=cv.header(d.get("header")))

    async def lease_timetolive(self, r: pb.LeaseTimeToLiveRequest
                               ) -> pb.LeaseTimeToLiveResponse:
        d = await self.native("lease_timetolive", id=r.ID, keys=r.keys)
        return cv.lease_timetolive_response(d)

    async def lease_leases(self, _r: pb.LeaseLeasesRequest) -> pb.LeaseLeasesResponse:
        return cv.lease_leases_response(await self.native("lease_leases"))

    async def lease_keepalive_once(self, lease_id: int) -> pb.LeaseKeepAliveResponse:
        """One renewal; an unknown or expired lease answers TTL 0, as etcd's stream does."""
        try:
            d = await self.native("lease_keepalive", id=lease_id)
        except EtcdStatus as st:
            if st.code is not grpc.StatusCode.NOT_FOUND:
                raise
            return pb.LeaseKeepAliveResponse(header=cv.header(self.last_header),
                                             ID=lease_id, TTL=0)
        return pb.LeaseKeepAliveResponse(header=cv.header(d.get("header")), ID=d["id"],
                                         TTL=d["ttl"])

    # --- Cluster ----------------------------------------------------------------------

    async def member_list(self, _r: pb.MemberListRequest) -> pb.MemberListResponse:
        d = await self.native("member_list")
        return pb.MemberListResponse(header=cv.header(d.get("header")),
                                     members=cv.members(d, self._client_urls_of))

    async def member_add(self, r: pb.MemberAddRequest) -> pb.MemberAddResponse:
        # etcd's request names no member: it is registered with an empty name
        # ("unstarted"). Its process, started with state existing, finds this id by
        # its peer URL, joins, then publishes its name (cluster/join.py).
        d = await self.native("member_add", name="", is_learner=r.isLearner,
                              peer_urls=[cv.etcd_peer_url(u) for u in r.peerURLs],
                              client_urls=[])
        return pb.MemberAddResponse(header=cv.header(d.get("header")),
                                    member=cv.member(d["member"], self._client_urls_of),
                                    members=cv.members(d, self._client_urls_of))

    async def member_remove(self, r: pb.MemberRemoveRequest) -> pb.MemberRemoveResponse:
        d = await self.native("member_remove", id=r.ID)
        return pb.MemberRemoveResponse(header=cv.header(d.get("header")),
                                       members=cv.members(d, self._client_urls_of))

    async def member_update(self, r: pb.MemberUpdateRequest) -> pb.MemberUpdateResponse:
        d = await self.native("member_update", id=r.ID,
                              peer_urls=[cv.etcd_peer_url(u) for u in r.peerURLs])
        return pb.MemberUpdateResponse(header=cv.header(d.get("header")),
                                       members=cv.members(d, self._client_urls_of))

    async def member_promote(self, r: pb.MemberPromoteRequest) -> pb.MemberPromoteResponse:
        d = await self.native("member_promote", id=r.ID)
        return pb.MemberPromoteResponse(header=cv.header(d.get("header")),
                                        members=cv.members(d, self._client_urls_of))

    # --- Maintenance ------------------------------------------------------------------

    async def alarm(self, r: pb.AlarmRequest) -> pb.AlarmResponse:
        return cv.alarm_response(await self.native("alarm", **cv.alarm_args(r)))

    async def status(self, _r: pb.StatusRequest) -> pb.StatusResponse:
        return cv.status_response(await self.native("status"))

    async def defragment(self, _r: pb.DefragmentRequest) -> pb.DefragmentResponse:
        d = await self.native("defragment")
        return pb.DefragmentResponse(header=cv.header(d.get("header")))

    async def hash(self, _r: pb.HashRequest) -> pb.HashResponse:
        # etcd hashes its whole backend file; the closest native answer that members
        # can compare is the MVCC history hash at the current revision.
        d = await self.native("hash_kv", revision=0)
        return pb.HashResponse(header=cv.header(d.get("header")), hash=d["hash"])

    async def hash_kv(self, r: pb.HashKVRequest) -> pb.HashKVResponse:
        d = await self.native("hash_kv", revision=r.revision)
        return pb.HashKVResponse(header=cv.header(d.get("header")), hash=d["hash"],
                                 compact_revision=d["compact_revision"])

    async def move_leader(self, r: pb.MoveLeaderRequest) -> pb.MoveLeaderResponse:
        d = await self.native("move_leader", target=r.targetID)
        return pb.MoveLeaderResponse(header=cv.header(d.get("header")))

    # --- the table --------------------------------------------------------------------

    def methods(self) -> list[Method]:
        """Every unary method, by gRPC path (also what the HTTP gateway routes to)."""
        kv, lease, cluster, maint = ("/etcdserverpb.KV/", "/etcdserverpb.Lease/",
                                     "/etcdserverpb.Cluster/", "/etcdserverpb.Maintenance/")
        return [
            Method(kv + "Range", pb.RangeRequest, pb.RangeResponse, self.range),
            Method(kv + "Put", pb.PutRequest, pb.PutResponse, self.put),
            Method(kv + "DeleteRange", pb.DeleteRangeRequest, pb.DeleteRangeResponse,
                   self.delete_range),
            Method(kv + "Txn", pb.TxnRequest, pb.TxnResponse, self.txn),
            Method(kv + "Compact", pb.CompactionRequest, pb.CompactionResponse, self.compact),
            Method(lease + "LeaseGrant", pb.LeaseGrantRequest, pb.LeaseGrantResponse,
                   self.lease_grant),
            Method(lease + "LeaseRevoke", pb.LeaseRevokeRequest, pb.LeaseRevokeResponse,
                   self.lease_revoke),
            Method(lease + "LeaseTimeToLive", pb.LeaseTimeToLiveRequest,
                   pb.LeaseTimeToLiveResponse, self.lease_timetolive),
            Method(lease + "LeaseLeases", pb.LeaseLeasesRequest, pb.LeaseLeasesResponse,
                   self.lease_leases),
            Method(cluster + "MemberList", pb.MemberListRequest, pb.MemberListResponse,
                   self.member_list),
            Method(cluster + "MemberAdd", pb.MemberAddRequest, pb.MemberAddResponse,
                   self.member_add),
            Method(cluster + "MemberRemove", pb.MemberRemoveRequest, pb.MemberRemoveResponse,
                   self.member_remove),
            Method(cluster + "MemberUpdate", pb.MemberUpdateRequest, pb.MemberUpdateResponse,
                   self.member_update),
            Method(cluster + "MemberPromote", pb.MemberPromoteRequest,
                   pb.MemberPromoteResponse, self.member_promote),
            Method(maint + "Alarm", pb.AlarmRequest, pb.AlarmResponse, self.alarm),
            Method(maint + "Status", pb.StatusRequest, pb.StatusResponse, self.status),
            Method(maint + "Defragment", pb.DefragmentRequest, pb.DefragmentResponse,
                   self.defragment),
            Method(maint + "Hash", pb.HashRequest, pb.HashResponse, self.hash),
            Method(maint + "HashKV", pb.HashKVRequest, pb.HashKVResponse, self.hash_kv),
            Method(maint + "MoveLeader", pb.MoveLeaderRequest, pb.MoveLeaderResponse,
                   self.move_leader),
            *EtcdAuth(self).methods(),
        ]

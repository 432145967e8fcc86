"""etcd's Auth service over the native auth ops, and the token of each etcd call.

TOKEN: etcd clients authenticate once (Auth/Authenticate) and then send the token
with every call, as gRPC metadata "token" (clientv3, etcdctl) or, through the
HTTP gateway, as the "Authorization" header (etcd's grpc-gateway maps it to
metadata "authorization"). The gRPC handlers and the gateway put it in
`call_token` (a context variable of the asyncio task serving the call, inherited
by the tasks it starts), and `EtcdApi.native` copies it into every native request
as `auth_token`, where the member's auth gate checks it (actors/auth.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, final

from actors.auth import TOKEN_FIELD
from cluster import etcd_convert as cv
from cluster.auth_types import PermType
from cluster.etcdpb import auth_pb2 as authpb
from cluster.etcdpb import rpc_pb2 as pb

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from actors.etcd_api import Handler, Method

call_token: ContextVar[str | None] = ContextVar("etcd_call_token", default=None)
"""The auth token of the etcd call being served on this asyncio task (None: none sent)."""

TOKEN_METADATA_KEYS = ("token", "authorization")
"""etcd's rpctypes.TokenFieldNameGRPC and TokenFieldNameSwagger."""

_PERM_NAMES = {authpb.Permission.READ: PermType.READ, authpb.Permission.WRITE: PermType.WRITE,
               authpb.Permission.READWRITE: PermType.READWRITE}
_PERM_NUMBERS = {name: number for number, name in _PERM_NAMES.items()}


def token_from_metadata(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The token in gRPC metadata (or HTTP headers given as pairs), if any."""
    for key, value in metadata or ():
        if key.lower() in TOKEN_METADATA_KEYS:
            text = value.decode() if isinstance(value, bytes) else str(value)
            # Tolerate "Bearer <token>" from generic HTTP tools; etcd's own clients
            # send the bare token.
            return text.removeprefix("Bearer ").strip() or None
    return None


def with_token(args: dict[str, Any]) -> dict[str, Any]:
    """Native request arguments plus the current call's token, if it has one."""
    token = call_token.get()
    return {**args, TOKEN_FIELD: token} if token is not None else args


@final
class EtcdAuth:
    """etcd's Auth service calls for one member (`api`: its EtcdApi)."""

    def __init__(self, api: Any) -> None:
        self._api = api

    async def _call(self, op: str, **args: Any) -> Any:
        return cv.header((await self._api.native(op, **args)).get("header"))

    async def auth_enable(self, _r: pb.AuthEnableRequest) -> pb.AuthEnableResponse:
        return pb.AuthEnableResponse(header=await self._call("auth_enable"))

    async def auth_disable(self, _r: pb.AuthDisableRequest) -> pb.AuthDisableResponse:
        return pb.AuthDisableResponse(header=await self._call("auth_disable"))

    async def authenticate(self, r: pb.AuthenticateRequest) -> pb.AuthenticateResponse:
        d = await self._api.native("authenticate", name=r.name, password=r.password)
        return pb.AuthenticateResponse(header=cv.header(d.get("header")), token=d["token"])

    async def user_add(self, r: pb.AuthUserAddRequest) -> pb.AuthUserAddResponse:
        header = await self._call("user_add", name=r.name, password=r.password,
                                  no_password=r.options.no_password)
        return pb.AuthUserAddResponse(header=header)

    async def user_get(self, r: pb.AuthUserGetRequest) -> pb.AuthUserGetResponse:
        d = await self._api.native("user_get", name=r.name)
        return pb.AuthUserGetResponse(header=cv.header(d.get("header")), roles=d["roles"])

    async def user_list(self, _r: pb.AuthUserListRequest) -> pb.AuthUserListResponse:
        d = await self._api.native("user_list")
        return pb.AuthUserListResponse(header=cv.header(d.get("header")), users=d["users"])

    async def user_delete(self, r: pb.AuthUserDeleteRequest) -> pb.AuthUserDeleteResponse:
        return pb.AuthUserDeleteResponse(header=await self._call("user_delete", name=r.name))

    async def user_change_password(self, r: pb.AuthUserChangePasswordRequest
                                   ) -> pb.AuthUserChangePasswordResponse:
        header = await self._call("user_change_password", name=r.name, password=r.password)
        return pb.AuthUserChangePasswordResponse(header=header)

    async def user_grant_role(self, r: pb.AuthUserGrantRoleRequest
                              ) -> pb.AuthUserGrantRoleResponse:
        header = await self._call("user_grant_role", name=r.user, role=r.role)
        return pb.AuthUserGrantRoleResponse(header=header)

    async def user_revoke_role(self, r: pb.AuthUserRevokeRoleRequest
                               ) -> pb.AuthUserRevokeRoleResponse:
        header = await self._call("user_revoke_role", name=r.name, role=r.role)
        return pb.AuthUserRevokeRoleResponse(header=header)

    async def role_add(self, r: pb.AuthRoleAddRequest) -> pb.AuthRoleAddResponse:
        return pb.AuthRoleAddResponse(header=await self._call("role_add", name=r.name))

    async def role_get(self, r: pb.AuthRoleGetRequest) -> pb.AuthRoleGetResponse:
        d = await self._api.native("role_get", name=r.role)
        perms = [authpb.Permission(permType=_PERM_NUMBERS[PermType(p["perm_type"])],
                                   key=p["key"], range_end=p["range_end"])
                 for p in d["perms"]]
        return pb.AuthRoleGetResponse(header=cv.header(d.get("header")), perm=perms)

    async def role_list(self, _r: pb.AuthRoleListRequest) -> pb.AuthRoleListResponse:
        d = await self._api.native("role_list")
        return pb.AuthRoleListResponse(header=cv.header(d.get("header")), roles=d["roles"])

    async def role_delete(self, r: pb.AuthRoleDeleteRequest) -> pb.AuthRoleDeleteResponse:
        return pb.AuthRoleDeleteResponse(header=await self._call("role_delete", name=r.role))

    async def role_grant_permission(self, r: pb.AuthRoleGrantPermissionRequest
                                    ) -> pb.AuthRoleGrantPermissionResponse:
        header = await self._call(
            "role_grant_permission", name=r.name,
            perm_type=_PERM_NAMES.get(r.perm.permType, PermType.READ).value,
            key=r.perm.key, range_end=r.perm.range_end)
        return pb.AuthRoleGrantPermissionResponse(header=header)

    async def role_revoke_permission(self, r: pb.AuthRoleRevokePermissionRequest
                                     ) -> pb.AuthRoleRevokePermissionResponse:
        header = await self._call("role_revoke_permission", name=r.role, key=r.key,
                                  range_end=r.range_end)
        return pb.AuthRoleRevokePermissionResponse(header=header)

    def methods(self) -> list[Method]:
        """The Auth service's methods, as `actors.etcd_api.Method`s."""
        from actors.etcd_api import Method  # etcd_api imports this module

        auth = "/etcdserverpb.Auth/"
        table: list[tuple[str, type[Message], type[Message], Handler]] = [
            ("AuthEnable", pb.AuthEnableRequest, pb.AuthEnableResponse, self.auth_enable),
            ("AuthDisable", pb.AuthDisableRequest, pb.AuthDisableResponse, self.auth_disable),
            ("Authenticate", pb.AuthenticateRequest, pb.AuthenticateResponse,
             self.authenticate),
            ("UserAdd", pb.AuthUserAddRequest, pb.AuthUserAddResponse, self.user_add),
            ("UserGet", pb.AuthUserGetRequest, pb.AuthUserGetResponse, self.user_get),
            ("UserList", pb.AuthUserListRequest, pb.AuthUserListResponse, self.user_list),
            ("UserDelete", pb.AuthUserDeleteRequest, pb.AuthUserDeleteResponse,
             self.user_delete),
            ("UserChangePassword", pb.AuthUserChangePasswordRequest,
             pb.AuthUserChangePasswordResponse, self.user_change_password),
            ("UserGrantRole", pb.AuthUserGrantRoleRequest, pb.AuthUserGrantRoleResponse,
             self.user_grant_role),
            ("UserRevokeRole", pb.AuthUserRevokeRoleRequest, pb.AuthUserRevokeRoleResponse,
             self.user_revoke_role),
            ("RoleAdd", pb.AuthRoleAddRequest, pb.AuthRoleAddResponse, self.role_add),
            ("RoleGet", pb.AuthRoleGetRequest, pb.AuthRoleGetResponse, self.role_get),
            ("RoleList", pb.AuthRoleListRequest, pb.AuthRoleListResponse, self.role_list),
            ("RoleDelete", pb.AuthRoleDeleteRequest, pb.AuthRoleDeleteResponse,
             self.role_delete),
            ("RoleGrantPermission", pb.AuthRoleGrantPermissionRequest,
             pb.AuthRoleGrantPermissionResponse, self.role_grant_permission),
            ("RoleRevokePermission", pb.AuthRoleRevokePermissionRequest,
             pb.AuthRoleRevokePermissionResponse, self.role_revoke_permission),
        ]
        return [Method(auth + name, req, resp, handler) for name, req, resp, handler in table]


AUTH_ROUTES: dict[str, str] = {
    "/v3/auth/enable": "/etcdserverpb.Auth/AuthEnable",
    "/v3/auth/disable": "/etcdserverpb.Auth/AuthDisable",
    "/v3/auth/authenticate": "/etcdserverpb.Auth/Authenticate",
    "/v3/auth/user/add": "/etcdserverpb.Auth/UserAdd",
    "/v3/auth/user/get": "/etcdserverpb.Auth/UserGet",
    "/v3/auth/user/list": "/etcdserverpb.Auth/UserList",
    "/v3/auth/user/delete": "/etcdserverpb.Auth/UserDelete",
    "/v3/auth/user/changepw": "/etcdserverpb.Auth/UserChangePassword",
    "/v3/auth/user/grant": "/etcdserverpb.Auth/UserGrantRole",
    "/v3/auth/user/revoke": "/etcdserverpb.Auth/UserRevokeRole",
    "/v3/auth/role/add": "/etcdserverpb.Auth/RoleAdd",
    "/v3/auth/role/get": "/etcdserverpb.Auth/RoleGet",
    "/v3/auth/role/list": "/etcdserverpb.Auth/RoleList",
    "/v3/auth/role/delete": "/etcdserverpb.Auth/RoleDelete",
    "/v3/auth/role/grant": "/etcdserverpb.Auth/RoleGrantPermission",
    "/v3/auth/role/revoke": "/etcdserverpb.Auth/RoleRevokePermission",
}
"""etcd's gateway paths of the Auth service (rpc.proto's google.api.http options)."""

"""`etcdlite user|role|auth ...`: etcd's authentication, as etcdctl spells it.

Every command is one call of `Client.auth` (cluster/client_auth_ops.py); once
auth is enabled they need `--user` with the root role (except `auth status`,
and `user get`/`role get` of oneself). Messages are etcdctl's, so scripts
written for etcdctl read them the same.
"""

from __future__ import annotations

import click

from cluster import cli_output as out
from cluster.auth_types import ROOT_ROLE, ROOT_ROLE_NOT_EXIST, ROOT_USER
from cluster.cli_common import Settings, write_out_option
from cluster.client_auth_ops import RolePermission
from cluster.errors import AuthError


def resolve_user(user: str | None) -> str | None:
    """`--user name` without a password asks for it (hidden), as etcdctl does."""
    if user is None or ":" in user:
        return user
    password = click.prompt(f"Password for {user}", hide_input=True, err=True)
    return f"{user}:{password}"


def _new_password(name: str, given: str | None) -> tuple[str, str]:
    if ":" in name:
        name, password = name.split(":", 1)
        return name, password
    if given is not None:
        return name, given
    return name, click.prompt(f"Password of {name}", hide_input=True,
                              confirmation_prompt=True, err=True)


# --- user ------------------------------------------------------------------------------


@click.group("user")
def user_group() -> None:
    """Add, delete, list users; change passwords; grant and revoke roles.

    \b
    Examples:
      etcdlite user add root:secret
      etcdlite user grant-role root root
      etcdlite --user root:secret user list
    """


@user_group.command("add")
@click.argument("name")
@click.option("--new-user-password", default=None, help="The password (else NAME:PASSWORD "
              "or a prompt).")
@click.option("--no-password", is_flag=True, help="A user that cannot log in with a "
              "password (etcd's no_password option).")
@click.pass_obj
def user_add_cmd(s: Settings, name: str, new_user_password: str | None,
                 no_password: bool) -> None:
    """Add user NAME (NAME:PASSWORD gives the password inline)."""
    password = ""
    if not no_password:
        name, password = _new_password(name, new_user_password)
    with s.client() as c:
        c.auth.user_add(name, password, no_password=no_password)
    click.echo(f"User {name} created")


@user_group.command("delete")
@click.argument("name")
@click.pass_obj
def user_delete_cmd(s: Settings, name: str) -> None:
    """Delete user NAME (not root while auth is enabled)."""
    with s.client() as c:
        c.auth.user_delete(name)
    click.echo(f"User {name} deleted")


@user_group.command("get")
@click.argument("name")
@write_out_option
@click.pass_obj
def user_get_cmd(s: Settings, name: str) -> None:
    """Show user NAME and its roles."""
    with s.client() as c:
        roles = c.auth.user_get(name)
    if s.write_out == "json":
        out.echo_json({"name": name, "roles": roles})
        return
    click.echo(f"User: {name}\nRoles: {' '.join(roles)}")


@user_group.command("list")
@write_out_option
@click.pass_obj
def user_list_cmd(s: Settings) -> None:
    """List every user."""
    with s.client() as c:
        _echo_names(s, "users", c.auth.user_list())


@user_group.command("passwd")
@click.argument("name")
@click.option("--new-user-password", default=None, help="The new password (else a prompt).")
@click.pass_obj
def user_passwd_cmd(s: Settings, name: str, new_user_password: str | None) -> None:
    """Change the password of user NAME (its older tokens stop working)."""
    name, password = _new_password(name, new_user_password)
    with s.client() as c:
        c.auth.user_change_password(name, password)
    click.echo("Password updated")


@user_group.command("grant-role")
@click.argument("name")
@click.argument("role")
@click.pass_obj
def user_grant_cmd(s: Settings, name: str, role: str) -> None:
    """Grant ROLE to user NAME."""
    with s.client() as c:
        c.auth.user_grant_role(name, role)
    click.echo(f"Role {role} is granted to user {name}")


@user_group.command("revoke-role")
@click.argument("name")
@click.argument("role")
@click.pass_obj
def user_revoke_cmd(s: Settings, name: str, role: str) -> None:
    """Revoke ROLE from user NAME."""
    with s.client() as c:
        c.auth.user_revoke_role(name, role)
    click.echo(f"Role {role} is revoked from user {name}")


# --- role ------------------------------------------------------------------------------


@click.group("role")
def role_group() -> None:
    """Add, delete, list roles; grant and revoke key permissions.

    \b
    Examples:
      etcdlite role add app-reader
      etcdlite role grant-permission app-reader read app/ --prefix
      etcdlite user grant-role alice app-reader
    """


@role_group.command("add")
@click.argument("name")
@click.pass_obj
def role_add_cmd(s: Settings, name: str) -> None:
    """Add role NAME."""
    with s.client() as c:
        c.auth.role_add(name)
    click.echo(f"Role {name} created")


@role_group.command("delete")
@click.argument("name")
@click.pass_obj
def role_delete_cmd(s: Settings, name: str) -> None:
    """Delete role NAME (and take it from every user)."""
    with s.client() as c:
        c.auth.role_delete(name)
    click.echo(f"Role {name} deleted")


def _describe(p: RolePermission) -> str:
    key = p.key.decode(errors="replace")
    if not p.range_end:
        return key
    if p.range_end == b"\0":
        return f"[{key}, <open ended>"
    return f"[{key}, {p.range_end.decode(errors='replace')})"


@role_group.command("get")
@click.argument("name")
@write_out_option
@click.pass_obj
def role_get_cmd(s: Settings, name: str) -> None:
    """Show the permissions of role NAME."""
    with s.client() as c:
        perms = c.auth.role_get(name)
    if s.write_out == "json":
        out.echo_json({"name": name, "perm": [
            {"permType": p.perm_type, "key": out.b64(p.key), "range_end": out.b64(p.range_end)}
            for p in perms]})
        return
    click.echo(f"Role {name}")
    for kind, types in (("Read", ("READ", "READWRITE")), ("Write", ("WRITE", "READWRITE"))):
        click.echo(f"KV {kind}:")
        for p in perms:
            if p.perm_type in types:
                click.echo(f"\t{_describe(p)}")


@role_group.command("list")
@write_out_option
@click.pass_obj
def role_list_cmd(s: Settings) -> None:
    """List every role."""
    with s.client() as c:
        _echo_names(s, "roles", c.auth.role_list())


def _echo_names(s: Settings, key: str, names: list[str]) -> None:
    """A user or role list as etcdctl prints it: one name a line, or {key: [...]}."""
    if s.write_out == "json":
        out.echo_json({key: names})
        return
    for name in names:
        click.echo(name)


_PERM = click.Choice(["read", "write", "readwrite"], case_sensitive=False)


@role_group.command("grant-permission")
@click.argument("name")
@click.argument("perm_type", metavar="read|write|readwrite", type=_PERM)
@click.argument("key")
@click.argument("range_end", required=False)
@click.option("--prefix", is_flag=True, help="Every key starting with KEY.")
@click.option("--from-key", is_flag=True, help="Every key from KEY on.")
@click.pass_obj
def role_grant_cmd(s: Settings, name: str, perm_type: str, key: str, range_end: str | None,
                   prefix: bool, from_key: bool) -> None:
    """Let role NAME read and/or write KEY, [KEY, RANGE_END), a prefix or from a key."""
    with s.client() as c:
        c.auth.role_grant_permission(name, perm_type, key, range_end, prefix=prefix,
                                     from_key=from_key)
    click.echo(f"Role {name} updated")


@role_group.command("revoke-permission")
@click.argument("name")
@click.argument("key")
@click.argument("range_end", required=False)
@click.option("--prefix", is_flag=True, help="The permission was granted with --prefix.")
@click.option("--from-key", is_flag=True, help="The permission was granted with --from-key.")
@click.pass_obj
def role_revoke_cmd(s: Settings, name: str, key: str, range_end: str | None, prefix: bool,
                    from_key: bool) -> None:
    """Take back the permission of role NAME on exactly that key or range."""
    with s.client() as c:
        c.auth.role_revoke_permission(name, key, range_end, prefix=prefix, from_key=from_key)
    click.echo(f"Permission of key {key} is revoked from role {name}")


# --- auth ------------------------------------------------------------------------------


@click.group("auth")
def auth_group() -> None:
    """Switch authentication on and off, or show whether it is on.

    \b
    Examples:
      etcdlite user add root:secret
      etcdlite auth enable          # adds the root role to root if it is missing
      etcdlite --user root:secret auth disable
    """


@auth_group.command("enable")
@click.pass_obj
def auth_enable_cmd(s: Settings) -> None:
    """Require a user on every request (user root with role root must exist)."""
    with s.client() as c:
        try:
            c.auth.enable()
        except AuthError as exc:
            if exc.message != ROOT_ROLE_NOT_EXIST:
                raise
            # etcdctl's convenience: give root the root role, then enable.
            if ROOT_ROLE not in c.auth.role_list():
                c.auth.role_add(ROOT_ROLE)
            c.auth.user_grant_role(ROOT_USER, ROOT_ROLE)
            c.auth.enable()
    click.echo("Authentication Enabled")


@auth_group.command("disable")
@click.pass_obj
def auth_disable_cmd(s: Settings) -> None:
    """Let every request through again (needs the root role)."""
    with s.client() as c:
        c.auth.disable()
    click.echo("Authentication Disabled")


@auth_group.command("status")
@write_out_option
@click.pass_obj
def auth_status_cmd(s: Settings) -> None:
    """Whether authentication is enabled, and the auth revision."""
    with s.client() as c:
        st = c.auth.status()
    if s.write_out == "json":
        out.echo_json({"enabled": st.enabled, "authRevision": st.auth_revision})
        return
    click.echo(f"Authentication Status: {str(st.enabled).lower()}\n"
               f"AuthRevision: {st.auth_revision}")

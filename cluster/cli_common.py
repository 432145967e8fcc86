"""Pieces every `etcdlite` command module shares: settings, error mapping, argument types.

Separate from `cluster.cli` only so that command modules (e.g. `cluster.cli_lease`)
can use them without importing the group that imports them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from cluster.cli_output import FORMATS
from cluster.client import Client
from cluster.errors import (
    EtcdliteError,
    NoLeaderError,
    NotLeaderError,
    TimeoutError_,
    UnavailableError,
)

EXIT_ERROR = 1
EXIT_UNAVAILABLE = 3
_UNAVAILABLE = (UnavailableError, NoLeaderError, NotLeaderError, TimeoutError_)


def exit_code_for(exc: EtcdliteError) -> int:
    """3 when the cluster could not serve (try again later), 1 for any other error."""
    return EXIT_UNAVAILABLE if isinstance(exc, _UNAVAILABLE) else EXIT_ERROR


class CliError(click.ClickException):
    """A typed cluster error as click shows it: "Error: <code>: <message>" on stderr."""

    def __init__(self, exc: EtcdliteError) -> None:
        super().__init__(f"{exc.code.value}: {exc.message}")
        self._code = exit_code_for(exc)

    @property  # click declares exit_code a class variable; ours depends on the error
    def exit_code(self) -> int:  # type: ignore[override]
        return self._code


class ErrorMappingGroup(click.Group):
    """A click group that turns typed cluster errors into `CliError` for every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        # Subcommands (and nested groups) run inside this call, so this one
        # handler covers every command.
        try:
            return super().invoke(ctx)
        except EtcdliteError as exc:
            raise CliError(exc) from None


@dataclass(frozen=True)
class Settings:
    """Global options, shared with every command through click's context object."""

    endpoints: tuple[str, ...]
    timeout_s: float
    write_out: str
    user: str | None = None  # etcdctl's --user name[:password]

    def client(self, endpoints: tuple[str, ...] | None = None) -> Client:
        return Client(endpoints or self.endpoints, timeout_s=self.timeout_s, user=self.user)


def arg_bytes(text: str) -> bytes:
    """argv as the user typed it: undecodable bytes survive via surrogateescape."""
    return os.fsencode(text)


class LeaseIdType(click.ParamType):
    """Lease ids are shown and typed in hex, as etcdctl does (`0x` prefix optional)."""

    name = "LEASE_ID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            lease_id = int(str(value), 16)
        except ValueError:
            self.fail(f"{value!r} is not a hexadecimal lease id", param, ctx)
        if lease_id < 0:
            self.fail("lease ids are non-negative", param, ctx)
        return lease_id


LEASE_ID = LeaseIdType()


F = TypeVar("F", bound=Callable[..., Any])


def write_out_option(command: F) -> F:
    """`-w` on a subcommand too: etcdctl users type `get foo -w json` after the command."""

    def override(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value is not None:
            ctx.obj = dataclasses.replace(ctx.obj, write_out=value)

    return click.option(
        "-w", "--write-out", type=click.Choice(FORMATS), default=None, expose_value=False,
        callback=override, help="Output format (same as the global -w).",
    )(command)

"""`etcdlite watch`: print changes as they happen, or run a command per change, like etcdctl.

Output (simple): per event a type line (PUT/DELETE), then with --prev-kv the
previous key and value lines, then the key and value lines, as etcdctl
prints them. `-w json` prints one JSON object per response instead.

With a command after `--`, each event also runs it with etcdctl's
environment: ETCD_WATCH_EVENT_TYPE, ETCD_WATCH_KEY and ETCD_WATCH_VALUE
quoted as Go's %q quotes them, and ETCD_WATCH_REVISION, the revision of the
response's header. Scripts written for `etcdctl watch -- cmd` keep working.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import click

from cluster import cli_output as out
from cluster.cli_common import Settings, arg_bytes, write_out_option
from cluster.client_watch_state import Event, WatchResponse
from cluster.errors import CompactedError

_EXEC_KEY = "watch_exec"
EXIT_INTERRUPTED = 130


def go_quote(data: bytes | str) -> str:
    """Go's %q of a byte string: double quotes, backslash escapes, \\xNN for bad bytes."""
    raw = data.encode() if isinstance(data, str) else data
    text = raw.decode("utf-8", errors="surrogateescape")
    parts = ['"']
    escapes = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r",
               "\a": "\\a", "\b": "\\b", "\f": "\\f", "\v": "\\v"}
    for ch in text:
        code = ord(ch)
        if ch in escapes:
            parts.append(escapes[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte kept by surrogateescape
            parts.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable():
            parts.append(ch)
        elif code < 0x80:
            parts.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            parts.append(f"\\u{code:04x}")
        else:
            parts.append(f"\\U{code:08x}")
    parts.append('"')
    return "".join(parts)


def event_env(response: WatchResponse, event: Event) -> dict[str, str]:
    """The variables etcdctl sets for a watch command, for one event."""
    return {
        "ETCD_WATCH_REVISION": str(response.header.revision),
        "ETCD_WATCH_EVENT_TYPE": go_quote(event.type.value.upper()),
        "ETCD_WATCH_KEY": go_quote(event.kv.key),
        "ETCD_WATCH_VALUE": go_quote(event.kv.value),
    }


def response_json(r: WatchResponse) -> dict[str, Any]:
    events = [out.omit_empty({
        "type": e.type.value.upper(), "kv": out.kv_json(e.kv),
        "prev_kv": None if e.prev_kv is None else out.kv_json(e.prev_kv)}) for e in r.events]
    return out.omit_empty({
        "header": out.header_json(r.header), "watch_id": r.watch_id, "events": events,
        "compact_revision": r.compact_revision, "canceled": r.canceled,
        "cancel_reason": r.cancel_reason, "is_progress_notify": r.is_progress_notify})


def print_watch_response(fmt: str, r: WatchResponse) -> None:
    if fmt == "json":
        out.echo_json(response_json(r))
        return
    for e in r.events:
        click.echo(e.type.value.upper())
        if e.prev_kv is not None:
            out.echo_bytes(e.prev_kv.key)
            out.echo_bytes(e.prev_kv.value)
        out.echo_bytes(e.kv.key)
        out.echo_bytes(e.kv.value)


def run_for_events(command: list[str], r: WatchResponse) -> None:
    """Run `command` once per event, as etcdctl does; a failing command is reported, not fatal."""
    sys.stdout.flush()
    for e in r.events:
        try:
            subprocess.run(command, env={**os.environ, **event_env(r, e)}, check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            click.echo(f"command {go_quote(' '.join(command))} error ({exc})", err=True)


class _WatchCommand(click.Command):
    """Splits argv at `--`: before it KEY/RANGE_END and flags, after it the command to run."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta[_EXEC_KEY] = args[cut + 1:]
            args = args[:cut]
        return super().parse_args(ctx, args)


@click.command("watch", cls=_WatchCommand)
@click.argument("key")
@click.argument("range_end", required=False)
@click.option("--prefix", is_flag=True, help="Every key starting with KEY.")
@click.option("--rev", type=click.IntRange(min=0), default=0,
              help="Start at this revision (history first); 0 = from now.")
@click.option("--prev-kv", is_flag=True, help="Also print each key's previous value.")
@click.option("--progress-notify", is_flag=True,
              help="Also report progress when nothing changes (visible with -w json).")
@write_out_option
@click.pass_context
def watch_cmd(ctx: click.Context, key: str, range_end: str | None, prefix: bool, rev: int,
              prev_kv: bool, progress_notify: bool) -> None:
    """Print every change to KEY, or to [KEY, RANGE_END), until interrupted.

    \b
    Examples:
      etcdlite watch greeting
      etcdlite watch --prefix /config/ --prev-kv
      etcdlite watch --rev 1 --prefix '' -w json
      etcdlite watch /jobs/ --prefix -- sh -c 'echo "$ETCD_WATCH_KEY changed"'

    The watch survives a member failure: it resumes on another endpoint from
    the next revision, so no change is missed or printed twice. It ends with
    exit 1 if history at --rev has been compacted.
    """
    s: Settings = ctx.obj
    if range_end is not None and prefix:
        raise click.UsageError("use only one of RANGE_END and --prefix")
    command: list[str] = ctx.meta.get(_EXEC_KEY, [])
    try:
        with s.client() as c, c.watch(
            arg_bytes(key), range_end=None if range_end is None else arg_bytes(range_end),
            prefix=prefix, start_revision=rev, prev_kv=prev_kv,
            progress_notify=progress_notify,
        ) as watch:
            for response in watch:
                print_watch_response(s.write_out, response)
                if response.canceled:
                    reason = response.cancel_reason or "canceled"
                    click.echo(f"watch was canceled ({reason})", err=True)
                    raise CompactedError(reason, response.compact_revision)
                if command:
                    run_for_events(command, response)
                sys.stdout.flush()
    except KeyboardInterrupt:
        ctx.exit(EXIT_INTERRUPTED)

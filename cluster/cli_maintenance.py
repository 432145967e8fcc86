"""`etcdlite defrag`, `alarm list|disarm`, `endpoint health|hashkv`: keeping members healthy.

Per-endpoint commands ask every endpoint of --endpoints in turn (defrag,
one member at a time on purpose) or concurrently (health, hashkv), print one
line per endpoint, and fail the command when any endpoint failed: exit 3
when every failure was the cluster being unavailable (unreachable, no leader,
timed out: try again later), 1 otherwise (an alarm, an error reply: a human
has to act).
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import click

from cluster import cli_output as out
from cluster.cli_common import Settings, exit_code_for, write_out_option
from cluster.client_maintenance import AlarmResponse, HashKVResult
from cluster.errors import BadRequestError, EtcdliteError, UnavailableError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Check:
    """One endpoint's answer to a per-endpoint command."""

    endpoint: str
    ok: bool
    took_s: float
    error: str = ""
    unavailable: bool = False


def _each(endpoints: Sequence[str], fn: Callable[[str], T]) -> list[T]:
    # Concurrent, so one hung member costs one timeout rather than one per endpoint.
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(endpoints)) as pool:
        return list(pool.map(fn, endpoints))


def fail_if_any(checks: Sequence[Check], what: str) -> None:
    """Exit 3 if every failure is unavailability, 1 if any is something else, else 0."""
    failed = [c for c in checks if not c.ok]
    if not failed:
        return
    message = f"{len(failed)} of {len(checks)} endpoints {what}"
    if all(c.unavailable for c in failed):
        raise UnavailableError(message)
    raise click.ClickException(message)  # exit 1


def _error_text(exc: EtcdliteError) -> tuple[str, bool]:
    return f"{exc.code.value}: {exc.message}", exit_code_for(exc) == 3


# --- endpoint health / hashkv ----------------------------------------------------------


def _health(s: Settings, endpoint: str) -> Check:
    started = time.monotonic()
    try:
        with s.client((endpoint,)) as c:
            h = c.health(endpoint)
    except EtcdliteError as exc:
        text, unavailable = _error_text(exc)
        return Check(endpoint, False, time.monotonic() - started, text, unavailable)
    took = time.monotonic() - started
    reason = h.reason or "unhealthy"
    # No leader or a read that timed out is the cluster being unavailable; an alarm is not.
    unavailable = not h.health and "alarm" not in reason
    return Check(endpoint, h.health, took, "" if h.health else reason, unavailable)


@click.command("health")
@write_out_option
@click.pass_obj
def endpoint_health_cmd(s: Settings) -> None:
    """Check each endpoint: it knows a leader, serves a linearizable read in time,
    and no alarm (e.g. NOSPACE) is active. Exit 3 if unreachable or leaderless, 1 on
    any other problem.

    \b
    Example:
      etcdlite endpoint health
    """
    checks = _each(s.endpoints, lambda ep: _health(s, ep))
    out.print_health(s.write_out, [(c.endpoint, c.ok, c.took_s, c.error) for c in checks])
    fail_if_any(checks, "unhealthy")


def _hashkv(s: Settings, endpoint: str, revision: int) -> HashKVResult | Check:
    started = time.monotonic()
    try:
        with s.client((endpoint,)) as c:
            return c.hash_kv(endpoint, revision)
    except EtcdliteError as exc:
        text, unavailable = _error_text(exc)
        return Check(endpoint, False, time.monotonic() - started, text, unavailable)


@click.command("hashkv")
@click.option("--rev", type=click.IntRange(min=0), default=0,
              help="Hash the history up to this revision (0: each member's current one).")
@write_out_option
@click.pass_obj
def endpoint_hashkv_cmd(s: Settings, rev: int) -> None:
    """Print each endpoint's hash of its key-value history. Members that applied the
    same log agree at the same revision; give --rev to compare members that are busy.

    \b
    Examples:
      etcdlite endpoint hashkv -w table
      etcdlite endpoint hashkv --rev 1200
    """
    results = _each(s.endpoints, lambda ep: _hashkv(s, ep, rev))
    hashes = [r for r in results if isinstance(r, HashKVResult)]
    failures = [r for r in results if isinstance(r, Check)]
    out.print_hashkv(s.write_out, hashes)
    for f in failures:
        click.echo(f"Error: {f.error} (endpoint {f.endpoint})", err=True)
    fail_if_any([*failures, *(Check(h.endpoint, True, 0) for h in hashes)], "failed")


# --- defrag -----------------------------------------------------------------------------


@click.command("defrag")
@write_out_option
@click.pass_obj
def defrag_cmd(s: Settings) -> None:
    """Give each endpoint's free pages back to the file system (SQLite VACUUM).

    One member at a time. While a member defragments (about 0.1 s per 10 MB),
    it applies no committed write: they queue up and are applied right after.
    Reads keep being served from the state it had; linearizable reads that need
    a newer write wait. Defragment after a compaction to shrink the files, e.g.
    to get under --quota-backend-bytes before `etcdlite alarm disarm`.

    \b
    Example:
      etcdlite compaction 1200 && etcdlite defrag && etcdlite alarm disarm
    """
    checks, done = [], []
    with s.client() as c:
        for endpoint in s.endpoints:
            started = time.monotonic()
            try:
                r = c.defragment(endpoint)
            except EtcdliteError as exc:
                text, unavailable = _error_text(exc)
                click.echo(f"Failed to defragment etcd member[{endpoint}] ({text})", err=True)
                checks.append(Check(endpoint, False, time.monotonic() - started, text,
                                    unavailable))
                continue
            checks.append(Check(endpoint, True, time.monotonic() - started))
            done.append(r)
            if s.write_out != "json":
                click.echo(f"Finished defragmenting etcd member[{endpoint}]. took "
                           f"{r.took_ms:.1f}ms, {out.human_bytes(r.db_size_before)} -> "
                           f"{out.human_bytes(r.db_size)}")
    if s.write_out == "json":
        out.echo_json([{"endpoint": r.endpoint, "header": out.header_json(r.header),
                        "dbSizeBefore": r.db_size_before, "dbSize": r.db_size,
                        "tookMs": r.took_ms} for r in done])
    fail_if_any(checks, "failed to defragment")


# --- alarm ------------------------------------------------------------------------------


@click.group("alarm")
def alarm_group() -> None:
    """List or disarm alarms (NOSPACE: a member's store outgrew --quota-backend-bytes).

    While NOSPACE is active, writes that add data (put, txn with a put, lease
    grant) fail with no_space on every member; reads, deletes, compaction,
    lease revoke and defrag still work. Free space first, then disarm:

    \b
    Example:
      etcdlite alarm list
      etcdlite compaction 1200 && etcdlite defrag && etcdlite alarm disarm
    """


def _print_alarms(s: Settings, r: AlarmResponse) -> None:
    if s.write_out == "json":
        out.echo_json({"header": out.header_json(r.header),
                       "alarms": [{"memberID": a.member_id, "alarm": a.alarm.value}
                                  for a in r.alarms]})
        return
    for a in r.alarms:
        click.echo(a.describe())


@alarm_group.command("list")
@write_out_option
@click.pass_obj
def alarm_list_cmd(s: Settings) -> None:
    """Print every active alarm, one "memberID:<hex id> alarm:<NAME>" line each."""
    with s.client() as c:
        _print_alarms(s, c.alarm_list())


@alarm_group.command("disarm")
@click.option("--member", "member_hex", default="0", metavar="HEX_ID",
              help="Only this member's alarms (hex id; default: every member).")
@click.option("--alarm", "alarm_name", default="NONE",
              type=click.Choice(["NONE", "NOSPACE", "CORRUPT"], case_sensitive=False),
              help="Only this alarm type (default: every type).")
@write_out_option
@click.pass_obj
def alarm_disarm_cmd(s: Settings, member_hex: str, alarm_name: str) -> None:
    """Clear alarms (through the log, so every member stops refusing writes);
    prints the alarms it cleared. A member still over its quota raises NOSPACE
    again on its next write."""
    try:
        member_id = int(member_hex, 16)
    except ValueError:
        raise BadRequestError(f"--member {member_hex!r} is not a hexadecimal id") from None
    with s.client() as c:
        _print_alarms(s, c.alarm_disarm(member_id, alarm_name))

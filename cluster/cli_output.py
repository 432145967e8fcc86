"""How `etcdlite` prints results: simple (etcdctl's plain lines), json, table.

Kept apart from the command definitions so each printer can be read (and
changed) in one place. JSON follows etcdctl's shape so scripts written for
`etcdctl -w json` keep working: a `header` with cluster_id/member_id/
revision/raft_term, keys and values base64-encoded, and zero/empty fields
left out as Go's `omitempty` does.

Data goes to stdout (raw bytes for keys and values: they need not be UTF-8);
diagnostics go to stderr.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from cluster.client_maintenance import HashKVResult
from cluster.client_types import (
    DeleteResult,
    KeyValue,
    LeaseTimeToLiveResult,
    PutResult,
    RangeResult,
    ResponseHeader,
    Status,
)

FORMATS = ("simple", "json", "table")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def header_json(h: ResponseHeader) -> dict[str, int]:
    return {"cluster_id": h.cluster_id, "member_id": h.member_id,
            "revision": h.revision, "raft_term": h.raft_term}


def omit_empty(d: dict[str, Any]) -> dict[str, Any]:
    """Drop zero, false and empty fields, as etcdctl's JSON does."""
    return {k: v for k, v in d.items() if v not in (0, False, "", None, [], {})}


def kv_json(kv: KeyValue) -> dict[str, Any]:
    return omit_empty({
        "key": b64(kv.key), "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision, "version": kv.version, "value": b64(kv.value),
        "lease": kv.lease,
    })


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj))


def echo_bytes(data: bytes) -> None:
    """One raw line: keys and values are bytes and are printed unchanged."""
    click.echo(data)


def echo_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    table = Table(box=box.ASCII, show_lines=False, header_style="bold")
    for h in headers:
        table.add_column(h, overflow="fold")
    for row in rows:
        table.add_row(*(str(c) for c in row))
    # Off a terminal, do not squeeze columns to 80 characters: pipes want whole values.
    width = None if sys.stdout.isatty() else 10_000
    Console(width=width, highlight=False, soft_wrap=False).print(table)


def human_bytes(n: int) -> str:
    """Sizes in SI units (1 kB = 1000 B), like etcdctl's table."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def print_put(fmt: str, r: PutResult) -> None:
    if fmt == "json":
        out: dict[str, Any] = {"header": header_json(r.header)}
        if r.prev_kv is not None:
            out["prev_kv"] = kv_json(r.prev_kv)
        echo_json(out)
        return
    click.echo("OK")
    if r.prev_kv is not None:
        echo_bytes(r.prev_kv.key)
        echo_bytes(r.prev_kv.value)


def print_get(fmt: str, r: RangeResult, *, keys_only: bool, count_only: bool,
              value_only: bool) -> None:
    if fmt == "json":
        echo_json(omit_empty({"header": header_json(r.header),
                              "kvs": [kv_json(kv) for kv in r.kvs],
                              "more": r.more, "count": r.count}))
    elif fmt == "table":
        echo_table(["KEY", "VALUE", "CREATE REV", "MOD REV", "VERSION", "LEASE"],
                   [(_text(kv.key), _text(kv.value), kv.create_revision, kv.mod_revision,
                     kv.version, f"{kv.lease:x}" if kv.lease else "") for kv in r.kvs])
    elif count_only:
        click.echo(str(r.count))
    else:
        for kv in r.kvs:
            if not value_only:
                echo_bytes(kv.key)
            if not keys_only:
                echo_bytes(kv.value)


def print_delete(fmt: str, r: DeleteResult) -> None:
    if fmt == "json":
        echo_json(omit_empty({"header": header_json(r.header), "deleted": r.deleted,
                              "prev_kvs": [kv_json(kv) for kv in r.prev_kvs]}))
        return
    click.echo(str(r.deleted))
    for kv in r.prev_kvs:
        echo_bytes(kv.key)
        echo_bytes(kv.value)


_STATUS_HEADERS = ("ENDPOINT", "ID", "NAME", "ROLE", "LEADER", "TERM", "COMMIT INDEX",
                   "APPLIED INDEX", "REVISION", "DB SIZE", "DB SIZE IN USE", "ERRORS")


def _status_row(s: Status) -> tuple[object, ...]:
    return (s.endpoint, f"{s.member_id:x}", s.name, s.role + (" (learner)" if s.is_learner else ""),
            f"{s.leader:x}", s.term, s.commit_index, s.applied_index, s.revision,
            human_bytes(s.db_size), human_bytes(s.db_size_in_use), ", ".join(s.errors))


def print_status(fmt: str, statuses: Sequence[Status]) -> None:
    if fmt == "json":
        echo_json([{"Endpoint": s.endpoint, "Status": {
            "header": header_json(s.header), "name": s.name, "role": s.role,
            "version": s.version, "dbSize": s.db_size, "leader": s.leader,
            "raftIndex": s.commit_index, "raftTerm": s.term,
            "raftAppliedIndex": s.applied_index, "revision": s.revision,
            "compactRevision": s.compact_revision, "voters": list(s.voters),
            "isLearner": s.is_learner, "dbSizeInUse": s.db_size_in_use,
            "errors": list(s.errors),
        }} for s in statuses])
    elif fmt == "table":
        echo_table(_STATUS_HEADERS, [_status_row(s) for s in statuses])
    else:
        for s in statuses:
            # etcdctl's simple line ends with the errors; ours omits the in-use size.
            row = _status_row(s)
            click.echo(", ".join(str(c) for c in (*row[:10], *(row[11:] if s.errors else ()))))


def print_health(fmt: str, checks: Sequence[tuple[str, bool, float, str]]) -> None:
    """`checks`: (endpoint, healthy, seconds taken, error text or "")."""
    if fmt == "json":
        echo_json([{"endpoint": ep, "health": ok, "took": f"{took * 1000:.3f}ms",
                    **({"error": err} if err else {})} for ep, ok, took, err in checks])
    elif fmt == "table":
        echo_table(["ENDPOINT", "HEALTH", "TOOK", "ERROR"],
                   [(ep, str(ok).lower(), f"{took * 1000:.3f}ms", err)
                    for ep, ok, took, err in checks])
    else:
        for ep, ok, took, err in checks:
            if ok:
                click.echo(f"{ep} is healthy: successfully committed proposal: "
                           f"took = {took * 1000:.3f}ms")
            else:
                click.echo(f"{ep} is unhealthy: failed to commit proposal: {err}", err=True)


def print_hashkv(fmt: str, results: Sequence[HashKVResult]) -> None:
    if fmt == "json":
        echo_json([{"Endpoint": r.endpoint, "HashKV": {
            "header": header_json(r.header), "hash": r.hash,
            "compact_revision": r.compact_revision, "hash_revision": r.hash_revision,
        }} for r in results])
    elif fmt == "table":
        echo_table(["ENDPOINT", "HASH", "HASH REVISION", "COMPACT REVISION"],
                   [(r.endpoint, r.hash, r.hash_revision, r.compact_revision)
                    for r in results])
    else:
        for r in results:
            click.echo(f"{r.endpoint}, {r.hash}, {r.hash_revision}")


def print_timetolive(fmt: str, r: LeaseTimeToLiveResult) -> None:
    if fmt == "json":
        echo_json({"header": header_json(r.header), "id": r.id, "ttl": r.ttl,
                   "granted_ttl": r.granted_ttl, "keys": [b64(k) for k in r.keys]})
    elif r.ttl == -1:
        click.echo(f"lease {r.id:x} has expired or does not exist")
    else:
        line = f"lease {r.id:x} granted ttl {r.granted_ttl}s, remaining ttl {r.ttl}s"
        if r.keys:
            line += ", keys: " + " ".join(_text(k) for k in r.keys)
        click.echo(line)

"""Client side of the maintenance operations: alarms, defragment, hash_kv, health, snapshot.

Like `cluster.client_calls`, each operation is a `Call` (op, arguments,
parser, retry class) shared by `Client` and `AsyncClient`; snapshot saving,
which takes several calls to one member, is written once per I/O style here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cluster.alarm_types import AlarmMember, AlarmType
from cluster.client_calls import Call
from cluster.client_replies import _field, _list, _map, parse_header
from cluster.client_requests import non_negative
from cluster.client_types import ResponseHeader
from cluster.errors import BadRequestError, InternalError

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class AlarmResponse:
    """The alarms listed, or the ones an activate/deactivate changed."""

    header: ResponseHeader
    alarms: tuple[AlarmMember, ...]


@dataclass(frozen=True, slots=True)
class DefragmentResult:
    header: ResponseHeader
    endpoint: str
    db_size_before: int
    db_size: int
    took_ms: float


@dataclass(frozen=True, slots=True)
class HashKVResult:
    """CRC-32 of one member's MVCC history up to `hash_revision` (etcd's HashKV)."""

    header: ResponseHeader
    endpoint: str
    hash: int
    compact_revision: int
    hash_revision: int


@dataclass(frozen=True, slots=True)
class HealthResult:
    header: ResponseHeader
    endpoint: str
    health: bool
    reason: str
    took_ms: float


@dataclass(frozen=True, slots=True)
class SnapshotBegin:
    endpoint: str
    token: str
    size: int
    sha256: str
    revision: int


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    offset: int
    data: bytes
    eof: bool


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A snapshot saved to `path`, checked against the member's sha256."""

    endpoint: str
    path: Path
    size: int
    sha256: str
    revision: int
    took_s: float


# --- calls -------------------------------------------------------------------------


def _alarms(reply: dict[str, Any], endpoint: str) -> AlarmResponse:
    alarms = []
    for w in _list(reply, "alarms"):
        m = _map(w, "alarm")
        try:
            kind = AlarmType(_field(m, "alarm", str))
        except ValueError:
            raise InternalError(f"malformed reply: unknown alarm {m.get('alarm')!r}") from None
        alarms.append(AlarmMember(_field(m, "member_id", int), kind))
    return AlarmResponse(parse_header(reply), tuple(alarms))


def alarm_list_call() -> Call[AlarmResponse]:
    return Call("alarm", {"action": "get"}, _alarms, read=True)


def alarm_disarm_call(member_id: int, alarm: str) -> Call[AlarmResponse]:
    try:
        kind = AlarmType(alarm.upper())
    except ValueError:
        raise BadRequestError(f"unknown alarm {alarm!r}") from None
    args = {"action": "deactivate", "member_id": non_negative(member_id, "member_id"),
            "alarm": kind.value}
    return Call("alarm", args, _alarms, read=False)


def _defragment(reply: dict[str, Any], endpoint: str) -> DefragmentResult:
    return DefragmentResult(parse_header(reply), endpoint, _field(reply, "db_size_before", int),
                            _field(reply, "db_size", int),
                            _field(reply, "took_ms", float))


def defragment_call() -> Call[DefragmentResult]:
    # Not a read: a reply lost after a long VACUUM must not start another one elsewhere.
    return Call("defragment", {}, _defragment, read=False)


def _hash_kv(reply: dict[str, Any], endpoint: str) -> HashKVResult:
    return HashKVResult(parse_header(reply), endpoint, _field(reply, "hash", int),
                        _field(reply, "compact_revision", int),
                        _field(reply, "hash_revision", int))


def hash_kv_call(revision: int) -> Call[HashKVResult]:
    return Call("hash_kv", {"revision": non_negative(revision, "revision")}, _hash_kv,
                read=True)


def _health(reply: dict[str, Any], endpoint: str) -> HealthResult:
    return HealthResult(parse_header(reply), endpoint, _field(reply, "health", bool),
                        _field(reply, "reason", str, default=""),
                        _field(reply, "took_ms", float, default=0.0))


def health_call(timeout_ms: int) -> Call[HealthResult]:
    args = {"timeout_ms": non_negative(timeout_ms, "timeout_ms")} if timeout_ms else {}
    return Call("health", args, _health, read=True)


def _begin(reply: dict[str, Any], endpoint: str) -> SnapshotBegin:
    return SnapshotBegin(endpoint, _field(reply, "token", str), _field(reply, "size", int),
                         _field(reply, "sha256", str), _field(reply, "revision", int))


SNAPSHOT_FORMATS = ("etcdlite", "etcd")
"""A member's state.db as it is, or etcd's bbolt backend file (for etcd's tools)."""


def snapshot_begin_call(fmt: str = "etcdlite") -> Call[SnapshotBegin]:
    if fmt not in SNAPSHOT_FORMATS:
        raise ValueError(f"snapshot format must be one of {list(SNAPSHOT_FORMATS)}")
    return Call("snapshot_begin", {} if fmt == "etcdlite" else {"format": fmt}, _begin,
                read=True)


def _chunk(reply: dict[str, Any], endpoint: str) -> SnapshotChunk:
    return SnapshotChunk(_field(reply, "offset", int), _field(reply, "data", bytes),
                         _field(reply, "eof", bool))


def snapshot_chunk_call(token: str, offset: int) -> Call[SnapshotChunk]:
    return Call("snapshot_chunk", {"token": token, "offset": offset}, _chunk, read=True)


def snapshot_end_call(token: str) -> Call[ResponseHeader]:
    return Call("snapshot_end", {"token": token}, lambda r, _e: parse_header(r), read=True)


# --- snapshot save -----------------------------------------------------------------


class _Download:
    """The file side of a snapshot save: write chunks to `<path>.part`, check, rename."""

    def __init__(self, path: str | os.PathLike[str], begin: SnapshotBegin) -> None:
        self.path = Path(path)
        self.part = self.path.with_name(self.path.name + ".part")
        self.begin = begin
        self.offset = 0
        self._digest = hashlib.sha256()
        self._file = open(self.part, "wb")  # noqa: SIM115 - closed in finish/abort
        self._started = time.monotonic()

    @property
    def done(self) -> bool:
        return self.offset >= self.begin.size

    def write(self, chunk: SnapshotChunk) -> None:
        if chunk.offset != self.offset or (not chunk.data and not self.done):
            raise InternalError(f"snapshot: got chunk at {chunk.offset} ({len(chunk.data)} "
                                f"bytes), expected one at {self.offset}")
        self._file.write(chunk.data)
        self._digest.update(chunk.data)
        self.offset += len(chunk.data)

    def finish(self) -> SnapshotInfo:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        digest = self._digest.hexdigest()
        if self.offset != self.begin.size or digest != self.begin.sha256:
            self.abort()
            raise InternalError(
                f"snapshot from {self.begin.endpoint} is corrupt: got {self.offset} bytes "
                f"sha256 {digest}, expected {self.begin.size} bytes sha256 {self.begin.sha256}")
        os.replace(self.part, self.path)
        return SnapshotInfo(self.begin.endpoint, self.path, self.begin.size, digest,
                            self.begin.revision, time.monotonic() - self._started)

    def abort(self) -> None:
        self._file.close()
        self.part.unlink(missing_ok=True)


Runner = Callable[[Call[Any], str | None], Any]


def save_snapshot(run: Runner, path: str | os.PathLike[str], pinned: str | None,
                  fmt: str = "etcdlite") -> SnapshotInfo:
    """Fetch a snapshot with a blocking `run(call, pinned_endpoint)` into `path`."""
    begin: SnapshotBegin = run(snapshot_begin_call(fmt), pinned)
    download = _Download(path, begin)
    try:
        while not download.done:
            download.write(run(snapshot_chunk_call(begin.token, download.offset),
                               begin.endpoint))
    except BaseException:
        download.abort()
        raise
    finally:
        with contextlib.suppress(Exception):  # the member reaps the copy anyway
            run(snapshot_end_call(begin.token), begin.endpoint)
    return download.finish()


async def save_snapshot_async(run: Callable[[Call[Any], str | None], Awaitable[Any]],
                              path: str | os.PathLike[str], pinned: str | None,
                              fmt: str = "etcdlite") -> SnapshotInfo:
    """`save_snapshot` for `AsyncClient` (file writes are small and stay blocking)."""
    begin: SnapshotBegin = await run(snapshot_begin_call(fmt), pinned)
    download = _Download(path, begin)
    try:
        while not download.done:
            download.write(await run(snapshot_chunk_call(begin.token, download.offset),
                                     begin.endpoint))
    except BaseException:
        download.abort()
        raise
    finally:
        with contextlib.suppress(Exception):
            await run(snapshot_end_call(begin.token), begin.endpoint)
    return download.finish()

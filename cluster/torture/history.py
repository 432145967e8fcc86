"""What a torture run observed: client operations, watch streams and injected faults.

Everything is recorded against ONE clock (`time.monotonic()` of the torture
process) so that "A completed before B was invoked" means what it says. An
operation ends in one of three outcomes, Jepsen's:

- OK: the cluster answered; the returned data (values, revisions) is recorded.
- FAIL: definitely not applied: refused before the log (`no_leader`,
  `not_leader`, `bad_request`) or refused deterministically when applied
  (`lease_not_found`, ...). A failed write must never become visible.
- INFO: indeterminate: no answer in time, connection lost, `timeout`,
  `unavailable`. A write may or may not have taken effect, at any moment
  after it was invoked; the checkers treat it that way.

Keys and values are text: the workload uses a few short keys and unique
values, which keeps histories readable when a checker prints one.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cluster.errors import ErrorCode, EtcdliteError


class Outcome(enum.StrEnum):
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


class F(enum.StrEnum):
    """Operation kinds of the workload."""

    GET = "get"          # one key; linearizable unless `serializable`
    PUT = "put"          # one key, unique value, maybe with a lease
    DELETE = "delete"    # one key
    CAS = "cas"          # txn: value(key) == expected -> put(key, new) else get(key)
    TXN = "txn"          # txn putting several keys at one revision
    MGET = "mget"        # txn reading several keys at one revision
    GRANT = "grant"      # lease grant (no KV effect)
    REVOKE = "revoke"    # lease revoke: deletes every key attached to the lease


WRITES = frozenset({F.PUT, F.DELETE, F.CAS, F.TXN, F.REVOKE})

_DEFINITE_CODES = frozenset({
    ErrorCode.NO_LEADER, ErrorCode.NOT_LEADER, ErrorCode.BAD_REQUEST,
    ErrorCode.UNKNOWN_OPERATION, ErrorCode.REQUEST_TOO_LARGE, ErrorCode.UNSUPPORTED_VERSION,
    ErrorCode.COMPACTED, ErrorCode.FUTURE_REVISION, ErrorCode.NO_SPACE,
    ErrorCode.LEASE_NOT_FOUND, ErrorCode.LEASE_EXISTS, ErrorCode.TOO_MANY_OPS,
    ErrorCode.DUPLICATE_KEY, ErrorCode.KEY_NOT_FOUND, ErrorCode.PERMISSION_DENIED,
})
"""Errors that mean "not applied". Everything else (timeout, unavailable, internal, a
lost connection) leaves a write indeterminate: the safe reading when in doubt."""


def outcome_of(exc: EtcdliteError) -> Outcome:
    return Outcome.FAIL if exc.code in _DEFINITE_CODES else Outcome.INFO


@dataclass(frozen=True, slots=True)
class KV:
    """A key as written or read; `value` None means absent (read) or deleted (write)."""

    key: str
    value: str | None
    mod_revision: int = 0
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Op:
    """One client operation from invocation to completion.

    `complete_s` of an INFO op is when the client gave up; the checkers treat
    it as "may take effect any time after `invoke_s`, or never".
    """

    id: int
    process: int
    f: F
    invoke_s: float
    complete_s: float
    outcome: Outcome
    writes: tuple[KV, ...] = ()
    reads: tuple[KV, ...] = ()
    expected: str | None = None
    lease: int = 0
    serializable: bool = False
    revision: int = 0
    succeeded: bool | None = None
    deleted: int = -1
    member: int = 0
    error: str = ""

    @property
    def is_write(self) -> bool:
        return self.f in WRITES

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(kv.key for kv in (*self.writes, *self.reads))

    def describe(self) -> str:
        """One line, Jepsen-ish: `p3 put k1=v12 lease=5 -> ok rev=40 [1.234-1.250]`."""
        parts = [f"#{self.id} p{self.process} {self.f.value}"]
        if self.f is F.CAS:
            parts.append(f"{self.writes[0].key}: {self.expected}->{self.writes[0].value}")
        elif self.f is F.REVOKE:
            parts.append(f"lease={self.lease:x}")
        else:
            parts += [f"{w.key}={w.value}" + (f" lease={w.lease:x}" if w.lease else "")
                      for w in self.writes]
            if self.f in (F.GET, F.MGET):
                parts.append(",".join(r.key for r in self.reads) or "")
        if self.serializable:
            parts.append("(serializable)")
        result = [self.outcome.value]
        if self.outcome is Outcome.OK:
            if self.f in (F.GET, F.MGET) or (self.f is F.CAS and not self.succeeded):
                result += [f"{r.key}={r.value}@{r.mod_revision}" for r in self.reads]
            if self.succeeded is not None:
                result.append("succeeded" if self.succeeded else "failed-compare")
            if self.deleted >= 0:
                result.append(f"deleted={self.deleted}")
            result.append(f"rev={self.revision}")
        elif self.error:
            result.append(self.error)
        return (f"{' '.join(p for p in parts if p)} -> {' '.join(result)} "
                f"[{self.invoke_s:.3f}-{self.complete_s:.3f}]")


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One watch event as delivered, flattened for comparison with the KV history."""

    revision: int
    type: str  # "put" / "delete"
    key: str
    value: str | None
    create_revision: int = 0
    version: int = 0
    lease: int = 0
    prev_value: str | None = None
    prev_mod_revision: int = 0


@dataclass(frozen=True, slots=True)
class WatchDelivery:
    """One response of a watch stream: the events it carried, in order."""

    watcher: int
    received_s: float
    header_revision: int
    events: tuple[WatchEvent, ...]
    canceled: bool = False


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault, from when it started to when it was healed."""

    kind: str
    target: str
    start_s: float
    end_s: float
    detail: str = ""


@dataclass
class History:
    """Everything one run observed; saved as JSON lines so a run can be re-checked."""

    ops: list[Op] = field(default_factory=list)
    watches: list[WatchDelivery] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    truth: list[WatchEvent] = field(default_factory=list)  # one member's final MVCC history

    def ok(self) -> Iterator[Op]:
        return (op for op in self.ops if op.outcome is Outcome.OK)

    def save(self, path: Path) -> None:
        with path.open("w") as f:
            f.write(json.dumps({"type": "meta", **self.meta}) + "\n")
            for op in self.ops:
                f.write(json.dumps({"type": "op", **asdict(op)}) + "\n")
            for w in self.watches:
                f.write(json.dumps({"type": "watch", **asdict(w)}) + "\n")
            for fault in self.faults:
                f.write(json.dumps({"type": "fault", **asdict(fault)}) + "\n")
            for e in self.truth:
                f.write(json.dumps({"type": "truth", "event": asdict(e)}) + "\n")

    @classmethod
    def load(cls, path: Path) -> History:
        history = cls()
        for line in path.read_text().splitlines():
            if line.strip():
                history.add_record(json.loads(line))
        return history

    def add_record(self, rec: dict[str, Any]) -> None:
        kind = rec.pop("type")
        if kind == "meta":
            self.meta.update(rec)
        elif kind == "op":
            self.ops.append(op_from_dict(rec))
        elif kind == "watch":
            events = tuple(WatchEvent(**e) for e in rec.pop("events"))
            self.watches.append(WatchDelivery(events=events, **rec))
        elif kind == "fault":
            self.faults.append(Fault(**rec))
        elif kind == "truth":
            self.truth.append(WatchEvent(**rec["event"]))


def op_from_dict(rec: dict[str, Any]) -> Op:
    rec = dict(rec)
    rec["f"] = F(rec["f"])
    rec["outcome"] = Outcome(rec["outcome"])
    rec["writes"] = tuple(KV(**w) for w in rec.get("writes", ()))
    rec["reads"] = tuple(KV(**r) for r in rec.get("reads", ()))
    return Op(**rec)


def renumber(ops: Iterable[Op]) -> list[Op]:
    """Ops in invocation order with ids 0..n-1 (for histories written by hand in tests)."""
    return [replace(op, id=i) for i, op in enumerate(sorted(ops, key=lambda o: o.invoke_s))]


@dataclass
class CheckResult:
    """What one checker concluded. `unknown` is set when a search ran out of budget:
    neither a proof nor a violation, and reported as such."""

    name: str
    checked: int = 0
    violations: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

"""Runtime fault injection for torture runs: lossy, slow, duplicating peer links; slow WAL.

OFF unless the member's environment names a control file
(`ETCDLITE_FAULT_FILE=<path>`); without it `fault_control_from_env()` returns None
and the transport takes its ordinary path, so a production member pays nothing
and no client or peer message can switch faults on. `etcdlite torture` starts
its members with the variable set and its nemesis rewrites the file (write to a
temporary name, then rename, so a reader never sees half a file). The member
re-reads it when its mtime changes, checked at most every `poll_interval_s`
from the paths that consult it, so a fault takes effect within a heartbeat or
two without any new wire operation.

The file is JSON; every field is optional and a missing file means "no faults":

    {"links": {"<peer member id, decimal>": {"drop": 0.2, "delay_ms": 50,
                                            "jitter_ms": 20, "dup": 0.1}},
     "block_from": [<peer member id>, ...],
     "fsync_delay_ms": 30}

`links` acts on outbound frames to one peer (drop with a probability, delay by
`delay_ms` plus up to `jitter_ms`, send twice with a probability: delayed
frames overtake each other, so this reorders too). `block_from` drops every
inbound frame from those peers, snapshot chunks included: a partition is the
two sides blocking each other. `fsync_delay_ms` stalls each WAL commit (the
member's `SqliteWal.fault_before_commit` hook) like a slow disk.

A control file that cannot be read or parsed keeps the previous plan and is
logged: a torture tool's typo must not take a member down.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

log = logging.getLogger("etcdlite.faults")

FAULT_FILE_ENV = "ETCDLITE_FAULT_FILE"

poll_interval_s = 0.05
"""How stale a member's view of the control file may be."""

delayed_frames_max = 512
"""Delayed frames in flight per member; beyond that a delayed frame is dropped instead,
so a long delay on a busy link cannot grow memory without bound."""


@dataclass(frozen=True, slots=True)
class LinkRule:
    """What happens to each outbound frame on one link."""

    drop: float = 0.0
    delay_s: float = 0.0
    jitter_s: float = 0.0
    dup: float = 0.0


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Every fault one member applies right now; the empty plan is a healthy member."""

    links: Mapping[int, LinkRule] = field(default_factory=dict)
    block_from: frozenset[int] = frozenset()
    fsync_delay_s: float = 0.0

    def to_json(self) -> str:
        links = {str(pid): {"drop": r.drop, "delay_ms": round(r.delay_s * 1000),
                            "jitter_ms": round(r.jitter_s * 1000), "dup": r.dup}
                 for pid, r in self.links.items()}
        return json.dumps({"links": links, "block_from": sorted(self.block_from),
                           "fsync_delay_ms": round(self.fsync_delay_s * 1000)})


def _probability(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{what} must be a probability in [0, 1], got {value!r}")
    return float(value)


def _millis(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{what} must be a non-negative number of ms, got {value!r}")
    return float(value) / 1000


def parse_plan(obj: Any) -> FaultPlan:
    """Validate a decoded control file.

    Raises:
        ValueError: the file does not describe a plan (the caller keeps the old one).
    """
    if not isinstance(obj, dict):
        raise ValueError("the control file must hold a JSON object")
    links: dict[int, LinkRule] = {}
    for pid, rule in dict(obj.get("links") or {}).items():
        if not isinstance(rule, dict):
            raise ValueError(f"link {pid!r} must be an object")
        links[int(pid)] = LinkRule(
            drop=_probability(rule.get("drop", 0), "drop"),
            delay_s=_millis(rule.get("delay_ms", 0), "delay_ms"),
            jitter_s=_millis(rule.get("jitter_ms", 0), "jitter_ms"),
            dup=_probability(rule.get("dup", 0), "dup"))
    block = obj.get("block_from") or []
    if not isinstance(block, list) or not all(isinstance(p, int) for p in block):
        raise ValueError("block_from must be a list of member ids")
    return FaultPlan(links, frozenset(block),
                     _millis(obj.get("fsync_delay_ms", 0), "fsync_delay_ms"))


def write_plan(path: Path, plan: FaultPlan) -> None:
    """Replace the control file atomically (what the nemesis calls)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(plan.to_json())
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class FaultStatistics:
    dropped: int
    delayed: int
    duplicated: int
    blocked: int
    commits_delayed: int


class FaultControl:
    """A member's view of its control file, plus the dice that apply it.

    Used from the trio thread (transport) and from the WAL worker thread
    (`delay_commit`); a reload replaces one immutable plan reference, which is
    atomic in CPython, so neither side ever sees a half-updated plan.
    """

    def __init__(self, path: Path, rng: random.Random | None = None) -> None:
        self.path = path
        self._rng = rng or random.Random(os.urandom(8))
        self._plan = FaultPlan()
        self._mtime_ns = -1
        self._checked_at = float("-inf")
        self._dropped = self._delayed = self._duplicated = self._blocked = 0
        self._commits_delayed = 0
        self.delayed_in_flight = 0

    def statistics(self) -> FaultStatistics:
        return FaultStatistics(self._dropped, self._delayed, self._duplicated, self._blocked,
                               self._commits_delayed)

    def plan(self) -> FaultPlan:
        """The current plan, re-read if the file changed (at most every poll interval)."""
        now = time.monotonic()
        if now - self._checked_at >= poll_interval_s:
            self._checked_at = now
            self._reload()
        return self._plan

    def _reload(self) -> None:
        try:
            mtime_ns = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            if self._mtime_ns != -1:
                log.info("fault control file removed: no faults")
            self._plan, self._mtime_ns = FaultPlan(), -1
            return
        if mtime_ns == self._mtime_ns:
            return
        try:
            plan = parse_plan(json.loads(self.path.read_text()))
        except (OSError, ValueError) as exc:
            log.warning("ignoring fault control file %s: %s", self.path, exc)
            return
        self._mtime_ns = mtime_ns
        if plan != self._plan:
            log.info("fault plan now %s", plan.to_json())
        self._plan = plan

    def outbound(self, peer: int) -> list[float]:
        """Delays (s) of the copies of one frame to `peer`: [] drop, [0.0] send now."""
        rule = self.plan().links.get(peer)
        if rule is None:
            return [0.0]
        rng = self._rng
        if rule.drop and rng.random() < rule.drop:
            self._dropped += 1
            return []
        copies = 2 if rule.dup and rng.random() < rule.dup else 1
        self._duplicated += copies - 1
        delays = []
        for _ in range(copies):
            delay = rule.delay_s + (rng.random() * rule.jitter_s if rule.jitter_s else 0.0)
            if delay > 0 and self.delayed_in_flight >= delayed_frames_max:
                self._dropped += 1
                continue
            self._delayed += delay > 0
            delays.append(delay)
        return delays

    def inbound_blocked(self, sender: object) -> bool:
        """Whether an inbound frame from `sender` must be dropped (partition)."""
        blocked = sender in self.plan().block_from
        self._blocked += blocked
        return blocked

    def delay_commit(self) -> None:
        """The WAL's `fault_before_commit` hook: a blocking sleep, as a slow fsync would be.
        It runs in the WAL worker thread, so the member's event loop keeps going."""
        delay_s = self.plan().fsync_delay_s
        if delay_s > 0:
            self._commits_delayed += 1
            time.sleep(delay_s)


def fault_control_from_env(env: Mapping[str, str] | None = None) -> FaultControl | None:
    """The member's fault control if `ETCDLITE_FAULT_FILE` is set, else None (no faults)."""
    path = (os.environ if env is None else env).get(FAULT_FILE_ENV)
    if not path:
        return None
    log.warning("fault injection ENABLED from %s (testing only)", path)
    return FaultControl(Path(path))


async def send_later(control: FaultControl, send: Callable[[bytes], Awaitable[object]],
                     frame: bytes, delay_s: float, lost: type[Exception]) -> None:
    """Deliver a delayed copy of a frame. `lost` is the socket library's error type (the
    transport is the only pynng user): a link closed meanwhile just loses the frame,
    which Raft tolerates."""
    control.delayed_in_flight += 1
    try:
        await trio.sleep(delay_s)
        await send(frame)
    except lost as exc:
        log.debug("delayed frame lost: %s", exc)
    finally:
        control.delayed_in_flight -= 1

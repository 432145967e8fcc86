"""Terse hand-written histories for checker tests."""

from __future__ import annotations

import itertools
from typing import Any

from cluster.torture.history import KV, F, Op, Outcome, WatchEvent

_ids = itertools.count()


def op(f: F, t0: float, t1: float, outcome: Outcome = Outcome.OK, **kw: Any) -> Op:
    return Op(id=next(_ids), process=kw.pop("process", 0), f=f, invoke_s=t0, complete_s=t1,
              outcome=outcome, **kw)


def put(key: str, value: str, t0: float, t1: float, rev: int = 0,
        outcome: Outcome = Outcome.OK, lease: int = 0) -> Op:
    return op(F.PUT, t0, t1, outcome, writes=(KV(key, value, lease=lease),), revision=rev)


def get(key: str, value: str | None, mod: int, t0: float, t1: float, rev: int = 0,
        serializable: bool = False) -> Op:
    return op(F.GET, t0, t1, reads=(KV(key, value, mod),), revision=rev or mod,
              serializable=serializable)


def delete(key: str, t0: float, t1: float, rev: int, deleted: int = 1,
           outcome: Outcome = Outcome.OK) -> Op:
    return op(F.DELETE, t0, t1, outcome, writes=(KV(key, None),), revision=rev,
              deleted=deleted if outcome is Outcome.OK else -1)


def cas(key: str, expected: str, new: str, t0: float, t1: float, rev: int,
        succeeded: bool | None = True, seen: tuple[str | None, int] | None = None,
        outcome: Outcome = Outcome.OK) -> Op:
    reads = () if seen is None else (KV(key, seen[0], seen[1]),)
    return op(F.CAS, t0, t1, outcome, writes=(KV(key, new),), expected=expected,
              revision=rev, succeeded=succeeded if outcome is Outcome.OK else None, reads=reads)


def ev(rev: int, key: str, value: str | None, prev: tuple[str | None, int] = (None, 0),
       version: int = 1, create: int = 0) -> WatchEvent:
    """A history event (value None = a delete)."""
    return WatchEvent(rev, "put" if value is not None else "delete", key, value,
                      create_revision=create or (rev if value is not None else 0),
                      version=version if value is not None else 0,
                      prev_value=prev[0], prev_mod_revision=prev[1])

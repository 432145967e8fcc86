"""Request generators of `etcdlite benchmark`: request number -> `Call`.

The shapes follow etcd's tools/benchmark so that figures line up with the
reference: keys are `key_size` bytes holding a number in `[0, key_space_size)`
(sequential or uniformly random), every put writes the same random value of
`val_size` bytes, a txn-put is one transaction of `txn_ops` puts to distinct
keys with no compares, a range reads one key (or a range), and a lease
keep-alive renews one of `leases` leases granted beforehand.

Random choices come from a seeded `random.Random`, so two runs with the same
settings send the same keys in the same order (per request number).
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass

from cluster.benchmark import MakeCall
from cluster.client_calls import (
    Call,
    lease_keepalive_call,
    put_call,
    range_call,
    txn_call,
)
from cluster.client_requests import Op, put_args, range_args, txn_args
from cluster.client_types import PutResult, TxnResult

seed_default = 1


@dataclass(frozen=True, slots=True)
class KeySpec:
    """How keys are chosen: `key_size` bytes, `key_space_size` distinct keys."""

    key_size: int = 8
    key_space_size: int = 1
    sequential: bool = False
    seed: int = seed_default

    def __post_init__(self) -> None:
        if self.key_size < 1:
            raise ValueError("key size must be at least 1 byte")
        if self.key_space_size < 1:
            raise ValueError("key space size must be at least 1")
        if self.key_space_size > 256 ** self.key_size:
            raise ValueError(f"{self.key_space_size} keys do not fit in {self.key_size} bytes")


def encode_key(number: int, key_size: int) -> bytes:
    """`number` as `key_size` big-endian bytes: keys of one size sort by number."""
    return number.to_bytes(key_size, "big")


def key_numbers(spec: KeySpec, i: int, count: int = 1) -> list[int]:
    """The key numbers request `i` uses: `count` distinct numbers (a txn may not
    write one key twice), a pure function of (spec, i) so workers need no shared RNG."""
    if count > spec.key_space_size:
        raise ValueError(f"{count} distinct keys per request need a key space of at least "
                         f"{count} (got {spec.key_space_size})")
    if spec.sequential:
        return [(i * count + j) % spec.key_space_size for j in range(count)]
    rng = random.Random(spec.seed * 1_000_003 + i)
    if count == 1:
        return [rng.randrange(spec.key_space_size)]
    return rng.sample(range(spec.key_space_size), count)


def value_of(val_size: int, seed: int = seed_default) -> bytes:
    """One random value reused by every write (as etcd's benchmark does)."""
    return random.Random(seed).randbytes(val_size)


def put_workload(keys: KeySpec, val_size: int) -> MakeCall:
    value = value_of(val_size, keys.seed)

    def make(i: int) -> Call[PutResult]:
        (n,) = key_numbers(keys, i)
        return put_call(put_args(encode_key(n, keys.key_size), value))

    return make


def txn_put_workload(keys: KeySpec, val_size: int, txn_ops: int) -> MakeCall:
    if txn_ops < 1:
        raise ValueError("txn-ops must be at least 1")
    value = value_of(val_size, keys.seed)
    key_numbers(keys, 0, txn_ops)  # fail now, not in every worker, if the space is too small

    def make(i: int) -> Call[TxnResult]:
        ops = [Op.put(encode_key(n, keys.key_size), value)
               for n in key_numbers(keys, i, txn_ops)]
        return txn_call(txn_args([], ops, []))

    return make


def range_workload(key: bytes, range_end: bytes | None, *, serializable: bool,
                   limit: int = 0, count_only: bool = False) -> MakeCall:
    args = range_args(key, range_end=range_end, serializable=serializable, limit=limit,
                      count_only=count_only)
    # The request is the same every time; its frame is still encoded per call,
    # because that is part of what a client pays per request.
    call = range_call(args)
    return lambda _i: call


def lease_keepalive_workload(lease_ids: Sequence[int]) -> MakeCall:
    if not lease_ids:
        raise ValueError("at least one lease is needed")
    calls = [lease_keepalive_call(lease_id) for lease_id in lease_ids]
    return lambda i: calls[i % len(calls)]


def check_perf_workload(prefix: bytes, key_size: int, val_size: int) -> MakeCall:
    """Puts of random keys under `prefix`, as a production-like write load."""
    value = value_of(val_size)

    def make(i: int) -> Call[PutResult]:
        suffix = os.urandom(key_size)
        return put_call(put_args(prefix + suffix, value))

    return make

"""Request side of the native client: turn Python arguments into protocol maps.

Both `Client` and `AsyncClient` build every request here (and wrap it in a
`cluster.client_calls.Call`), so the two only differ in how bytes travel.

Arguments are checked here, before anything is sent, so that a typo fails
fast with `BadRequestError` instead of a round trip; the member checks again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cluster.client_types import SortOrder, SortTarget
from cluster.errors import BadRequestError

KeyLike = bytes | str
"""Keys and values: bytes as stored, or str which is encoded as UTF-8."""

_ALL_KEYS = b"\0"
"""As a range_end: every key >= key; with key b"\\0" too: the whole key space."""

_COMPARE_RESULTS = frozenset({"=", "!=", "<", ">"})


def to_bytes(data: object, what: str) -> bytes:
    """Accept bytes-like or str (UTF-8) for keys and values; reject anything else loudly."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise BadRequestError(f"{what} must be bytes or str, not {type(data).__name__}")


def non_negative(value: object, what: str) -> int:
    """A non-negative int argument (bool is rejected: True is not a revision)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequestError(f"{what} must be a non-negative int, got {value!r}")
    return value


def prefix_range_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with `prefix`.

    Trailing 0xff bytes cannot be incremented, so they are dropped first; a
    prefix of only 0xff bytes (or empty) has no upper bound, which the
    protocol spells b"\\0".
    """
    end = bytearray(prefix)
    while end and end[-1] == 0xFF:
        end.pop()
    if not end:
        return _ALL_KEYS
    end[-1] += 1
    return bytes(end)


def key_range(
    key: KeyLike, range_end: KeyLike | None, prefix: bool, from_key: bool
) -> tuple[bytes, bytes]:
    """Resolve the three ways of naming a range into the wire's (key, range_end).

    An empty key with `prefix` or `from_key` means "every key", which the
    protocol spells key=b"\\0", range_end=b"\\0".
    """
    k = to_bytes(key, "key")
    if sum((range_end is not None, prefix, from_key)) > 1:
        raise BadRequestError("range_end, prefix and from_key are mutually exclusive")
    if prefix:
        return (_ALL_KEYS, _ALL_KEYS) if k == b"" else (k, prefix_range_end(k))
    if from_key:
        return (k or _ALL_KEYS, _ALL_KEYS)
    if range_end is not None:
        return k, to_bytes(range_end, "range_end")
    return k, b""


def _optional(args: dict[str, Any], **values: Any) -> dict[str, Any]:
    """Add only non-default values: the protocol lets optional arguments be omitted."""
    args.update({name: v for name, v in values.items() if v})
    return args


def range_args(
    key: KeyLike,
    *,
    range_end: KeyLike | None = None,
    prefix: bool = False,
    from_key: bool = False,
    limit: int = 0,
    revision: int = 0,
    serializable: bool = False,
    keys_only: bool = False,
    count_only: bool = False,
    sort_order: SortOrder | str | None = None,
    sort_target: SortTarget | str | None = None,
    min_mod_revision: int = 0,
    max_mod_revision: int = 0,
    min_create_revision: int = 0,
    max_create_revision: int = 0,
) -> dict[str, Any]:
    """The argument map of a `range` request (also used inside txn ops)."""
    k, end = key_range(key, range_end, prefix, from_key)
    args: dict[str, Any] = {"key": k, "range_end": end}
    if sort_order is not None:
        args["sort_order"] = _enum_value(SortOrder, sort_order, "sort_order")
    if sort_target is not None:
        args["sort_target"] = _enum_value(SortTarget, sort_target, "sort_target")
    return _optional(
        args,
        limit=non_negative(limit, "limit"),
        revision=non_negative(revision, "revision"),
        serializable=bool(serializable),
        keys_only=bool(keys_only),
        count_only=bool(count_only),
        min_mod_revision=non_negative(min_mod_revision, "min_mod_revision"),
        max_mod_revision=non_negative(max_mod_revision, "max_mod_revision"),
        min_create_revision=non_negative(min_create_revision, "min_create_revision"),
        max_create_revision=non_negative(max_create_revision, "max_create_revision"),
    )


def _enum_value(enum_cls: type[SortOrder] | type[SortTarget], value: object, what: str) -> str:
    try:
        return enum_cls(str(value).lower()).value
    except ValueError:
        allowed = ", ".join(m.value for m in enum_cls)
        raise BadRequestError(f"{what} must be one of {allowed}, got {value!r}") from None


def put_args(
    key: KeyLike,
    value: KeyLike,
    *,
    lease: int = 0,
    prev_kv: bool = False,
    ignore_value: bool = False,
    ignore_lease: bool = False,
) -> dict[str, Any]:
    """The argument map of a `put` request."""
    args = {"key": to_bytes(key, "key"), "value": to_bytes(value, "value")}
    return _optional(
        args,
        lease=non_negative(lease, "lease"),
        prev_kv=bool(prev_kv),
        ignore_value=bool(ignore_value),
        ignore_lease=bool(ignore_lease),
    )


def delete_args(
    key: KeyLike,
    *,
    range_end: KeyLike | None = None,
    prefix: bool = False,
    from_key: bool = False,
    prev_kv: bool = False,
) -> dict[str, Any]:
    """The argument map of a `delete_range` request."""
    k, end = key_range(key, range_end, prefix, from_key)
    return _optional({"key": k, "range_end": end}, prev_kv=bool(prev_kv))


@dataclass(frozen=True, slots=True)
class Compare:
    """One guard of a transaction: `<target of key> <result> <operand>`.

    Build it with the named constructors, e.g. `Compare.value("k", "=", "v")`
    or `Compare.version("k", ">", 0)` (a key exists iff its version is > 0).
    """

    key: bytes
    target: str
    result: str
    operand: int | bytes
    range_end: bytes = b""

    @classmethod
    def _make(
        cls, target: str, key: KeyLike, result: str, operand: int | bytes,
        range_end: KeyLike | None,
    ) -> Compare:
        if result not in _COMPARE_RESULTS:
            raise BadRequestError(f"compare result must be one of = != < >, got {result!r}")
        end = b"" if range_end is None else to_bytes(range_end, "range_end")
        return cls(to_bytes(key, "key"), target, result, operand, end)

    @classmethod
    def value(
        cls, key: KeyLike, result: str, value: KeyLike, *, range_end: KeyLike | None = None
    ) -> Compare:
        """Compare the stored value (bytes, lexicographically)."""
        return cls._make("value", key, result, to_bytes(value, "value"), range_end)

    @classmethod
    def version(
        cls, key: KeyLike, result: str, version: int, *, range_end: KeyLike | None = None
    ) -> Compare:
        """Compare the key's version (0 = absent)."""
        return cls._make("version", key, result, non_negative(version, "version"), range_end)

    @classmethod
    def create(
        cls, key: KeyLike, result: str, revision: int, *, range_end: KeyLike | None = None
    ) -> Compare:
        """Compare the revision that created the key (0 = absent)."""
        return cls._make("create", key, result, non_negative(revision, "revision"), range_end)

    @classmethod
    def mod(
        cls, key: KeyLike, result: str, revision: int, *, range_end: KeyLike | None = None
    ) -> Compare:
        """Compare the revision that last modified the key."""
        return cls._make("mod", key, result, non_negative(revision, "revision"), range_end)

    @classmethod
    def lease(
        cls, key: KeyLike, result: str, lease: int, *, range_end: KeyLike | None = None
    ) -> Compare:
        """Compare the lease the key is attached to (0 = none)."""
        return cls._make("lease", key, result, non_negative(lease, "lease"), range_end)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "key": self.key, "target": self.target, "result": self.result, "value": self.operand,
        }
        if self.range_end:
            wire["range_end"] = self.range_end
        return wire


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of a transaction branch; build it with `Op.get/put/delete/txn`."""

    kind: str
    args: dict[str, Any] = field(hash=False)

    @staticmethod
    def get(key: KeyLike, **options: Any) -> Op:
        """A range inside a txn; accepts the keyword options of `Client.get`."""
        if options.pop("serializable", False):
            raise BadRequestError("serializable has no meaning inside a txn")
        return Op("range", range_args(key, **options))

    @staticmethod
    def put(key: KeyLike, value: KeyLike, **options: Any) -> Op:
        """A put inside a txn; accepts the keyword options of `Client.put`."""
        return Op("put", put_args(key, value, **options))

    @staticmethod
    def delete(key: KeyLike, **options: Any) -> Op:
        """A delete inside a txn; accepts the keyword options of `Client.delete`."""
        return Op("delete_range", delete_args(key, **options))

    @staticmethod
    def txn(compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> Op:
        """A nested transaction."""
        return Op("txn", txn_args(compare, success, failure))

    def to_wire(self) -> dict[str, Any]:
        return {self.kind: self.args}


def txn_args(
    compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]
) -> dict[str, Any]:
    """The argument map of a `txn` request; rejects anything but Compare/Op values."""
    for c in compare:
        if not isinstance(c, Compare):
            raise BadRequestError(f"txn compare items must be Compare, got {type(c).__name__}")
    for op in (*success, *failure):
        if not isinstance(op, Op):
            raise BadRequestError(f"txn ops must be Op, got {type(op).__name__}")
    return {
        "compare": [c.to_wire() for c in compare],
        "success": [op.to_wire() for op in success],
        "failure": [op.to_wire() for op in failure],
    }


def check_timeout(timeout_s: float) -> float:
    """The per-call deadline must be a positive number of seconds."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or timeout_s <= 0:
        raise BadRequestError(f"timeout_s must be > 0, got {timeout_s!r}")
    return float(timeout_s)

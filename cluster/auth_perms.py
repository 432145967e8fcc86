"""Key permission checks: does a user's set of permissions cover a key or a key range?

Pure functions, used both where reads are served (actors/auth.py) and where
writes are applied (storage/auth_check.py), so the two can never disagree.

Semantics are etcd's (auth/range_perm_cache.go): every permission is an
interval of keys, [key, range_end) with range_end b"\\0" meaning "no upper
bound" and an empty range_end meaning the key alone; READWRITE counts for both
READ and WRITE. A single-key request is allowed when one interval holds the
key; a range request when the union of the intervals covers the whole range
without a gap (intervals that touch count as contiguous), so a range may be
allowed by two permissions together. The root role allows everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cluster.auth_types import ROOT_ROLE, Permission, PermType

_Interval = tuple[bytes, bytes | None]
"""[begin, end) with end None = unbounded."""


def _interval(key: bytes, range_end: bytes) -> _Interval:
    if not range_end:
        return key, key + b"\0"  # the smallest key after `key`: a one-key interval
    if range_end == b"\0":
        return key, None
    return key, range_end


def _end_ge(a: bytes | None, b: bytes | None) -> bool:
    """a >= b, where None is +infinity."""
    if a is None:
        return True
    if b is None:
        return False
    return a >= b


def merge(intervals: Iterable[_Interval]) -> tuple[_Interval, ...]:
    """Sorted, disjoint, non-touching intervals with the same union."""
    out: list[list[bytes | None]] = []
    for begin, end in sorted(intervals, key=lambda iv: iv[0]):
        if out:
            last_end = out[-1][1]
            if last_end is None or begin <= last_end:
                if not _end_ge(last_end, end):
                    out[-1][1] = end
                continue
        out.append([begin, end])
    return tuple((b, e) for b, e in out)  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class KeyRanges:
    """The merged intervals of one permission kind (READ or WRITE) of one user."""

    intervals: tuple[_Interval, ...] = ()

    def covers(self, key: bytes, range_end: bytes = b"") -> bool:
        """True if [key, range_end) (request convention) lies inside the permissions."""
        begin, end = _interval(key, range_end)
        # Few intervals per user: a linear scan beats a tree here.
        return any(ib <= begin and _end_ge(ie, end) for ib, ie in self.intervals)


@dataclass(frozen=True, slots=True)
class UserPerms:
    """What one user may do: everything (root role) or these READ/WRITE ranges."""

    is_root: bool = False
    read: KeyRanges = KeyRanges()
    write: KeyRanges = KeyRanges()

    def can_read(self, key: bytes, range_end: bytes = b"") -> bool:
        return self.is_root or self.read.covers(key, range_end)

    def can_write(self, key: bytes, range_end: bytes = b"") -> bool:
        return self.is_root or self.write.covers(key, range_end)


def user_perms(roles: Sequence[str], perms_of: dict[str, tuple[Permission, ...]]) -> UserPerms:
    """Merge the permissions of a user's roles (unknown roles grant nothing)."""
    if ROOT_ROLE in roles:
        return UserPerms(is_root=True)
    read: list[_Interval] = []
    write: list[_Interval] = []
    for role in roles:
        for p in perms_of.get(role, ()):
            iv = _interval(p.key, p.range_end)
            if p.perm_type in (PermType.READ, PermType.READWRITE):
                read.append(iv)
            if p.perm_type in (PermType.WRITE, PermType.READWRITE):
                write.append(iv)
    return UserPerms(read=KeyRanges(merge(read)), write=KeyRanges(merge(write)))

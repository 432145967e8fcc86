"""Majority arithmetic, kept apart so it can be tested as a table (etcd's quorum/majority.go)."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping


class VoteResult(enum.Enum):
    PENDING = "pending"
    LOST = "lost"
    WON = "won"


def majority(voter_count: int) -> int:
    return voter_count // 2 + 1


def committed_index(voters: Iterable[int], match: Mapping[int, int]) -> int:
    """The largest index that a majority of voters have durably stored.

    An empty voter set commits nothing. A voter absent from `match` counts as 0.
    """
    indexes = sorted((match.get(v, 0) for v in voters), reverse=True)
    if not indexes:
        return 0
    return indexes[majority(len(indexes)) - 1]


def vote_result(voters: Iterable[int], votes: Mapping[int, bool]) -> VoteResult:
    """WON once a majority granted, LOST once a majority can no longer grant."""
    voter_list = list(voters)
    granted = sum(1 for v in voter_list if votes.get(v) is True)
    rejected = sum(1 for v in voter_list if votes.get(v) is False)
    need = majority(len(voter_list))
    if granted >= need:
        return VoteResult.WON
    if len(voter_list) - rejected < need:
        return VoteResult.LOST
    return VoteResult.PENDING


def has_quorum(voters: Iterable[int], members: Iterable[int]) -> bool:
    """True when `members` include a majority of `voters`."""
    voter_set = set(voters)
    return len(voter_set & set(members)) >= majority(len(voter_set))

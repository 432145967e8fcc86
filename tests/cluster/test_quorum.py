"""Majority arithmetic as tables (etcd quorum/testdata/majority_commit.txt, majority_vote.txt)."""

from __future__ import annotations

import pytest

from cluster.quorum import VoteResult, committed_index, has_quorum, majority, vote_result


@pytest.mark.parametrize(("voters", "want"), [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3), (5, 3),
                                              (6, 4), (7, 4)])
def test_majority(voters: int, want: int) -> None:
    assert majority(voters) == want


@pytest.mark.parametrize(("voters", "match", "want"), [
    # No voters commit nothing (a removed-everyone conf must not commit by default).
    ([], {}, 0),
    ([1], {1: 12}, 12),
    ([1], {}, 0),
    ([1, 2], {1: 12, 2: 5}, 5),  # both needed
    ([1, 2], {1: 12}, 0),
    ([1, 2, 3], {1: 12, 2: 5, 3: 4}, 5),
    ([1, 2, 3], {1: 12, 2: 12, 3: 4}, 12),
    ([1, 2, 3], {1: 12}, 0),  # missing voters count as 0
    ([1, 2, 3], {1: 12, 2: 0, 3: 0}, 0),
    ([1, 2, 3, 4], {1: 10, 2: 9, 3: 8, 4: 7}, 8),  # 3 of 4 needed
    ([1, 2, 3, 4], {1: 10, 2: 10, 3: 1, 4: 1}, 1),  # 3 of 4 needed
    ([1, 2, 3, 4, 5], {1: 10, 2: 9, 3: 8, 4: 7, 5: 6}, 8),
    ([1, 2, 3, 4, 5], {1: 10, 2: 10, 3: 0, 4: 0, 5: 10}, 10),
    ([1, 2, 3, 4, 5], {1: 10, 2: 10}, 0),
    # Non-voters in `match` (learners) never count.
    ([1, 2, 3], {1: 12, 4: 12, 5: 12}, 0),
    ([1, 2, 3], {1: 12, 2: 3, 3: 1, 4: 100}, 3),
])
def test_committed_index(voters: list[int], match: dict[int, int], want: int) -> None:
    assert committed_index(voters, match) == want


@pytest.mark.parametrize(("voters", "votes", "want"), [
    # Unlike etcd (where an empty joint-config half wins), there are no joint
    # configs here: nobody can be elected by no voters, as nothing commits.
    ([], {}, VoteResult.LOST),
    ([1], {}, VoteResult.PENDING),
    ([1], {1: True}, VoteResult.WON),
    ([1], {1: False}, VoteResult.LOST),
    ([1, 2], {1: True}, VoteResult.PENDING),
    ([1, 2], {1: True, 2: True}, VoteResult.WON),
    ([1, 2], {1: True, 2: False}, VoteResult.LOST),
    ([1, 2, 3], {1: True}, VoteResult.PENDING),
    ([1, 2, 3], {1: True, 2: True}, VoteResult.WON),
    ([1, 2, 3], {1: True, 2: False}, VoteResult.PENDING),
    ([1, 2, 3], {1: False, 2: False}, VoteResult.LOST),
    ([1, 2, 3], {1: True, 2: False, 3: False}, VoteResult.LOST),
    ([1, 2, 3, 4], {1: True, 2: True}, VoteResult.PENDING),
    ([1, 2, 3, 4], {1: True, 2: True, 3: False}, VoteResult.PENDING),
    ([1, 2, 3, 4], {1: True, 2: False, 3: False}, VoteResult.LOST),
    ([1, 2, 3, 4, 5], {1: True, 2: True, 3: True}, VoteResult.WON),
    ([1, 2, 3, 4, 5], {1: True, 2: False, 3: False}, VoteResult.PENDING),
    ([1, 2, 3, 4, 5], {1: True, 2: False, 3: False, 4: False}, VoteResult.LOST),
    # Votes from non-voters (learners, removed members) are ignored.
    ([1, 2, 3], {1: True, 4: True, 5: True}, VoteResult.PENDING),
    ([1, 2, 3], {1: True, 4: False, 5: False}, VoteResult.PENDING),
])
def test_vote_result(voters: list[int], votes: dict[int, bool], want: VoteResult) -> None:
    assert vote_result(voters, votes) is want


@pytest.mark.parametrize(("voters", "members", "want"), [
    ([1], [1], True),
    ([1], [], False),
    ([1, 2, 3], [1, 2], True),
    ([1, 2, 3], [1], False),
    ([1, 2, 3], [1, 4, 5], False),  # non-voters never make a quorum
    ([1, 2, 3, 4], [1, 2], False),
    ([1, 2, 3, 4], [1, 2, 3], True),
    ([1, 2, 3, 4, 5], [3, 4, 5], True),
])
def test_has_quorum(voters: list[int], members: list[int], want: bool) -> None:
    assert has_quorum(voters, members) is want


@pytest.mark.parametrize("size", range(1, 8))
def test_committed_index_agrees_with_has_quorum(size: int) -> None:
    """Property: the committed index is the largest i whose holders form a quorum."""
    voters = list(range(1, size + 1))
    match = {v: (v * 7) % 11 for v in voters}
    c = committed_index(voters, match)
    assert has_quorum(voters, [v for v in voters if match[v] >= c])
    assert not has_quorum(voters, [v for v in voters if match[v] >= c + 1])

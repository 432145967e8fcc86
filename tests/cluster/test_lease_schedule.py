"""The leader's lease deadlines, driven by made-up times (no clock, no trio)."""

from __future__ import annotations

import math

import pytest

from cluster.lease_schedule import LeaseSchedule, StoredLease

MIN_TTL = 1.5


def lease(lease_id: int, granted: int, remaining: int = 0) -> StoredLease:
    return StoredLease(lease_id, granted, remaining)


def test_promote_counts_granted_ttl_from_now() -> None:
    s = LeaseSchedule()
    s.promote(100.0, [lease(1, 10)], MIN_TTL)
    assert s.remaining(100.0, 1) == 10.0
    assert s.expired(109.9, 10, 1.0) == []
    assert s.expired(110.0, 10, 1.0) == [1]


def test_promote_uses_checkpointed_remaining_ttl() -> None:
    s = LeaseSchedule()
    s.promote(0.0, [lease(1, 600, remaining=42)], MIN_TTL)
    assert s.remaining(0.0, 1) == 42.0
    assert s.granted_ttl(1) == 600


@pytest.mark.parametrize(("granted", "remaining", "expect"), [
    (1, 0, 3.0),     # a grant below the minimum (granted before the rule) is lifted
    (60, 1, 3.0),    # a nearly spent checkpoint is lifted too
    (60, 0, 60.0),
    (60, 30, 30.0),
])
def test_promote_never_gives_less_than_min_ttl(granted: int, remaining: int,
                                               expect: float) -> None:
    s = LeaseSchedule()
    s.promote(5.0, [lease(7, granted, remaining)], min_ttl=3.0)
    assert s.remaining(5.0, 7) == expect


def test_promote_forgets_the_previous_term() -> None:
    s = LeaseSchedule()
    s.promote(0.0, [lease(1, 10), lease(2, 10)], MIN_TTL)
    s.promote(50.0, [lease(2, 10)], MIN_TTL)
    assert 1 not in s
    assert s.remaining(50.0, 2) == 10.0
    assert s.expired(59.0, 10, 1.0) == []


def test_renew_extends_from_now_by_granted_ttl() -> None:
    s = LeaseSchedule()
    s.promote(0.0, [lease(1, 10, remaining=4)], MIN_TTL)
    assert s.renew(3.0, 1) == (10, True)  # the stored checkpoint is now stale
    assert s.remaining(3.0, 1) == 10.0
    assert s.renew(4.0, 1) == (10, False)
    assert s.expired(13.9, 10, 1.0) == []
    assert s.expired(14.0, 10, 1.0) == [1]


def test_renew_refuses_unknown_and_expired_leases() -> None:
    s = LeaseSchedule()
    s.promote(0.0, [lease(1, 5)], MIN_TTL)
    assert s.renew(1.0, 99) is None
    assert s.renew(5.0, 1) is None  # deadline reached: the revoke is on its way
    assert s.remaining(6.0, 1) == -1.0


def test_expired_is_oldest_first_and_limited() -> None:
    s = LeaseSchedule()
    s.promote(0.0, [lease(i, 10 + i) for i in range(1, 6)], MIN_TTL)
    assert s.expired(100.0, 3, 5.0) == [1, 2, 3]
    assert s.expired(100.0, 3, 5.0) == [4, 5]
    assert s.expired(100.0, 3, 5.0) == []


def test_expired_lease_is_offered_again_until_removed() -> None:
    s = LeaseSchedule()
    s.promote(0.0, [lease(1, 10), lease(2, 10)], MIN_TTL)
    assert s.expired(10.0, 10, 2.0) == [1, 2]
    s.remove(2)  # its revoke was applied; lease 1's was lost
    assert s.expired(11.9, 10, 2.0) == []
    assert s.expired(12.0, 10, 2.0) == [1]
    assert s.next_check_at() == 14.0


def test_renewed_lease_does_not_expire_at_its_old_deadline() -> None:
    s = LeaseSchedule()
    s.promote(0.0, [lease(1, 10)], MIN_TTL)
    for t in range(1, 30, 3):
        s.renew(float(t), 1)
    assert s.expired(30.0, 10, 1.0) == []
    assert s.next_check_at() == 38.0


def test_add_times_new_grants_once() -> None:
    s = LeaseSchedule()
    s.promote(0.0, [], MIN_TTL)
    s.add(5.0, lease(3, 10))
    s.add(8.0, lease(3, 10))  # already timed: unchanged
    assert s.remaining(5.0, 3) == 10.0


def test_sync_adds_new_and_drops_revoked_leases() -> None:
    s = LeaseSchedule()
    s.promote(0.0, [lease(1, 10), lease(2, 10)], MIN_TTL)
    changes = s.sync(4.0, [lease(2, 10), lease(3, 20)], MIN_TTL)
    assert changes == 2
    assert s.ids() == [2, 3]
    assert s.remaining(4.0, 2) == 10.0 - 4.0  # untouched
    assert s.remaining(4.0, 3) == 20.0


def test_sync_keeps_an_expired_lease_whose_revoke_is_pending() -> None:
    s = LeaseSchedule()
    s.promote(0.0, [lease(1, 10)], MIN_TTL)
    assert s.expired(10.0, 10, 5.0) == [1]
    s.sync(11.0, [lease(1, 10)], MIN_TTL)
    assert s.renew(11.0, 1) is None
    assert s.expired(15.0, 10, 5.0) == [1]


def test_clear_stops_all_timing() -> None:
    s = LeaseSchedule()
    s.promote(0.0, [lease(1, 10)], MIN_TTL)
    s.clear()
    assert len(s) == 0
    assert s.expired(100.0, 10, 1.0) == []
    assert s.next_check_at() == math.inf


def test_checkpoints_only_long_leases_once_per_interval() -> None:
    s = LeaseSchedule(checkpoint_interval_s=5.0)
    s.promote(0.0, [lease(1, 60), lease(2, 5)], MIN_TTL)
    assert s.due_checkpoints(4.9, 10) == []
    assert s.due_checkpoints(5.0, 10) == [(1, 55)]
    assert s.due_checkpoints(9.0, 10) == []
    assert s.due_checkpoints(10.5, 10) == [(1, 50)]  # 49.5 rounded up, never shorter


def test_renew_restarts_the_checkpoint_interval_and_reports_staleness() -> None:
    s = LeaseSchedule(checkpoint_interval_s=5.0)
    s.promote(0.0, [lease(1, 60)], MIN_TTL)
    assert s.due_checkpoints(5.0, 10) == [(1, 55)]
    assert s.renew(6.0, 1) == (60, True)
    assert s.due_checkpoints(10.0, 10) == []
    assert s.due_checkpoints(11.0, 10) == [(1, 55)]


def test_checkpoints_are_limited_per_call() -> None:
    s = LeaseSchedule(checkpoint_interval_s=1.0)
    s.promote(0.0, [lease(i, 100) for i in range(10)], MIN_TTL)
    first = s.due_checkpoints(1.0, 4)
    second = s.due_checkpoints(1.0, 100)
    assert len(first) == 4
    assert len(second) == 6
    assert {i for i, _ in first} | {i for i, _ in second} == set(range(10))


def test_statistics_count_offers() -> None:
    s = LeaseSchedule(checkpoint_interval_s=1.0)
    s.promote(0.0, [lease(1, 3), lease(2, 100)], MIN_TTL)
    s.due_checkpoints(1.0, 10)
    s.expired(3.0, 10, 1.0)
    stats = s.statistics()
    assert (stats.leases, stats.expired_offered, stats.checkpoints_offered) == (2, 1, 2)

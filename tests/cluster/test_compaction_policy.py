"""Auto-compaction decisions with fake clocks: which revision, and when."""

from __future__ import annotations

import pytest

from cluster.compaction_policy import PeriodicPolicy, RevisionPolicy, make_policy


def test_revision_mode_compacts_to_current_minus_retention_each_interval() -> None:
    p = RevisionPolicy(retention=100, interval_s=300)
    p.reset(now=0)
    assert p.decide(299, revision=1000, compact_revision=0) is None  # not due yet
    assert p.decide(300, revision=1000, compact_revision=0) == 900
    assert p.decide(301, revision=1100, compact_revision=900) is None  # next one at 600
    assert p.decide(600, revision=1100, compact_revision=900) == 1000


@pytest.mark.parametrize(("revision", "compact_revision"), [(50, 0), (100, 0), (1000, 900)])
def test_revision_mode_skips_when_nothing_new_to_compact(revision: int,
                                                         compact_revision: int) -> None:
    p = RevisionPolicy(retention=100, interval_s=1)
    p.reset(now=0)
    assert p.decide(1, revision=revision, compact_revision=compact_revision) is None


def test_periodic_samples_a_tenth_of_the_retention_and_compacts_every_retention() -> None:
    p = PeriodicPolicy(retention_s=600)
    assert p.sample_interval_s == 60
    assert p.compact_interval_s == 600


def test_periodic_longer_than_an_hour_still_compacts_hourly() -> None:
    p = PeriodicPolicy(retention_s=10 * 3600)
    assert (p.compact_interval_s, p.sample_interval_s) == (3600, 360)


def test_periodic_compacts_to_the_revision_current_one_retention_ago() -> None:
    p = PeriodicPolicy(retention_s=100)
    p.reset(now=0)
    decisions = {}
    # The store gains 10 revisions per 10 s: revision(t) = 1 + t.
    for t in range(10, 401, 10):
        decisions[t] = p.decide(t, revision=1 + t, compact_revision=0)
    assert all(decisions[t] is None for t in range(10, 110, 10))  # first retention: watching
    assert decisions[110] == 11  # the sample taken at t=10, exactly 100 s before
    compacted = {t: r for t, r in decisions.items() if r is not None}
    # Then once per compaction interval, always to the revision of 100 s before.
    assert compacted == {110: 11, 210: 111, 310: 211}


def test_periodic_never_compacts_history_younger_than_the_retention() -> None:
    p = PeriodicPolicy(retention_s=3.0)
    p.reset(now=1000.0)
    t, revision, compacted_to = 1000.0, 1, 0
    times: dict[int, float] = {}
    while t < 1030:
        t += 0.3
        revision += 7
        times[revision] = t
        target = p.decide(t, revision, compacted_to)
        if target is not None:
            assert target > compacted_to
            assert t - times[target] >= 3.0  # the revision was current at least 3 s ago
            compacted_to = target
    assert compacted_to > 0


def test_periodic_reset_forgets_samples_of_a_previous_leadership() -> None:
    p = PeriodicPolicy(retention_s=10)
    p.reset(now=0)
    for t in range(1, 30):
        p.decide(t, revision=t, compact_revision=0)
    p.reset(now=30)
    assert p.samples == 0
    assert p.decide(31, revision=31, compact_revision=0) is None
    assert p.decide(40, revision=40, compact_revision=0) is None  # 10 s not watched yet
    assert p.decide(41, revision=41, compact_revision=0) == 31


def test_periodic_skips_a_revision_already_compacted() -> None:
    p = PeriodicPolicy(retention_s=10)
    p.reset(now=0)
    p.decide(0.5, revision=5, compact_revision=0)
    assert p.decide(11, revision=5, compact_revision=5) is None


@pytest.mark.parametrize(("mode", "revisions", "seconds", "kind"), [
    ("revision", 100, 0, RevisionPolicy),
    ("periodic", 0, 3600, PeriodicPolicy),
    ("periodic", 0, 0, None),
    ("revision", 0, 0, None),
])
def test_make_policy_follows_the_configuration(mode: str, revisions: int, seconds: float,
                                               kind: type | None) -> None:
    policy = make_policy(mode, retention_revisions=revisions, retention_s=seconds,
                         revision_interval_s=300)
    assert policy is None if kind is None else isinstance(policy, kind)

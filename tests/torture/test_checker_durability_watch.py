"""Durability, read, agreement and watch checkers: quiet on a clean run, loud on each bug."""

from __future__ import annotations

from dataclasses import replace

from cluster.torture.checker_durability import (
    MemberFinal,
    check_agreement,
    check_durability,
    check_integrity,
    check_reads,
)
from cluster.torture.checker_watch import check_watches
from cluster.torture.final_state import MvccHistory
from cluster.torture.history import KV, History, Outcome, WatchDelivery
from cluster.torture.runner import recheck
from tests.torture.ops import delete, ev, get, put

EVENTS = [ev(2, "t/a", "1"), ev(3, "t/b", "2"), ev(4, "t/a", "3", ("1", 2), 2, 2),
          ev(5, "t/a", None, ("3", 4))]
OPS = [put("t/a", "1", 0, 1, rev=2), put("t/b", "2", 1, 2, rev=3),
       put("t/a", "3", 2, 3, rev=4), delete("t/a", 3, 4, rev=5),
       get("t/b", "2", 3, 5, 6, rev=5), get("t/a", "1", 2, 5, 6, rev=3, serializable=True)]


def test_clean_run_passes_every_checker() -> None:
    hist = MvccHistory(EVENTS)
    assert check_durability(OPS, hist, {"t/b": KV("t/b", "2", 3)}).ok
    assert check_reads(OPS, hist).ok
    stream = [WatchDelivery(0, 1.0, 3, tuple(EVENTS[:2])),
              WatchDelivery(0, 2.0, 5, tuple(EVENTS[2:]))]
    res = check_watches(stream, hist, OPS, "t/")
    assert res.ok, res.violations
    assert res.figures["caught_up"] == 1


def test_lost_acknowledged_write_is_reported() -> None:
    hist = MvccHistory([e for e in EVENTS if e.revision != 3])
    res = check_durability(OPS, hist)
    assert not res.ok
    assert res.figures["acknowledged_lost"] == 1
    assert "acknowledged write lost" in res.violations[0]


def test_failed_write_that_took_effect_and_phantom_writes_are_reported() -> None:
    hist = MvccHistory([*EVENTS, ev(6, "t/c", "ghost")])
    failed = put("t/c", "ghost", 5, 6, outcome=Outcome.FAIL)
    assert any("definitely failed" in v for v in check_durability([*OPS, failed], hist).violations)
    assert any("nobody made" in v for v in check_durability(OPS, hist).violations)


def test_write_applied_twice_is_reported() -> None:
    hist = MvccHistory([*EVENTS, ev(6, "t/b", "2", ("2", 3), 2, 3)])
    res = check_durability(OPS, hist)
    assert res.figures["applied_twice"] == 1
    assert any("more than once" in v for v in res.violations)


def test_delete_nobody_asked_for_is_reported() -> None:
    ops = [op for op in OPS if op.writes[:1] != (KV("t/a", None),)]
    res = check_durability(ops, MvccHistory(EVENTS))
    assert res.figures["unexplained_deletes"] == 1


def test_stale_or_invented_serializable_read_is_reported() -> None:
    hist = MvccHistory(EVENTS)
    stale = get("t/a", "1", 2, 5, 6, rev=4, serializable=True)  # rev 4 had "3"
    res = check_reads([stale], hist)
    assert not res.ok
    assert "does not match" in res.violations[0]
    future = get("t/b", "2", 3, 5, 6, rev=99, serializable=True)
    assert not check_reads([future], hist).ok


def test_members_that_disagree_are_reported() -> None:
    a = MemberFinal("m1", 5, tuple(EVENTS), 0xAB, {})
    b = MemberFinal("m2", 5, tuple(EVENTS[:3]), 0xCD, {})
    res = check_agreement([a, b])
    assert len(res.violations) == 2
    assert not check_agreement([a, replace(a, name="m3", error="timeout")]).ok
    assert check_agreement([a, replace(a, name="m2")]).ok


def test_watch_that_skips_duplicates_or_splits_is_reported() -> None:
    hist = MvccHistory(EVENTS)
    missing = [WatchDelivery(0, 1.0, 5, (EVENTS[0], *EVENTS[2:]))]
    assert not check_watches(missing, hist, OPS, "t/").ok
    dup = [WatchDelivery(0, 1.0, 5, tuple(EVENTS)), WatchDelivery(0, 2.0, 5, (EVENTS[3],))]
    assert any("duplicate" in v for v in check_watches(dup, hist, OPS, "t/").violations)
    split = [WatchDelivery(0, 1.0, 5, (*EVENTS, ev(6, "t/x", "a"))),
             WatchDelivery(0, 2.0, 6, (ev(6, "t/y", "b"),))]
    hist6 = MvccHistory([*EVENTS, ev(6, "t/x", "a"), ev(6, "t/y", "b")])
    assert any("split" in v for v in check_watches(split, hist6, OPS, "t/").violations)


def test_watch_with_wrong_prev_kv_is_reported() -> None:
    hist = MvccHistory(EVENTS)
    wrong = replace(EVENTS[2], prev_value="zz")
    res = check_watches([WatchDelivery(0, 1.0, 5, (*EVENTS[:2], wrong, EVENTS[3]))], hist,
                        OPS, "t/")
    assert any("prev_kv" in v for v in res.violations)


def test_watcher_that_never_caught_up_is_reported() -> None:
    res = check_watches([WatchDelivery(0, 1.0, 3, tuple(EVENTS[:2]))], MvccHistory(EVENTS),
                        OPS, "t/")
    assert any("reached the last revision" in v for v in res.violations)


def test_integrity_failures_are_reported() -> None:
    assert check_integrity({"m1/state.db": "ok"}).ok
    assert not check_integrity({"m1/wal.db": "*** in database main ***"}).ok


def test_saved_history_can_be_checked_again(tmp_path) -> None:
    history = History(ops=list(OPS), truth=list(EVENTS), meta={"final_revision": 5})
    history.save(tmp_path / "history.jsonl")
    report = recheck(tmp_path / "history.jsonl")
    assert report.ok, report.text()
    assert {r.name for r in report.results} >= {"linearizable", "durability",
                                                "reads-match-history"}
    lost = History(ops=list(OPS), truth=[e for e in EVENTS if e.revision != 3])
    lost.save(tmp_path / "lost.jsonl")
    assert not recheck(tmp_path / "lost.jsonl").ok

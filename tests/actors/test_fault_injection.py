"""The fault-injection control file: off by default, re-read at runtime, never fatal."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from actors import fault_injection as fi
from actors.fault_injection import FaultControl, FaultPlan, LinkRule, write_plan


@pytest.fixture(autouse=True)
def no_poll_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fi, "poll_interval_s", 0.0)


def test_fault_injection_is_off_without_the_environment_variable() -> None:
    assert fi.fault_control_from_env({}) is None
    assert fi.fault_control_from_env({fi.FAULT_FILE_ENV: ""}) is None


def test_missing_file_means_a_healthy_member(tmp_path: Path) -> None:
    control = FaultControl(tmp_path / "absent.json")
    assert control.outbound(7) == [0.0]
    assert not control.inbound_blocked(7)
    assert control.plan() == FaultPlan()


def test_plan_round_trips_through_the_file_and_applies_per_link(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    plan = FaultPlan(links={2: LinkRule(drop=1.0), 3: LinkRule(delay_s=0.05)},
                     block_from=frozenset({4}), fsync_delay_s=0.01)
    write_plan(path, plan)
    control = FaultControl(path, random.Random(1))
    assert control.plan() == plan
    assert control.outbound(2) == []
    assert control.outbound(3) == [pytest.approx(0.05)]
    assert control.outbound(5) == [0.0]
    assert control.inbound_blocked(4)
    assert not control.inbound_blocked(2)
    stats = control.statistics()
    assert (stats.dropped, stats.delayed, stats.blocked) == (1, 1, 1)


def test_duplicates_send_two_copies(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    write_plan(path, FaultPlan(links={2: LinkRule(dup=1.0)}))
    assert FaultControl(path).outbound(2) == [0.0, 0.0]


def test_plan_changes_at_runtime_and_healing_removes_faults(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    control = FaultControl(path)
    write_plan(path, FaultPlan(block_from=frozenset({9})))
    assert control.inbound_blocked(9)
    path.unlink()
    assert not control.inbound_blocked(9)


def test_malformed_file_keeps_the_previous_plan(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    write_plan(path, FaultPlan(block_from=frozenset({9})))
    control = FaultControl(path)
    assert control.inbound_blocked(9)
    path.write_text('{"links": {"2": {"drop": 7}}}')
    assert control.inbound_blocked(9)
    path.write_text("not json")
    assert control.inbound_blocked(9)


def test_delayed_frames_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    write_plan(path, FaultPlan(links={2: LinkRule(delay_s=1.0)}))
    control = FaultControl(path)
    control.delayed_in_flight = fi.delayed_frames_max
    assert control.outbound(2) == []

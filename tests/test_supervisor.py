"""supervisor.py: the pure parts, plus one real-process smoke test (marked e2e)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import psutil
import pytest

from cluster.config import (
    default_local_cluster,
    dump_toml,
    load_cluster_config,
    local_cluster_ipc,
)
from cluster.restart_policy import (
    Backoff,
    RestartDecision,
    RestartPolicy,
    decide_restart,
    exit_line,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import supervisor as sv  # noqa: E402 - a script at the repo top, not a package
from cluster import supervisor_view as view  # noqa: E402


@pytest.mark.parametrize(
    ("failures", "delay"), [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (6, 10.0), (40, 10.0)]
)
def test_backoff_doubles_from_half_a_second_to_ten(failures: int, delay: float) -> None:
    assert Backoff().delay_s(failures) == delay


def test_quick_exits_back_off_further_each_time() -> None:
    failures, delays = 0, []
    for _ in range(4):
        d = decide_restart(RestartPolicy.UNLESS_STOPPED, stopping=False, uptime_s=1.0,
                              failures=failures)
        failures = d.failures
        delays.append(d.delay_s)
    assert delays == [0.5, 1.0, 2.0, 4.0]


def test_thirty_seconds_of_uptime_forgives_past_failures() -> None:
    d = decide_restart(RestartPolicy.UNLESS_STOPPED, stopping=False, uptime_s=30.0,
                          failures=7)
    assert (d.restart, d.delay_s, d.failures) == (True, 0.5, 1)


def test_unless_stopped_restarts_even_a_clean_exit_but_not_while_stopping() -> None:
    assert decide_restart(RestartPolicy.UNLESS_STOPPED, stopping=False, uptime_s=100,
                             failures=0).restart
    assert not decide_restart(RestartPolicy.UNLESS_STOPPED, stopping=True, uptime_s=100,
                                 failures=0).restart


def test_policy_no_never_restarts() -> None:
    d = decide_restart(RestartPolicy.NO, stopping=False, uptime_s=1, failures=0)
    assert not d.restart


@pytest.mark.parametrize(
    ("code", "restart", "line"),
    [(-9, True, "m1 exited (signal 9); restarting in 0.5s"),
     (1, True, "m1 exited (code 1); restarting in 0.5s"),
     (0, False, "m1 exited (code 0); not restarting")],
)
def test_exit_lines(code: int, restart: bool, line: str) -> None:
    assert exit_line("m1", code, RestartDecision(restart, 0.5, 1)) == line


def test_build_config_defaults_to_three_local_members_with_absolute_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = sv.build_config(members=None, config_path=None, data_dir=None)
    assert cfg.data_dir == tmp_path / "data"
    assert [m.name for m in cfg.members] == ["m1", "m2", "m3"]
    assert cfg.members[0].peer_url == "tcp://127.0.0.1:2380"


def test_build_config_from_file_with_moved_data_dir(tmp_path: Path) -> None:
    cfg = sv.build_config(members=None, config_path=REPO / "configs/local-5.toml",
                          data_dir=tmp_path / "d5")
    assert (len(cfg.members), cfg.data_dir) == (5, tmp_path / "d5")


def test_members_and_config_are_exclusive() -> None:
    with pytest.raises(click.UsageError):
        sv.build_config(members=3, config_path=REPO / "configs/local-3.toml", data_dir=None)


def test_write_config_creates_member_dirs_and_a_loadable_file(tmp_path: Path) -> None:
    cfg = default_local_cluster(3, tmp_path / "data")
    path = sv.write_config(cfg)
    assert path == tmp_path / "data" / "cluster.toml"
    assert load_cluster_config(path) == cfg
    assert all((tmp_path / "data" / n).is_dir() for n in ("m1", "m2", "m3"))
    assert sv.write_config(cfg) == path  # same cluster again: fine


def test_write_config_refuses_another_clusters_data_dir(tmp_path: Path) -> None:
    sv.write_config(default_local_cluster(3, tmp_path))
    with pytest.raises(click.ClickException, match="belongs to another cluster"):
        sv.write_config(default_local_cluster(5, tmp_path))


def test_member_command_runs_cluster_member_through_the_pdeathsig_bootstrap() -> None:
    cmd = sv.member_command(Path("/d/cluster.toml"), "m2", 4242)
    assert cmd[:2] == [sys.executable, "-c"]
    assert "prctl" in cmd[2]
    assert cmd[3:] == ["4242", "--config", "/d/cluster.toml", "--name", "m2"]


ROWS = [
    view.MemberRow("m1", 1001, "running", True, "leader", 3, "m1", 42, 41, 17, 12.0, 50 * 2**20, 0),
    view.MemberRow("m2", None, "backoff 2.0s", restarts=4),
    view.MemberRow("m3", 1003, "running", True, "follower", 3, "m1", 42, 42, 17, 0.4, 2048, 1),
]


def test_table_renders_every_member_and_marks_the_down_one() -> None:
    text = view.render_text(ROWS, width=100)
    lines = text.splitlines()
    assert lines[1].split() == ["member", "pid", "state", "role", "term", "leader", "commit",
                                "applied", "rev", "cpu%", "rss", "restarts"]
    assert lines[3].split() == ["m1", "1001", "running", "leader", "3", "m1", "42", "41", "17",
                                "12", "50.0MiB", "0"]
    assert lines[4].split() == ["m2", "?", "backoff", "2.0s", "down", "?", "?", "?", "?", "?",
                                "?", "?", "4"]
    assert lines[5].split()[-2:] == ["2.0KiB", "1"]


def test_status_lines_report_leader_changes_and_reachability() -> None:
    prev = {r.name: r for r in ROWS}
    new_leader = [
        view.MemberRow("m1", 1001, "running", False),
        ROWS[1],
        view.MemberRow("m3", 1003, "running", True, "leader", 4, "m3", 43, 43, 17),
    ]
    assert view.status_lines(prev, new_leader) == [
        "m1 is unreachable", "m3 became leader at term 4"]
    assert view.status_lines(prev, ROWS) == []  # nothing changed, nothing said
    back = [view.MemberRow("m2", 1002, "running", True, "follower", 4, "m3")]
    assert view.status_lines(prev, back) == ["m2 is reachable (follower, term 4)"]


def test_format_bytes() -> None:
    assert [view.format_bytes(n) for n in (None, 512, 2048, 3 * 2**30)] == [
        "?", "512B", "2.0KiB", "3.0GiB"]


# --- real processes ------------------------------------------------------------------

def _wait_for(proc: subprocess.Popen[str], lines: list[str], needle: str, timeout_s: float
              ) -> str:
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            lines.append(line.rstrip())
            if needle in line:
                return line
        elif proc.poll() is not None:
            break
    raise AssertionError(f"no {needle!r} within {timeout_s}s; output so far: {lines}")


def _member_pids(sup_pid: int) -> list[int]:
    return [p.pid for p in psutil.Process(sup_pid).children()]


@contextlib.contextmanager
def _supervisor(tmp_path: Path, members: int, *args: str) -> Iterator[subprocess.Popen[str]]:
    """supervisor.py on an ipc:// cluster of `members` under tmp_path; killed (with its
    members, by their parent-death signal) however the test ends."""
    cfg_path = tmp_path / "ipc.toml"
    cfg_path.write_text(dump_toml(local_cluster_ipc(members, tmp_path)))
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "supervisor.py"), "--config", str(cfg_path), "--no-tui",
         *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.mark.e2e
def test_supervisor_restarts_a_killed_member_and_leaves_nothing_behind(tmp_path: Path) -> None:
    lines: list[str] = []
    with _supervisor(tmp_path, 3) as proc:
        _wait_for(proc, lines, "became leader", 30)
        members = _member_pids(proc.pid)
        assert len(members) == 3
        victim = psutil.Process(members[0])
        os.kill(victim.pid, signal.SIGKILL)
        _wait_for(proc, lines, "exited (signal 9); restarting in 0.5s", 10)
        _wait_for(proc, lines, "started (pid", 10)
        members = _member_pids(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert not [p for p in members if psutil.pid_exists(p)
                    and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


@pytest.mark.e2e
def test_members_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    lines: list[str] = []
    with _supervisor(tmp_path, 2) as proc:
        _wait_for(proc, lines, "m2 started", 30)
        members = [psutil.Process(p) for p in _member_pids(proc.pid)]
        assert len(members) == 2
        proc.kill()
        proc.wait()
        _, alive = psutil.wait_procs(members, timeout=10)
        assert not alive


@pytest.mark.e2e
def test_restart_no_leaves_a_dead_member_dead_and_exits_1(tmp_path: Path) -> None:
    lines: list[str] = []
    with _supervisor(tmp_path, 1, "--restart", "no") as proc:
        _wait_for(proc, lines, "m1 started", 30)
        os.kill(_member_pids(proc.pid)[0], signal.SIGKILL)
        _wait_for(proc, lines, "m1 exited (signal 9); not restarting", 10)
        assert proc.wait(timeout=10) == 1


@pytest.mark.e2e
def test_add_member_grows_a_running_supervised_cluster(tmp_path: Path) -> None:
    data = tmp_path / "data"
    lines: list[str] = []
    with _supervisor(tmp_path, 3, "--data-dir", str(data)) as proc:
        _wait_for(proc, lines, "became leader", 30)
        add = subprocess.run(
            [sys.executable, str(REPO / "supervisor.py"), "--data-dir", str(data),
             "--add-member", "m4"], capture_output=True, text=True, timeout=90, cwd=tmp_path)
        assert add.returncode == 0, add.stderr
        assert "promoted to a voter" in add.stdout
        _wait_for(proc, lines, "m4 started (pid", 10)
        assert len(_member_pids(proc.pid)) == 4
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0

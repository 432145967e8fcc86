"""Run a local etcdlite cluster: spawn, watch, restart and show its members.

    python supervisor.py --members 3
    python supervisor.py --config configs/local-5.toml --data-dir /tmp/etcd5
    python supervisor.py --members 3 --no-tui --restart no
    python supervisor.py --add-member m4      # while the first one runs

Each member is one OS process (`python -m cluster.member`) in its own process
group, logging to `<data-dir>/<name>/member.log`. A member that exits is
restarted with exponential backoff (policy like docker's `restart:
unless-stopped`). Ctrl-C or SIGTERM stops every member: SIGTERM, up to 5 s,
then SIGKILL. If the supervisor itself dies (even by SIGKILL), the kernel
kills its members: each is started with PR_SET_PDEATHSIG (Linux).

The restart policy (cluster/restart_policy.py) is applied here and only here
(STYLE: supervisors across processes, actors inside one). The pure parts
(backoff, restart decision, config writing, table rendering, change lines) are
tested in tests/test_supervisor.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import psutil
from rich.console import Console
from rich.live import Live

REPO = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))  # a script, not an installed module: find cluster/ next to us

from cluster.config import (  # noqa: E402
    ClusterConfig,
    MemberSpec,
    default_local_cluster,
    dump_toml,
    load_cluster_config,
)
from cluster.local_cluster import LOCAL_BASE_PORTS, add_member  # noqa: E402
from cluster.restart_policy import (  # noqa: E402
    RestartPolicy,
    decide_restart,
    describe_exit,
    exit_line,
)
from cluster.supervisor_view import (  # noqa: E402
    MemberRow,
    render_table,
    status_lines,
)

STOP_GRACE_S = 5.0
POLL_INTERVAL_S = 0.5
STATUS_TIMEOUT_S = 0.5
LOOP_INTERVAL_S = 0.1

# Runs in the child before the member: ask the kernel to SIGKILL us when the
# supervisor dies, then exec the member (the setting survives exec). This is
# PR_SET_PDEATHSIG without a preexec_fn, which is unsafe once the supervisor
# has threads (the status pollers). SIGKILL rather than SIGTERM because an
# orphan must never linger, and a member must survive kill -9 anyway (its WAL
# is fsynced before anything is acknowledged).
_BOOTSTRAP = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass  # not Linux: no orphan protection
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)  # the supervisor died before prctl took effect
os.execv(sys.executable, [sys.executable, "-m", "cluster.member", *sys.argv[2:]])
"""


# --- pure parts ----------------------------------------------------------------------

def build_config(*, members: int | None, config_path: Path | None,
                 data_dir: Path | None) -> ClusterConfig:
    """The effective cluster: a file or the default local cluster, data dir made absolute."""
    if config_path is not None and members is not None:
        raise click.UsageError("--members and --config are mutually exclusive")
    existing = (data_dir or Path("data")) / "cluster.toml"
    if config_path is not None:
        cfg = load_cluster_config(config_path)
    elif members is None and existing.exists():
        cfg = load_cluster_config(existing)  # a cluster that may have grown since
    else:
        cfg = default_local_cluster(members or 3, Path("data"))
    return replace(cfg, data_dir=(data_dir or cfg.data_dir).resolve())


def write_config(cfg: ClusterConfig) -> Path:
    """Write `<data-dir>/cluster.toml` and the member dirs; refuse another cluster's data."""
    path = cfg.data_dir / "cluster.toml"
    if path.exists():
        old = load_cluster_config(path)
        if old.cluster_id != cfg.cluster_id:
            names = ", ".join(m.name for m in old.members)
            raise click.ClickException(
                f"{path} belongs to another cluster ({names}, token {old.token!r}); "
                f"use another --data-dir or remove {cfg.data_dir}")
    for m in cfg.members:
        (cfg.data_dir / m.name).mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(dump_toml(cfg))
    tmp.replace(path)  # atomic: a member never reads half a file
    return path


def member_command(config_path: Path, name: str, supervisor_pid: int) -> list[str]:
    return [sys.executable, "-c", _BOOTSTRAP, str(supervisor_pid),
            "--config", str(config_path), "--name", name]


# --- processes -----------------------------------------------------------------------

class ManagedMember:
    """One member process across its restarts (owned by the supervisor's main thread)."""

    def __init__(self, spec: MemberSpec, data_dir: Path) -> None:
        self.spec = spec
        self.log_path = data_dir / spec.name / "member.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.proc: psutil.Process | None = None
        self.started_at = 0.0
        self.start_at: float | None = 0.0  # when to (re)start; None = never
        self.failures = 0
        self.restarts = 0
        self.state = "starting"

    def spawn(self, config_path: Path) -> int:
        env = {**os.environ, "ETCDLITE_SUPERVISOR_PID": str(os.getpid()),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                           os.environ.get("PYTHONPATH")]))}
        with open(self.log_path, "ab") as log:
            # Spawned from the main thread only: PDEATHSIG fires when the
            # *thread* that forked exits, and the main thread outlives the rest.
            self.popen = subprocess.Popen(
                member_command(config_path, self.spec.name, os.getpid()), cwd=REPO, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, process_group=0)
        self.proc = psutil.Process(self.popen.pid)
        self.proc.cpu_percent(None)  # prime: the first reading is always 0
        self.started_at, self.start_at, self.state = time.monotonic(), None, "running"
        return self.popen.pid

    def signal_group(self, signum: signal.Signals) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # exited since poll()
                os.killpg(self.popen.pid, signum)

    def usage(self) -> tuple[float | None, int | None]:
        if self.proc is None or self.state != "running":
            return None, None
        try:
            with self.proc.oneshot():
                return self.proc.cpu_percent(None), self.proc.memory_info().rss
        except psutil.Error:
            return None, None


class Supervisor:
    def __init__(self, cfg: ClusterConfig, config_path: Path, policy: RestartPolicy,
                 out: Console, tui: bool) -> None:
        self.cfg, self.config_path, self.policy = cfg, config_path, policy
        self.out, self.tui = out, tui
        self.members = [ManagedMember(m, cfg.data_dir) for m in cfg.members]
        self.names = {m.member_id: m.name for m in cfg.members}
        self.stopping = threading.Event()
        self.status: dict[str, Any] = {}  # name -> latest Status, or None if unreachable
        self.rows: dict[str, MemberRow] = {}
        self._pool = ThreadPoolExecutor(max_workers=len(LOCAL_BASE_PORTS),
                                        thread_name_prefix="status")
        self._config_mtime = config_path.stat().st_mtime if config_path.exists() else 0.0
        self._polls: dict[str, tuple[int | None, Future[Any]]] = {}
        self._clients: dict[str, Any] = {}

    def say(self, line: str) -> None:
        # soft_wrap: a log line stays one line even when stdout is not a terminal.
        self.out.print(line, markup=False, highlight=False, soft_wrap=True)

    def run(self) -> bool:
        """Supervise until asked to stop (True) or until no member is left (False)."""
        if not self.tui:
            return self._loop(None)
        with Live(render_table([]), console=self.out, refresh_per_second=4) as live:
            return self._loop(live)

    def _loop(self, live: Live | None) -> bool:
        next_poll = 0.0
        try:
            while not self.stopping.is_set():
                now = time.monotonic()
                self._reap_and_restart(now)
                if now >= next_poll:
                    self._adopt_new_members()
                    self._poll_status()
                    next_poll = now + POLL_INTERVAL_S
                self._refresh(live)
                if all(m.start_at is None and m.state != "running" for m in self.members):
                    self.say("no member is running or due to restart; supervisor exiting")
                    return False
                self.stopping.wait(LOOP_INTERVAL_S)
            return True
        finally:
            self.stop_all()
            self._refresh(live)

    def _adopt_new_members(self) -> None:
        """Start members that `supervisor.py --add-member` appended to cluster.toml."""
        try:
            mtime = self.config_path.stat().st_mtime
        except OSError:
            return
        if mtime == self._config_mtime:
            return
        self._config_mtime = mtime
        try:
            cfg = load_cluster_config(self.config_path)
        except (OSError, ValueError) as exc:
            self.say(f"ignoring unreadable {self.config_path}: {exc}")
            return
        known = {m.spec.name for m in self.members}
        for spec in cfg.members:
            if spec.name not in known:
                (cfg.data_dir / spec.name).mkdir(parents=True, exist_ok=True)
                self.members.append(ManagedMember(spec, cfg.data_dir))
                self.names[spec.member_id] = spec.name
                self.say(f"{spec.name} added to the cluster; starting it")
        self.cfg = cfg

    def _reap_and_restart(self, now: float) -> None:
        for m in self.members:
            if m.popen is not None and m.state == "running":
                code = m.popen.poll()
                if code is not None:
                    d = decide_restart(self.policy, stopping=self.stopping.is_set(),
                                       uptime_s=now - m.started_at, failures=m.failures)
                    m.failures, m.state = d.failures, "exited"
                    m.start_at = now + d.delay_s if d.restart else None
                    self.say(exit_line(m.spec.name, code, d))
            if m.start_at is not None and now >= m.start_at:
                if m.popen is not None:
                    m.restarts += 1
                pid = m.spawn(self.config_path)
                self.say(f"{m.spec.name} started (pid {pid})")
            elif m.start_at is not None and m.popen is not None:
                m.state = f"backoff {m.start_at - now:.1f}s"

    def _poll_status(self) -> None:
        from cluster.client import Client  # imported late: pynng loads only when needed

        for m in self.members:
            name = m.spec.name
            pid = m.popen.pid if m.popen is not None else None
            if name in self._polls:
                asked_pid, fut = self._polls[name]
                if not fut.done():
                    continue
                del self._polls[name]  # consume once: a stale answer must not come back
                # An answer from a previous incarnation of the member is not news.
                self.status[name] = fut.result() if asked_pid == pid else None
            if m.state == "running":
                client = self._clients.setdefault(
                    name, Client([m.spec.client_url], timeout_s=STATUS_TIMEOUT_S))
                self._polls[name] = (pid, self._pool.submit(self._status_of, client))
            else:
                self.status[name] = None

    @staticmethod
    def _status_of(client: Any) -> Any:
        from cluster.errors import EtcdliteError

        try:
            return client.status()
        except EtcdliteError:
            return None  # down, starting, or not answering: shown as "down"
        except Exception:
            # Display only: a bug in the client library must not take the
            # supervisor (and with it every member) down.
            return None

    def _refresh(self, live: Live | None) -> None:
        rows = []
        for m in self.members:
            st = self.status.get(m.spec.name) if m.state == "running" else None
            cpu, rss = m.usage()
            leader = None
            if st is not None:
                leader = self.names.get(st.leader, "-" if st.leader == 0 else f"{st.leader:x}")
            rows.append(MemberRow(
                name=m.spec.name, pid=m.popen.pid if m.popen else None, state=m.state,
                reachable=st is not None, role=st.role if st else None,
                term=st.term if st else None, leader=leader,
                commit_index=st.commit_index if st else None,
                applied_index=st.applied_index if st else None,
                revision=st.revision if st else None,
                cpu_percent=cpu, rss_bytes=rss, restarts=m.restarts))
        if live is not None:
            live.update(render_table(rows))
        else:
            for line in status_lines(self.rows, rows):
                self.say(line)
        self.rows = {r.name: r for r in rows}

    def stop_all(self) -> None:
        """SIGTERM every member's group, wait up to STOP_GRACE_S, then SIGKILL what is left."""
        self.stopping.set()
        running = [m for m in self.members if m.popen is not None and m.popen.poll() is None]
        if running:
            self.say("stopping " + ", ".join(m.spec.name for m in running))
        for m in running:
            m.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for m in running:
            assert m.popen is not None
            try:
                m.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{m.spec.name} did not stop in {STOP_GRACE_S:g}s; killing it")
                m.signal_group(signal.SIGKILL)
                m.popen.wait()
            self.say(f"{m.spec.name} stopped ({describe_exit(m.popen.returncode)})")
        for m in self.members:
            m.start_at, m.state = None, "stopped"
        self._pool.shutdown(wait=True, cancel_futures=True)
        for client in self._clients.values():
            client.close()


# --- CLI -----------------------------------------------------------------------------

@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--members", type=click.IntRange(1, 7), default=None,
              help="Size of the default local cluster (default 3).")
@click.option("--config", "config_path", type=click.Path(exists=True, path_type=Path),
              default=None, help="Cluster TOML instead of the default local cluster.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Where member dirs live (default: the config's data-dir, 'data').")
@click.option("--restart", type=click.Choice([p.value for p in RestartPolicy]),
              default=RestartPolicy.UNLESS_STOPPED.value, show_default=True)
@click.option("--no-tui", is_flag=True, help="Print one line per change instead of a table.")
@click.option("--add-member", "add_name", default=None, metavar="NAME",
              help="Add NAME to the cluster a running supervisor manages in --data-dir "
                   "(learner first, promoted once caught up), then exit.")
def main(members: int | None, config_path: Path | None, data_dir: Path | None, restart: str,
         no_tui: bool, add_name: str | None) -> None:
    """Spawn, watch and restart the members of a local etcdlite cluster.

    \b
    python supervisor.py --members 3
    python supervisor.py --config configs/local-5.toml --data-dir /tmp/e5
    python supervisor.py --members 3 --no-tui --restart no

    Member logs: <data-dir>/<name>/member.log; effective config:
    <data-dir>/cluster.toml. Kill a member (kill -9 PID) to watch the failover.

    Exit codes: 0 stopped by Ctrl-C/SIGTERM, 1 error or every member gone
    (with --restart no), 2 usage. Without a terminal, --no-tui is implied.
    """
    if add_name is not None:
        add_member(data_dir or Path("data"), add_name)
        return
    try:
        cfg = build_config(members=members, config_path=config_path, data_dir=data_dir)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    path = write_config(cfg)
    out = Console(stderr=False, highlight=False)
    sup = Supervisor(cfg, path, RestartPolicy(restart), out, tui=not no_tui and out.is_terminal)
    sup.say(f"cluster {cfg.cluster_id:#x}: {len(cfg.members)} members, data in {cfg.data_dir}")

    def on_signal(signum: int, _frame: object) -> None:
        sup.stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if not sup.run():
        sys.exit(1)


if __name__ == "__main__":
    main()

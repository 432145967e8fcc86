"""The torture run's own cluster: real member processes, started, killed, paused, reaped.

The approach of tests/e2e/harness.py (ipc:// sockets under a short temporary
directory, one process group per member, every process ever started killed in
`close()`), plus what a nemesis needs: SIGSTOP/SIGCONT, a fault control file
per member, members added under new names, and async status queries so the
trio workload is never blocked by a hung member.

Members run `cluster.torture.member_main` (the real member with the torture
hooks) and die with this process (PR_SET_PDEATHSIG), so they are reaped even
when the torture process itself is killed -9. Popen is called from the main
thread only: PDEATHSIG fires when the forking *thread* exits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

from actors.fault_injection import FAULT_FILE_ENV, FaultPlan, write_plan
from cluster.client_async import AsyncClient
from cluster.client_types import Status
from cluster.config import (
    ClusterConfig,
    MemberSpec,
    cluster_id_for,
    dump_toml,
    local_cluster_ipc,
    member_spec,
)
from cluster.errors import EtcdliteError
from cluster.torture.member_main import BUG_ENV, PARENT_ENV

REPO = Path(__file__).resolve().parents[2]


class TortureCluster:
    """Member processes of one run. Use as a context manager: `close()` reaps them all.

    Args:
        members: how many members to start with (m1..mN).
        bug: a deliberate bug to inject in every member (see member_main.BUGS).
        keep: keep the temporary directory (logs, data dirs) after `close()`.
        settings: ClusterConfig overrides (snapshot_count, election_timeout_ms, ...).
    """

    def __init__(self, members: int, *, bug: str = "", keep: bool = False,
                 **settings: Any) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="elt-"))
        self.bug = bug
        self.keep = keep
        cfg = local_cluster_ipc(members, self.root)
        self.config: ClusterConfig = dataclasses.replace(cfg, data_dir=self.root / "data",
                                                         **settings)
        self.config_path = self.root / "cluster.toml"
        self.config_path.write_text(dump_toml(self.config))
        (self.root / "faults").mkdir()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._all_procs: list[subprocess.Popen[bytes]] = []
        self.paused: set[str] = set()
        self.removed: set[str] = set()

    # --- names and paths ----------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """Every member of the current configuration (removed ones excluded)."""
        return [m.name for m in self.config.members if m.name not in self.removed]

    def spec(self, name: str) -> MemberSpec:
        return self.config.member(name)

    def endpoint(self, name: str) -> str:
        return self.spec(name).client_url

    def endpoints(self) -> list[str]:
        return [self.endpoint(n) for n in self.names]

    def member_id(self, name: str) -> int:
        return self.spec(name).member_id

    def name_of(self, member_id: int) -> str | None:
        spec = self.config.member_by_id(member_id)
        return spec.name if spec is not None else None

    def data_dir(self, name: str) -> Path:
        return self.config.data_dir / name

    def fault_path(self, name: str) -> Path:
        return self.root / "faults" / f"{name}.json"

    def log_path(self, name: str) -> Path:
        return self.root / f"{name}.log"

    # --- processes ----------------------------------------------------------------------

    def start(self, name: str) -> None:
        assert not self.is_running(name), f"{name} is already running"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", FAULT_FILE_ENV: str(self.fault_path(name)),
               PARENT_ENV: str(os.getpid())}
        if self.bug:
            env[BUG_ENV] = self.bug
        with open(self.log_path(name), "ab") as logf:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cluster.torture.member_main",
                 "--config", str(self.config_path), "--name", name],
                cwd=REPO, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env)
        self.procs[name] = proc
        self._all_procs.append(proc)
        self.paused.discard(name)

    def start_all(self) -> None:
        for name in self.names:
            if not self.is_running(name):
                self.start(name)

    def is_running(self, name: str) -> bool:
        return name in self.procs and self.procs[name].poll() is None

    def running(self) -> list[str]:
        return [n for n in self.names if self.is_running(n)]

    def kill(self, name: str) -> None:
        """kill -9 (a paused member dies too: SIGKILL needs no SIGCONT)."""
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        self.paused.discard(name)

    def pause(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGSTOP)
        self.paused.add(name)

    def resume(self, name: str) -> None:
        if name in self.paused and self.is_running(name):
            os.killpg(self.procs[name].pid, signal.SIGCONT)
        self.paused.discard(name)

    def set_faults(self, name: str, plan: FaultPlan) -> None:
        write_plan(self.fault_path(name), plan)

    def clear_faults(self) -> None:
        for path in (self.root / "faults").glob("*.json"):
            path.unlink()

    def heal(self) -> None:
        """Every fault off: links healed, paused members resumed, dead members restarted."""
        self.clear_faults()
        for name in list(self.paused):
            self.resume(name)
        self.start_all()

    def add_member_spec(self, name: str) -> MemberSpec:
        """A new member (not started, not yet added through the API); later starts use a
        config that lists it, with initial-cluster-state existing."""
        spec = member_spec(name, f"ipc://{self.root}/{name}-peer.ipc",
                           f"ipc://{self.root}/{name}-client.ipc", token=self.config.token)
        members = (*self.config.members, spec)
        self.config = dataclasses.replace(
            self.config, members=members, state="existing",
            cluster_id=cluster_id_for(self.config.token, [m.member_id for m in members]))
        self.config_path.write_text(dump_toml(self.config))
        return spec

    def close(self) -> None:
        """Kill every process this cluster ever started; remove the directory unless kept."""
        for proc in self._all_procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> TortureCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def logs_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {n}\n{self.log_path(n).read_text(errors='replace')[-chars:]}"
                         for n in self.names if self.log_path(n).exists())

    # --- async queries (never block the workload) ----------------------------------------

    async def status(self, name: str, timeout_s: float = 0.5) -> Status | None:
        if not self.is_running(name) or name in self.paused:
            return None
        try:
            async with AsyncClient([self.endpoint(name)], timeout_s=timeout_s) as c:
                return await c.status()
        except EtcdliteError:
            return None

    async def leader(self) -> str | None:
        """The member every reachable member names as leader, if they agree."""
        statuses = [await self.status(n) for n in self.running() if n not in self.paused]
        leaders = {s.leader for s in statuses if s is not None}
        if len(leaders) != 1 or 0 in leaders:
            return None
        name = self.name_of(leaders.pop())
        return name if name in self.running() else None

    async def wait_for_leader(self, timeout_s: float) -> str | None:
        with trio.move_on_after(timeout_s):
            while True:
                leader = await self.leader()
                if leader is not None:
                    return leader
                await trio.sleep(0.1)
        return None

"""Real member processes for end-to-end tests: started, killed and always reaped.

Each cluster lives under its own short temporary directory (nng ipc:// paths
must fit in a unix socket path), and `ProcessCluster.close()` kills every
process it ever started, so a failing test cannot leak members.
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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cluster.client import Client
from cluster.config import (
    ClusterConfig,
    MemberSpec,
    cluster_id_for,
    dump_toml,
    find_free_ports,
    local_cluster_ipc,
    member_spec,
)
from cluster.errors import EtcdliteError

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], T], timeout_s: float, what: str,
               interval_s: float = 0.05) -> T:
    """Poll `predicate` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (EtcdliteError, OSError) as exc:
            last_exc = exc
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last_exc})")


class ProcessCluster:
    def __init__(self, members: int = 3, *, etcd: bool = False, **overrides: Any) -> None:
        """`etcd=True` gives every member an etcd-compatible endpoint (gRPC + HTTP) on a
        free loopback port; peers and native clients stay on ipc:// either way."""
        self.root = Path(tempfile.mkdtemp(prefix="el-"))
        cfg = local_cluster_ipc(members, self.root)
        if etcd:
            first = find_free_ports(members)
            cfg = dataclasses.replace(cfg, members=tuple(
                dataclasses.replace(m, etcd_client_url=f"http://127.0.0.1:{first + k}")
                for k, m in enumerate(cfg.members)))
        cfg = dataclasses.replace(cfg, data_dir=self.root / "data", **overrides)
        self.config: ClusterConfig = cfg
        self.config_path = self.root / "cluster.toml"
        self.config_path.write_text(dump_toml(cfg))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._all_procs: list[subprocess.Popen[bytes]] = []

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.config.members]

    def endpoint(self, name: str) -> str:
        return next(m.client_url for m in self.config.members if m.name == name)

    def etcd_endpoint(self, name: str) -> str:
        """host:port of a member's etcd endpoint (for etcdctl --endpoints)."""
        url = next(m.etcd_client_url for m in self.config.members if m.name == name)
        assert url, "start the cluster with etcd=True"
        return url.removeprefix("http://")

    def member_id(self, name: str) -> int:
        return next(m.member_id for m in self.config.members if m.name == name)

    def name_of(self, member_id: int) -> str:
        return next(m.name for m in self.config.members if m.member_id == member_id)

    def add_member_spec(self, name: str) -> MemberSpec:
        """Describe a new member (not started, not yet added to the cluster) and make every
        later start use a config that lists it, with initial-cluster-state existing."""
        spec = member_spec(name, f"ipc://{self.root}/{name}-peer.ipc",
                           f"ipc://{self.root}/{name}-client.ipc", token=self.config.token)
        members = (*self.config.members, spec)
        self.config = dataclasses.replace(
            self.config, members=members, state="existing",
            cluster_id=cluster_id_for(self.config.token, [m.member_id for m in members]))
        self.config_path.write_text(dump_toml(self.config))
        return spec

    def log_path(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def start(self, name: str, *, args: list[str] | None = None,
              env: dict[str, str] | None = None) -> None:
        """Start member `name` with the cluster config; or, given `args`/`env`, exactly as
        a user would start one from etcd-style flags and ETCD_* variables (no config)."""
        assert name not in self.procs or self.procs[name].poll() is not None
        argv = (["--config", str(self.config_path), "--name", name] if args is None and
                env is None else list(args or []))
        logf = open(self.log_path(name), "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            [sys.executable, "-m", "cluster.member", *argv],
            cwd=REPO, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        logf.close()
        self.procs[name] = proc
        self._all_procs.append(proc)

    def start_all(self) -> None:
        for name in self.names:
            self.start(name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            proc.wait(timeout=10)

    def stop(self, name: str) -> None:
        self.kill(name, signal.SIGTERM)

    def is_running(self, name: str) -> bool:
        return name in self.procs and self.procs[name].poll() is None

    def client(self, names: list[str] | None = None, timeout_s: float = 5.0) -> Client:
        return Client([self.endpoint(n) for n in (names or self.names)], timeout_s=timeout_s)

    def status(self, name: str) -> Any:
        with Client([self.endpoint(name)], timeout_s=0.5) as c:
            return c.status()

    def leader(self, among: list[str] | None = None) -> str | None:
        """The member that every running member (of `among`) agrees leads, if any."""
        names = [n for n in (among or self.names) if self.is_running(n)]
        statuses = []
        for n in names:
            try:
                statuses.append(self.status(n))
            except EtcdliteError:
                return None
        leaders = {s.leader for s in statuses}
        if len(leaders) != 1 or 0 in leaders:
            return None
        leader = self.name_of(leaders.pop())
        return leader if leader in names else None

    def wait_for_leader(self, timeout_s: float = 10.0, among: list[str] | None = None) -> str:
        return wait_until(lambda: self.leader(among), timeout_s, "a leader")

    def close(self) -> None:
        for proc in self._all_procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ProcessCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def logs(self) -> str:
        """The tail of every member's log, members started outside the config included."""
        return "\n".join(f"--- {path.stem}\n{path.read_text(errors='replace')[-4000:]}"
                         for path in sorted(self.root.glob("*.log")))

"""Real etcd clients for the etcd-compatibility tests: etcdctl 3.4 and friends.

etcdctl is Debian's `etcd-client` package. The project cannot assume a machine
has it, and CI runs exactly the README's test command, so the session fixture
`etcdctl_bin` installs it on first use when it can (root, apt-get present) and
otherwise SKIPS the tests that need it, saying why. Nothing else is
downloaded: Debian's archive is the only source.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.config import find_free_ports
from tests.e2e.harness import ProcessCluster, wait_until

ETCDCTL_PACKAGE = "etcd-client"
APT_TIMEOUT_S = 600


def _apt_install(package: str) -> str | None:
    """Install a Debian package; None on success, else why it could not be."""
    apt = shutil.which("apt-get")
    if apt is None:
        return "apt-get is not available on this machine"
    if os.geteuid() != 0:
        return "installing Debian packages needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in ([apt, "install", "-y", "-q", package],  # works if the lists are fresh
                [apt, "update", "-q"],
                [apt, "install", "-y", "-q", package]):
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                  timeout=APT_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return f"{' '.join(cmd)} timed out"
        if done.returncode == 0 and cmd[1] == "install":
            return None
        if done.returncode != 0 and cmd[1] == "update":
            return f"apt-get update failed: {done.stderr.strip()[-300:]}"
    return f"apt-get install {package} failed"


@pytest.fixture(scope="session")
def etcdctl_bin() -> str:
    """Path of etcdctl (v3 API), installed from Debian if missing; skips if impossible."""
    found = shutil.which("etcdctl")
    if found is None:
        problem = _apt_install(ETCDCTL_PACKAGE)
        found = shutil.which("etcdctl")
        if found is None:
            pytest.skip(f"etcdctl is not installed and could not be: {problem}")
    return found


class Etcdctl:
    """Runs etcdctl against a cluster's etcd endpoints, as a user would."""

    def __init__(self, binary: str, cluster: ProcessCluster) -> None:
        self.binary = binary
        self.cluster = cluster
        self.env = {**os.environ, "ETCDCTL_API": "3"}

    def endpoints(self, names: list[str] | None = None) -> str:
        return ",".join(self.cluster.etcd_endpoint(n) for n in (names or self.cluster.names))

    def argv(self, *args: str, names: list[str] | None = None) -> list[str]:
        return [self.binary, f"--endpoints={self.endpoints(names)}", "--dial-timeout=3s",
                "--command-timeout=10s", *args]

    def run(self, *args: str, names: list[str] | None = None, stdin: str | None = None,
            check: bool = True, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.argv(*args, names=names), env=self.env, input=stdin,
                              capture_output=True, text=True, timeout=timeout_s, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"etcdctl {' '.join(args)} failed ({done.returncode}):\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done

    def out(self, *args: str, **kw: Any) -> str:
        return self.run(*args, **kw).stdout

    def json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self.out(*args, "-w", "json", **kw))

    @contextlib.contextmanager
    def background(self, *args: str, names: list[str] | None = None
                   ) -> Iterator[subprocess.Popen[str]]:
        """A long-running etcdctl (watch, lock, elect) that is always killed afterwards."""
        proc = subprocess.Popen(self.argv(*args, names=names), env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
            _pending.pop(proc.pid, None)


_pending: dict[int, str] = {}


def read_lines(proc: subprocess.Popen[str], count: int, timeout_s: float = 15) -> list[str]:
    """The next `count` lines a background etcdctl prints (fails on timeout); lines read
    past them are kept for the next call."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = _pending.pop(proc.pid, "")
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            *full, buf = buf.split("\n")
            lines.extend(full)
            if len(lines) >= count:
                return lines[:count]
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"got {lines!r} (+{buf!r}), wanted {count} lines")
            ready, _, _ = select.select([fd], [], [], min(left, 0.2))
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    err = proc.stderr.read() if proc.stderr else ""
                    raise AssertionError(f"etcdctl ended: {lines!r} {buf!r} {err}")
                buf += chunk.decode()
    finally:
        rest = "\n".join([*lines[count:], buf]) if len(lines) > count else buf
        _pending[proc.pid] = rest


def etcd_cluster(members: int = 3, **overrides: Any) -> Iterator[ProcessCluster]:
    """A started cluster with etcd endpoints, for module-scoped fixtures."""
    pc = ProcessCluster(members, etcd=True, **overrides)
    try:
        pc.start_all()
        pc.wait_for_leader(20)
        for name in pc.names:
            wait_until(lambda n=name: _accepts(pc.etcd_endpoint(n)), 20, f"{name}'s etcd port")
        yield pc
    except BaseException:
        print(pc.logs())
        raise
    finally:
        pc.close()


def _accepts(endpoint: str) -> bool:
    host, port = endpoint.rsplit(":", 1)
    with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1):
        return True
    return False


def snapshot_digest_ok(path: Path) -> bool:
    """etcd's snapshot layout: the db, then the sha256 of the db (last 32 bytes)."""
    data = path.read_bytes()
    return len(data) % 512 == 32 and hashlib.sha256(data[:-32]).digest() == data[-32:]


@pytest.fixture(scope="session")
def etcd_bin() -> str:
    """Path of a real etcd server, installed from Debian if missing; skips if impossible."""
    found = shutil.which("etcd")
    if found is None:
        problem = _apt_install("etcd-server")
        found = shutil.which("etcd")
        if found is None:
            pytest.skip(f"etcd is not installed and could not be: {problem}")
    return found


@contextlib.contextmanager
def real_etcd(binary: str, data_dir: Path, log: Path) -> Iterator[str]:
    """A single-member etcd on free loopback ports; its client endpoint. Always stopped."""
    port = find_free_ports(2, start=41_000)
    client, peer = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"
    argv = [binary, "--name", "default", "--data-dir", str(data_dir),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"default={peer}"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        endpoint = f"127.0.0.1:{port}"
        wait_until(lambda: proc.poll() is not None or _accepts(endpoint), 20,
                   "the real etcd to listen")
        assert proc.poll() is None, log.read_text()[-2000:]
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

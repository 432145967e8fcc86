"""One etcdlite member process: `python -m cluster.member --config FILE --name NAME`.

Opens the member's SQLite files, rebuilds the Raft core from its WAL, and
runs the actors (ticker, transport, raft node, applier, read barrier, client
server) under one nursery. Any actor crashing takes the whole member down
loudly; restarting is the supervisor's job, not ours.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import signal
import sys
from pathlib import Path
from typing import Any

import click
import trio

from actors.applier import Applier
from actors.client_server import ClientServer
from actors.events import RaftInput
from actors.lessor import lessor_for_member
from actors.raft_node import ApplyBatch, RaftNode
from actors.read_barrier import ReadBarrier
from actors.snapshot_transfer import SnapshotReceiver, SnapshotSender
from actors.ticker import Ticker
from actors.transport import PeerTransport
from actors.wait import AppliedIndex, WaitRegistry
from actors.watch import WatchHub
from cluster import kv, limits
from cluster.conf_change import ConfChange
from cluster.config import MemberConfig, resolve_member_config
from cluster.messages import NONE, ConfState, EntryType, Role
from cluster.raft import Raft, RaftConfig
from storage.mvcc import MvccStore
from storage.snapshots import SnapshotStore
from storage.wal import SqliteWal

log = logging.getLogger("etcdlite.member")

VERSION = "0.1.0"


class IdentityMismatchError(RuntimeError):
    """The data dir belongs to another member or cluster: refuse rather than corrupt it."""


class Member:
    """Owns a member's storage and wiring; the actors do the work."""

    def __init__(self, cfg: MemberConfig) -> None:
        self.cfg = cfg
        self.name = cfg.me.name
        self.id = cfg.me.member_id
        self.cluster_id = cfg.cluster.cluster_id
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.wal = SqliteWal(cfg.data_dir / "wal.db")
        self._check_identity()
        self.mvcc = MvccStore(cfg.data_dir / "state.db")
        self.snapshots = SnapshotStore(cfg.data_dir / "snapshots")
        boot = self.wal.load()
        conf = boot.snapshot_meta.conf
        if not conf.voters:
            conf = ConfState(voters=frozenset(m.member_id for m in cfg.cluster.members))
        for e in boot.entries:  # membership changes already committed before the crash
            if e.type is EntryType.CONF_CHANGE and e.index <= boot.hard_state.commit:
                conf = ConfChange.from_bytes(e.data).apply_to(conf)
        c = cfg.cluster
        election_ticks = max(2, c.election_timeout_ms // c.heartbeat_interval_ms)
        self.raft = Raft(
            RaftConfig(id=self.id, election_ticks=election_ticks, heartbeat_ticks=1),
            hard_state=boot.hard_state, snapshot_meta=boot.snapshot_meta, entries=boot.entries,
            conf=conf, rng=random.Random(os.urandom(16)),
            applied=self.mvcc.applied_index)
        self.peer_urls = {m.member_id: m.peer_url for m in cfg.cluster.members}
        self.node: RaftNode | None = None
        self._rng = random.Random(os.urandom(16))
        log.info("%s starting: id=%x cluster=%x term=%d commit=%d applied=%d revision=%d",
                 self.name, self.id, self.cluster_id, boot.hard_state.term,
                 boot.hard_state.commit, self.mvcc.applied_index, self.mvcc.revision)

    def _check_identity(self) -> None:
        for key, want in (("member_id", str(self.id)), ("cluster_id", str(self.cluster_id))):
            have = self.wal.get_meta(key)
            if have is None:
                self.wal.set_meta(key, want)
            elif have != want:
                raise IdentityMismatchError(
                    f"{self.cfg.data_dir} holds {key} {have}, this member is {want}")

    def close(self) -> None:
        self.mvcc.close()
        self.wal.close()

    # --- accessors the actors use ----------------------------------------------------

    def leader_id(self) -> int:
        return self.node.view.leader if self.node is not None else NONE

    def client_url_of(self, member_id: int) -> str | None:
        """A member's native client URL (for forwarding to the leader), None if unknown."""
        spec = self.cfg.cluster.member_by_id(member_id)
        return spec.client_url if spec is not None else None

    def header(self, revision: int = 0) -> dict[str, int]:
        term = self.node.view.term if self.node is not None else self.raft.term
        return {"cluster_id": self.cluster_id, "member_id": self.id,
                "revision": revision or self.mvcc.revision, "raft_term": term}

    def prepare_proposal(self, request: Any) -> Any:
        """Fill in what must be decided before the log (apply has to be deterministic)."""
        if isinstance(request, kv.LeaseGrantRequest) and request.id == 0:
            request = dataclasses.replace(request, id=self._rng.getrandbits(62) + 1)
        return request

    async def status(self, _body: dict[str, Any]) -> dict[str, Any]:
        view = self.node.view if self.node is not None else None
        role = view.role if view is not None else Role.FOLLOWER
        voters = view.conf.voters if view is not None else frozenset()
        learners = view.conf.learners if view is not None else frozenset()
        return {
            "header": self.header(), "member_id": self.id, "name": self.name,
            "role": role.value, "leader": self.leader_id(),
            "term": view.term if view else 0,
            "commit_index": view.commit_index if view else 0,
            "applied_index": self.mvcc.applied_index, "revision": self.mvcc.revision,
            "compact_revision": self.mvcc.compact_revision,
            "db_size": self.mvcc.db_size_bytes, "version": VERSION,
            "voters": sorted(voters), "is_learner": self.id in learners,
        }

    async def member_list(self, _body: dict[str, Any]) -> dict[str, Any]:
        conf = self.node.view.conf if self.node is not None else self.raft.conf
        members = []
        for m in self.cfg.cluster.members:
            if m.member_id in conf.voters or m.member_id in conf.learners:
                members.append({"id": m.member_id, "name": m.name, "peer_urls": [m.peer_url],
                                "client_urls": [m.client_url],
                                "is_learner": m.member_id in conf.learners})
        return {"header": self.header(), "members": members}

    def _on_conf_change(self, conf: ConfState, change: ConfChange) -> None:
        log.info("%s membership now voters=%s learners=%s", self.name,
                 sorted(f"{v:x}" for v in conf.voters), sorted(f"{v:x}" for v in conf.learners))

    # --- running ----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        c = self.cfg.cluster
        heartbeat_s = c.heartbeat_interval_ms / 1000
        election_s = c.election_timeout_ms / 1000
        inbox_send, inbox_recv = trio.open_memory_channel[RaftInput](limits.raft_inbox_buffer_max)
        apply_send, apply_recv = trio.open_memory_channel[ApplyBatch](limits.apply_buffer_max)
        waits = WaitRegistry()
        applied = AppliedIndex(self.mvcc.applied_index)
        peers = {pid: url for pid, url in self.peer_urls.items() if pid != self.id}
        receiver = SnapshotReceiver(self.id, self.snapshots)
        sender = SnapshotSender(self.id, self.snapshots, self.peer_urls, inbox_send.clone())
        transport = PeerTransport(self.id, self.cfg.me.peer_url, peers, inbox_send.clone(),
                                  receiver)
        self.node = RaftNode(self.raft, self.wal, transport, inbox_recv, apply_send, waits,
                             self.name, self._on_conf_change, self.snapshots, sender,
                             log_tail_entries=min(limits.log_tail_entries, c.snapshot_count))
        applier = Applier(self.mvcc, apply_recv, waits, applied, self.name, self.snapshots,
                          c.snapshot_count, inbox_send.clone())
        barrier = ReadBarrier(inbox_send.clone(), waits, applied, round_timeout_s=election_s,
                              read_timeout_s=election_s * 3,
                              has_leader=lambda: self.leader_id() != NONE)
        server = ClientServer(url=self.cfg.me.client_url, member=self,
                              inbox=inbox_send.clone(), waits=waits, barrier=barrier,
                              max_request_bytes=c.max_request_bytes, max_txn_ops=c.max_txn_ops,
                              request_timeout_s=max(2.0, election_s * 3))
        server.add_operation("status", self.status)
        server.add_operation("member_list", self.member_list)
        lessor = lessor_for_member(self, server, barrier, max(2.0, election_s * 3))
        watch_hub = WatchHub(self, applied, self.name)
        server.add_operation("watch_poll", watch_hub.poll)
        ticker = Ticker(heartbeat_s, inbox_send.clone())
        async with inbox_send, trio.open_nursery() as nursery:
            await nursery.start(sender.run)
            await nursery.start(applier.run)
            await nursery.start(self.node.run)
            await nursery.start(transport.run)
            await nursery.start(barrier.run)
            await nursery.start(watch_hub.run)
            await nursery.start(server.run)
            await nursery.start(ticker.run)
            await nursery.start(lessor.run)
            log.info("%s serving clients on %s, peers on %s", self.name, self.cfg.me.client_url,
                     self.cfg.me.peer_url)
            task_status.started()


async def _serve(cfg: MemberConfig) -> None:
    member = Member(cfg)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(member.run)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    log.info("%s stopping on %s", member.name, signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break
    finally:
        member.close()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Cluster TOML (see configs/).")
@click.option("--name", default=None, help="This member's name in the cluster config.")
@click.option("--data-dir", default=None)
@click.option("--initial-cluster", default=None, help="name=tcp://host:port,...")
@click.option("--initial-cluster-state", default=None, type=click.Choice(["new", "existing"]))
@click.option("--initial-cluster-token", default=None)
@click.option("--listen-client-urls", default=None, help="Native nng client URL.")
@click.option("--listen-peer-urls", default=None)
@click.option("--heartbeat-interval", type=int, default=None, help="ms")
@click.option("--election-timeout", type=int, default=None, help="ms")
@click.option("--snapshot-count", type=int, default=None)
@click.option("--max-request-bytes", type=int, default=None)
@click.option("--quota-backend-bytes", type=int, default=None)
@click.option("--max-txn-ops", type=int, default=None)
@click.option("--auto-compaction-mode", default=None)
@click.option("--auto-compaction-retention", default=None)
def main(config_path: Path | None, name: str | None, **flags: Any) -> None:
    """Run one etcdlite member (normally started by supervisor.py)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname).1s %(name)s: %(message)s")
    given = {k.replace("_", "-"): v for k, v in flags.items() if v is not None}
    cfg = resolve_member_config(config_path=config_path, name=name, flags=given,
                                env=os.environ)
    trio.run(_serve, cfg)


if __name__ == "__main__":
    main()

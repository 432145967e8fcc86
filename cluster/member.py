"""One etcdlite member process: `python -m cluster.member --config FILE --name NAME`.

Opens the member's SQLite files, rebuilds the Raft core from its WAL, and
runs the actors (ticker, transport, raft node, applier, read barrier, client
server) under one nursery. Any actor crashing takes the whole member down
loudly; restarting is the supervisor's job, not ours. A member joining an
existing cluster with an empty data dir first asks the cluster which id it has
(cluster/join.py: etcdctl-added members are known by peer URL, not by name).
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
from actors.compactor import compactor_for_member
from actors.events import RaftInput
from actors.lessor import lessor_for_member
from actors.maintenance import Maintenance
from actors.member_publish import AttributePublisher
from actors.membership import Membership
from actors.raft_node import ApplyBatch, RaftNode
from actors.read_barrier import ReadBarrier
from actors.snapshot_server import SnapshotServer, work_dir_for
from actors.snapshot_transfer import SnapshotReceiver, SnapshotSender
from actors.ticker import Ticker
from actors.transport import PeerTransport
from actors.wait import AppliedIndex, WaitRegistry
from actors.watch import WatchHub
from cluster import kv, limits
from cluster.conf_change import ConfChange, ConfChangeType
from cluster.config import MemberConfig, resolve_member_config
from cluster.errors import EtcdliteError
from cluster.join import (
    META_MEMBER_ID,
    META_MEMBER_NAME,
    Identity,
    IdentityMismatchError,
    JoinError,
    advertised,
    check_stored,
    learn_identity,
    read_stored,
)
from cluster.messages import NONE, ConfState, Entry, EntryType, HardState, Role
from cluster.raft import Raft, RaftConfig
from storage.members import conf_change_context, member_change_from
from storage.mvcc import MvccStore
from storage.protocols import BootState
from storage.snapshots import SnapshotStore
from storage.wal import SqliteWal

log = logging.getLogger("etcdlite.member")

VERSION = "0.1.0"


class Member:
    """Owns a member's storage and wiring; the actors do the work."""

    def __init__(self, cfg: MemberConfig, identity: Identity | None = None) -> None:
        """`identity`: what `learn_identity` found for a blank data dir joining an
        existing cluster; None = the data dir's own, else the id the config derives."""
        self.cfg = cfg
        self.name = cfg.me.name
        self._cluster_id = 0
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.wal = SqliteWal(cfg.data_dir / "wal.db")
        self.identity = self._check_identity(identity)
        self.id = self.identity.member_id
        self.mvcc = MvccStore(cfg.data_dir / "state.db")
        self.snapshots = SnapshotStore(cfg.data_dir / "snapshots")
        boot = self.wal.load()
        if self._is_blank(boot) and cfg.cluster.state == "new":
            self.wal.save(*self._bootstrap_entries())
            boot = self.wal.load()
        if self.mvcc.applied_index < boot.snapshot_meta.index:
            self._restore_state_from_snapshot(boot.snapshot_meta.index)
        # Membership: what the applied state knows, then committed changes still in the log.
        conf = boot.snapshot_meta.conf
        self.peer_urls: dict[int, str] = {}
        for m in self.mvcc.members():
            self.peer_urls[m.id] = m.peer_urls[0]
        if not self.peer_urls:  # joining: as the cluster told us; bootstrapping: the config
            self.peer_urls = dict(self.identity.peer_urls) or {
                m.member_id: m.peer_url for m in cfg.cluster.members if m.name != self.name}
            self.peer_urls[self.id] = advertised(cfg).peer_url
        for e in boot.entries:
            if e.type is EntryType.CONF_CHANGE and e.index <= boot.hard_state.commit:
                change = ConfChange.from_bytes(e.data)
                conf = change.apply_to(conf)
                self._track_peer(change)
        c = cfg.cluster
        election_ticks = max(2, c.election_timeout_ms // c.heartbeat_interval_ms)
        self.raft = Raft(
            RaftConfig(id=self.id, election_ticks=election_ticks, heartbeat_ticks=1),
            hard_state=boot.hard_state, snapshot_meta=boot.snapshot_meta, entries=boot.entries,
            conf=conf, rng=random.Random(os.urandom(16)),
            applied=self.mvcc.applied_index)
        self.node: RaftNode | None = None
        self.transport: PeerTransport | None = None
        self.membership: Membership | None = None
        self.maintenance: Maintenance | None = None
        self._rng = random.Random(os.urandom(16))
        log.info("%s starting: id=%x cluster=%x term=%d commit=%d applied=%d revision=%d",
                 self.name, self.id, self.cluster_id, boot.hard_state.term,
                 boot.hard_state.commit, self.mvcc.applied_index, self.mvcc.revision)

    def _restore_state_from_snapshot(self, index: int) -> None:
        """state.db lost applies the log no longer holds (e.g. a power cut): reload the
        snapshot the log was cut at, then Raft replays the tail."""
        snap = self.snapshots.get(index)
        if snap is None:
            raise RuntimeError(f"state.db is behind the log's snapshot {index} and the "
                               "snapshot file is missing: this data dir cannot be recovered")
        SnapshotStore.verify(snap)
        self.mvcc.replace_from(snap.path)
        log.warning("%s reloaded snapshot %d: state.db had fallen behind the log",
                    self.name, index)

    @property
    def cluster_id(self) -> int:
        """The id the bootstrap entries recorded; until they are applied, the one the
        cluster reported while we joined, else the configured one."""
        if not self._cluster_id:
            self._cluster_id = self.mvcc.cluster_id()
        return self._cluster_id or self.identity.cluster_id or self.cfg.cluster.cluster_id

    @staticmethod
    def _is_blank(boot: BootState) -> bool:
        return (boot.hard_state == HardState() and not boot.entries
                and boot.snapshot_meta.index == 0)

    def _bootstrap_entries(self) -> tuple[HardState, list[Entry]]:
        """The first log of a new cluster: one ADD_NODE per initial member, committed.

        Every initial member writes the same entries (same order, term 1), so their
        logs match from the start, and membership is in the log and in snapshots
        like any later change (etcd bootstraps the same way).
        """
        members = sorted(self.cfg.cluster.members, key=lambda m: m.member_id)
        entries = [
            Entry(i + 1, 1, EntryType.CONF_CHANGE, ConfChange(
                ConfChangeType.ADD_NODE, m.member_id, conf_change_context(
                    name=m.name, peer_urls=[m.peer_url], client_urls=[m.client_url],
                    cluster_id=self.cfg.cluster.cluster_id,
                    etcd_client_urls=[m.etcd_client_url] if m.etcd_client_url else None,
                    )).to_bytes())
            for i, m in enumerate(members)]
        return HardState(term=1, vote=0, commit=len(entries)), entries

    def _track_peer(self, change: ConfChange) -> None:
        try:
            mc = member_change_from(change)
        except EtcdliteError:
            return
        if change.type is ConfChangeType.REMOVE_NODE:
            self.peer_urls.pop(change.node_id, None)
        elif mc.peer_urls:
            self.peer_urls[change.node_id] = mc.peer_urls[0]

    def _check_identity(self, learned: Identity | None) -> Identity:
        """The data dir's recorded id wins; a blank dir records the learned or derived one."""
        derived = self.cfg.me.member_id
        have = self.wal.get_meta(META_MEMBER_ID)
        if have is not None:
            try:
                stored = check_stored(int(have), self.wal.get_meta(META_MEMBER_NAME),
                                      name=self.name, derived_id=derived)
            except IdentityMismatchError as exc:
                raise IdentityMismatchError(f"{self.cfg.data_dir}: {exc}") from None
            assert learned is None or learned.member_id == stored.member_id
            return stored
        identity = learned or Identity(derived)
        self.wal.set_meta(META_MEMBER_ID, str(identity.member_id))
        if identity.adopted:
            self.wal.set_meta(META_MEMBER_NAME, self.name)
        return identity

    def close(self) -> None:
        self.mvcc.close()
        self.wal.close()

    # --- accessors the actors use ----------------------------------------------------

    def leader_id(self) -> int:
        return self.node.view.leader if self.node is not None else NONE

    def client_url_of(self, member_id: int) -> str | None:
        """A member's native client URL (for forwarding to the leader), None if unknown:
        the applied membership first (members added at runtime), then the config file."""
        for m in self.mvcc.members():
            if m.id == member_id and m.client_urls:
                return m.client_urls[0]
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
        if self.maintenance is not None:
            self.maintenance.check_quota(request)  # raises no_space over the quota
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
            "db_size_in_use": self.mvcc.db_size_in_use_bytes,
            "errors": self.maintenance.errors() if self.maintenance is not None else [],
        }

    def _on_conf_change(self, conf: ConfState, change: ConfChange) -> None:
        self._track_peer(change)
        members = conf.voters | conf.learners
        if self.transport is not None:
            self.transport.update_peers({pid: url for pid, url in self.peer_urls.items()
                                         if pid in members and pid != self.id})
        log.info("%s membership now voters=%s learners=%s", self.name,
                 sorted(f"{v:x}" for v in conf.voters), sorted(f"{v:x}" for v in conf.learners))
        if self.id not in members and self.raft.log.applied > 0:
            log.info("%s has been removed from the cluster", self.name)

    def _attributes(self) -> kv.MemberAttrRequest:
        """What this member publishes about itself: the URLs others reach it at."""
        me = advertised(self.cfg)
        return kv.MemberAttrRequest(
            member_id=self.id, name=self.name, client_urls=(me.client_url,),
            etcd_client_urls=(me.etcd_client_url,) if me.etcd_client_url else ())

    async def hand_over_leadership(self) -> None:
        """A stopping leader passes leadership on, so the cluster skips an election timeout."""
        if self.node is None or self.membership is None or self.node.view.role is not Role.LEADER:
            return
        target = self.membership.best_transferee()
        if target == NONE:
            return
        try:
            await self.membership.transfer_to(target)
            log.info("%s handed leadership to %x before stopping", self.name, target)
        except EtcdliteError as exc:
            log.warning("%s could not hand over leadership: %s", self.name, exc.message)

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
        self.transport = transport
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
                              request_timeout_s=max(2.0, election_s * 3),
                              token_ttl_s=c.auth_token_ttl_s)
        server.add_operation("status", self.status)
        node = self.node
        self.membership = Membership(
            server=server, mvcc=self.mvcc, view=lambda: node.view,
            wait_view_change=node.wait_view_change, header=self.header,
            inbox=inbox_send.clone(), token=c.token, transfer_timeout_s=election_s * 2)
        self.membership.install()
        lessor = lessor_for_member(self, server, barrier, max(2.0, election_s * 3))
        watch_hub = WatchHub(self, applied, self.name)
        self.maintenance = Maintenance(
            member=self, propose=server.propose, read_barrier=barrier.wait,
            apply_lock=applier.exclusive, quota_bytes=c.quota_backend_bytes,
            health_timeout_s=max(2.0, election_s * 3))
        self.maintenance.register(server)
        snapshot_server = SnapshotServer(state_path=self.mvcc.path, header=self.header,
                                         work_dir=work_dir_for(self.cfg.data_dir))
        snapshot_server.register(server)
        compactor = compactor_for_member(self, server.propose)
        publisher = AttributePublisher(
            attrs=self._attributes(), members=self.mvcc.members, applied=applied,
            propose_entry=server.propose_entry, retry_s=election_s)
        server.add_operation("watch_poll", watch_hub.poll)
        ticker = Ticker(heartbeat_s, inbox_send.clone())
        # etcd's own API (gRPC + HTTP/JSON) as a translation onto the native ops above.
        etcd_api = None
        if self.cfg.me.etcd_client_url:
            # Imported here: grpcio and aiohttp cost ~0.3 s to load, paid only if served.
            from actors.etcd_gateway import EtcdGateway

            etcd_api = EtcdGateway(
                member=self, dispatch=server._dispatch, url=self.cfg.me.etcd_client_url,
                max_request_bytes=c.max_request_bytes, quota_bytes=c.quota_backend_bytes,
                request_timeout_s=max(2.0, election_s * 3), version=VERSION)
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
            await nursery.start(self.maintenance.run)
            await nursery.start(snapshot_server.run)
            await nursery.start(publisher.run)
            if compactor is not None:
                await nursery.start(compactor.run)
            if etcd_api is not None:
                await nursery.start(etcd_api.run)
            log.info("%s serving clients on %s, peers on %s", self.name, self.cfg.me.client_url,
                     self.cfg.me.peer_url)
            task_status.started()


async def _serve(cfg: MemberConfig) -> None:
    learned = None
    if cfg.cluster.state == "existing" and read_stored(cfg.data_dir) is None:
        learned = await learn_identity(cfg)
    member = Member(cfg, learned)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(member.run)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    log.info("%s stopping on %s", member.name, signal.Signals(signum).name)
                    await member.hand_over_leadership()
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
@click.option("--auth-token-ttl", type=int, default=None, help="s (etcd's default: 300)")
@click.option("--auto-compaction-mode", default=None)
@click.option("--auto-compaction-retention", default=None)
def main(config_path: Path | None, name: str | None, **flags: Any) -> None:
    """Run one etcdlite member (normally started by supervisor.py)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname).1s %(name)s: %(message)s")
    given = {k.replace("_", "-"): v for k, v in flags.items() if v is not None}
    cfg = resolve_member_config(config_path=config_path, name=name, flags=given,
                                env=os.environ)
    try:
        trio.run(_serve, cfg)
    except (JoinError, IdentityMismatchError) as exc:
        # Raised before any actor starts: a clear line, not a traceback.
        log.error("%s cannot start: %s", cfg.me.name, exc)
        sys.exit(1)


if __name__ == "__main__":
    main()

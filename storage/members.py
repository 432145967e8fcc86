"""Cluster membership as applied state: part of state.db, hence of every snapshot.

Membership changes travel as CONF_CHANGE log entries; Raft adopts the new
voter/learner sets when it hands the entry out, and the applier records the
member's attributes (name, URLs) here in the same transaction as the applied
index. A follower restored from a snapshot thus learns every member's
address, and a removed id is remembered so it can never rejoin.

A member added through etcd's API (`etcdctl member add`) has no name yet: it is
"unstarted" until its process joins and publishes its name and client URLs with
a `MemberAttrRequest` (an ordinary log entry, as etcd's attribute update is),
which `apply_member_attributes` records here.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from cluster import codec
from cluster.conf_change import ConfChange, ConfChangeType
from cluster.errors import BadRequestError, MemberExistsError, MemberNotFoundError
from cluster.kv_types import MemberAttrRequest

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS members (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL, peer_urls TEXT NOT NULL,
        client_urls TEXT NOT NULL, is_learner INTEGER NOT NULL,
        etcd_client_urls TEXT NOT NULL DEFAULT '[]')""",
    "CREATE TABLE IF NOT EXISTS removed_members (id INTEGER PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS cluster_info (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)


@dataclass(frozen=True, slots=True)
class MemberRecord:
    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]  # native nng client endpoints
    is_learner: bool
    etcd_client_urls: tuple[str, ...] = ()  # etcd-compatible endpoints (http://)

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "peer_urls": list(self.peer_urls),
                "client_urls": list(self.client_urls), "is_learner": self.is_learner,
                "etcd_client_urls": list(self.etcd_client_urls)}


@dataclass(frozen=True, slots=True)
class MemberChange:
    """A committed membership change as the store applies it (decoded from a ConfChange)."""

    type: ConfChangeType
    id: int
    name: str = ""
    peer_urls: tuple[str, ...] = ()
    client_urls: tuple[str, ...] = ()
    request_id: int = 0
    cluster_id: int = 0  # set by the bootstrap entries of a new cluster only
    etcd_client_urls: tuple[str, ...] = ()


def conf_change_context(*, name: str, peer_urls: list[str], client_urls: list[str],
                        request_id: int = 0, cluster_id: int = 0,
                        etcd_client_urls: list[str] | None = None) -> bytes:
    body: dict[str, Any] = {"name": name, "peer_urls": peer_urls, "client_urls": client_urls,
                            "rid": request_id}
    if cluster_id:
        body["cluster_id"] = cluster_id
    if etcd_client_urls:  # absent when empty: older contexts keep their exact bytes
        body["etcd_client_urls"] = etcd_client_urls
    return codec.dumps(body)


def member_change_from(cc: ConfChange) -> MemberChange:
    """Decode the attributes a ConfChange carries; raises BadRequestError if malformed."""
    ctx: Any = codec.loads(cc.context) if cc.context else {}
    if not isinstance(ctx, dict):
        raise BadRequestError("malformed conf change context")
    name, peers, clients, rid = (ctx.get("name", ""), ctx.get("peer_urls", []),
                                 ctx.get("client_urls", []), ctx.get("rid", 0))
    cluster_id, etcd = ctx.get("cluster_id", 0), ctx.get("etcd_client_urls", [])
    if not (isinstance(name, str) and isinstance(rid, int) and isinstance(cluster_id, int)
            and isinstance(peers, list) and isinstance(clients, list)
            and isinstance(etcd, list)
            and all(isinstance(u, str) for u in [*peers, *clients, *etcd])):
        raise BadRequestError("malformed conf change context")
    return MemberChange(cc.type, cc.node_id, name, tuple(peers), tuple(clients), rid,
                        cluster_id, tuple(etcd))


def cluster_id_of(conn: sqlite3.Connection) -> int:
    """The cluster id recorded by the bootstrap entries (0 before they are applied)."""
    row = conn.execute("SELECT value FROM cluster_info WHERE name = 'cluster_id'").fetchone()
    return int(row[0]) if row else 0


def ensure_members_schema(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA:
        conn.execute(statement)
    # state.db files (and snapshots) written before published attributes existed.
    columns = {row[1] for row in conn.execute("PRAGMA table_info(members)")}
    if "etcd_client_urls" not in columns:
        conn.execute("ALTER TABLE members ADD COLUMN etcd_client_urls TEXT NOT NULL "
                     "DEFAULT '[]'")


def list_members(conn: sqlite3.Connection) -> list[MemberRecord]:
    rows = conn.execute("SELECT id, name, peer_urls, client_urls, is_learner, "
                        "etcd_client_urls FROM members ORDER BY id").fetchall()
    return [MemberRecord(int(r[0]), r[1], tuple(json.loads(r[2])), tuple(json.loads(r[3])),
                         bool(r[4]), tuple(json.loads(r[5]))) for r in rows]


def is_removed(conn: sqlite3.Connection, member_id: int) -> bool:
    return conn.execute("SELECT 1 FROM removed_members WHERE id = ?",
                        (member_id,)).fetchone() is not None


def apply_member_change(conn: sqlite3.Connection, ch: MemberChange) -> list[MemberRecord]:
    """Record one committed change inside the caller's transaction; returns the new list.

    Raises the typed error of a change that is void (e.g. re-adding a removed id);
    Raft applies the same void change identically everywhere, so all agree.
    """
    if ch.cluster_id:
        conn.execute("INSERT OR IGNORE INTO cluster_info VALUES ('cluster_id', ?)",
                     (ch.cluster_id,))
    exists = conn.execute("SELECT 1 FROM members WHERE id = ?", (ch.id,)).fetchone()
    if ch.type in (ConfChangeType.ADD_NODE, ConfChangeType.ADD_LEARNER):
        if is_removed(conn, ch.id):
            raise MemberExistsError(f"member {ch.id:x} was removed and cannot rejoin")
        learner = ch.type is ConfChangeType.ADD_LEARNER
        if exists and not learner:  # promotion of a learner
            conn.execute("UPDATE members SET is_learner = 0 WHERE id = ?", (ch.id,))
        elif exists:
            raise MemberExistsError(f"member {ch.id:x} already exists")
        else:
            conn.execute("INSERT INTO members (id, name, peer_urls, client_urls, is_learner, "
                         "etcd_client_urls) VALUES (?, ?, ?, ?, ?, ?)",
                         (ch.id, ch.name, json.dumps(list(ch.peer_urls)),
                          json.dumps(list(ch.client_urls)), int(learner),
                          json.dumps(list(ch.etcd_client_urls))))
    elif ch.type is ConfChangeType.REMOVE_NODE:
        if not exists:
            raise MemberNotFoundError(f"member {ch.id:x} not found")
        conn.execute("DELETE FROM members WHERE id = ?", (ch.id,))
        conn.execute("INSERT OR IGNORE INTO removed_members VALUES (?)", (ch.id,))
    elif ch.type is ConfChangeType.UPDATE_NODE:
        if not exists:
            raise MemberNotFoundError(f"member {ch.id:x} not found")
        conn.execute("UPDATE members SET peer_urls = ? WHERE id = ?",
                     (json.dumps(list(ch.peer_urls)), ch.id))
    return list_members(conn)


def apply_member_attributes(conn: sqlite3.Connection, req: MemberAttrRequest
                            ) -> list[MemberRecord]:
    """Record the name and client URLs a member published about itself (etcd's
    attribute update), inside the caller's apply transaction; returns the new list.

    Raises:
        MemberNotFoundError: the member was removed before the entry committed; the
            entry is then void on every member alike.
    """
    updated = conn.execute(
        "UPDATE members SET name = ?, client_urls = ?, etcd_client_urls = ? WHERE id = ?",
        (req.name, json.dumps(list(req.client_urls)), json.dumps(list(req.etcd_client_urls)),
         req.member_id)).rowcount
    if not updated:
        raise MemberNotFoundError(f"member {req.member_id:x} not found")
    return list_members(conn)

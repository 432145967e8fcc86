"""Exactly-once application of client proposals, even when a proposal is duplicated.

A follower forwards a client's write to the leader as a Raft MsgProp; if that
message is delivered twice (a retransmitting or duplicating network), the
leader appends the proposal twice. Every proposal carries a request id, so the
store remembers the ids it applied (in state.db, inside the apply transaction,
hence in snapshots and identical on every member) and applies a repeated id
as a no-op. Ids are remembered for the last `request_ids_window` log indexes:
a duplicate arrives within moments of the original, never that far apart.
"""

from __future__ import annotations

import sqlite3

request_ids_window = 200_000
"""Log indexes for which applied request ids are remembered."""

_SCHEMA = ("CREATE TABLE IF NOT EXISTS applied_requests "
           "(rid INTEGER PRIMARY KEY, log_index INTEGER NOT NULL)",
           "CREATE INDEX IF NOT EXISTS applied_requests_by_index "
           "ON applied_requests (log_index)")


def ensure_request_ids_schema(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA:
        conn.execute(statement)


def first_application(conn: sqlite3.Connection, rid: int, index: int) -> bool:
    """Record `rid` as applied at `index`; False if it was applied before (a duplicate)."""
    cur = conn.execute("INSERT OR IGNORE INTO applied_requests VALUES (?, ?)", (rid, index))
    return cur.rowcount == 1


def forget_requests_before(conn: sqlite3.Connection, index: int) -> None:
    if index > 0:
        conn.execute("DELETE FROM applied_requests WHERE log_index < ?", (index,))

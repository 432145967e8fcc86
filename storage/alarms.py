"""The `alarms` table of state.db and the write cap that NOSPACE puts on the store.

Alarms are applied state (see `cluster.alarm_types`): they change only inside
the apply transaction (`apply_alarm`, called by `BatchWriter`), in log order,
so every member agrees on them at every Raft index. While any NOSPACE alarm is
active the store refuses, at apply time, every request that would make it grow
(`grows_store`: put, txn with a put, lease grant), exactly like etcd's capped
applier; reads, deletes, compaction and lease revokes still go through, which
is what lets an operator free space and then disarm.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cluster.alarm_types import AlarmAction, AlarmMember, AlarmRequest, AlarmResult, AlarmType
from cluster.kv_types import LeaseGrantRequest, PutRequest, Request, TxnRequest

NO_SPACE_MESSAGE = "etcdserver: mvcc: database space exceeded"

ALARMS_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS alarms ("
    " member_id INTEGER NOT NULL, alarm TEXT NOT NULL, PRIMARY KEY (member_id, alarm)"
    ") WITHOUT ROWID"
)

_reader_busy_timeout_ms = 5000


def grows_store(req: Request | AlarmRequest) -> bool:
    """True for requests a NOSPACE alarm refuses: the ones that can add data.

    A txn counts when any branch (nested ones included) holds a put, whichever
    branch would run: etcd decides on the request's cost, not its outcome.
    """
    if isinstance(req, PutRequest | LeaseGrantRequest):
        return True
    if isinstance(req, TxnRequest):
        return any(grows_store(op) for op in (*req.success, *req.failure))
    return False


def list_alarms(conn: sqlite3.Connection) -> tuple[AlarmMember, ...]:
    rows = conn.execute("SELECT member_id, alarm FROM alarms ORDER BY member_id, alarm")
    return tuple(AlarmMember(int(m), AlarmType(a)) for m, a in rows)


def nospace_active(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM alarms WHERE alarm = ? LIMIT 1",
                       (AlarmType.NOSPACE.value,)).fetchone()
    return row is not None


def apply_alarm(conn: sqlite3.Connection, req: AlarmRequest) -> AlarmResult:
    """Apply one alarm request inside the open apply transaction.

    ACTIVATE of an alarm that is already active changes nothing and reports
    nothing, so two members racing to raise NOSPACE is harmless. GET should not
    reach the log, but answering it here keeps a stray one deterministic.
    """
    if req.action is AlarmAction.ACTIVATE:
        if req.alarm is AlarmType.NONE or req.member_id <= 0:
            return AlarmResult()  # nothing to record; refused before proposing anyway
        added = conn.execute("INSERT OR IGNORE INTO alarms (member_id, alarm) VALUES (?, ?)",
                             (req.member_id, req.alarm.value)).rowcount
        return AlarmResult(alarms=(AlarmMember(req.member_id, req.alarm),) if added else ())
    if req.action is AlarmAction.DEACTIVATE:
        cond, params = _match(req)
        gone = tuple(AlarmMember(int(m), AlarmType(a)) for m, a in conn.execute(
            f"SELECT member_id, alarm FROM alarms WHERE {cond} ORDER BY member_id, alarm",
            params))
        conn.execute(f"DELETE FROM alarms WHERE {cond}", params)
        return AlarmResult(alarms=gone)
    return AlarmResult(alarms=list_alarms(conn))


def _match(req: AlarmRequest) -> tuple[str, list[object]]:
    """SQL condition for DEACTIVATE: member id 0 and alarm NONE match anything."""
    conds: list[str] = ["1"]
    params: list[object] = []
    if req.member_id:
        conds.append("member_id = ?")
        params.append(req.member_id)
    if req.alarm is not AlarmType.NONE:
        conds.append("alarm = ?")
        params.append(req.alarm.value)
    return " AND ".join(conds), params


class AlarmReader:
    """Reads the applied alarms from its own connection.

    Its own, because the store's reader connection belongs to the store; a
    read sees only committed applies, which is what status and health report.
    """

    def __init__(self, state_path: Path | str) -> None:
        self._conn = sqlite3.connect(str(state_path), isolation_level=None,
                                     check_same_thread=False)
        self._conn.execute(f"PRAGMA busy_timeout={_reader_busy_timeout_ms}")

    def alarms(self) -> tuple[AlarmMember, ...]:
        try:
            return list_alarms(self._conn)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a store older than the alarms migration
                return ()
            raise

    def close(self) -> None:
        self._conn.close()

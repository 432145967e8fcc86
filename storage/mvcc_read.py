"""Reads of the MVCC key space: range (current and historical) and txn compares.

These are plain functions over a connection so that the same code serves
reads outside the log (on the store's reader connection, seeing only
committed state) and reads inside an apply transaction (on the writer
connection, seeing the txn's own earlier writes).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from cluster.errors import CompactedError, FutureRevisionError
from cluster.kv import (
    Compare,
    CompareResult,
    CompareTarget,
    KeyValue,
    RangeRequest,
    RangeResult,
    SortOrder,
    SortTarget,
)

COMPACTED_MESSAGE = "mvcc: required revision has been compacted"
FUTURE_MESSAGE = "mvcc: required revision is a future revision"

_KV_COLUMNS = "s.key, s.create_revision, s.mod_revision, s.version, s.lease"
_SORT_COLUMN = {
    SortTarget.KEY: "s.key",
    SortTarget.VERSION: "s.version",
    SortTarget.CREATE: "s.create_revision",
    SortTarget.MOD: "s.mod_revision",
}


def key_condition(column: str, key: bytes, range_end: bytes) -> tuple[str, list[Any]]:
    """SQL for etcd's range_end rule: b"" = key alone, b"\\0" = every key >= key.

    BLOBs compare with memcmp and then by length in SQLite, which is exactly
    Python's (and etcd's) bytes ordering, so the bounds can be used as given.
    """
    if not range_end:
        return f"{column} = ?", [key]
    if range_end == b"\0":
        return f"{column} >= ?", [key]
    return f"{column} >= ? AND {column} < ?", [key, range_end]


def check_revision(revision: int, current: int, compact: int) -> int:
    """The revision a read runs at (0 = current), or the etcd error for it.

    Reading *at* the compact revision is allowed (it was kept whole); below it is not.
    """
    if revision <= 0:
        return current
    if revision > current:
        raise FutureRevisionError(FUTURE_MESSAGE)
    if revision < compact:
        raise CompactedError(COMPACTED_MESSAGE)
    return revision


def _source(
    key: bytes, range_end: bytes, at: int, current: int, with_value: bool
) -> tuple[str, list[Any], str]:
    """FROM clause of the keys live at revision `at` (aliased `s`), and the value expression."""
    if at >= current:
        cond, params = key_condition("s.key", key, range_end)
        if not with_value:
            return f"kv_latest AS s WHERE {cond}", params, "x''"
        return (
            "kv_latest AS s JOIN kv_history AS v"
            f" ON v.key = s.key AND v.mod_revision = s.mod_revision WHERE {cond}",
            params,
            "v.value",
        )
    cond, params = key_condition("key", key, range_end)
    # The latest version of each key at or below `at`; a tombstone there means the
    # key did not exist at `at`. Walks the (key, mod_revision) primary key.
    return (
        "(SELECT h.* FROM (SELECT key, MAX(mod_revision) AS mr FROM kv_history"
        f" WHERE {cond} AND mod_revision <= ? GROUP BY key) AS at_rev"
        " JOIN kv_history AS h ON h.key = at_rev.key AND h.mod_revision = at_rev.mr"
        " WHERE h.tombstone = 0) AS s WHERE 1",
        [*params, at],
        "s.value" if with_value else "x''",
    )


def range_kvs(
    conn: sqlite3.Connection, req: RangeRequest, *, current: int, compact: int,
    future_bound: int | None = None,
) -> RangeResult:
    """Answer a RangeRequest the way etcd's apply layer does.

    Args:
        conn: where to read (reader outside the log, writer inside a txn).
        current: the store revision this read sees (the pending one inside a txn
            that has written).
        compact: the compact revision.
        future_bound: the highest revision a request may name; inside a txn etcd
            checks it against the revision before the txn, not the pending one.

    `count` is the number of keys in the range at that revision before the
    min/max filters and the limit (etcd counts in the index, before filtering);
    `more` says the filtered, sorted list was cut by `limit`.
    """
    bound = current if future_bound is None else future_bound
    if req.revision > bound:
        raise FutureRevisionError(FUTURE_MESSAGE)
    at = check_revision(req.revision, current, compact)
    filters: list[str] = []
    fparams: list[Any] = []
    for column, value, op in (
        ("s.mod_revision", req.min_mod_revision, ">="),
        ("s.mod_revision", req.max_mod_revision, "<="),
        ("s.create_revision", req.min_create_revision, ">="),
        ("s.create_revision", req.max_create_revision, "<="),
    ):
        if value:
            filters.append(f" AND {column} {op} ?")
            fparams.append(value)

    plain = not filters and not req.limit
    if req.count_only or not plain:
        from_sql, params, _ = _source(req.key, req.range_end, at, current, with_value=False)
        count = int(conn.execute(f"SELECT count(*) FROM {from_sql}", params).fetchone()[0])
        if req.count_only:
            return RangeResult(count=count, revision=current)

    need_value = not req.keys_only or req.sort_target is SortTarget.VALUE
    from_sql, params, value_expr = _source(req.key, req.range_end, at, current, need_value)
    order = req.sort_order
    if order is SortOrder.NONE and req.sort_target is not SortTarget.KEY:
        order = SortOrder.ASCEND  # etcd: a sort target without an order means ascending
    column = value_expr if req.sort_target is SortTarget.VALUE else _SORT_COLUMN[req.sort_target]
    direction = "DESC" if order is SortOrder.DESCEND else "ASC"
    # Ties keep key order, as etcd's stable index order does before its sort.
    order_sql = f" ORDER BY {column} {direction}"
    if column != "s.key":
        order_sql += ", s.key ASC"
    select_value = "x''" if req.keys_only else value_expr
    sql = f"SELECT {_KV_COLUMNS}, {select_value} FROM {from_sql}{''.join(filters)}{order_sql}"
    query_params = params + fparams
    if req.limit:
        sql += " LIMIT ?"
        query_params.append(req.limit + 1)  # one extra row tells whether there is more
    rows = conn.execute(sql, query_params).fetchall()
    more = bool(req.limit) and len(rows) > req.limit
    if more:
        rows = rows[: req.limit]
    if plain:
        count = len(rows)
    kvs = tuple(
        KeyValue(key=k, value=v, create_revision=c, mod_revision=m, version=ver, lease=lease)
        for k, c, m, ver, lease, v in rows
    )
    return RangeResult(kvs=kvs, more=more, count=count, revision=current)


def _cmp(a: int | bytes, b: int | bytes) -> int:
    return int(a > b) - int(a < b)  # type: ignore[operator]


def _compare_one(c: Compare, kv: KeyValue) -> bool:
    if c.target is CompareTarget.VALUE:
        diff = _cmp(kv.value, c.value)
    else:
        field = {
            CompareTarget.VERSION: kv.version,
            CompareTarget.CREATE: kv.create_revision,
            CompareTarget.MOD: kv.mod_revision,
            CompareTarget.LEASE: kv.lease,
        }[c.target]
        diff = _cmp(field, c.value)
    match c.result:
        case CompareResult.EQUAL:
            return diff == 0
        case CompareResult.NOT_EQUAL:
            return diff != 0
        case CompareResult.LESS:
            return diff < 0
        case CompareResult.GREATER:
            return diff > 0
    raise AssertionError(f"unknown compare result {c.result!r}")


def evaluate_compare(conn: sqlite3.Connection, c: Compare) -> bool:
    """etcd's compare: every key in the range must satisfy it.

    A missing key compares as a KeyValue of zeros (version 0, create 0, mod 0,
    lease 0), except that a value compare against a missing key is always false:
    there is no way to tell an absent value from an empty one.
    """
    cond, params = key_condition("s.key", c.key, c.range_end)
    if c.target is CompareTarget.VALUE:
        sql = (
            f"SELECT {_KV_COLUMNS}, v.value FROM kv_latest AS s JOIN kv_history AS v"
            f" ON v.key = s.key AND v.mod_revision = s.mod_revision WHERE {cond}"
        )
    else:
        sql = f"SELECT {_KV_COLUMNS}, x'' FROM kv_latest AS s WHERE {cond}"
    found = False
    for k, cr, mr, ver, lease, value in conn.execute(sql, params):
        found = True
        kv = KeyValue(key=k, value=value, create_revision=cr, mod_revision=mr, version=ver,
                      lease=lease)
        if not _compare_one(c, kv):
            return False
    if not found:
        if c.target is CompareTarget.VALUE:
            return False
        return _compare_one(c, KeyValue(key=c.key))
    return True

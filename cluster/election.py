"""Leader election on leases + txn + watch (etcd's concurrency.Election); see
`cluster.concurrency` for the mechanism and its limits.

Candidates put P/<lease id in hex> (value = their proposal) under the
election prefix P, attached to their session's lease; the key with the
lowest create revision is the leader and its value is the leader's current
proclamation. A campaign returns once every older candidate key is gone.
Leadership ends with `resign()`, or when the leader's session expires (its
key is revoked with the lease), and passes to the next key in create order.
Like the lock, leadership is only as good as the lease: a paused leader can
outlive it, so guard writes with `leader_compare()` (a fencing check).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from cluster.client_requests import Compare, KeyLike, Op, to_bytes
from cluster.client_types import KeyValue, ResponseHeader
from cluster.concurrency import (
    ConcurrencyError,
    Deadline,
    Session,
    SessionExpiredError,
    first_created,
    wait_for_change,
    wait_predecessors,
)


class NotElectionLeaderError(ConcurrencyError):
    """`proclaim`/`leader_compare` by a session that is not (or no longer) the leader."""


class NoElectionLeaderError(ConcurrencyError):
    """`leader()`: nobody is campaigning."""


class Election:
    """One election under `prefix`, seen from one `Session`."""

    def __init__(self, session: Session, prefix: KeyLike) -> None:
        self.session = session
        self.prefix = to_bytes(prefix, "prefix").rstrip(b"/") + b"/"
        self.key = b""
        self.revision = 0
        self.header: ResponseHeader | None = None

    def campaign(self, value: KeyLike, timeout_s: float | None = None) -> None:
        """Become a candidate with `value` and block until elected.

        Raises:
            TimeoutError_: not elected in time (the candidacy is withdrawn).
            SessionExpiredError: the session's lease expired while waiting.
        """
        client = self.session.client
        val = to_bytes(value, "value")
        key = self.prefix + f"{self.session.lease_id:x}".encode()
        r = client.txn([Compare.create(key, "=", 0)],
                       [Op.put(key, val, lease=self.session.lease_id)], [Op.get(key)])
        self.key, self.revision, self.header = key, r.header.revision, r.header
        if not r.succeeded:  # already a candidate with this session: keep the place
            kv = r.responses[0].kvs[0]
            self.revision = kv.create_revision
            if kv.value != val:
                self.proclaim(val)
        try:
            header = wait_predecessors(client, self.prefix, self.revision, Deadline(timeout_s))
        except BaseException:
            self.resign()
            raise
        if not client.get(self.key).kvs:
            self.key, self.revision = b"", 0
            raise SessionExpiredError("the session's lease expired while campaigning")
        self.header = header

    def proclaim(self, value: KeyLike) -> None:
        """Publish a new value as the leader, without an election.

        Raises:
            NotElectionLeaderError: this session is not a candidate any more.
        """
        if not self.key:
            raise NotElectionLeaderError("not a candidate in this election")
        r = self.session.client.txn(
            [Compare.create(self.key, "=", self.revision)],
            [Op.put(self.key, to_bytes(value, "value"), lease=self.session.lease_id)], [])
        if not r.succeeded:
            self.key, self.revision = b"", 0
            raise NotElectionLeaderError("the leader key is gone (session expired?)")
        self.header = r.header

    def resign(self) -> None:
        """Give up leadership (or candidacy); the next candidate takes over."""
        if not self.key:
            return
        r = self.session.client.txn([Compare.create(self.key, "=", self.revision)],
                                    [Op.delete(self.key)], [])
        self.header = r.header
        self.key, self.revision = b"", 0

    def leader(self) -> KeyValue:
        """The current leader's key and value.

        Raises:
            NoElectionLeaderError: no candidate at all.
        """
        kv = first_created(self.session.client, self.prefix)
        if kv is None:
            raise NoElectionLeaderError(f"no leader in election {self.prefix!r}")
        return kv

    def leader_compare(self) -> Compare:
        """Fencing guard for writes made as the leader (see the module docstring)."""
        if not self.key:
            raise NotElectionLeaderError("not a candidate in this election")
        return Compare.create(self.key, "=", self.revision)

    def observe(self, stop: threading.Event | None = None,
                timeout_s: float | None = None) -> Iterator[KeyValue]:
        """Yield the leader (key and value) now and at every change of leader or of its
        proclaimed value, until `stop` is set or `timeout_s` passes. While nobody leads,
        nothing is yielded; the next leader is."""
        deadline = Deadline(timeout_s)
        last: tuple[bytes, bytes, int] | None = None
        client = self.session.client
        while not (stop is not None and stop.is_set()):
            r = client.get(self.prefix, prefix=True, sort_target="create",
                           sort_order="ascend", limit=1)
            kv = r.kvs[0] if r.kvs else None
            now = None if kv is None else (kv.key, kv.value, kv.create_revision)
            if now is not None and now != last:
                yield kv  # type: ignore[misc]
            last = now
            remaining = deadline.remaining()
            if remaining is not None and remaining <= 0:
                return
            wait_for_change(client, self.prefix, r.header.revision, deadline, stop)

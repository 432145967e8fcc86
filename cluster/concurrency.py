"""Distributed locks and leader election on leases + transactions + watch (like etcd's
clientv3/concurrency package): `Session`, `Mutex`, and `Election` (cluster.election).

How they work. A `Session` is one lease kept alive in the background. A
`Mutex` on prefix P puts the key P/<lease id in hex>, attached to the
session's lease, in a transaction guarded by "create_revision == 0" (so it
is created once, at one revision). Waiters form a queue ordered by that
create revision: the key with the lowest create revision under P holds the
lock; every other waiter watches only the key just before its own (no
thundering herd) and re-checks when it is deleted. Unlocking deletes the
key; a session that dies (holder crashed, partitioned away, stopped
renewing) loses its lease, the cluster revokes it after the TTL and the key
disappears, which hands the lock on.

What a lease-based lock GUARANTEES: at any revision of the store, at most one
live key under P has the lowest create revision, so at most one client is
told it holds the lock *according to the store*. What it does NOT guarantee:
that the holder still holds it while it acts. A holder that pauses (GC, swap,
a stopped VM, a slow network) longer than its TTL loses its lease without
noticing, and another client acquires the lock while the first still
believes it holds it. No client-side check closes that window (the pause can
fall between the check and the write). Use the FENCING TOKEN: `mutex.key`
and `mutex.revision` (the key's create revision, increasing with every new
holder) identify this holding; make every write that the lock protects a
transaction guarded by `mutex.owner_compare()` (the lock key still exists
with that create revision), or pass `mutex.revision` to the resource and let
it reject tokens older than the newest it has seen. `Session.alive` is a
conservative local signal, useful for stopping early, not a guarantee.

Waiting uses `Client.watch` when the client has it and falls back to polling
`get` with a short backoff otherwise (`wait_for_delete`, `wait_for_change`),
so the recipes work with any client that has the KV and lease calls.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from cluster.client_requests import Compare, KeyLike, Op, to_bytes
from cluster.client_types import KeyValue, ResponseHeader
from cluster.errors import LeaseNotFoundError, TimeoutError_

session_ttl_s_default = 60
"""etcd's default session TTL."""

poll_backoff_s_min = 0.02
poll_backoff_s_max = 0.5
"""Polling fallback pacing when the client has no watch."""

watch_poll_s = 1.0
"""Long-poll length of the watches used here: how often a waiter re-checks its deadline."""


class ConcurrencyError(Exception):
    """Base of the recipe errors (the cluster's own errors stay EtcdliteError)."""


class SessionExpiredError(ConcurrencyError):
    """The session's lease is gone, and with it every key the recipe held."""


class LockedError(ConcurrencyError):
    """`try_lock`: another session holds the lock."""


class Deadline:
    """A monotonic deadline; None means wait forever."""

    def __init__(self, timeout_s: float | None) -> None:
        self.at = None if timeout_s is None else time.monotonic() + timeout_s

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - time.monotonic()

    def check(self, what: str) -> None:
        if self.at is not None and time.monotonic() >= self.at:
            raise TimeoutError_(f"timed out waiting for {what}")


# --- waiting: watch when available, polling otherwise ---------------------------------

def _watch_events(client: Any, key: bytes, *, prefix: bool, after_revision: int,
                  deadline: Deadline, stop: threading.Event | None,
                  done: Callable[[Any], bool]) -> bool:
    """Watch from after_revision+1 until `done(event)`; False when stopped or timed out."""
    with client.watch(key, prefix=prefix, start_revision=after_revision + 1,
                      progress_notify=True, poll_timeout_s=watch_poll_s) as watch:
        for resp in watch:
            if resp.canceled:  # history compacted: the caller re-reads and starts over
                return True
            if any(done(ev) for ev in resp.events):
                return True
            remaining = deadline.remaining()
            if (remaining is not None and remaining <= 0) or (stop and stop.is_set()):
                return False
    return False


def wait_for_delete(client: Any, kv: KeyValue, revision: int, deadline: Deadline) -> None:
    """Return once this incarnation of `kv.key` (present at `revision`) is deleted.

    The same key may be created again right after (a session re-locking uses
    the same key name), so the wait ends at the first delete event, or, when
    polling, as soon as the key is absent or has another create revision.

    Raises:
        TimeoutError_: the deadline passed first.
    """
    what = f"{kv.key!r} to be deleted"
    if hasattr(client, "watch"):
        while not _watch_events(client, kv.key, prefix=False, after_revision=revision,
                                deadline=deadline, stop=None,
                                done=lambda ev: str(ev.type) == "delete"):
            deadline.check(what)
        return
    backoff = poll_backoff_s_min
    while True:
        r = client.get(kv.key)
        if not r.kvs or r.kvs[0].create_revision != kv.create_revision:
            return
        deadline.check(what)
        remaining = deadline.remaining()
        time.sleep(backoff if remaining is None else max(0.0, min(backoff, remaining)))
        backoff = min(backoff * 2, poll_backoff_s_max)


def wait_for_change(client: Any, prefix: bytes, revision: int, deadline: Deadline,
                    stop: threading.Event | None = None) -> None:
    """Return after something under `prefix` changed past `revision` (or a poll interval
    passed, with the polling fallback), when stopped, or at the deadline."""
    if hasattr(client, "watch"):
        _watch_events(client, prefix, prefix=True, after_revision=revision,
                      deadline=deadline, stop=stop, done=lambda ev: True)
        return
    remaining = deadline.remaining()
    pause = poll_backoff_s_max if remaining is None else max(0.0, min(poll_backoff_s_max,
                                                                        remaining))
    if stop is not None:
        stop.wait(pause)
    else:
        time.sleep(pause)  # polling fallback: pacing, the caller re-reads


def wait_predecessors(client: Any, prefix: bytes, below_revision: int,
                      deadline: Deadline) -> ResponseHeader | None:
    """Wait until no key under `prefix` has a create revision below `below_revision`,
    watching one predecessor at a time (the newest one older than us)."""
    while True:
        r = client.get(prefix, prefix=True, max_create_revision=below_revision - 1,
                       sort_target="create", sort_order="descend", limit=1)
        if not r.kvs:
            header: ResponseHeader = r.header
            return header
        wait_for_delete(client, r.kvs[0], r.header.revision, deadline)


def first_created(client: Any, prefix: bytes) -> KeyValue | None:
    """The key under `prefix` with the lowest create revision: the holder / the leader."""
    r = client.get(prefix, prefix=True, sort_target="create", sort_order="ascend", limit=1)
    return r.kvs[0] if r.kvs else None


# --- session ---------------------------------------------------------------------------

class Session:
    """A lease kept alive in the background: the identity of a lock holder or a candidate.

    Args:
        client: a `cluster.client.Client`.
        ttl: lease TTL in seconds (the cluster raises it to its minimum if lower).
        lease_id: adopt an existing lease instead of granting a new one.
    """

    def __init__(self, client: Any, ttl: int = session_ttl_s_default, *,
                 lease_id: int = 0) -> None:
        self.client = client
        started = time.monotonic()
        if lease_id:
            self.lease_id, self.ttl = lease_id, ttl
        else:
            grant = client.lease_grant(ttl)
            self.lease_id, self.ttl = grant.id, grant.ttl
        self._granted_until = started + self.ttl
        self._keepalive = client.lease_keepalive(self.lease_id)
        self._closed = False

    @property
    def alive(self) -> bool:
        """True while the lease is certainly alive as far as this client can tell."""
        ka = self._keepalive
        return not self._closed and not ka.lost and \
            time.monotonic() < max(self._granted_until, ka.expires_at)

    @property
    def lost(self) -> bool:
        """The cluster said the lease is gone (expired or revoked)."""
        return bool(self._keepalive.lost)

    def orphan(self) -> None:
        """Stop renewing without revoking: the lease (and what it holds) expires after its
        TTL. What a crashed process looks like to the cluster."""
        self._keepalive.close()
        self._closed = True

    def close(self) -> None:
        """Stop renewing and revoke the lease, releasing every key attached to it now."""
        self._keepalive.close()
        self._closed = True
        # Already expired means nothing is left to release.
        with contextlib.suppress(LeaseNotFoundError):
            self.client.lease_revoke(self.lease_id)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# --- mutex -----------------------------------------------------------------------------

class Mutex:
    """A distributed lock under `prefix`, held by a `Session` (see the module docstring
    for what it guarantees). Use `with mutex:` or `lock()`/`unlock()`."""

    def __init__(self, session: Session, prefix: KeyLike) -> None:
        self.session = session
        self.prefix = to_bytes(prefix, "prefix").rstrip(b"/") + b"/"
        self.key = b""
        self.revision = 0
        self.header: ResponseHeader | None = None

    def _my_key(self) -> bytes:
        return self.prefix + f"{self.session.lease_id:x}".encode()

    def _enqueue(self) -> KeyValue | None:
        """Create our key (once) and return the current holder's key."""
        client = self.session.client
        key = self._my_key()
        owner = Op.get(self.prefix, prefix=True, sort_target="create", sort_order="ascend",
                       limit=1)
        r = client.txn([Compare.create(key, "=", 0)],
                       [Op.put(key, b"", lease=self.session.lease_id), owner],
                       [Op.get(key), owner])
        self.key, self.header = key, r.header
        if r.succeeded:
            self.revision = r.header.revision
        else:  # this session already queued (or holds) the lock: keep its place
            self.revision = r.responses[0].kvs[0].create_revision
        holders = r.responses[1].kvs
        return holders[0] if holders else None

    def lock(self, timeout_s: float | None = None) -> None:
        """Block until this session holds the lock.

        Raises:
            TimeoutError_: not acquired in time (our place in the queue is given up).
            SessionExpiredError: the session's lease expired while waiting.
        """
        deadline = Deadline(timeout_s)
        holder = self._enqueue()
        if holder is not None and holder.create_revision == self.revision:
            return
        try:
            header = wait_predecessors(self.session.client, self.prefix, self.revision,
                                       deadline)
        except BaseException:
            self._give_up()
            raise
        if not self.session.client.get(self.key).kvs:
            self.key, self.revision = b"", 0
            raise SessionExpiredError("the session's lease expired while waiting")
        self.header = header

    def try_lock(self) -> bool:
        """Take the lock if it is free right now; False (and no queue place) if it is not."""
        holder = self._enqueue()
        if holder is None or holder.create_revision == self.revision:
            return True
        self._give_up()
        return False

    def _give_up(self) -> None:
        if self.key:
            self.session.client.delete(self.key)
        self.key, self.revision = b"", 0

    def unlock(self) -> None:
        """Release the lock (delete our key); the next waiter in line gets it."""
        self._give_up()

    def is_owner(self) -> bool:
        """Whether the store says this session holds the lock *now* (a hint: see the
        module docstring; guard writes with `owner_compare()` instead)."""
        if not self.key:
            return False
        holder = first_created(self.session.client, self.prefix)
        return holder is not None and holder.key == self.key and \
            holder.create_revision == self.revision

    def owner_compare(self) -> Compare:
        """The fencing guard: put it in the compare list of every protected txn."""
        if not self.key:
            raise LockedError("this mutex is not held")
        return Compare.create(self.key, "=", self.revision)

    def __enter__(self) -> Mutex:
        self.lock()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.unlock()

"""Keeping a lease alive from the client: a background thread (sync) or task (trio).

`Client.lease_keepalive(id)` and `AsyncClient.lease_keepalive(id)` return
these. They renew every third of the lease's TTL, like etcd's clientv3, so
two renewals in a row may fail before the lease is at risk. A failed renewal
(no endpoint answered, no leader during a failover) is retried every
`retry_interval_s` until one succeeds; the cluster's own answer decides the
end: `lease_not_found` means the lease is gone (expired or revoked) and the
helper stops and reports it as lost.

`expires_at` is a conservative local estimate: the monotonic time of the last
successful renewal's *send* plus its TTL. Before it, the lease is certainly
alive (the leader counts from when it received the renewal, which is later;
a leader change only extends leases). After it, the client cannot tell, so
`alive` turns False even if a later renewal succeeds in bringing it back.
Code that must not act without its lease (a lock holder) checks `alive`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import trio

from cluster.client_types import LeaseKeepAliveResult
from cluster.errors import EtcdliteError, LeaseNotFoundError

if TYPE_CHECKING:
    from cluster.client_async import AsyncClient

log = logging.getLogger("etcdlite.client")

keepalive_interval_s_min = 0.5
"""Floor of the renewal period, so a 1-second lease does not become a busy loop."""

retry_interval_s = 0.25
"""Pause after a failed renewal before the next attempt."""

RenewCallback = Callable[[LeaseKeepAliveResult], None]


def renew_interval_s(ttl: int) -> float:
    """A third of the TTL, as etcd's client does, never below the floor."""
    return max(ttl / 3, keepalive_interval_s_min)


def call_timeout_s(ttl: int, timeout_s: float) -> float:
    """One renewal may take at most a third of the TTL (then the next one is due)."""
    return min(timeout_s, max(ttl / 3, keepalive_interval_s_min))


class _State:
    """What both helpers report; updated only by the renewing thread/task."""

    def __init__(self, lease_id: int) -> None:
        self.lease_id = lease_id
        self.ttl = 0
        self.renewals = 0
        self.expires_at = -math.inf
        self.error: EtcdliteError | None = None
        self.lost = False

    def renewed(self, sent_at: float, result: LeaseKeepAliveResult) -> None:
        self.ttl = result.ttl
        self.renewals += 1
        self.expires_at = sent_at + result.ttl
        self.error = None

    @property
    def alive(self) -> bool:
        return not self.lost and time.monotonic() < self.expires_at


class LeaseKeepAlive(_State):
    """Renews lease `lease_id` from a daemon thread until `close()` or the lease is gone.

    The thread talks through its own `Client` (same endpoints), so renewals do
    not queue behind the caller's own blocking calls on a shared client.

    Args:
        endpoints / timeout_s: where and how long, as for `Client`.
        on_renew: called in the renewing thread after each successful renewal.
        on_lost: called once in the renewing thread when the cluster says the
            lease is gone.
    """

    def __init__(self, endpoints: Sequence[str], timeout_s: float, lease_id: int, *,
                 on_renew: RenewCallback | None = None,
                 on_lost: Callable[[EtcdliteError], None] | None = None) -> None:
        super().__init__(lease_id)
        self._endpoints = tuple(endpoints)
        self._timeout_s = timeout_s
        self._on_renew = on_renew
        self._on_lost = on_lost
        self._stop = threading.Event()
        self._done = threading.Event()
        self._first = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"keepalive-{lease_id:x}",
                                        daemon=True)
        self._thread.start()

    def wait_first(self, timeout_s: float | None = None) -> bool:
        """Block until the first renewal attempt finished; True if it succeeded."""
        self._first.wait(timeout_s)
        return self.renewals > 0

    def wait_lost(self, timeout_s: float | None = None) -> bool:
        """Block until the helper stopped (lease gone, or closed); True if it stopped."""
        return self._done.wait(timeout_s)

    def close(self) -> None:
        """Stop renewing (the lease then expires after its TTL unless revoked)."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def __enter__(self) -> LeaseKeepAlive:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _run(self) -> None:
        from cluster.client import Client  # cycle: Client imports this module

        client = Client(self._endpoints, timeout_s=self._timeout_s)
        try:
            while not self._stop.is_set():
                pause = self._renew_once(client)
                self._first.set()
                if self.lost:
                    break
                if self.ttl and client.timeout_s != call_timeout_s(self.ttl, self._timeout_s):
                    client.close()
                    client = Client(self._endpoints,
                                    timeout_s=call_timeout_s(self.ttl, self._timeout_s))
                self._stop.wait(pause)  # pacing between renewals; close() cuts it short
        finally:
            client.close()
            self._first.set()
            self._done.set()

    def _renew_once(self, client: Any) -> float:
        sent_at = time.monotonic()
        try:
            result = client.lease_keepalive_once(self.lease_id)
        except LeaseNotFoundError as exc:
            self.error, self.lost = exc, True
            if self._on_lost is not None:
                self._on_lost(exc)
            return 0.0
        except EtcdliteError as exc:
            self.error = exc
            log.debug("keepalive of lease %x failed: %s", self.lease_id, exc)
            return retry_interval_s
        self.renewed(sent_at, result)
        if self._on_renew is not None:
            self._on_renew(result)
        return renew_interval_s(result.ttl)


class AsyncLeaseKeepAlive(_State):
    """The trio twin: renews from a task. Use `async with client.lease_keepalive(id) as ka:`,
    or start `ka.run` in a nursery of your own (`await nursery.start(ka.run)`).

    The renewing task shares the `AsyncClient` (each request has its own nng
    context); each renewal is bounded by a third of the TTL.
    """

    def __init__(self, client: AsyncClient, lease_id: int, *,
                 on_renew: RenewCallback | None = None) -> None:
        super().__init__(lease_id)
        self._client = client
        self._on_renew = on_renew
        self.done = trio.Event()
        self._nursery_manager: Any = None
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Renew until cancelled or the lease is gone; `started()` after the first attempt."""
        started = False
        try:
            while True:
                sent_at = time.monotonic()
                pause = retry_interval_s
                limit = call_timeout_s(self.ttl, self._client.timeout_s) if self.ttl \
                    else self._client.timeout_s
                try:
                    with trio.fail_after(limit):
                        result = await self._client.lease_keepalive_once(self.lease_id)
                    self.renewed(sent_at, result)
                    if self._on_renew is not None:
                        self._on_renew(result)
                    pause = renew_interval_s(result.ttl)
                except LeaseNotFoundError as exc:
                    self.error, self.lost = exc, True
                    if not started:
                        task_status.started()
                    return
                except trio.TooSlowError:
                    log.debug("keepalive of lease %x timed out", self.lease_id)
                except EtcdliteError as exc:
                    self.error = exc
                if not started:
                    started = True
                    task_status.started()
                await trio.sleep(pause)  # pacing between renewals
        finally:
            self.done.set()

    async def __aenter__(self) -> AsyncLeaseKeepAlive:
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        await self._nursery.start(self.run)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> bool:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        return bool(await self._nursery_manager.__aexit__(exc_type, exc, tb))

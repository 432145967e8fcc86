"""The load engine of `etcdlite benchmark`: many concurrent clients, a few connections.

A workload is a function from request number to a `cluster.client_calls.Call`,
the same object `Client` and `AsyncClient` build for their methods, so every
request is encoded, retried (the client's RETRY RULE, `Attempts`) and parsed
exactly as an application's would be. What this module adds is concurrency
and timing: `clients` workers share `conns` connections, each worker sends
its next request when the previous one is answered (closed loop, as etcd's
tools/benchmark does), optionally paced to a total `rate`, and stops at
`total` requests or after `duration_s_max`, whichever comes first.

Two engines, because on a 2-core machine the load generator competes with
the members for CPU and must stay cheap:

- "threads" (default): one OS thread per client, each with its own nng
  context on its connection's socket, blocking send/recv. pynng's blocking
  calls release the GIL inside nng. Measured here: 100-190 us of client CPU
  per request, encoding and parsing included.
- "trio": one task per client over `AsyncTransport`, i.e. `AsyncClient`
  itself. pynng's trio integration wakes the event loop from nng's thread
  for every send and every receive: 200-250 us per request, and 1.8-2.3x
  fewer requests/s than "threads" against the same cluster, because on two
  cores that CPU is taken from the members being measured. Kept for
  comparison and as "what an AsyncClient user gets".
"""

from __future__ import annotations

import contextlib
import itertools
import resource
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pynng
import trio

from cluster.client_calls import Call, status_call
from cluster.client_replies import decode_reply
from cluster.client_transport import (
    AsyncTransport,
    Attempts,
    EndpointRing,
    NoReply,
    NotSent,
    is_connected,
    new_req_socket,
)
from cluster.errors import EtcdliteError

ENGINES = ("threads", "trio")

MakeCall = Callable[[int], Call[Any]]
"""Request number (0, 1, 2, ...) -> the call to send."""


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """How hard and how long to push.

    `clients` closed-loop workers spread over `conns` connections; connection i
    starts at endpoint i mod len(endpoints) (etcd's benchmark spreads its
    connections the same way) and fails over along the ring from there.
    """

    endpoints: tuple[str, ...]
    clients: int = 1
    conns: int = 1
    total: int = 10_000
    duration_s_max: float = 0.0  # 0 = no time limit
    rate: float = 0.0  # requests/s over all clients; 0 = as fast as answered
    timeout_s: float = 5.0
    engine: str = "threads"

    def __post_init__(self) -> None:
        if self.clients < 1 or self.conns < 1 or self.total < 1:
            raise ValueError("clients, conns and total must be at least 1")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}")

    def endpoints_for(self, conn: int) -> tuple[str, ...]:
        k = conn % len(self.endpoints)
        return self.endpoints[k:] + self.endpoints[:k]


@dataclass(slots=True)
class LoadResult:
    """Raw outcome of one run; `benchmark_report.summarize` turns it into figures."""

    latencies_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    client_cpu_s: float = 0.0


def error_kind(exc: BaseException) -> str:
    """The key errors are counted under: the protocol's code when there is one."""
    if isinstance(exc, EtcdliteError):
        return exc.code.value
    return type(exc).__name__


class _Plan:
    """Hands out request numbers to workers and says when each may start.

    Shared by all workers: `next()` on itertools.count is atomic under the GIL
    and trio workers never run in parallel, so no lock is needed.
    """

    def __init__(self, spec: LoadSpec, started: float) -> None:
        self._numbers = itertools.count()
        self._total = spec.total
        self._rate = spec.rate
        self._started = started
        self._deadline = started + spec.duration_s_max if spec.duration_s_max > 0 else None

    def claim(self) -> tuple[int, float] | None:
        """The next request number and its earliest start (perf_counter), or None
        when the run is over."""
        i = next(self._numbers)
        if i >= self._total:
            return None
        not_before = self._started + i / self._rate if self._rate > 0 else 0.0
        if self._deadline is not None and max(not_before, time.perf_counter()) > self._deadline:
            return None
        return i, not_before


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- threads engine -----------------------------------------------------------------

class _ThreadConn:
    """One connection: a REQ socket per endpoint (the current one, in practice),
    shared by the workers assigned to it; each worker has its own context on it."""

    def __init__(self, endpoints: tuple[str, ...], timeout_s: float) -> None:
        self.ring = EndpointRing(endpoints)
        self.timeout_s = timeout_s
        self._sockets: dict[str, pynng.Req0] = {}
        self._lock = threading.Lock()

    def socket(self, endpoint: str) -> pynng.Req0:
        with self._lock:
            sock = self._sockets.get(endpoint)
            if sock is not None and not is_connected(sock):
                # Old contexts on it fail with "closed" and are replaced by their workers.
                self._sockets.pop(endpoint).close()
                sock = None
            if sock is None:
                # Contexts take their timeouts from the socket when they are opened.
                sock = new_req_socket(self.timeout_s)
                try:
                    sock.dial(endpoint, block=True)
                except pynng.NNGException as exc:
                    sock.close()
                    raise NotSent(f"cannot connect: {exc}") from None
                self._sockets[endpoint] = sock
            return sock

    def close(self) -> None:
        with self._lock:
            for sock in self._sockets.values():
                sock.close()
            self._sockets.clear()


class _ThreadWorker:
    """A blocking client with its own nng context per endpoint; the client's retry
    rule, except that each attempt waits the whole timeout (contexts cannot change
    their timeout once opened), which only matters for reads during failover."""

    def __init__(self, conn: _ThreadConn) -> None:
        self._conn = conn
        self._contexts: dict[str, tuple[pynng.Req0, pynng.Context]] = {}

    def request(self, call: Call[Any]) -> Any:
        attempts = Attempts(self._conn.ring, call.read, self._conn.timeout_s)
        frame = call.frame()
        while True:
            endpoint = attempts.endpoint()
            try:
                body = decode_reply(self._exchange(endpoint, frame))
                return call.parse(body, endpoint)
            except (NotSent, NoReply, EtcdliteError) as exc:
                pause = attempts.failed(endpoint, exc)
            if pause:
                time.sleep(pause)  # backoff between rounds, as the client does

    def _exchange(self, endpoint: str, frame: bytes) -> bytes:
        sock = self._conn.socket(endpoint)
        held = self._contexts.get(endpoint)
        if held is None or held[0] is not sock:
            if held is not None:
                held[1].close()
            held = (sock, sock.new_context())
            self._contexts[endpoint] = held
        ctx = held[1]
        try:
            ctx.send(frame)
        except pynng.NNGException as exc:
            self._forget(endpoint)
            raise NotSent(f"send failed: {exc}") from None
        try:
            reply: bytes = ctx.recv()
        except pynng.NNGException as exc:
            self._forget(endpoint)  # closing the context discards the request in nng
            raise NoReply(f"no reply: {exc}") from None
        return reply

    def _forget(self, endpoint: str) -> None:
        held = self._contexts.pop(endpoint, None)
        if held is not None:
            held[1].close()

    def close(self) -> None:
        for endpoint in list(self._contexts):
            self._forget(endpoint)


def _run_threads(spec: LoadSpec, make_call: MakeCall) -> LoadResult:
    conns = [_ThreadConn(spec.endpoints_for(i), spec.timeout_s) for i in range(spec.conns)]
    workers = [_ThreadWorker(conns[i % spec.conns]) for i in range(spec.clients)]
    results = [LoadResult() for _ in workers]
    try:
        for conn in conns:  # connect before the clock starts; a dead endpoint fails over later
            try:
                conn.socket(conn.ring.endpoints[0])
            except NotSent:
                conn.ring.failed(conn.ring.endpoints[0])
        ready = threading.Barrier(spec.clients + 1)
        plan_box: list[_Plan] = []

        def work(worker: _ThreadWorker, out: LoadResult) -> None:
            ready.wait()
            plan = plan_box[0]
            while (claimed := plan.claim()) is not None:
                i, not_before = claimed
                delay = not_before - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)  # pacing to --rate
                call = make_call(i)
                t0 = time.perf_counter()
                try:
                    worker.request(call)
                except EtcdliteError as exc:
                    out.errors[error_kind(exc)] += 1
                    continue
                out.latencies_s.append(time.perf_counter() - t0)

        threads = [threading.Thread(target=work, args=(w, r), daemon=True,
                                    name=f"bench-client-{n}")
                   for n, (w, r) in enumerate(zip(workers, results, strict=True))]
        for t in threads:
            t.start()
        cpu0 = _cpu_s()
        started = time.perf_counter()
        plan_box.append(_Plan(spec, started))
        ready.wait()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        cpu = _cpu_s() - cpu0
    finally:
        for w in workers:
            w.close()
        for conn in conns:
            conn.close()
    merged = _merge(results)
    merged.elapsed_s, merged.client_cpu_s = elapsed, cpu
    return merged


# --- trio engine --------------------------------------------------------------------

async def _run_trio_async(spec: LoadSpec, make_call: MakeCall) -> LoadResult:
    transports = [AsyncTransport(spec.endpoints_for(i), spec.timeout_s)
                  for i in range(spec.conns)]
    out = LoadResult()
    try:
        for transport in transports:  # dial before the clock starts (status is a read)
            # A dead endpoint is not an error yet: the run's own requests count failures.
            with contextlib.suppress(EtcdliteError):
                await transport.request(status_call().frame(), read=True)

        async def work(transport: AsyncTransport, plan: _Plan) -> None:
            while (claimed := plan.claim()) is not None:
                i, not_before = claimed
                delay = not_before - time.perf_counter()
                if delay > 0:
                    await trio.sleep(delay)
                call = make_call(i)
                t0 = time.perf_counter()
                try:
                    body, endpoint = await transport.request(call.frame(), read=call.read)
                    call.parse(body, endpoint)
                except EtcdliteError as exc:
                    out.errors[error_kind(exc)] += 1
                    continue
                out.latencies_s.append(time.perf_counter() - t0)

        cpu0 = _cpu_s()
        started = time.perf_counter()
        plan = _Plan(spec, started)
        async with trio.open_nursery() as nursery:
            for n in range(spec.clients):
                nursery.start_soon(work, transports[n % spec.conns], plan)
        out.elapsed_s = time.perf_counter() - started
        out.client_cpu_s = _cpu_s() - cpu0
    finally:
        for transport in transports:
            transport.close()
    return out


def _merge(results: list[LoadResult]) -> LoadResult:
    merged = LoadResult()
    for r in results:
        merged.latencies_s.extend(r.latencies_s)
        merged.errors.update(r.errors)
    return merged


def run_load(spec: LoadSpec, make_call: MakeCall) -> LoadResult:
    """Run one closed-loop load to completion (blocking) and return what it measured."""
    if spec.engine == "trio":
        result: LoadResult = trio.run(_run_trio_async, spec, make_call)
        return result
    return _run_threads(spec, make_call)

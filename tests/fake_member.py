"""A stand-in member for client and CLI tests: docs/protocol.md answered from a dict.

The real member is built elsewhere; the client must not wait for it. This
fake speaks the same frames over a `pynng.Rep0` socket served by one thread,
records every request it decodes, and can be scripted to fail: reply with an
error code, send raw bytes, or drop a request (no reply ever, as a hung or
partitioned member would). Scripts are consumed in order, per operation.

Always use `running(...)` (or `stop()` in a `finally`): the serving thread
must never outlive its test.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pynng

from cluster.codec import decode_frame, encode_frame
from cluster.errors import ErrorCode, EtcdliteError

CLUSTER_ID = 0xC1D
DEFAULT_STATUS = {
    "role": "leader", "leader": 1, "term": 2, "commit_index": 7, "applied_index": 7,
    "compact_revision": 0, "db_size": 24576, "version": "0.1.0", "voters": [1, 2, 3],
    "is_learner": False,
}


@dataclass
class Script:
    """One scripted behaviour for the next request of an op (`times=None`: forever)."""

    error: ErrorCode | None = None
    message: str = "scripted"
    drop: bool = False
    raw: bytes | None = None
    times: int | None = 1


class FakeMember:
    """A thread serving one Rep0 socket; the store is a dict of key -> KV map."""

    def __init__(self, address: str, *, member_id: int = 1, name: str = "m1",
                 **status: Any) -> None:
        self.address = address
        self.member_id = member_id
        self.name = name
        self.status = {**DEFAULT_STATUS, **status}
        self.revision = 1
        self.store: dict[bytes, dict[str, Any]] = {}
        self.leases: dict[int, int] = {}
        self.requests: list[dict[str, Any]] = []
        self.dropped = threading.Event()
        self._scripts: dict[str, list[Script]] = {}
        self._lock = threading.Lock()
        self._sock: pynng.Rep0 | None = None
        self._thread: threading.Thread | None = None

    # -- control -----------------------------------------------------------------

    def script(self, op: str, script: Script) -> None:
        with self._lock:
            self._scripts.setdefault(op, []).append(script)

    def ops(self) -> list[str]:
        """The op of every request received so far, in order."""
        with self._lock:
            return [r.get("op") for r in self.requests]

    def start(self) -> FakeMember:
        self._sock = pynng.Rep0(listen=self.address)
        self._thread = threading.Thread(target=self._serve, name=f"fake-{self.name}")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()  # wakes the blocked recv with pynng.Closed
        if self._thread is not None:
            self._thread.join(timeout=10)
            assert not self._thread.is_alive(), "fake member thread did not stop"

    def _serve(self) -> None:
        assert self._sock is not None
        while True:
            try:
                raw = self._sock.recv()
            except pynng.Closed:
                return
            reply = self.handle(raw)
            if reply is None:
                self.dropped.set()
                continue
            try:
                self._sock.send(reply)
            except pynng.Closed:
                return

    # -- protocol ----------------------------------------------------------------

    def handle(self, raw: bytes) -> bytes | None:
        """One request frame in, one reply frame out (None: drop it)."""
        try:
            body = decode_frame(raw)
        except EtcdliteError as exc:
            return encode_frame({"ok": False, "error": exc.to_wire()})
        with self._lock:
            self.requests.append(body)
            op = str(body.get("op"))
            script = self._next_script(op)
            if script is not None:
                if script.drop:
                    return None
                if script.raw is not None:
                    return script.raw
                error = {"code": str(script.error), "message": script.message}
                return encode_frame({"ok": False, "error": error})
            handler = getattr(self, f"_op_{op}", None)
            if handler is None:
                error = {"code": "unknown_operation", "message": f"unknown op {op!r}"}
                return encode_frame({"ok": False, "error": error})
            result = handler(body)
            return encode_frame({"ok": True, "header": self._header(), **result})

    def _next_script(self, op: str) -> Script | None:
        queue = self._scripts.get(op)
        if not queue:
            return None
        script = queue[0]
        if script.times is not None:
            script.times -= 1
            if script.times <= 0:
                queue.pop(0)
        return script

    def _header(self) -> dict[str, int]:
        return {"cluster_id": CLUSTER_ID, "member_id": self.member_id,
                "revision": self.revision, "raft_term": int(self.status["term"])}

    def _keys(self, key: bytes, range_end: bytes) -> list[bytes]:
        if range_end == b"":
            return [key] if key in self.store else []
        return sorted(k for k in self.store
                      if k >= key and (range_end == b"\0" or k < range_end))

    def _op_range(self, a: dict[str, Any]) -> dict[str, Any]:
        keys = self._keys(a["key"], a.get("range_end", b""))
        if a.get("sort_order") == "descend":
            keys.reverse()
        limit = a.get("limit", 0)
        shown = keys[:limit] if limit else keys
        kvs = [] if a.get("count_only") else [dict(self.store[k]) for k in shown]
        if a.get("keys_only"):
            for kv in kvs:
                kv.pop("value")
        return {"kvs": kvs, "more": len(shown) < len(keys), "count": len(keys)}

    def _op_put(self, a: dict[str, Any]) -> dict[str, Any]:
        prev = self.store.get(a["key"])
        self.revision += 1
        self.store[a["key"]] = {
            "key": a["key"],
            "value": prev["value"] if a.get("ignore_value") and prev else a["value"],
            "create_revision": prev["create_revision"] if prev else self.revision,
            "mod_revision": self.revision, "version": prev["version"] + 1 if prev else 1,
            "lease": a.get("lease", 0),
        }
        return {"prev_kv": prev if a.get("prev_kv") else None}

    def _op_delete_range(self, a: dict[str, Any]) -> dict[str, Any]:
        keys = self._keys(a["key"], a.get("range_end", b""))
        prev = [self.store.pop(k) for k in keys]
        if keys:
            self.revision += 1
        return {"deleted": len(keys), "prev_kvs": prev if a.get("prev_kv") else []}

    def _op_txn(self, a: dict[str, Any]) -> dict[str, Any]:
        ok = all(self._compare(c) for c in a["compare"])
        responses = []
        for op in a["success" if ok else "failure"]:
            ((kind, args),) = op.items()
            responses.append({kind: getattr(self, f"_op_{kind}")(args)})
        return {"succeeded": ok, "responses": responses}

    def _compare(self, c: dict[str, Any]) -> bool:
        kv = self.store.get(c["key"])
        field = {"create": "create_revision", "mod": "mod_revision"}.get(c["target"], c["target"])
        actual = kv[field] if kv else (b"" if field == "value" else 0)
        want = c["value"]
        return {"=": actual == want, "!=": actual != want,
                "<": actual < want, ">": actual > want}[c["result"]]

    def _op_compact(self, a: dict[str, Any]) -> dict[str, Any]:
        self.status["compact_revision"] = a["revision"]
        return {}

    def _op_lease_grant(self, a: dict[str, Any]) -> dict[str, Any]:
        lease_id = a.get("id") or 0x694D77AA9E38260F + len(self.leases)
        self.leases[lease_id] = a["ttl"]
        return {"id": lease_id, "ttl": a["ttl"]}

    def _op_lease_revoke(self, a: dict[str, Any]) -> dict[str, Any]:
        self.leases.pop(a["id"])
        return {}

    def _op_lease_keepalive(self, a: dict[str, Any]) -> dict[str, Any]:
        return {"id": a["id"], "ttl": self.leases[a["id"]]}

    def _op_lease_timetolive(self, a: dict[str, Any]) -> dict[str, Any]:
        ttl = self.leases.get(a["id"])
        keys = [k for k, kv in self.store.items() if kv["lease"] == a["id"]]
        return {"id": a["id"], "ttl": -1 if ttl is None else ttl, "granted_ttl": ttl or 0,
                "keys": keys if a.get("keys") else []}

    def _op_lease_leases(self, a: dict[str, Any]) -> dict[str, Any]:
        return {"leases": sorted(self.leases)}

    def _op_status(self, a: dict[str, Any]) -> dict[str, Any]:
        return {"member_id": self.member_id, "name": self.name, "revision": self.revision,
                **self.status}

    def _op_health(self, a: dict[str, Any]) -> dict[str, Any]:
        return {"health": True, "reason": "", "took_ms": 0.5}

    def _op_member_list(self, a: dict[str, Any]) -> dict[str, Any]:
        return {"members": [{"id": self.member_id, "name": self.name,
                             "peer_urls": ["tcp://127.0.0.1:2380"],
                             "client_urls": [self.address], "is_learner": False}]}


@contextlib.contextmanager
def running(directory: Path, count: int = 1) -> Iterator[list[FakeMember]]:
    """Start `count` fakes on ipc:// sockets in `directory`; stop them all on exit."""
    fakes: list[FakeMember] = []
    try:
        for i in range(1, count + 1):
            address = f"ipc://{directory}/m{i}.sock"
            assert len(address) < 100, f"ipc path too long for a Unix socket: {address}"
            fakes.append(FakeMember(address, member_id=i, name=f"m{i}").start())
        yield fakes
    finally:
        for fake in fakes:
            fake.stop()

"""Follower-side snapshot reassembly: whole and verified, or dropped."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from actors.snapshot_transfer import SnapshotReceiver, parse_descriptor
from cluster import codec
from cluster.errors import BadRequestError
from cluster.messages import ConfState, Message, MessageType, Snapshot, SnapshotMeta
from storage.snapshots import SnapshotStore

META = SnapshotMeta(7, 2, ConfState(voters=frozenset({1, 2})))
DATA = bytes(range(256)) * 40


def chunks(data: bytes, size: int, sha: str | None = None) -> list[dict]:
    header = codec.message_to_wire(Message(MessageType.SNAP, to=2, frm=1, term=3,
                                           snapshot=Snapshot(meta=META)))
    digest = sha or hashlib.sha256(data).hexdigest()
    return [{"msg": header, "offset": o, "total": len(data), "sha256": digest,
             "data": data[o:o + size]} for o in range(0, len(data), size)]


def test_chunks_reassemble_into_a_verified_file(tmp_path: Path) -> None:
    rx = SnapshotReceiver(2, SnapshotStore(tmp_path))
    parts = chunks(DATA, 1000)
    assert all(rx.feed(1, c) is None for c in parts[:-1])
    msg = rx.feed(1, parts[-1])
    assert msg is not None
    assert msg.snapshot is not None
    assert (msg.type, msg.frm, msg.term, msg.snapshot.meta) == (MessageType.SNAP, 1, 3, META)
    path, sha = parse_descriptor(msg.snapshot.data)
    assert path.read_bytes() == DATA
    assert sha == hashlib.sha256(DATA).hexdigest()


def test_out_of_order_chunk_drops_the_transfer(tmp_path: Path) -> None:
    rx = SnapshotReceiver(2, SnapshotStore(tmp_path))
    parts = chunks(DATA, 1000)
    rx.feed(1, parts[0])
    with pytest.raises(BadRequestError):
        rx.feed(1, parts[2])
    with pytest.raises(BadRequestError):
        rx.feed(1, parts[3])  # the transfer is gone; only a new offset-0 chunk restarts it


def test_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    rx = SnapshotReceiver(2, SnapshotStore(tmp_path))
    parts = chunks(DATA, 4096, sha="0" * 64)
    for c in parts[:-1]:
        rx.feed(1, c)
    with pytest.raises(BadRequestError):
        rx.feed(1, parts[-1])
    assert not list(tmp_path.glob("incoming-*"))


def test_chunk_addressed_to_someone_else_is_refused(tmp_path: Path) -> None:
    rx = SnapshotReceiver(3, SnapshotStore(tmp_path))
    with pytest.raises(BadRequestError):
        rx.feed(1, chunks(DATA, 1000)[0])
    with pytest.raises(BadRequestError):
        rx.feed(1, {"msg": "junk"})

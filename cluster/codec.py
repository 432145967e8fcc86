"""CBOR encoding of every frame: the only module that imports cbor2.

Raft messages are encoded as compact positional arrays (they are the hot
path); client frames are maps with short string keys. Encoding is canonical
so that equal values give equal bytes on every replica.
"""

from __future__ import annotations

from typing import Any

import cbor2

from cluster.errors import BadRequestError, UnsupportedVersionError
from cluster.limits import PROTOCOL_VERSION
from cluster.messages import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
)


def dumps(obj: Any) -> bytes:
    """Encode plain data (dicts, lists, bytes, str, int, bool, None) canonically."""
    return cbor2.dumps(obj, canonical=True)


def loads(data: bytes) -> Any:
    """Decode CBOR; any decoding failure becomes BadRequestError."""
    try:
        return cbor2.loads(data)
    except Exception as exc:  # cbor2 raises many types (ValueError, CBORDecodeError, ...)
        raise BadRequestError(f"malformed CBOR frame: {type(exc).__name__}") from None


def encode_frame(body: dict[str, Any]) -> bytes:
    """Wrap a client/peer frame body with the protocol version."""
    return dumps({"v": PROTOCOL_VERSION, **body})


def decode_frame(data: bytes) -> dict[str, Any]:
    """Decode and check the envelope of one frame.

    Raises:
        BadRequestError: not CBOR, or not a map with string keys.
        UnsupportedVersionError: a version this member does not speak.
    """
    body = loads(data)
    if not isinstance(body, dict) or not all(isinstance(k, str) for k in body):
        raise BadRequestError("frame must be a CBOR map with string keys")
    version = body.get("v")
    if version != PROTOCOL_VERSION:
        raise UnsupportedVersionError(f"protocol version {version!r} not supported")
    return body


# --- Raft messages -------------------------------------------------------------

def _entry_to_wire(e: Entry) -> list[Any]:
    return [e.index, e.term, int(e.type), e.data]


def _entry_from_wire(w: Any) -> Entry:
    index, term, etype, data = w
    if not (isinstance(index, int) and isinstance(term, int) and isinstance(data, bytes)):
        raise BadRequestError("malformed entry")
    return Entry(index=index, term=term, type=EntryType(etype), data=data)


def entry_to_bytes(e: Entry) -> bytes:
    return dumps(_entry_to_wire(e))


def _conf_to_wire(c: ConfState) -> list[Any]:
    return [sorted(c.voters), sorted(c.learners)]


def _conf_from_wire(w: Any) -> ConfState:
    voters, learners = w
    return ConfState(voters=frozenset(int(v) for v in voters),
                     learners=frozenset(int(v) for v in learners))


def snapshot_meta_to_wire(m: SnapshotMeta) -> list[Any]:
    return [m.index, m.term, _conf_to_wire(m.conf)]


def snapshot_meta_from_wire(w: Any) -> SnapshotMeta:
    index, term, conf = w
    return SnapshotMeta(index=int(index), term=int(term), conf=_conf_from_wire(conf))


def message_to_wire(m: Message) -> list[Any]:
    snap = None
    if m.snapshot is not None:
        snap = [snapshot_meta_to_wire(m.snapshot.meta), m.snapshot.data]
    return [
        int(m.type), m.to, m.frm, m.term, m.log_term, m.index,
        [_entry_to_wire(e) for e in m.entries], m.commit, m.reject, m.reject_hint,
        m.context, snap,
    ]


def message_from_wire(w: Any) -> Message:
    """Rebuild a Message; anything malformed raises BadRequestError."""
    try:
        (mtype, to, frm, term, log_term, index, entries, commit, reject, reject_hint,
         context, snap) = w
        for v in (to, frm, term, log_term, index, commit, reject_hint):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise BadRequestError("malformed message field")
        if not isinstance(context, bytes) or not isinstance(reject, bool):
            raise BadRequestError("malformed message field")
        snapshot = None
        if snap is not None:
            meta, data = snap
            if not isinstance(data, bytes):
                raise BadRequestError("malformed snapshot")
            snapshot = Snapshot(meta=snapshot_meta_from_wire(meta), data=data)
        return Message(
            type=MessageType(mtype), to=to, frm=frm, term=term, log_term=log_term,
            index=index, entries=tuple(_entry_from_wire(e) for e in entries), commit=commit,
            reject=reject, reject_hint=reject_hint, context=context, snapshot=snapshot,
        )
    except BadRequestError:
        raise
    except (ValueError, TypeError):
        raise BadRequestError("malformed raft message") from None


def encode_peer_frame(sender: int, messages: list[Message]) -> bytes:
    """One frame carries a batch of messages to one peer (count messages, not bytes)."""
    return encode_frame({"from": sender, "msgs": [message_to_wire(m) for m in messages]})


def decode_peer_frame(data: bytes) -> tuple[int, list[Message]]:
    return peer_frame_messages(decode_frame(data))


def peer_frame_messages(body: dict[str, Any]) -> tuple[int, list[Message]]:
    """The sender and messages of a decoded peer frame body."""
    sender, msgs = body.get("from"), body.get("msgs")
    if not isinstance(sender, int) or not isinstance(msgs, list):
        raise BadRequestError("peer frame needs 'from' and 'msgs'")
    return sender, [message_from_wire(w) for w in msgs]

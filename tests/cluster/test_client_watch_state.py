"""The client's watch state machine (cluster/client_watch_state.py), without sockets.

What it must get right is the resume point: `next_revision` moves only on a
whole reply and never backwards, so a failover re-asks exactly what was not
received. Also: what is yielded, what a failure means, and the CLI helpers.
"""

from __future__ import annotations

from typing import Any

import pytest

from cluster import codec
from cluster.cli_watch import event_env, go_quote, response_json
from cluster.client_watch_state import (
    EventType,
    WatchResponse,
    WatchState,
    new_watch_state,
)
from cluster.errors import (
    BadRequestError,
    CompactedError,
    InternalError,
    NoLeaderError,
    TimeoutError_,
    UnavailableError,
    UnknownOperationError,
    error_from_wire,
)

ENDPOINTS = ("ipc:///a", "ipc:///b", "ipc:///c")


def state(start: int = 0, **kw: Any) -> WatchState:
    args: dict[str, Any] = {"range_end": None, "prefix": True, "start_revision": start,
                            "prev_kv": False, "filters": (), "progress_notify": False,
                            "watch_id": 7, "poll_timeout_s": 1.0}
    args.update(kw)
    return new_watch_state(ENDPOINTS, "k/", **args)


def header(revision: int) -> dict[str, int]:
    return {"cluster_id": 1, "member_id": 2, "revision": revision, "raft_term": 3}


def kv(key: bytes, rev: int, value: bytes = b"v") -> dict[str, Any]:
    return {"key": key, "value": value, "create_revision": rev, "mod_revision": rev,
            "version": 1, "lease": 0}


def reply(revision: int, nxt: int, *revs: int) -> dict[str, Any]:
    return {"ok": True, "header": header(revision), "next_revision": nxt,
            "events": [{"type": "put", "kv": kv(b"k/x", r), "prev_kv": None} for r in revs]}


def sent(s: WatchState, poll_s: float = 1.0) -> dict[str, Any]:
    return codec.decode_frame(s.frame(poll_s))


def test_frame_asks_from_next_revision_with_the_range_and_options() -> None:
    s = state(5, prev_kv=True, filters=("noput",), progress_notify=True)
    body = sent(s, 2.5)
    assert body["op"] == "watch_poll"
    assert (body["key"], body["range_end"], body["start_revision"]) == (b"k/", b"k0", 5)
    assert (body["prev_kv"], body["filters"], body["progress_notify"]) == (True, ["noput"], True)
    assert body["timeout_ms"] == 2500


def test_from_now_is_established_by_the_first_reply_which_yields_nothing() -> None:
    s = state(0, progress_notify=True)
    assert not s.established
    sent(s)
    assert s.on_reply(reply(10, 11), first=True) is None
    assert s.established
    assert s.next_revision == 11


def test_events_move_next_revision_and_progress_is_yielded_only_when_asked() -> None:
    s = state(3)
    sent(s)
    r = s.on_reply(reply(9, 10, 4, 6))
    assert r is not None
    assert [e.kv.mod_revision for e in r.events] == [4, 6]
    assert r.events[0].type is EventType.PUT
    assert s.next_revision == 10
    sent(s)
    assert s.on_reply(reply(12, 13)) is None  # a progress, not asked for
    loud = state(3, progress_notify=True)
    sent(loud)
    progress = loud.on_reply(reply(12, 13))
    assert progress is not None
    assert progress.is_progress_notify
    assert progress.header.revision == 12


def test_a_cut_reply_is_not_a_progress_notification() -> None:
    s = state(3, progress_notify=True)
    sent(s)
    # Everything scanned was filtered out and the member stopped short of its revision.
    assert s.on_reply(reply(50_000, 20_003)) is None
    assert s.next_revision == 20_003


@pytest.mark.parametrize(("bad", "why"), [
    (reply(9, 10, 2), "event before the start"),
    (reply(9, 10, 6, 5), "events out of order"),
    (reply(9, 10, 12), "event past the header"),
    (reply(9, 6, 6), "event at next_revision"),
    (reply(9, 2), "next_revision backwards"),
    ({"ok": True, "header": header(9), "events": []}, "no next_revision"),
])
def test_replies_breaking_the_order_rules_are_internal_errors(bad: dict[str, Any],
                                                              why: str) -> None:
    s = state(3)
    sent(s)
    with pytest.raises(InternalError):
        s.on_reply(bad)
    assert s.next_revision == 3, why


def test_compacted_cancels_with_the_compact_revision() -> None:
    s = state(3)
    sent(s)
    exc = error_from_wire({"code": "compacted", "message": "gone", "compact_revision": 40})
    assert isinstance(exc, CompactedError)
    outcome = s.on_failure(exc)
    assert isinstance(outcome, WatchResponse)
    assert outcome.canceled
    assert outcome.compact_revision == 40
    assert outcome.cancel_reason == "gone"
    assert s.canceled


def test_retryable_failures_rotate_endpoints_then_back_off() -> None:
    s = state(3)
    pauses = []
    for exc in (UnavailableError("x"), TimeoutError_("x"), NoLeaderError("x"),
                UnavailableError("x"), UnavailableError("x"), UnavailableError("x")):
        before = s.endpoint
        pauses.append(s.on_failure(exc))
        assert s.endpoint != before
    assert pauses[:2] == [0.0, 0.0]
    assert 0 < pauses[2] < pauses[5]
    assert s.next_revision == 3  # a failure never moves the resume point
    sent(s)
    s.on_reply(reply(9, 10))
    assert s.on_failure(UnavailableError("x")) == 0.0  # a success resets the round


@pytest.mark.parametrize("exc", [BadRequestError("x"), UnknownOperationError("x"),
                                 InternalError("x")])
def test_other_failures_are_raised(exc: Exception) -> None:
    with pytest.raises(type(exc)):
        state(3).on_failure(exc)  # type: ignore[arg-type]


@pytest.mark.parametrize("kw", [{"filters": ("nothing",)}, {"start_revision": -1},
                                {"poll_timeout_s": 0}, {"range_end": "z"}])
def test_bad_arguments_fail_before_sending(kw: dict[str, Any]) -> None:
    with pytest.raises(BadRequestError):
        state(**kw)


def test_watch_ids_are_chosen_or_echoed() -> None:
    assert state(watch_id=None).watch_id != state(watch_id=None).watch_id
    assert state(watch_id=42).watch_id == 42


@pytest.mark.parametrize(("raw", "quoted"), [
    (b"foo", '"foo"'), (b"", '""'), (b'a"b\\c', '"a\\"b\\\\c"'), (b"l1\nl2\t", '"l1\\nl2\\t"'),
    (b"\x00\xff", '"\\x00\\xff"'), ("héllo".encode(), '"héllo"'),
])
def test_go_quote_matches_gos_percent_q(raw: bytes, quoted: str) -> None:
    assert go_quote(raw) == quoted


def test_cli_exec_environment_and_json_shape() -> None:
    s = state(3, prev_kv=True)
    sent(s)
    body = reply(9, 10, 4)
    body["events"].append({"type": "delete", "kv": {**kv(b"k/y", 5, b""), "version": 0},
                           "prev_kv": kv(b"k/y", 2, b"old")})
    r = s.on_reply(body)
    assert r is not None
    assert event_env(r, r.events[1]) == {
        "ETCD_WATCH_REVISION": "9", "ETCD_WATCH_EVENT_TYPE": '"DELETE"',
        "ETCD_WATCH_KEY": '"k/y"', "ETCD_WATCH_VALUE": '""'}
    js = response_json(r)
    assert js["watch_id"] == 7
    assert [e["type"] for e in js["events"]] == ["PUT", "DELETE"]
    assert js["events"][1]["prev_kv"]["value"] == "b2xk"  # base64 of b"old"
    assert "canceled" not in js

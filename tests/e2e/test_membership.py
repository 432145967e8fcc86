"""Membership changes and leader transfer in real processes, under a continuous writer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from cluster.errors import BadRequestError, EtcdliteError
from tests.e2e.harness import ProcessCluster, wait_until

pytestmark = pytest.mark.e2e


class Writer:
    """Writes distinct keys continuously; records what was acknowledged and refusal gaps."""

    def __init__(self, pc: ProcessCluster, names: list[str]) -> None:
        self.pc = pc
        self.names = names
        self.acknowledged: dict[str, str] = {}
        self.longest_refusal_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.pc.client(self.names, timeout_s=0.5) as c:
            i, failing_since = 0, None
            while not self._stop.is_set():
                key = f"w/{i:06d}"
                try:
                    c.put(key, str(i))
                    self.acknowledged[key] = str(i)
                    if failing_since is not None:
                        gap = time.monotonic() - failing_since
                        self.longest_refusal_s = max(self.longest_refusal_s, gap)
                        failing_since = None
                except EtcdliteError:
                    if failing_since is None:
                        failing_since = time.monotonic()
                i += 1

    def wait_for(self, more: int) -> None:
        target = len(self.acknowledged) + more
        wait_until(lambda: len(self.acknowledged) >= target, 20, f"{more} more writes")

    @contextmanager
    def running(self) -> Iterator[Writer]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=20)


def promote_when_ready(pc: ProcessCluster, member_id: int) -> None:
    def try_promote() -> bool:
        with pc.client() as c:
            try:
                c.member_promote(member_id)
                return True
            except BadRequestError:
                return False  # still catching up
    wait_until(try_promote, 30, "the learner to catch up and be promoted", interval_s=0.2)


def test_grow_to_five_with_learners_then_remove_the_leader(make_cluster) -> None:
    pc = make_cluster(3)
    old_leader = pc.wait_for_leader(15)
    specs = {name: pc.add_member_spec(name) for name in ("m4", "m5")}
    all_names = pc.names
    with Writer(pc, all_names).running() as writer:
        writer.wait_for(30)
        for name, spec in specs.items():
            with pc.client(all_names[:3]) as c:
                added = c.member_add(name, [spec.peer_url], [spec.client_url], is_learner=True)
            assert added.member is not None
            assert added.member.is_learner
            assert added.member.id == spec.member_id
            pc.start(name)
            promote_when_ready(pc, spec.member_id)
            writer.wait_for(20)
        with pc.client() as c:
            members = c.member_list().members
        assert len(members) == 5
        assert not any(m.is_learner for m in members)
        assert len(pc.status(old_leader).voters) == 5

        with pc.client() as c:
            c.member_remove(pc.member_id(old_leader))
        survivors = [n for n in all_names if n != old_leader]
        new_leader = pc.wait_for_leader(10, among=survivors)
        assert new_leader != old_leader
        writer.wait_for(30)
    with pc.client(survivors) as c:
        assert {m.name for m in c.member_list().members} == set(survivors)
    for name in survivors:
        def holds_all(n: str = name) -> bool:
            with pc.client([n]) as c:
                r = c.get("w/", prefix=True, serializable=True)
            have = {kv.key_str: kv.value_str for kv in r.kvs}
            return all(have.get(k) == v for k, v in writer.acknowledged.items())
        wait_until(holds_all, 20, f"{name} to hold every acknowledged write")
    print(f"longest refusal {writer.longest_refusal_s:.3f}s, "
          f"{len(writer.acknowledged)} writes acknowledged")
    assert writer.longest_refusal_s < 1.0  # one election timeout (the default 1 s)


def test_move_leader_and_graceful_stop_of_the_leader_skip_the_election(make_cluster) -> None:
    pc = make_cluster(3)
    leader = pc.wait_for_leader(15)
    target = next(n for n in pc.names if n != leader)
    started = time.monotonic()
    with pc.client() as c:
        c.move_leader(pc.member_id(target))
    transfer_s = time.monotonic() - started
    assert pc.wait_for_leader(5) == target
    print(f"leader transfer took {transfer_s * 1000:.0f} ms")
    assert transfer_s < 1.0
    # A graceful stop (SIGTERM, as the supervisor sends) hands leadership over first.
    term_before = pc.status(target).term
    stopped_at = time.monotonic()
    pc.stop(target)
    rest = [n for n in pc.names if n != target]
    with pc.client(rest, timeout_s=1.0) as c:
        wait_until(lambda: c.put("after-stop", "ok") is not None, 5, "a write after the stop")
    print(f"write accepted {time.monotonic() - stopped_at:.2f}s after stopping the leader")
    assert "handed leadership" in pc.log_path(target).read_text()
    assert pc.status(pc.wait_for_leader(5, among=rest)).term == term_before + 1


def test_removed_member_id_cannot_rejoin_and_promotion_waits_for_catch_up(
        make_cluster) -> None:
    pc = make_cluster(3)
    pc.wait_for_leader(15)
    with pc.client() as c:
        victim = pc.member_id("m3")
        c.member_remove(victim)
        with pytest.raises(EtcdliteError, match="removed"):
            c.member_add("m3", [pc.config.members[2].peer_url])
        spec = pc.add_member_spec("m9")
        added = c.member_add("m9", [spec.peer_url], [spec.client_url], is_learner=True)
        with pytest.raises(BadRequestError, match="in sync"):
            c.member_promote(added.member.id)  # never started: has nothing

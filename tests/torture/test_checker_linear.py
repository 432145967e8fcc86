"""The linearizability checker accepts what is legal and has teeth for what is not."""

from __future__ import annotations

from cluster.torture.checker_linear import check_linearizable, check_revision_order
from cluster.torture.final_state import MvccHistory
from cluster.torture.history import KV, F, Outcome
from tests.torture.ops import cas, delete, ev, get, op, put

INFO = Outcome.INFO
FAIL = Outcome.FAIL


def test_sequential_history_is_linearizable() -> None:
    h = [put("k", "a", 0, 1, rev=2), get("k", "a", 2, 2, 3), put("k", "b", 4, 5, rev=3),
         get("k", "b", 3, 6, 7), delete("k", 8, 9, rev=4), get("k", None, 0, 10, 11, rev=4)]
    out = check_linearizable(h)
    assert out.result.ok, out.result.violations
    assert check_revision_order(h).ok


def test_concurrent_read_may_see_either_value() -> None:
    h = [put("k", "a", 0, 1, rev=2), put("k", "b", 2, 6, rev=3),
         get("k", "a", 2, 3, 5), get("k", "b", 3, 4, 5)]
    assert check_linearizable(h).result.ok


def test_stale_read_is_reported_with_a_small_sub_history() -> None:
    noise = [put(f"x{i}", f"n{i}", 20 + i, 20.5 + i, rev=10 + i) for i in range(5)]
    h = [put("k", "a", 0, 1, rev=2), put("k", "b", 2, 3, rev=3),
         get("k", "a", 2, 4, 5, rev=3), *noise]
    out = check_linearizable(h)
    assert not out.result.ok
    failing = out.failing["k"]
    assert [(o.f, o.writes or o.reads) for o in failing] == [
        (F.PUT, h[1].writes), (F.GET, h[2].reads)]
    assert "not linearizable" in out.result.violations[0]


def test_lost_acknowledged_write_is_reported() -> None:
    h = [put("k", "a", 0, 1, rev=2), put("k", "b", 2, 3, rev=3),
         get("k", "a", 2, 10, 11, rev=11)]
    assert not check_linearizable(h).result.ok


def test_value_nobody_wrote_is_reported() -> None:
    h = [put("k", "a", 0, 1, rev=2), get("k", "zzz", 7, 2, 3)]
    assert not check_linearizable(h).result.ok


def test_failed_write_must_never_become_visible() -> None:
    h = [put("k", "a", 0, 1, rev=2), put("k", "b", 2, 3, outcome=FAIL),
         get("k", "b", 3, 4, 5)]
    assert not check_linearizable(h).result.ok


def test_indeterminate_write_may_or_may_not_take_effect() -> None:
    took = [put("k", "a", 0, 1, rev=2), put("k", "b", 2, 3, outcome=INFO),
            get("k", "b", 3, 10, 11)]
    assert check_linearizable(took).result.ok
    never = [put("k", "a", 0, 1, rev=2), put("k", "b", 2, 3, outcome=INFO),
             get("k", "a", 2, 10, 11), get("k", "a", 2, 12, 13)]
    assert check_linearizable(never).result.ok


def test_indeterminate_write_cannot_take_effect_twice() -> None:
    h = [put("k", "a", 0, 1, rev=2), put("k", "b", 2, 3, outcome=INFO),
         get("k", "b", 3, 4, 5), put("k", "c", 6, 7, rev=4), get("k", "b", 3, 8, 9)]
    assert not check_linearizable(h).result.ok


def test_resolved_indeterminate_write_that_never_happened_cannot_be_read() -> None:
    h = [put("k", "a", 0, 1, rev=2), put("k", "b", 2, 3, outcome=INFO),
         get("k", "b", 3, 4, 5)]
    assert check_linearizable(h).result.ok
    assert not check_linearizable(h, MvccHistory([ev(2, "k", "a")])).result.ok


def test_indeterminate_delete_counts_only_if_the_history_has_its_tombstone() -> None:
    h = [put("k", "a", 0, 1, rev=2), delete("k", 2, 3, rev=0, outcome=INFO),
         get("k", "a", 2, 10, 11), get("k", None, 0, 12, 13, rev=3)]
    assert check_linearizable(h).result.ok  # the delete may land between the reads
    assert not check_linearizable(h, MvccHistory([ev(2, "k", "a")])).result.ok
    assert check_linearizable(h, MvccHistory([ev(2, "k", "a"), ev(3, "k", None)])).result.ok


def test_indeterminate_delete_that_landed_must_land_before_its_deadline() -> None:
    # Its tombstone (rev 3) was applied before the put at rev 4 (another key) completed
    # at t=6, so a read of k invoked after that cannot still see "a".
    h = [put("k", "a", 0, 1, rev=2), delete("k", 2, 3, rev=0, outcome=INFO),
         put("j", "x", 5, 6, rev=4)]
    hist = MvccHistory([ev(2, "k", "a"), ev(3, "k", None), ev(4, "j", "x")])
    assert not check_linearizable([*h, get("k", "a", 2, 7, 8, rev=4)], hist).result.ok
    assert check_linearizable([*h, get("k", "a", 2, 7, 8, rev=4)]).result.ok  # no deadline
    assert check_linearizable([*h, get("k", None, 0, 7, 8, rev=4)], hist).result.ok


def test_compare_and_set_follows_the_register() -> None:
    ok = [put("k", "a", 0, 1, rev=2), cas("k", "a", "b", 2, 3, rev=3),
          cas("k", "a", "c", 4, 5, rev=3, succeeded=False, seen=("b", 3))]
    assert check_linearizable(ok).result.ok
    bad = [put("k", "a", 0, 1, rev=2), cas("k", "a", "b", 2, 3, rev=3),
           cas("k", "a", "c", 4, 5, rev=4)]
    assert not check_linearizable(bad).result.ok


def test_lease_revoke_deletes_only_keys_still_attached() -> None:
    h = [put("k", "a", 0, 1, rev=2, lease=7), put("j", "x", 0, 1, rev=3, lease=7),
         put("j", "y", 2, 3, rev=4),
         op(F.REVOKE, 4, 5, lease=7, revision=5),
         get("k", None, 0, 6, 7, rev=5), get("j", "y", 4, 6, 7, rev=5)]
    assert check_linearizable(h).result.ok
    survived = [*h[:4], get("k", "a", 2, 6, 7, rev=5)]
    assert not check_linearizable(survived).result.ok


def test_multi_key_txn_is_checked_on_every_key() -> None:
    txn = op(F.TXN, 0, 1, writes=(KV("a", "1"), KV("b", "2")), revision=2)
    good = op(F.MGET, 2, 3, reads=(KV("a", "1", 2), KV("b", "2", 2)), revision=2)
    assert check_linearizable([txn, good]).result.ok
    torn = op(F.MGET, 2, 3, reads=(KV("a", "1", 2), KV("b", None, 0)), revision=2)
    assert not check_linearizable([txn, torn]).result.ok


def test_serializable_reads_are_not_held_to_linearizability() -> None:
    h = [put("k", "a", 0, 1, rev=2), put("k", "b", 2, 3, rev=3),
         get("k", "a", 2, 4, 5, rev=2, serializable=True)]
    assert check_linearizable(h).result.ok
    assert check_revision_order(h).ok


def test_revision_going_back_after_a_completed_write_is_reported() -> None:
    h = [put("x", "a", 0, 1, rev=5), get("y", None, 0, 2, 3, rev=4)]
    res = check_revision_order(h)
    assert not res.ok
    assert "back in time" in res.violations[0]

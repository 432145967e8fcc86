"""The pure parts of `etcdlite benchmark`: percentiles, histogram, summary, JSON, compare,
the check-perf verdict and key choice. No clock and no cluster: speed itself is tracked by
`etcdlite benchmark --save/--compare`, never by a timed test."""

from __future__ import annotations

import json

import pytest

from cluster import benchmark_report as rep
from cluster.benchmark_failover import medians
from cluster.benchmark_watch import match_latencies
from cluster.benchmark_workloads import KeySpec, encode_key, key_numbers
from cluster.cli_benchmark_more import perf_verdict


@pytest.mark.parametrize(("p", "expected"), [
    (0, 1.0), (10, 1.0), (50, 5.0), (90, 9.0), (99, 10.0), (100, 10.0),
])
def test_percentile_is_nearest_rank(p: float, expected: float) -> None:
    values = [float(v) for v in range(1, 11)]
    assert rep.percentile(values, p) == expected


def test_percentile_of_nothing_is_zero_and_out_of_range_is_rejected() -> None:
    assert rep.percentile([], 50) == 0.0
    with pytest.raises(ValueError, match=r"0\.\.100"):
        rep.percentile([1.0], 101)


def test_histogram_puts_every_value_in_one_bucket_up_to_the_slowest() -> None:
    values = sorted([0.001, 0.002, 0.002, 0.005, 0.010, 0.0100000001])
    buckets = rep.histogram(values, buckets=3)
    assert sum(c for _, c in buckets) == len(values)
    assert buckets[-1][0] == values[-1]
    assert [c for _, c in buckets] == [3, 1, 2]  # edges 4, 7 and 10 ms


def test_histogram_of_equal_values_is_one_bucket() -> None:
    assert rep.histogram([0.5, 0.5, 0.5]) == [(0.5, 3)]
    assert rep.histogram([]) == []


def test_summarize_counts_only_successes_in_throughput_and_latency() -> None:
    r = rep.summarize("put", {"clients": 2}, [0.003, 0.001, 0.002], {"timeout": 2, "x": 0},
                      elapsed_s=1.5)
    assert r.requests == 3
    assert r.requests_per_s == pytest.approx(2.0)
    assert r.errors == {"timeout": 2}
    assert r.error_count == 2
    assert (r.fastest_s, r.slowest_s) == (0.001, 0.003)
    assert r.average_s == pytest.approx(0.002)
    assert r.stddev_s == pytest.approx((2 / 3) ** 0.5 * 0.001)
    assert r.p(50) == 0.002


def test_summarize_of_a_run_where_everything_failed_is_all_zero() -> None:
    r = rep.summarize("put", {}, [], {"unavailable": 5}, elapsed_s=0.2)
    assert (r.requests, r.requests_per_s, r.slowest_s, r.histogram) == (0, 0.0, 0.0, [])


def test_report_survives_a_json_round_trip() -> None:
    r = rep.summarize("range", {"consistency": "s"}, [0.001, 0.004], {}, 0.5,
                      client_cpu_s=0.1, environment={"engine": "threads"})
    again = rep.from_json(json.loads(json.dumps(rep.to_json(r))))
    assert again == r


def test_reading_a_file_that_is_not_a_report_fails_clearly() -> None:
    with pytest.raises(ValueError, match="format"):
        rep.from_json({"name": "put"})
    with pytest.raises(ValueError, match="malformed"):
        rep.from_json({"format": rep.REPORT_FORMAT, "name": "put"})


def _report(rps_elapsed: float, latencies: list[float], errors: int = 0,
            **params: object) -> rep.Report:
    return rep.summarize("put", {"clients": 1, **params}, latencies,
                         {"timeout": errors}, rps_elapsed)


def test_compare_says_which_way_each_metric_moved() -> None:
    old = _report(1.0, [0.010] * 100)
    new = _report(0.5, [0.005] * 100, errors=1)
    rows = {r.metric: r for r in rep.compare(old, new)}
    assert rows["requests/s"].change == pytest.approx(1.0)
    assert rows["requests/s"].better is True
    assert rows["p99 ms"].change == pytest.approx(-0.5)
    assert rows["p99 ms"].better is True
    assert rows["errors"].better is False
    assert rows["errors"].change is None  # from zero: no ratio


def test_compare_lines_show_changes_and_flag_a_different_workload() -> None:
    old = _report(1.0, [0.010] * 10, total=10, val_size=256)
    new = _report(1.0, [0.010] * 10, total=99, val_size=1024)
    text = "\n".join(rep.compare_lines(old, new))
    assert "requests/s" in text
    assert "=" in text  # unchanged metrics
    assert "val_size: 256 -> 1024" in text
    assert "total" not in text.split("note:")[-1]  # request count is not a workload change


def test_histogram_lines_scale_bars_to_the_fullest_bucket() -> None:
    r = rep.summarize("put", {}, [0.001] * 10 + [0.002] * 5, {}, 1.0)
    lines = rep.histogram_lines(r)
    assert lines[0].count("∎") == rep.histogram_bar_width_max
    assert lines[-1].count("∎") == rep.histogram_bar_width_max // 2


def test_check_perf_passes_only_when_rate_slowest_and_stddev_are_within_limits() -> None:
    good = rep.summarize("check-perf", {}, [0.01] * 950, {}, 1.0)
    ok, lines = perf_verdict(good, 1000)
    assert ok
    assert lines[-1] == "PASS"
    slow = rep.summarize("check-perf", {}, [0.01] * 900, {}, 1.0)
    ok, lines = perf_verdict(slow, 1000)
    assert not ok
    assert any(line.startswith("FAIL: throughput") for line in lines)
    spiky = rep.summarize("check-perf", {}, [0.01] * 949 + [0.6], {}, 1.0)
    ok, lines = perf_verdict(spiky, 1000)
    assert not ok
    assert any("slowest" in line and line.startswith("FAIL") for line in lines)


def test_check_perf_fails_on_any_error() -> None:
    r = rep.summarize("check-perf", {}, [0.01] * 1000, {"timeout": 1}, 1.0)
    ok, lines = perf_verdict(r, 1000)
    assert not ok
    assert "FAIL: error timeout: 1" in lines


def test_keys_are_fixed_size_and_a_pure_function_of_the_request_number() -> None:
    spec = KeySpec(key_size=8, key_space_size=1000)
    assert key_numbers(spec, 7) == key_numbers(spec, 7)
    assert len(encode_key(999, 8)) == 8
    assert key_numbers(KeySpec(8, 10, sequential=True), 12) == [2]


def test_a_txn_gets_distinct_keys_and_too_small_a_key_space_is_refused() -> None:
    spec = KeySpec(key_size=4, key_space_size=5)
    for i in range(50):
        numbers = key_numbers(spec, i, 5)
        assert sorted(numbers) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="key space"):
        key_numbers(spec, 0, 6)
    with pytest.raises(ValueError, match="fit"):
        KeySpec(key_size=1, key_space_size=257)


def test_watch_latency_pairs_puts_and_events_by_revision() -> None:
    latencies, missing = match_latencies({5: 1.0, 6: 2.0}, [{5: 1.5, 6: 2.25}, {5: 1.1}])
    assert sorted(latencies) == pytest.approx([0.1, 0.25, 0.5])
    assert missing == 1


def test_failover_medians_take_the_middle_sample_of_each_field() -> None:
    result = {"samples": {"election": [{"new_leader_s": 3.0}, {"new_leader_s": 1.0},
                                       {"new_leader_s": 2.0}], "transfer": []}}
    assert medians(result) == {"election": {"new_leader_s": 2.0}}

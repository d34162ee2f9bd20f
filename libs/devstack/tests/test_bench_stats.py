"""meshmart_devstack.bench.stats: percentiles, the sustained verdict, the rate search."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from meshmart_devstack.bench.arrivals import OK, TIMEOUT, StepRecords
from meshmart_devstack.bench.runner import (
    BenchOptions,
    BenchStackConfig,
    cpu_seconds,
    rss_growth,
    rss_mb,
    wait_idle,
)
from meshmart_devstack.bench.stats import (
    Trial,
    highest_sustained,
    late_median_ratio,
    next_rate,
    per_second,
    percentile,
    spectrum,
)

HUNDRED = [float(i) for i in range(1, 101)]


@pytest.mark.parametrize(
    ("p", "expected"),
    [(0.5, 1.0), (1, 1.0), (50, 50.0), (90, 90.0), (99, 99.0), (99.9, 100.0), (100, 100.0)],
)
def test_percentile_is_the_nearest_rank_sample(p: float, expected: float) -> None:
    assert percentile(HUNDRED, p) == expected


def test_percentile_of_one_sample_is_that_sample_and_of_none_is_nan() -> None:
    assert percentile([7.0], 50) == 7.0
    assert percentile([7.0], 99.99) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match="percentile"):
        percentile(HUNDRED, 101)


def test_percentile_reports_only_observed_values_never_an_interpolation() -> None:
    values = [1.0, 1000.0]
    assert percentile(values, 50) == 1.0
    assert percentile(values, 51) == 1000.0


def test_spectrum_rises_with_the_percentile_and_ends_at_the_maximum() -> None:
    points = spectrum(HUNDRED, points=20)
    percentiles = [p for p, _ in points]
    values = [v for _, v in points]
    assert percentiles == sorted(percentiles)
    assert values == sorted(values)
    assert points[0] == (0.0, 1.0)
    assert points[-1] == (100.0, 100.0)
    assert spectrum([]) == []


def records(
    latencies: Sequence[float | None], outcomes: list[str] | None = None, duration: float = 10.0
) -> StepRecords:
    count = len(latencies)
    return StepRecords(
        rate=count / duration,
        duration=duration,
        wall_start=0.0,
        offsets=[i * duration / count for i in range(count)],
        latencies=list(latencies),
        outcomes=outcomes or [OK] * count,
    )


def test_answers_later_than_the_timeout_and_missing_answers_are_timeouts() -> None:
    step = records([0.01] * 96 + [1.5, None, 0.02, 0.02], duration=10.0).result(timeout=1.0)
    assert step.scheduled == 100
    assert step.ok == 98
    assert step.errors == {TIMEOUT: 2}
    assert step.error_rate == pytest.approx(0.02)
    assert not step.sustained


def test_error_statuses_are_counted_by_kind_and_kept_out_of_the_latencies() -> None:
    outcomes = [OK] * 198 + ["HTTP 503", "connection error"]
    step = records([0.005] * 199 + [None], outcomes, duration=10.0).result(timeout=1.0)
    assert step.errors == {"HTTP 503": 1, "connection error": 1}
    assert step.ok == 198
    assert len(step.latencies) == 198
    assert step.error_rate == pytest.approx(0.01)
    assert not step.sustained  # 1% is not *under* 1%


def test_a_steady_step_with_few_errors_is_sustained() -> None:
    outcomes = [OK] * 999 + ["HTTP 500"]
    step = records([0.004] * 1000, outcomes, duration=10.0).result(timeout=1.0)
    assert step.throughput == pytest.approx(99.9)
    assert step.late_median_ratio == pytest.approx(1.0)
    assert step.sustained
    summary = step.summary()
    assert summary["sustained"] is True
    assert summary["latency_ms"]["p50"] == pytest.approx(4.0)
    assert "latencies" not in summary


def test_a_growing_queue_is_not_sustained_even_without_errors() -> None:
    # Latency climbs from 5 ms to 900 ms over the step: the server falls behind.
    latencies: list[float | None] = [0.005 + 0.9 * i / 999 for i in range(1000)]
    step = records(latencies, duration=10.0).result(timeout=1.0)
    assert step.error_rate == 0
    assert step.late_median_ratio > 3
    assert not step.sustained


def test_late_median_ratio_ignores_jitter_below_the_slack() -> None:
    offsets = [i / 100 for i in range(1000)]
    jittery = [0.0004 if i < 500 else 0.0013 for i in range(1000)]
    assert late_median_ratio(offsets, jittery, 10.0, slack=0.005) < 1.5
    assert late_median_ratio(offsets, jittery, 10.0, slack=0.0) > 3


def test_per_second_counts_sent_and_answered_requests() -> None:
    rows = per_second([0.1, 0.5, 1.2, 1.9], [0.01, None, 0.02, 0.03], 2.0)
    assert [(r["sent"], r["ok"]) for r in rows] == [(2, 1), (2, 2)]
    assert rows[1]["p99_ms"] == pytest.approx(30.0)


def test_the_search_grows_until_a_step_fails_then_bisects() -> None:
    trials: list[Trial] = []
    capacity = 1000.0
    while (rate := next_rate(trials, start=100, growth=2, precision=0.05)) is not None:
        trials.append((rate, rate <= capacity))
        assert len(trials) < 20
    assert [r for r, _ in trials[:5]] == [100, 200, 400, 800, 1600]
    best = highest_sustained(trials)
    assert best is not None
    assert 0.95 * capacity <= best <= capacity


def test_the_search_shrinks_when_the_start_rate_already_fails() -> None:
    trials: list[Trial] = [(100.0, False)]
    assert next_rate(trials, start=100, growth=2, precision=0.05) == 50
    trials += [(50.0, False), (25.0, True)]
    assert next_rate(trials, start=100, growth=2, precision=0.05) == 37.5
    assert next_rate([(1.5, False)], start=1.5, growth=2, precision=0.05) is None
    assert highest_sustained([(1.0, False)]) is None


def test_rss_growth_reports_change_and_trend_per_service() -> None:
    samples = [{"t": t, "product": 80.0 + t / 60, "order": 90.0} for t in (0, 60, 120, 180)]
    growth = rss_growth(samples)
    assert growth["product"]["change"] == pytest.approx(3.0)
    assert growth["product"]["mb_per_min"] == pytest.approx(1.0)
    assert growth["order"]["mb_per_min"] == 0


def test_process_probes_read_cpu_and_memory_of_a_live_process_and_none_of_a_dead_one() -> None:
    me = os.getpid()
    assert (cpu_seconds(me) or 0) > 0
    assert (rss_mb(me) or 0) > 1
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert wait_idle(sleeper.pid, within=10, window=0.2)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert cpu_seconds(sleeper.pid) is None
    assert rss_mb(sleeper.pid) is None


def test_the_quick_run_is_shorter_and_coarser_than_the_full_one(tmp_path: Path) -> None:
    full = BenchOptions.for_run(tmp_path)
    quick = BenchOptions.for_run(tmp_path, quick=True)
    assert full.checkout_confirm_seconds == 60
    assert quick.checkout_confirm_seconds < full.checkout_confirm_seconds
    assert quick.step_seconds < full.step_seconds
    assert quick.precision > full.precision


def test_each_service_gets_its_own_database_url_on_the_real_engines(tmp_path: Path) -> None:
    config = BenchStackConfig(
        host="127.0.0.1",
        ports={"user": 1, "product": 2},
        var_dir=tmp_path,
        extra_env={"BUS_BACKEND": "rocketmq"},
        database_urls={"product": "mysql+aiomysql://root@127.0.0.1:3306/product_x"},
    )
    assert config.env_for("product")["DATABASE_URL"].endswith("/product_x")
    assert "DATABASE_URL" not in config.env_for("user")
    assert config.env_for("user")["BUS_BACKEND"] == "rocketmq"

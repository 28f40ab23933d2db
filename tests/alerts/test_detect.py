"""Robust baselines, anomaly decisions and the other rule kinds' pure checks."""

from __future__ import annotations

import math

import pytest

from agentwatch.alerts._detect import (
    MAD_TO_SIGMA,
    Window,
    binomial_spread,
    binomial_tail,
    budget_finding,
    health_finding,
    is_anomalous,
    robust_baseline,
    silence_finding,
    threshold_finding,
)

STEADY = [Window(v, 100) for v in (10.0, 11.0, 9.0, 10.5, 9.5, 10.0, 10.2, 9.8)]


def test_the_baseline_is_the_median_and_the_mad_scaled_to_a_standard_deviation() -> None:
    base = robust_baseline([1.0, 2.0, 3.0, 4.0, 100.0], relative_floor=0.0)
    assert (base.median, base.mad, base.scale) == (3.0, 1.0, MAD_TO_SIGMA)


def test_one_outlier_barely_moves_the_baseline() -> None:
    assert robust_baseline([10.0, 10.0, 11.0, 9.0, 1000.0]).median == 10.0


def test_a_flat_series_gets_a_floored_spread_instead_of_zero() -> None:
    base = robust_baseline([2.0] * 10, relative_floor=0.1)
    assert (base.mad, round(base.scale, 12)) == (0.0, 0.2)


def test_an_absolute_floor_applies_when_the_median_is_zero() -> None:
    assert robust_baseline([0.0] * 5, absolute_floor=0.5).scale == 0.5


def test_a_baseline_needs_values() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        robust_baseline([])


def test_a_zero_error_baseline_still_has_one_tasks_worth_of_binomial_spread() -> None:
    assert binomial_spread(0.0, 100) == pytest.approx(math.sqrt(0.01 * 0.99 / 100))


def test_a_five_fold_jump_is_anomalous_with_the_numbers_behind_it() -> None:
    decision = is_anomalous(Window(50.0, 100), STEADY)
    assert (decision.anomalous, decision.baseline, decision.ratio, decision.history_windows) == (
        True,
        10.0,
        5.0,
        8,
    )


def test_the_summary_says_what_moved_by_how_much_against_what_baseline() -> None:
    decision = is_anomalous(Window(50.0, 100), STEADY)
    assert decision.summary("cost") == (
        "cost rose to 50 from a baseline of 10 (x5.0, robust z 26.7 over 8 windows, 100 tasks now)"
    )


def test_a_small_wobble_on_a_flat_series_is_normal() -> None:
    flat = [Window(10.0, 100)] * 12
    assert is_anomalous(Window(11.0, 100), flat).status == "normal"


def test_a_window_under_min_volume_is_not_judged() -> None:
    decision = is_anomalous(Window(500.0, 5), STEADY, min_volume=20)
    assert (decision.anomalous, decision.status) == (False, "low_volume")


def test_low_volume_windows_do_not_count_towards_the_baseline() -> None:
    history = [Window(10.0, 100), Window(10.0, 100), Window(1000.0, 3), Window(1000.0, 3)]
    decision = is_anomalous(Window(50.0, 100), history, min_volume=20)
    assert (decision.status, decision.history_windows) == ("insufficient_history", 2)


def test_too_little_history_is_not_judged() -> None:
    decision = is_anomalous(Window(50.0, 100), STEADY[:2], min_history=3)
    assert (decision.anomalous, decision.status) == (False, "insufficient_history")


def test_direction_up_ignores_drops() -> None:
    assert not is_anomalous(Window(0.0, 100), STEADY, direction="up").anomalous


def test_direction_down_catches_drops() -> None:
    assert is_anomalous(Window(0.0, 100), STEADY, direction="down").anomalous


def test_direction_both_catches_rises_and_drops() -> None:
    assert [
        is_anomalous(Window(v, 100), STEADY, direction="both").anomalous for v in (0.0, 50.0)
    ] == [True, True]


def test_min_delta_stops_tiny_absolute_moves_from_alerting() -> None:
    tiny = [Window(0.001, 100)] * 12
    assert not is_anomalous(Window(0.01, 100), tiny, min_delta=0.05).anomalous


def test_a_share_is_judged_against_its_binomial_noise() -> None:
    """No errors for hours, then 2 failures in 100 tasks: noise, not an error spike."""
    no_errors = [Window(0.0, 100)] * 12
    assert not is_anomalous(Window(0.02, 100), no_errors, proportion=True).anomalous


def test_without_the_binomial_floor_the_same_share_would_alarm() -> None:
    no_errors = [Window(0.0, 100)] * 12
    assert is_anomalous(Window(0.02, 100), no_errors, proportion=False).anomalous


def test_the_binomial_tail_is_exact() -> None:
    """P(X >= 7) for X ~ Binomial(100, 0.02), as scipy.stats.binom.sf(6, 100, 0.02) gives."""
    assert binomial_tail(7, 100, 0.02) == pytest.approx(0.00406205408010084, rel=1e-9)


def test_the_lower_binomial_tail_is_exact() -> None:
    """P(X <= 3) for X ~ Binomial(1000, 0.01), as scipy.stats.binom.cdf(3, 1000, 0.01) gives."""
    assert binomial_tail(3, 1000, 0.01, upper=False) == pytest.approx(0.0100726547720143)


def test_a_count_in_the_long_tail_of_a_low_rate_is_not_a_spike() -> None:
    """8 errors in 100 tasks at a 2% baseline: 4.3 binomial deviations, yet 1 window in 1000
    at that rate has as many; a normal approximation would call it a spike."""
    history = [Window(0.02, 100)] * 24
    decision = is_anomalous(Window(0.08, 100), history, proportion=True, min_delta=0.05)
    assert (decision.score is not None and decision.score > 4, decision.anomalous) == (True, False)


def test_a_share_decision_carries_the_binomial_p_value() -> None:
    history = [Window(0.02, 100)] * 24
    decision = is_anomalous(Window(0.07, 100), history, proportion=True)
    assert decision.p_value == pytest.approx(binomial_tail(7, 100, 0.02))


def test_an_error_rate_jump_from_2_to_30_percent_is_anomalous() -> None:
    history = [Window(r, 200) for r in (0.02, 0.015, 0.025, 0.02, 0.01, 0.03, 0.02, 0.02)]
    assert is_anomalous(Window(0.30, 200), history, proportion=True).anomalous


def test_a_static_threshold_breaches_when_the_comparison_holds() -> None:
    finding = threshold_finding("latency_p95", Window(2500.0, 50), ">", 2000.0)
    assert (finding.breaching, finding.summary) == (
        True,
        "latency_p95 is 2500 (alert when > 2000)",
    )


def test_a_static_threshold_under_min_volume_cannot_tell() -> None:
    assert threshold_finding("cost", Window(99.0, 0), ">", 1.0, min_volume=1).breaching is None


def test_a_daily_budget_breaches_once_spend_passes_it() -> None:
    finding = budget_finding(120.0, 100.0)
    assert (finding.breaching, finding.summary) == (
        True,
        "spent $120.00 today of a $100.00 daily budget (120%)",
    )


def test_a_usually_busy_agent_that_went_silent_breaches() -> None:
    finding = silence_finding(0, 8, baseline_windows=8, min_active_windows=6)
    assert finding.breaching is True


def test_a_rarely_active_agent_that_is_silent_cannot_tell() -> None:
    assert silence_finding(0, 2, baseline_windows=8, min_active_windows=6).breaching is None


def test_an_agent_with_traffic_is_not_silent() -> None:
    assert silence_finding(3, 8, baseline_windows=8, min_active_windows=6).breaching is False


def test_a_health_check_breaches_after_enough_consecutive_failures() -> None:
    finding = health_finding([True, False, False], consecutive_failures=2)
    assert (finding.breaching, finding.summary) == (True, "failed the last 2 runs")


def test_a_health_check_that_passed_last_is_clear() -> None:
    assert health_finding([False, False, True], consecutive_failures=1).breaching is False


def test_a_health_check_with_no_runs_cannot_tell() -> None:
    assert health_finding([]).breaching is None

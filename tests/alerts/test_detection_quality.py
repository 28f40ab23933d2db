"""Detection quality on labelled synthetic workloads, with the default rules' settings.

- a steady workload (seeded noise, many windows) raises no alert; the window-level
  false-positive rate is recorded as a test property;
- an injected x5 cost spike and an error-rate spike 2% -> 30% fire within two windows, name the
  right task type, and resolve after the spike ends;
- precision and recall of the spike detector on a series with several labelled spikes.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import pytest

from agentwatch.alerts._detect import Transition
from tests.alerts.synthetic import (
    Series,
    alert_timeline,
    cost_series,
    default_anomaly_rule,
    detect,
    error_rate_series,
    events_detected,
    settings_for,
    window_quality,
)

WINDOWS = 500
SEEDS = tuple(range(1, 9))
SPIKE_START, SPIKE_LENGTH = 200, 4
SPIKE_END = SPIKE_START + SPIKE_LENGTH
LABELLED_SPIKES = ((40, 3), (90, 5), (150, 2), (220, 6), (300, 4), (360, 3))

RecordProperty = Callable[[str, object], None]


@cache
def steady(metric: str, seed: int) -> Series:
    if metric == "cost":
        return cost_series(WINDOWS, seed=seed, tasks_per_window=100)
    return error_rate_series(WINDOWS, seed=seed, tasks_per_window=100)


@cache
def spiked(metric: str, seed: int, spikes: tuple[tuple[int, int], ...]) -> Series:
    if metric == "cost":
        return cost_series(WINDOWS, seed=seed, tasks_per_window=100, spikes=spikes, factor=5.0)
    return error_rate_series(
        WINDOWS, seed=seed, tasks_per_window=100, spikes=spikes, spike_rate=0.30
    )


def flags(series: Series, metric: str) -> list[bool]:
    return [d.anomalous for d in detect(series, settings_for(default_anomaly_rule(metric)))]


def timeline(metric: str) -> list[tuple[int, Transition]]:
    """refund spikes at window 200 for 4 windows; billing stays steady."""
    rule = default_anomaly_rule(metric)
    settings = settings_for(rule)
    groups = {
        "task_type=refund": detect(spiked(metric, 11, ((SPIKE_START, SPIKE_LENGTH),)), settings),
        "task_type=billing": detect(steady(metric, 12), settings),
    }
    return alert_timeline(groups, rule=rule.name, metric=metric, policy=rule)


@pytest.mark.parametrize("metric", ["cost", "error_rate"])
def test_a_steady_workload_raises_no_alert(metric: str, record_property: RecordProperty) -> None:
    rule = default_anomaly_rule(metric)
    fired = 0
    flagged = judged = 0
    for seed in SEEDS:
        series = steady(metric, seed)
        decisions = detect(series, settings_for(rule))
        flagged += sum(d.anomalous for d in decisions)
        judged += sum(d.judged for d in decisions)
        groups = {"task_type=steady": decisions}
        fired += sum(t.kind == "fired" for _, t in alert_timeline(groups, policy=rule))
    record_property(f"{metric}_false_positive_windows", f"{flagged}/{judged}")
    assert fired == 0, f"{fired} alerts, {flagged} of {judged} windows flagged"


@pytest.mark.parametrize("metric", ["cost", "error_rate"])
def test_the_false_positive_rate_per_window_is_under_half_a_percent(
    metric: str, record_property: RecordProperty
) -> None:
    quality = [
        window_quality(s.labels, flags(s, metric)) for s in (steady(metric, n) for n in SEEDS)
    ]
    false_positives = sum(q.false_positives for q in quality)
    negatives = sum(q.false_positives + q.true_negatives for q in quality)
    record_property(f"{metric}_false_positive_rate", false_positives / negatives)
    assert false_positives / negatives < 0.005


@pytest.mark.parametrize("metric", ["cost", "error_rate"])
def test_a_spike_fires_within_two_windows(metric: str) -> None:
    fired = [i for i, t in timeline(metric) if t.kind == "fired"]
    assert fired[0] - SPIKE_START in (0, 1)


@pytest.mark.parametrize("metric", ["cost", "error_rate"])
def test_a_spike_alert_names_the_task_type_that_spiked(metric: str) -> None:
    assert {t.key.group for _, t in timeline(metric)} == {"task_type=refund"}


@pytest.mark.parametrize("metric", ["cost", "error_rate"])
def test_a_spike_alert_resolves_after_the_spike_ends(metric: str) -> None:
    rule = default_anomaly_rule(metric)
    kinds = [(t.kind, i) for i, t in timeline(metric)]
    assert kinds == [("fired", SPIKE_START), ("resolved", SPIKE_END + rule.resolve_after - 1)]


def test_the_spike_alert_says_what_moved_and_against_what_baseline() -> None:
    [(_, fired), _] = timeline("cost")
    assert fired.summary.startswith("cost rose to ")
    assert " from a baseline of " in fired.summary


@pytest.mark.parametrize("metric", ["cost", "error_rate"])
def test_precision_and_recall_on_a_labelled_series(
    metric: str, record_property: RecordProperty
) -> None:
    series = [spiked(metric, seed, LABELLED_SPIKES) for seed in SEEDS]
    labels = [label for s in series for label in s.labels]
    flagged = [flag for s in series for flag in flags(s, metric)]
    quality = window_quality(labels, flagged)
    record_property(f"{metric}_precision", quality.precision)
    record_property(f"{metric}_recall", quality.recall)
    assert (quality.precision >= 0.95, quality.recall >= 0.9) == (True, True), quality


@pytest.mark.parametrize("metric", ["cost", "error_rate"])
def test_every_labelled_spike_is_caught_within_two_windows(metric: str) -> None:
    series = [spiked(metric, seed, LABELLED_SPIKES) for seed in SEEDS]
    assert {events_detected(s.labels, flags(s, metric), within=2) for s in series} == {1.0}

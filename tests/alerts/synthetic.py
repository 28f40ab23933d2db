"""Labelled synthetic metric series and detection-quality helpers.

Used by the detection tests and meant for the detection-quality benchmark too: a steady workload
with seeded noise (task counts ~ Poisson, cost per task lognormal, errors Bernoulli), spikes
injected at known windows, the detector run window by window the way the evaluator runs it, and
precision / recall / false-positive rate computed against the labels.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from agentwatch.alerts._detect import (
    AlertKey,
    AlertState,
    AnomalyDecision,
    DefaultPolicy,
    Observation,
    Policy,
    Transition,
    Window,
    anomaly_finding,
    is_anomalous,
    step,
)
from agentwatch.alerts._rules import AnomalyRule, default_rules

DEFAULT_POLICY: Policy = DefaultPolicy()


@dataclass
class Series:
    """One metric for one group, window by window, with the windows a spike was injected in."""

    windows: list[Window]
    labels: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.labels:
            self.labels = [False] * len(self.windows)


def _poisson(rng: random.Random, mean: float) -> int:
    # Normal approximation: fine for the tens-to-hundreds of tasks a window holds here.
    return max(0, round(rng.gauss(mean, math.sqrt(mean))))


def _lognormal_with_mean(rng: random.Random, mean: float, cv: float) -> float:
    sigma2 = math.log(1 + cv * cv)
    return rng.lognormvariate(math.log(mean) - sigma2 / 2, math.sqrt(sigma2))


def cost_series(
    n_windows: int,
    *,
    seed: int,
    tasks_per_window: float = 200,
    cost_per_task: float = 0.02,
    cv: float = 0.6,
    spikes: Sequence[tuple[int, int]] = (),
    factor: float = 5.0,
) -> Series:
    """Cost per window; inside each ``(start, length)`` spike every task costs ``factor`` x."""
    rng = random.Random(seed)
    windows: list[Window] = []
    labels: list[bool] = []
    for i in range(n_windows):
        spiking = any(start <= i < start + length for start, length in spikes)
        tasks = _poisson(rng, tasks_per_window)
        per_task = cost_per_task * (factor if spiking else 1.0)
        total = sum(_lognormal_with_mean(rng, per_task, cv) for _ in range(tasks))
        windows.append(Window(total, tasks))
        labels.append(spiking)
    return Series(windows, labels)


def error_rate_series(
    n_windows: int,
    *,
    seed: int,
    tasks_per_window: float = 200,
    rate: float = 0.02,
    spikes: Sequence[tuple[int, int]] = (),
    spike_rate: float = 0.30,
) -> Series:
    """Share of failed tasks per window; ``spike_rate`` inside each ``(start, length)``."""
    rng = random.Random(seed)
    windows: list[Window] = []
    labels: list[bool] = []
    for i in range(n_windows):
        spiking = any(start <= i < start + length for start, length in spikes)
        tasks = _poisson(rng, tasks_per_window)
        p = spike_rate if spiking else rate
        errors = sum(rng.random() < p for _ in range(tasks))
        windows.append(Window(errors / tasks if tasks else 0.0, tasks))
        labels.append(spiking)
    return Series(windows, labels)


@dataclass(frozen=True)
class DetectorSettings:
    """The anomaly rule's knobs, as ``is_anomalous`` takes them."""

    baseline_windows: int = 24
    min_volume: int = 20
    threshold: float = 4.0
    proportion: bool = False
    min_delta: float = 0.0
    relative_floor: float = 0.15


def detect(
    series: Series, settings: DetectorSettings = DetectorSettings()
) -> list[AnomalyDecision]:
    """Judge every window against the ``baseline_windows`` before it, as the evaluator does."""
    decisions = []
    for i, current in enumerate(series.windows):
        history = series.windows[max(0, i - settings.baseline_windows) : i]
        decisions.append(
            is_anomalous(
                current,
                history,
                min_volume=settings.min_volume,
                threshold=settings.threshold,
                proportion=settings.proportion,
                min_delta=settings.min_delta,
                relative_floor=settings.relative_floor,
            )
        )
    return decisions


def alert_timeline(
    groups: dict[str, list[AnomalyDecision]],
    *,
    rule: str = "spike",
    metric: str = "metric",
    window_s: float = 300.0,
    policy: Policy = DEFAULT_POLICY,
) -> list[tuple[int, Transition]]:
    """Feed per-group decisions through the alert state machine, one evaluation per window;
    returns (window index, transition) pairs."""
    states: dict[AlertKey, AlertState] = {}
    timeline: list[tuple[int, Transition]] = []
    n = max(len(d) for d in groups.values())
    for i in range(n):
        observations = [
            Observation(
                AlertKey(rule, group),
                anomaly_finding(decisions[i], metric).breaching,
                at=i * window_s,
                summary=decisions[i].summary(metric),
            )
            for group, decisions in groups.items()
            if i < len(decisions)
        ]
        states, transitions = step(states, observations, {rule: policy})
        timeline.extend((i, t) for t in transitions)
    return timeline


@dataclass(frozen=True)
class Quality:
    """Window-level confusion counts against the labels, and the rates built from them."""

    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int

    @property
    def precision(self) -> float:
        flagged = self.true_positives + self.false_positives
        return self.true_positives / flagged if flagged else 1.0

    @property
    def recall(self) -> float:
        actual = self.true_positives + self.false_negatives
        return self.true_positives / actual if actual else 1.0

    @property
    def false_positive_rate(self) -> float:
        negatives = self.false_positives + self.true_negatives
        return self.false_positives / negatives if negatives else 0.0


def window_quality(labels: Sequence[bool], flagged: Sequence[bool]) -> Quality:
    """Precision and recall per window: each flagged window is right or wrong on its own."""
    if len(labels) != len(flagged):
        raise ValueError("labels and flags differ in length")
    pairs = list(zip(labels, flagged, strict=True))
    return Quality(
        true_positives=sum(label and flag for label, flag in pairs),
        false_positives=sum(flag and not label for label, flag in pairs),
        false_negatives=sum(label and not flag for label, flag in pairs),
        true_negatives=sum(not label and not flag for label, flag in pairs),
    )


def spike_events(labels: Sequence[bool]) -> list[tuple[int, int]]:
    """(start, length) of each run of labelled windows."""
    events: list[tuple[int, int]] = []
    start: int | None = None
    for i, label in enumerate([*labels, False]):
        if label and start is None:
            start = i
        elif not label and start is not None:
            events.append((start, i - start))
            start = None
    return events


def events_detected(labels: Sequence[bool], flagged: Sequence[bool], *, within: int = 2) -> float:
    """Share of spike events with a flagged window among their first ``within`` windows."""
    events = spike_events(labels)
    if not events:
        return 1.0
    hits = sum(any(flagged[start : start + min(within, length)]) for start, length in events)
    return hits / len(events)


def settings_for(rule: AnomalyRule) -> DetectorSettings:
    """The detector knobs of an anomaly rule, so quality is measured on the real defaults."""
    return DetectorSettings(
        baseline_windows=rule.baseline_windows,
        min_volume=rule.min_volume,
        threshold=rule.threshold,
        proportion=rule.proportion,
        min_delta=rule.min_delta,
        relative_floor=rule.relative_floor,
    )


def default_anomaly_rule(metric: str) -> AnomalyRule:
    """The built-in anomaly rule on ``metric``."""
    [rule] = [r for r in default_rules() if isinstance(r, AnomalyRule) and r.metric == metric]
    return rule

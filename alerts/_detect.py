"""Pure detection: robust baselines, anomaly decisions, and the alert state machine.

Nothing here reads storage or the clock: the evaluator queries ClickHouse, turns each rule and
group into numbers, and passes them (and the evaluation time) in. That keeps detection
testable on synthetic series and reusable in benchmarks.

- ``robust_baseline``: median and MAD of earlier windows, the MAD scaled to a standard deviation
  (x1.4826) and floored, so a flat series does not alarm on a tiny wobble.
- ``is_anomalous``: is the current window far from that baseline (robust z over a threshold),
  with enough volume to judge? The ``AnomalyDecision`` carries the numbers to say what moved, by
  how much, against what baseline.
- ``step``: firing / resolved transitions from evaluation results and the previous states, with
  de-duplication (one incident, one notification) and a cooldown between notifications.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal, Protocol

MAD_TO_SIGMA: Final = 1.4826  # MAD x this estimates the standard deviation of normal noise
Direction = Literal["up", "down", "both"]
AnomalyStatus = Literal["anomalous", "normal", "low_volume", "insufficient_history"]


# --- baselines and anomaly decisions ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Window:
    """One evaluation window of one metric for one group: its value and how many tasks (or
    spans) it is computed from."""

    value: float
    volume: int


@dataclass(frozen=True, slots=True)
class Baseline:
    median: float
    mad: float
    scale: float
    """The spread a move is measured in: ``MAD_TO_SIGMA * mad``, raised to the floors."""
    windows: int


def robust_baseline(
    values: Sequence[float], *, relative_floor: float = 0.1, absolute_floor: float = 0.0
) -> Baseline:
    """Median and MAD of ``values``; the scale is at least ``relative_floor * |median|`` and
    ``absolute_floor``, so a flat series (MAD 0) does not turn noise into huge scores."""
    if not values:
        raise ValueError("a baseline needs at least one value")
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    scale = max(MAD_TO_SIGMA * mad, relative_floor * abs(median), absolute_floor)
    return Baseline(median=median, mad=mad, scale=scale, windows=len(values))


def binomial_spread(share: float, volume: int) -> float:
    """Standard deviation of a share observed over ``volume`` tasks: the noise a rate has at
    that volume even when nothing changed. The share is kept at least one task's worth from
    0 and 1, so a baseline of no errors at all still has some spread."""
    if volume <= 0:
        return 0.0
    p = min(max(share, 1.0 / volume), 1.0 - 1.0 / volume) if volume > 1 else 0.5
    return math.sqrt(p * (1.0 - p) / volume)


def binomial_tail(events: int, volume: int, share: float, *, upper: bool = True) -> float:
    """P(X >= events) (``upper``) or P(X <= events) for X ~ Binomial(volume, share).

    Exact, summed in log space from ``events`` outwards until the terms stop mattering: a few
    dozen terms for the counts a window holds.
    """
    if volume <= 0:
        return 1.0
    p = min(max(share, 1e-12), 1.0 - 1e-12)
    events = min(max(events, 0), volume)
    log_p, log_q = math.log(p), math.log1p(-p)
    log_n = math.lgamma(volume + 1)

    def term(k: int) -> float:
        log_comb = log_n - math.lgamma(k + 1) - math.lgamma(volume - k + 1)
        return math.exp(log_comb + k * log_p + (volume - k) * log_q)

    ks = range(events, volume + 1) if upper else range(events, -1, -1)
    total = 0.0
    for k in ks:
        t = term(k)
        total += t
        if t < total * 1e-12 and (k > volume * p if upper else k < volume * p):
            break
    return min(total, 1.0)


def normal_tail(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


@dataclass(frozen=True, slots=True)
class AnomalyDecision:
    """Whether a window is anomalous, and the numbers behind the answer."""

    anomalous: bool
    status: AnomalyStatus
    current: float
    volume: int
    baseline: float | None = None
    scale: float | None = None
    """The spread the move was measured in, in the metric's unit."""
    score: float | None = None
    """Robust z: the move in units of ``scale``."""
    history_windows: int = 0
    p_value: float | None = None
    """For shares: the chance of a count this far out under the baseline rate (exact
    binomial)."""

    @property
    def change(self) -> float | None:
        """Current minus baseline, in the metric's unit."""
        return None if self.baseline is None else self.current - self.baseline

    @property
    def ratio(self) -> float | None:
        """Current over baseline (x5 for a five-fold spike); None when the baseline is 0."""
        if self.baseline is None or self.baseline == 0:
            return None
        return self.current / self.baseline

    @property
    def judged(self) -> bool:
        """False when there was too little volume or history to tell."""
        return self.status in ("anomalous", "normal")

    def summary(self, metric: str) -> str:
        """What moved, by how much, against what baseline: one line for an alert."""
        if self.status == "low_volume":
            return f"{metric} {_num(self.current)} over too few tasks ({self.volume}) to judge"
        if self.status == "insufficient_history" or self.baseline is None:
            return (
                f"{metric} {_num(self.current)}: only {self.history_windows} earlier windows "
                "with enough volume, too few for a baseline"
            )
        verb = "rose" if self.current > self.baseline else "fell"
        if self.current == self.baseline:
            verb = "held"
        ratio = self.ratio
        times = f"x{ratio:.1f}, " if ratio is not None else ""
        score = "inf" if self.score is None or math.isinf(self.score) else f"{self.score:.1f}"
        return (
            f"{metric} {verb} to {_num(self.current)} from a baseline of {_num(self.baseline)} "
            f"({times}robust z {score} over {self.history_windows} windows, "
            f"{self.volume} tasks now)"
        )


def _num(value: float) -> str:
    return f"{value:.4g}"


def _score(change: float, scale: float) -> float:
    if scale > 0:
        return change / scale
    return math.copysign(math.inf, change) if change else 0.0


def is_anomalous(
    current: Window,
    history: Sequence[Window],
    *,
    min_volume: int = 20,
    threshold: float = 4.0,
    direction: Direction = "up",
    proportion: bool = False,
    relative_floor: float = 0.15,
    min_delta: float = 0.0,
    min_history: int = 3,
) -> AnomalyDecision:
    """Judge ``current`` against the robust baseline of ``history`` (oldest first).

    Windows under ``min_volume`` are neither judged nor learnt from. A window is anomalous
    when its robust z (distance from the median in floored MAD units) passes ``threshold`` in
    ``direction`` and it moved at least ``min_delta``. For shares (``proportion=True``: error
    rate, escalation rate) the spread is at least the binomial noise at the current volume,
    and the count must also be as improbable under the exact binomial tail as ``threshold``
    is under a normal one.
    """
    if current.volume < min_volume:
        return AnomalyDecision(False, "low_volume", current.value, current.volume)
    usable = [w.value for w in history if w.volume >= min_volume]
    if len(usable) < min_history:
        return AnomalyDecision(
            False,
            "insufficient_history",
            current.value,
            current.volume,
            history_windows=len(usable),
        )
    base = robust_baseline(usable, relative_floor=relative_floor)
    change = current.value - base.median
    scale = base.scale
    p_value: float | None = None
    if proportion:
        # The noise a share has at this volume, whatever the windows did. The mean share sets
        # it: with few events per window the median sits below the true rate.
        share = max(base.median, statistics.fmean(usable))
        scale = max(scale, binomial_spread(share, current.volume))
        # A low rate has a long right tail (2% of 100 tasks is 2 errors; 7 happen), so the
        # count must also be improbable under the exact binomial, not only under a normal.
        events = round(current.value * current.volume)
        p_value = binomial_tail(events, current.volume, share, upper=change >= 0)
    score = _score(change, scale)
    if direction == "up":
        moved = score > threshold and change >= min_delta
    elif direction == "down":
        moved = -score > threshold and -change >= min_delta
    else:
        moved = abs(score) > threshold and abs(change) >= min_delta
    if p_value is not None:
        moved = moved and p_value < normal_tail(threshold)
    return AnomalyDecision(
        anomalous=moved,
        status="anomalous" if moved else "normal",
        current=current.value,
        volume=current.volume,
        baseline=base.median,
        scale=scale,
        score=score,
        history_windows=base.windows,
        p_value=p_value,
    )


# --- the other rule kinds, as pure checks -----------------------------------------------------
@dataclass(frozen=True, slots=True)
class Finding:
    """A rule's verdict for one group: breaching, clear, or None (cannot tell)."""

    breaching: bool | None
    summary: str


_OPS: Final = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


def anomaly_finding(decision: AnomalyDecision, metric: str) -> Finding:
    return Finding(decision.anomalous if decision.judged else None, decision.summary(metric))


def threshold_finding(
    metric: str, current: Window, op: str, limit: float, *, min_volume: int = 1
) -> Finding:
    """A fixed threshold: ``current.value op limit``."""
    if current.volume < min_volume:
        return Finding(None, f"{metric} over too few tasks ({current.volume}) to judge")
    breaching = bool(_OPS[op](current.value, limit))
    return Finding(breaching, f"{metric} is {_num(current.value)} (alert when {op} {_num(limit)})")


def budget_finding(spent_usd: float, budget_usd: float) -> Finding:
    """Spend today against a daily budget."""
    share = spent_usd / budget_usd
    return Finding(
        spent_usd > budget_usd,
        f"spent ${spent_usd:.2f} today of a ${budget_usd:.2f} daily budget ({share:.0%})",
    )


def silence_finding(
    current_spans: int, active_windows: int, *, baseline_windows: int, min_active_windows: int
) -> Finding:
    """No data: nothing in the current silence window from a group that had spans in at least
    ``min_active_windows`` of the ``baseline_windows`` before it. A group that is rarely active
    cannot be judged (None), so it never fires."""
    if current_spans > 0:
        return Finding(False, f"{current_spans} spans in the latest window")
    usually = f"active in {active_windows} of the previous {baseline_windows} windows"
    if active_windows < min_active_windows:
        return Finding(None, f"no spans, but only {usually}")
    return Finding(True, f"no spans in the latest window; it was {usually}")


def health_finding(results: Sequence[bool], *, consecutive_failures: int = 1) -> Finding:
    """A health check's latest runs (oldest first): failing when the last
    ``consecutive_failures`` all failed."""
    if not results:
        return Finding(None, "no runs yet")
    streak = 0
    for passed in reversed(results):
        if passed:
            break
        streak += 1
    if streak >= consecutive_failures:
        return Finding(True, f"failed the last {streak} run{'s' if streak != 1 else ''}")
    return Finding(False, "passing" if streak == 0 else f"failed the last {streak} runs")


# --- the alert state machine ------------------------------------------------------------------
AlertStatus = Literal["ok", "pending", "firing"]


@dataclass(frozen=True, slots=True, order=True)
class AlertKey:
    """One alert: a rule and a group of its spans (``task_type=refund``; ``""`` for none)."""

    rule: str
    group: str = ""


@dataclass(frozen=True, slots=True)
class Observation:
    """One evaluation of one rule for one group, at time ``at`` (epoch seconds)."""

    key: AlertKey
    breaching: bool | None
    at: float
    summary: str = ""


class Policy(Protocol):
    """How a rule fires and resolves (alert rules satisfy this)."""

    @property
    def fire_after(self) -> int: ...
    @property
    def resolve_after(self) -> int: ...
    @property
    def cooldown_s(self) -> int | float: ...


@dataclass(frozen=True, slots=True)
class DefaultPolicy:
    fire_after: int = 1
    resolve_after: int = 2
    cooldown_s: float = 3600.0


@dataclass(frozen=True, slots=True)
class AlertState:
    status: AlertStatus = "ok"
    breaches: int = 0
    """Consecutive breaching evaluations."""
    clears: int = 0
    """Consecutive clear evaluations while firing."""
    since: float | None = None
    """When the current incident fired."""
    summary: str = ""
    notified: bool = False
    """Whether the current incident was notified (so its resolution is too)."""
    last_notified_at: float | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert fired or resolved. ``notify`` is False when a new incident starts within the
    cooldown of the last notification for the same key (and for that incident's resolution):
    it is recorded but not sent again."""

    key: AlertKey
    kind: Literal["fired", "resolved"]
    at: float
    since: float
    summary: str
    notify: bool


def step(
    states: Mapping[AlertKey, AlertState],
    observations: Iterable[Observation],
    policies: Mapping[str, Policy] | None = None,
    *,
    default: Policy = DefaultPolicy(),
) -> tuple[dict[AlertKey, AlertState], list[Transition]]:
    """Apply one evaluation pass: the new states (keys not observed keep theirs) and the
    transitions, in observation order.

    An alert fires after ``fire_after`` breaching evaluations in a row and resolves after
    ``resolve_after`` clear ones; while it fires, more breaches are the same incident (no new
    transition). ``breaching=None`` (too little data to tell) changes nothing.
    """
    policies = policies or {}
    new_states = dict(states)
    transitions: list[Transition] = []
    for obs in observations:
        policy = policies.get(obs.key.rule, default)
        previous = new_states.get(obs.key, AlertState())
        state, transition = _advance(previous, obs, policy)
        new_states[obs.key] = state
        if transition is not None:
            transitions.append(transition)
    return new_states, transitions


def _advance(
    state: AlertState, obs: Observation, policy: Policy
) -> tuple[AlertState, Transition | None]:
    if obs.breaching is None:
        return state, None
    if obs.breaching:
        if state.status == "firing":
            return replace(state, breaches=state.breaches + 1, clears=0, summary=obs.summary), None
        breaches = state.breaches + 1
        if breaches < policy.fire_after:
            return replace(state, status="pending", breaches=breaches, summary=obs.summary), None
        last = state.last_notified_at
        notify = last is None or obs.at - last >= policy.cooldown_s
        fired = AlertState(
            status="firing",
            breaches=breaches,
            since=obs.at,
            summary=obs.summary,
            notified=notify,
            last_notified_at=obs.at if notify else last,
        )
        return fired, Transition(obs.key, "fired", obs.at, obs.at, obs.summary, notify)
    if state.status != "firing":
        return AlertState(last_notified_at=state.last_notified_at), None
    clears = state.clears + 1
    if clears < policy.resolve_after:
        return replace(state, clears=clears, breaches=0), None
    since = state.since if state.since is not None else obs.at
    resolved = Transition(obs.key, "resolved", obs.at, since, obs.summary, state.notified)
    return AlertState(last_notified_at=state.last_notified_at), resolved

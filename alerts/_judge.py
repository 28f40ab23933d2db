"""Judging: one rule and its query rows in, a ``RuleVerdict`` per group out.

Pure, like the detectors of ``_detect`` it applies: nothing here reads storage or the clock.
The evaluator (``_evaluator``) runs each rule's query in ``storage/_alert_queries``, hands the
rows here, and feeds the verdicts to the state machine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from agentwatch.alerts._detect import (
    AlertKey,
    AlertState,
    Window,
    anomaly_finding,
    budget_finding,
    health_finding,
    is_anomalous,
    silence_finding,
    threshold_finding,
)
from agentwatch.alerts._rules import (
    AnomalyRule,
    DailyBudgetRule,
    HealthFailureRule,
    NoDataRule,
    Rule,
    ThresholdRule,
)

_NS: Final = 1_000_000_000

TaskWindows = Mapping[str, Mapping[int, Mapping[str, Any]]]
"""``task_windows`` rows by group key, then by window (0 = the latest complete window)."""


@dataclass(frozen=True, slots=True)
class RuleVerdict:
    """One rule's finding for one group in one pass, with the numbers behind it."""

    rule: str
    group: str
    breaching: bool | None
    summary: str
    metric: str = ""
    value: float | None = None
    baseline: float | None = None
    score: float | None = None
    volume: int | None = None
    trace_ids: tuple[str, ...] = ()
    """Set by the rule kinds that know their traces without another query (probes)."""


def group_key(group_by: str, value: str) -> str:
    """How alerts name a group: ``task_type=refund``; empty when the rule is not grouped."""
    return "" if group_by == "none" else f"{group_by}={value}"


def group_value(key: str) -> str:
    """The value in a ``group_key``."""
    return key.partition("=")[2]


def metric_window(metric: str, row: Mapping[str, Any]) -> Window:
    """The value of ``metric`` in one row of ``task_windows``, and its volume (tasks)."""
    tasks = int(row["tasks"])
    if metric == "cost":
        value = float(row["cost_usd"])
    elif metric == "cost_per_task":
        value = float(row["cost_usd"]) / tasks if tasks else 0.0
    elif metric == "error_rate":
        value = int(row["failed"]) / tasks if tasks else 0.0
    elif metric == "escalation_rate":
        value = int(row["escalated"]) / tasks if tasks else 0.0
    elif metric == "latency_p95":
        value = float(row["p95_latency_ms"])
    elif metric == "tokens":
        value = float(row["tokens"])
    else:
        raise ValueError(f"unknown metric {metric!r}")
    return Window(value, tasks)


def judge_anomaly(rule: AnomalyRule, by_group: TaskWindows) -> list[RuleVerdict]:
    """The latest window of each group against its ``baseline_windows`` earlier ones; a window
    without a row had no tasks."""
    verdicts = []
    for group, windows in by_group.items():
        empty = Window(0.0, 0)
        current = metric_window(rule.metric, windows[0]) if 0 in windows else empty
        history = [
            metric_window(rule.metric, windows[k]) if k in windows else empty
            for k in range(rule.baseline_windows, 0, -1)
        ]
        decision = is_anomalous(
            current,
            history,
            min_volume=rule.min_volume,
            threshold=rule.threshold,
            direction=rule.direction,
            proportion=rule.proportion,
            relative_floor=rule.relative_floor,
            min_delta=rule.min_delta,
        )
        finding = anomaly_finding(decision, rule.metric)
        verdicts.append(
            RuleVerdict(
                rule.name,
                group_key(rule.group_by, group),
                finding.breaching,
                finding.summary,
                metric=rule.metric,
                value=decision.current,
                baseline=decision.baseline,
                score=decision.score,
                volume=decision.volume,
            )
        )
    return verdicts


def judge_threshold(rule: ThresholdRule, by_group: TaskWindows) -> list[RuleVerdict]:
    """The latest window of each group against the rule's fixed value."""
    verdicts = []
    for group, windows in by_group.items():
        if 0 not in windows:
            continue
        current = metric_window(rule.metric, windows[0])
        finding = threshold_finding(
            rule.metric, current, rule.op, rule.value, min_volume=rule.min_volume
        )
        verdicts.append(
            RuleVerdict(
                rule.name,
                group_key(rule.group_by, group),
                finding.breaching,
                finding.summary,
                metric=rule.metric,
                value=current.value,
                baseline=rule.value,
                volume=current.volume,
            )
        )
    return verdicts


def judge_budget(rule: DailyBudgetRule, rows: Iterable[Mapping[str, Any]]) -> list[RuleVerdict]:
    """From ``spend`` rows: each group's spend today against the budget."""
    verdicts = []
    for row in rows:
        spent = float(row["cost_usd"] or 0.0)
        finding = budget_finding(spent, rule.budget_usd)
        verdicts.append(
            RuleVerdict(
                rule.name,
                group_key(rule.group_by, str(row["group_key"])),
                finding.breaching,
                finding.summary,
                metric="spend_today",
                value=spent,
                baseline=rule.budget_usd,
            )
        )
    return verdicts


def judge_silence(rule: NoDataRule, rows: Iterable[Mapping[str, Any]]) -> list[RuleVerdict]:
    """From ``span_activity`` rows: whether each group that normally sends spans went quiet."""
    verdicts = []
    for row in rows:
        spans = int(row["current_spans"])
        finding = silence_finding(
            spans,
            int(row["active_windows"]),
            baseline_windows=rule.baseline_windows,
            min_active_windows=rule.min_active_windows,
        )
        summary = finding.summary
        if spans == 0:
            last = datetime.fromtimestamp(int(row["last_seen_ns"]) / _NS, UTC)
            summary += f"; last span at {last.isoformat(timespec='seconds')}"
        verdicts.append(
            RuleVerdict(
                rule.name,
                group_key(rule.group_by, str(row["group_key"])),
                finding.breaching,
                summary,
                metric="spans",
                value=float(spans),
                volume=spans,
            )
        )
    return verdicts


def judge_health(
    rule: HealthFailureRule, rows: Iterable[Mapping[str, Any]], *, trace_links: int
) -> list[RuleVerdict]:
    """From ``health_runs`` rows (newest run first): each check's streak of failed runs, with
    up to ``trace_links`` of its failed runs' traces."""
    verdicts = []
    for row in rows:
        passed = [bool(p) for p in row["passed"]]  # newest first
        finding = health_finding(
            list(reversed(passed)), consecutive_failures=rule.consecutive_failures
        )
        summary = finding.summary
        if passed and not passed[0]:
            expectation, reason = row["failed_expectations"][0], row["reasons"][0]
            if expectation or reason:
                summary += f": {expectation}" + (f" ({reason})" if reason else "")
        failing = tuple(t for t, p in zip(row["trace_ids"], passed, strict=True) if not p)
        verdicts.append(
            RuleVerdict(
                rule.name,
                f"check={row['check']}",
                finding.breaching,
                summary,
                metric="health",
                value=float(passed[0]) if passed else None,
                trace_ids=failing[:trace_links],
            )
        )
    return verdicts


def with_vanished(
    rule: Rule, verdicts: list[RuleVerdict], states: Mapping[AlertKey, AlertState]
) -> list[RuleVerdict]:
    """A firing group of a windowed or budget rule with no data at all any more (its
    traffic stopped, a new day began) is observed as clear, so it can resolve. Silence and
    probe alerts keep their state: no data is what they fire on."""
    if isinstance(rule, NoDataRule | HealthFailureRule):
        return verdicts
    seen = {v.group for v in verdicts}
    metric = rule.metric if isinstance(rule, AnomalyRule | ThresholdRule) else "spend_today"
    for key, state in states.items():
        if key.rule == rule.name and state.status == "firing" and key.group not in seen:
            verdicts.append(
                RuleVerdict(rule.name, key.group, False, "no data in the window", metric=metric)
            )
    return verdicts

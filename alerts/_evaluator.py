"""The alert evaluator: rules over stored spans, to firing/resolved incidents and notifications.

Each pass, for every rule (``_rules``), the evaluator runs one query in
``storage/_alert_queries`` that returns every group's current window and baseline windows at
once, hands the rows to the pure judging of ``_judge`` (the detectors of ``_detect``: robust
baseline, thresholds, budgets, silence, probe streaks), and feeds the verdicts to
``_detect.step``, the state machine that de-duplicates (one incident, one notification) and
applies cooldowns.
Transitions are appended to the alerts table and queued for the notifiers; neither a storage
error in one rule nor a failing notifier stops the pass.

Time is always passed in (``evaluate(now)``), so tests and backfills run at any moment
without waiting. Anomaly and threshold rules judge the latest complete window, aligned to
multiples of its size since the epoch (the dashboard's time buckets), that ended at least
``settle_s`` before ``now``: spans reach the store a few seconds after they start (the SDK
batches, the collector batches), and a half-filled window would read as a drop. A complete
window is queried once and kept, so after the first pass (the whole baseline in one query) each
pass reads only the new window.

Where it runs:

- ``agentwatch up`` (embedded chDB): inside the collector process, on the store it owns, in a
  background thread (``AlertService``); alerts are recorded and printed. The commands' wiring
  is ``app/_alerts_cli.py``.
- ``agentwatch alerts --clickhouse-url URL``: against a ClickHouse server, recording alerts in
  the same table. Run one evaluator per store: two would notify twice.
- ``agentwatch alerts --clickhouse-url http://127.0.0.1:8123``: against the embedded
  collector's read-only endpoint, it can read but not record. It evaluates read-only (state in
  memory, notifications sent); ``--once`` prints what is breaching now.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote
from zoneinfo import ZoneInfo

from agentwatch.alerts._detect import (
    AlertKey,
    AlertState,
    Observation,
    Policy,
    Transition,
    step,
)
from agentwatch.alerts._judge import (
    RuleVerdict,
    TaskWindows,
    group_value,
    judge_anomaly,
    judge_budget,
    judge_health,
    judge_silence,
    judge_threshold,
    with_vanished,
)
from agentwatch.alerts._notify import Alert, Dispatcher
from agentwatch.alerts._rules import (
    AnomalyRule,
    DailyBudgetRule,
    HealthFailureRule,
    NoDataRule,
    Rule,
    ThresholdRule,
    Where,
    default_rules,
)
from agentwatch.storage import _alert_queries as alert_queries
from agentwatch.storage._scope import epoch_ns
from agentwatch.storage._store import Store

logger = logging.getLogger("agentwatch.alerts")

_NS: Final = 1_000_000_000
_SERVICE_INTERVAL_S: Final = 60
"""How often rules without a window of their own (budgets, silence, probes) are evaluated."""


@dataclass(frozen=True, slots=True)
class EvaluatorSettings:
    dashboard_url: str | None = None
    """Base URL of the dashboard; alerts then link ``{dashboard_url}/traces?trace_id=<id>``."""
    settle_s: float = 10.0
    """A window is judged once it ended this long ago, so late spans are not read as a drop
    (spans arriving later still are not seen by the windows already judged)."""
    trace_links: int = 5
    """Traces attached to a fired alert (the most expensive, failed, slowest... of its window)."""
    health_lookback_s: int = 86_400
    """How far back the latest runs of a health check are looked for."""
    record: bool = True
    """Append transitions to the alerts table (False on a read-only store)."""


@dataclass
class EvaluationPass:
    """What one ``evaluate`` did."""

    at: datetime
    verdicts: list[RuleVerdict] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    """Incidents that fired or resolved in this pass (notified or not)."""
    errors: dict[str, str] = field(default_factory=dict)
    """Rule name (or ``record``/``restore``) to what went wrong."""
    evaluated: list[str] = field(default_factory=list)
    rule_seconds: dict[str, float] = field(default_factory=dict)
    """How long each evaluated rule's queries and detection took."""
    seconds: float = 0.0


def _scope(where: Where) -> alert_queries.Scope:
    return alert_queries.Scope(
        service=where.service or "",
        agent=where.agent or "",
        task_type=where.task_type or "",
        model=where.model or "",
        environment=where.environment or "",
    )


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def incident_id(rule: str, group: str, fired_at_s: float) -> str:
    """Stable id of an incident: the same in its fired and resolved messages and rows."""
    digest = hashlib.sha256(f"{rule}\x1f{group}\x1f{_ms(fired_at_s)}".encode())
    return digest.hexdigest()[:20]


def rule_interval_s(rule: Rule) -> int:
    """How often ``rule`` is evaluated: once per window, or every minute."""
    if isinstance(rule, AnomalyRule | ThresholdRule):
        return rule.window_s
    if isinstance(rule, NoDataRule):
        return min(rule.silence_s, _SERVICE_INTERVAL_S)
    return _SERVICE_INTERVAL_S


class Evaluator:
    """Evaluates ``rules`` over ``store``; keeps each rule and group's alert state between
    passes (restored from the alerts table on the first pass when recording)."""

    def __init__(
        self,
        store: Store,
        rules: Sequence[Rule] | None = None,
        *,
        dispatcher: Dispatcher | None = None,
        settings: EvaluatorSettings = EvaluatorSettings(),
    ) -> None:
        self.store = store
        self.rules = list(default_rules() if rules is None else rules)
        self.dispatcher = dispatcher
        self.settings = settings
        self._policies: dict[str, Policy] = {r.name: r for r in self.rules}
        self.states: dict[AlertKey, AlertState] = {}
        self._last_run: dict[str, float] = {}
        self._last_window: dict[str, int] = {}
        self._restored = not settings.record
        self._lock = threading.Lock()
        # (window_s, group_by, scope) -> window end (ns) -> that window's task_windows rows.
        self._windows: dict[
            tuple[int, str, alert_queries.Scope], dict[int, list[dict[str, Any]]]
        ] = {}

    # -- scheduling
    def _window_end(self, now: datetime, window_s: int) -> int:
        """End (ns) of the latest complete window of ``window_s`` before ``now - settle_s``.
        Windows are aligned to multiples of their size since the epoch, like the dashboard's
        time buckets, so an alert's window is a bar on the charts."""
        window_ns = window_s * _NS
        return (self._end_ns(now) // window_ns) * window_ns

    def _wait_s(self, rule: Rule, now: datetime) -> float:
        """Seconds until ``rule`` is due: windowed rules when a new window is complete, the
        others ``rule_interval_s`` after their last evaluation."""
        if isinstance(rule, AnomalyRule | ThresholdRule):
            if self._last_window.get(rule.name) != self._window_end(now, rule.window_s):
                return 0.0
            next_end = self._window_end(now, rule.window_s) + rule.window_s * _NS
            return (next_end + self.settings.settle_s * _NS - epoch_ns(now)) / _NS
        if rule.name not in self._last_run:
            return 0.0
        return self._last_run[rule.name] + rule_interval_s(rule) - now.timestamp()

    def due(self, now: datetime) -> list[Rule]:
        """The rules with something new to evaluate at ``now``."""
        return [r for r in self.rules if self._wait_s(r, now) <= 1e-6]

    def next_due_s(self, now: datetime) -> float:
        """Seconds from ``now`` until some rule is due (0 when one is)."""
        waits = [self._wait_s(r, now) for r in self.rules]
        return max(0.0, min(waits, default=float(_SERVICE_INTERVAL_S)))

    # -- one pass
    def evaluate(self, now: datetime, *, only_due: bool = False) -> EvaluationPass:
        """Evaluate every rule (or those ``due``) at ``now``: verdicts, transitions recorded
        in the alerts table and handed to the dispatcher."""
        started = time.perf_counter()
        with self._lock:
            result = EvaluationPass(at=now)
            if not self._restored:
                self._restore(now, result)
            rules = self.due(now) if only_due else self.rules
            for rule in rules:
                self._last_run[rule.name] = now.timestamp()
                if isinstance(rule, AnomalyRule | ThresholdRule):
                    self._last_window[rule.name] = self._window_end(now, rule.window_s)
                rule_started = time.perf_counter()
                try:
                    verdicts = self._verdicts(rule, now)
                except Exception as exc:  # one rule's failure is reported, not fatal
                    logger.exception("evaluating alert rule %r failed", rule.name)
                    result.errors[rule.name] = str(exc) or type(exc).__name__
                    continue
                finally:
                    result.rule_seconds[rule.name] = time.perf_counter() - rule_started
                result.evaluated.append(rule.name)
                result.verdicts.extend(with_vanished(rule, verdicts, self.states))
            self._transition(result, now)
            result.seconds = time.perf_counter() - started
            return result

    def _end_ns(self, now: datetime) -> int:
        return epoch_ns(now) - round(self.settings.settle_s * _NS)

    def _verdicts(self, rule: Rule, now: datetime) -> list[RuleVerdict]:
        """Query what ``rule`` needs at ``now``, and judge it."""
        if isinstance(rule, AnomalyRule):
            windows = rule.baseline_windows + 1
            by_group = self._task_windows(now, rule.window_s, windows, rule.group_by, rule.where)
            return judge_anomaly(rule, by_group)
        if isinstance(rule, ThresholdRule):
            by_group = self._task_windows(now, rule.window_s, 1, rule.group_by, rule.where)
            return judge_threshold(rule, by_group)
        if isinstance(rule, DailyBudgetRule):
            return judge_budget(rule, self._spend(rule, now))
        if isinstance(rule, NoDataRule):
            return judge_silence(rule, self._activity(rule, now))
        return judge_health(
            rule, self._health_runs(rule, now), trace_links=self.settings.trace_links
        )

    def _task_windows(
        self,
        now: datetime,
        window_s: int,
        windows: int,
        group_by: alert_queries.TaskGroup,
        where: Where,
    ) -> TaskWindows:
        """``task_windows`` rows by group and window (0 = the latest complete window).

        A complete window does not change (spans later than ``settle_s`` aside), so each one
        is queried once and kept: the first pass reads the whole baseline in one query, later
        passes only the new window. Rules of the same window size, grouping and scope (the
        default cost and error rules) share the windows: every row carries every metric."""
        scope = _scope(where)
        window_ns = window_s * _NS
        end = self._window_end(now, window_s)
        cache = self._windows.setdefault((window_s, group_by, scope), {})
        ends = [end - k * window_ns for k in range(windows)]
        missing = [e for e in ends if e not in cache]
        if missing:
            newest = max(missing)
            count = (newest - min(missing)) // window_ns + 1
            rows = alert_queries.task_windows(
                self.store,
                end_ns=newest,
                window_s=window_s,
                windows=count,
                group_by=group_by,
                scope=scope,
            )
            fresh: dict[int, list[dict[str, Any]]] = {
                newest - k * window_ns: [] for k in range(count)
            }
            for row in rows.dicts():
                fresh[newest - int(row["window"]) * window_ns].append(row)
            cache.update(fresh)
        keep = max(self._history_needed(window_s, group_by, scope))
        for stale in [e for e in cache if e <= end - keep * window_ns or e > end]:
            del cache[stale]
        grouped: dict[str, dict[int, dict[str, Any]]] = {}
        for k, window_end in enumerate(ends):
            for row in cache.get(window_end, ()):
                grouped.setdefault(str(row["group_key"]), {})[k] = row
        return grouped

    def _history_needed(
        self, window_s: int, group_by: str, scope: alert_queries.Scope
    ) -> list[int]:
        """Windows the rules sharing this query shape need (the most is kept)."""
        needed = [1]
        for rule in self.rules:
            if (
                isinstance(rule, AnomalyRule | ThresholdRule)
                and rule.window_s == window_s
                and rule.group_by == group_by
                and _scope(rule.where) == scope
            ):
                needed.append(rule.baseline_windows + 1 if isinstance(rule, AnomalyRule) else 1)
        return needed

    def _budget_start(self, rule: DailyBudgetRule, now: datetime) -> datetime:
        local = now.astimezone(ZoneInfo(rule.timezone))
        return local.replace(hour=0, minute=0, second=0, microsecond=0)

    def _spend(self, rule: DailyBudgetRule, now: datetime) -> list[dict[str, Any]]:
        return alert_queries.spend(
            self.store,
            start_ns=epoch_ns(self._budget_start(rule, now)),
            end_ns=epoch_ns(now),
            group_by=rule.group_by,
            scope=_scope(rule.where),
        ).dicts()

    def _activity(self, rule: NoDataRule, now: datetime) -> list[dict[str, Any]]:
        return alert_queries.span_activity(
            self.store,
            end_ns=self._end_ns(now),
            window_s=rule.silence_s,
            windows=rule.baseline_windows + 1,
            group_by=rule.group_by,
            scope=_scope(rule.where),
        ).dicts()

    def _health_runs(self, rule: HealthFailureRule, now: datetime) -> list[dict[str, Any]]:
        end_ns = epoch_ns(now)
        return alert_queries.health_runs(
            self.store,
            start_ns=end_ns - self.settings.health_lookback_s * _NS,
            end_ns=end_ns,
            runs=rule.consecutive_failures,
            check=rule.check or "",
            scope=_scope(rule.where),
        ).dicts()

    # -- transitions, traces, records
    def _transition(self, result: EvaluationPass, now: datetime) -> None:
        at = now.timestamp()
        observations = [
            Observation(AlertKey(v.rule, v.group), v.breaching, at, v.summary)
            for v in result.verdicts
        ]
        self.states, transitions = step(self.states, observations, self._policies)
        verdicts = {(v.rule, v.group): v for v in result.verdicts}
        rules = {r.name: r for r in self.rules}
        for transition in transitions:
            verdict = verdicts[(transition.key.rule, transition.key.group)]
            rule = rules[transition.key.rule]
            trace_ids = verdict.trace_ids
            if transition.kind == "fired" and not trace_ids:
                trace_ids = self._traces(rule, verdict, now, result)
            result.alerts.append(self._alert(rule, transition, verdict, trace_ids))
        if result.alerts and self.settings.record:
            try:
                alert_queries.record_alerts(self.store, [_row(a) for a in result.alerts])
            except Exception as exc:  # notifications still go out
                logger.exception("recording %d alert state changes failed", len(result.alerts))
                result.errors["record"] = str(exc) or type(exc).__name__
        if self.dispatcher is not None:
            for alert in result.alerts:
                if alert.notify:
                    self.dispatcher.submit(alert)

    def _traces(
        self, rule: Rule, verdict: RuleVerdict, now: datetime, result: EvaluationPass
    ) -> tuple[str, ...]:
        """A few traces that show what the alert is about; none when that query fails."""
        limit = self.settings.trace_links
        group = group_value(verdict.group)
        try:
            if isinstance(rule, AnomalyRule | ThresholdRule):
                end_ns = self._window_end(now, rule.window_s)
                found = alert_queries.offending_traces(
                    self.store,
                    metric=rule.metric,
                    start_ns=end_ns - rule.window_s * _NS,
                    end_ns=end_ns,
                    group_by=rule.group_by,
                    group=group,
                    scope=_scope(rule.where),
                    limit=limit,
                )
            elif isinstance(rule, DailyBudgetRule):
                found = alert_queries.offending_traces(
                    self.store,
                    metric="cost",
                    start_ns=epoch_ns(self._budget_start(rule, now)),
                    end_ns=epoch_ns(now),
                    group_by=rule.group_by,
                    group=group,
                    scope=_scope(rule.where),
                    limit=limit,
                )
            elif isinstance(rule, NoDataRule):
                end_ns = self._end_ns(now)
                found = alert_queries.latest_traces(
                    self.store,
                    start_ns=end_ns - (rule.baseline_windows + 1) * rule.silence_s * _NS,
                    end_ns=end_ns,
                    group_by=rule.group_by,
                    group=group,
                    scope=_scope(rule.where),
                    limit=limit,
                )
            else:
                found = []
        except Exception as exc:  # an alert without links beats no alert
            logger.exception("finding the traces of alert %r failed", rule.name)
            result.errors[f"{rule.name}: traces"] = str(exc) or type(exc).__name__
            return ()
        return tuple(found)

    def _links(self, trace_ids: Iterable[str]) -> tuple[str, ...]:
        base = self.settings.dashboard_url
        if not base:
            return ()
        base = base.rstrip("/")
        return tuple(f"{base}/traces?trace_id={quote(t, safe='')}" for t in trace_ids)

    def _alert(
        self, rule: Rule, transition: Transition, verdict: RuleVerdict, trace_ids: tuple[str, ...]
    ) -> Alert:
        fired = transition.kind == "fired"
        return Alert(
            incident_id=incident_id(rule.name, transition.key.group, transition.since),
            event=transition.kind,
            rule=rule.name,
            kind=rule.kind,
            severity=rule.severity,
            summary=transition.summary,
            at=datetime.fromtimestamp(transition.at, UTC),
            fired_at=datetime.fromtimestamp(transition.since, UTC),
            group=transition.key.group,
            metric=verdict.metric,
            value=verdict.value,
            baseline=verdict.baseline,
            score=verdict.score,
            trace_ids=trace_ids if fired else (),
            links=self._links(trace_ids) if fired else (),
            notify=transition.notify,
        )

    # -- restart
    def _restore(self, now: datetime, result: EvaluationPass) -> None:
        """Pick up incidents still firing and the last notifications from the alerts table,
        so a restart neither re-notifies nor leaves incidents open forever. Incidents of
        rules no longer configured are resolved."""
        self._restored = True
        longest = max((r.cooldown_s for r in self.rules), default=0)
        try:
            active = alert_queries.active_alerts(self.store, limit=1000).dicts()
            notified = alert_queries.last_notifications(
                self.store, since_ms=_ms(now.timestamp() - longest)
            ).dicts()
        except Exception as exc:  # start with a clean slate, say so
            logger.exception("restoring alert states from the alerts table failed")
            result.errors["restore"] = str(exc) or type(exc).__name__
            return
        states: dict[AlertKey, AlertState] = {}
        for row in notified:
            key = AlertKey(str(row["rule"]), str(row["group_key"]))
            states[key] = AlertState(last_notified_at=int(row["last_notified_ms"]) / 1000)
        orphans: list[Alert] = []
        for row in active:
            key = AlertKey(str(row["rule"]), str(row["group_key"]))
            fired_at = int(row["fired_at_ms"]) / 1000
            policy = self._policies.get(key.rule)
            if policy is None:
                orphans.append(_orphan(row, now))
                continue
            previous = states.get(key, AlertState())
            states[key] = replace(
                previous,
                status="firing",
                breaches=policy.fire_after,
                since=fired_at,
                summary=str(row["summary"]),
                notified=bool(row["notified"]),
            )
        self.states = states
        if orphans:
            try:
                alert_queries.record_alerts(self.store, [_row(a) for a in orphans])
            except Exception as exc:  # they are resolved next time
                logger.exception("resolving alerts of removed rules failed")
                result.errors["restore"] = str(exc) or type(exc).__name__


def _orphan(row: Mapping[str, Any], now: datetime) -> Alert:
    return Alert(
        incident_id=str(row["incident_id"]),
        event="resolved",
        rule=str(row["rule"]),
        kind=str(row["kind"]),
        severity=str(row["severity"]),
        summary="the rule is no longer configured",
        at=now,
        fired_at=datetime.fromtimestamp(int(row["fired_at_ms"]) / 1000, UTC),
        group=str(row["group_key"]),
        metric=str(row["metric"]),
        notify=False,
    )


def _row(alert: Alert) -> alert_queries.AlertRow:
    at_ms = _ms(alert.at.timestamp())
    return alert_queries.AlertRow(
        incident_id=alert.incident_id,
        rule=alert.rule,
        kind=alert.kind,
        severity=alert.severity,
        metric=alert.metric,
        group_key=alert.group,
        state="firing" if alert.event == "fired" else "resolved",
        fired_at_ms=_ms(alert.fired_at.timestamp()),
        resolved_at_ms=None if alert.event == "fired" else at_ms,
        updated_at_ms=at_ms,
        value=alert.value,
        baseline=alert.baseline,
        score=alert.score,
        summary=alert.summary,
        trace_ids=alert.trace_ids,
        links=alert.links,
        notified=alert.notify,
    )


# --- running it ---------------------------------------------------------------------------------
class AlertService:
    """An evaluator on a background thread: each rule evaluated once per interval, at the
    real time. ``stop`` ends the loop and closes the dispatcher (delivering what is queued)."""

    def __init__(
        self,
        evaluator: Evaluator,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_pass: Callable[[EvaluationPass], None] | None = None,
    ) -> None:
        self.evaluator = evaluator
        self._clock = clock
        self._on_pass = on_pass
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agentwatch-alerts", daemon=True)
        self.passes = 0

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self._clock()
            try:
                result = self.evaluator.evaluate(now, only_due=True)
            except Exception:  # the loop outlives any one pass
                logger.exception("an alert evaluation pass failed")
            else:
                self.passes += 1
                if self._on_pass is not None:
                    self._on_pass(result)
            wait = self.evaluator.next_due_s(self._clock())
            self._stop.wait(max(wait, 1.0))  # until the next rule is due

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self.evaluator.dispatcher is not None:
            self.evaluator.dispatcher.close(timeout_s)

"""Every query the alert evaluator runs, and the alert table's reads and writes.

Values reach ClickHouse only as ``{name:Type}`` bound parameters (the database too, as an
``Identifier``); the SQL text is constant fragments, this module's and ``storage._scope``'s.
Even the grouping column is a bound value: ``multiIf({group_by:String} = 'task_type', TaskType,
...)`` picks it. The only choices made in Python are which constant fragments to include (the
model aggregate only when a query groups or filters by model; the direct sum for ungrouped
spend).

What the numbers mean (the dashboard's definitions, so an alert and a chart agree):

- A *task* is a trace with an ``invoke_agent`` span. Its start, agent, task type, outcome and
  latency come from its outermost (earliest) agent span; its cost and tokens are the sums over
  every span of the trace; its model is the model of its first model call.
- The outcome is ``agentwatch.task.outcome`` when set, else ``failed`` for an agent span with
  status Error and ``completed`` otherwise. The error rate is the share of ``failed`` tasks, the
  escalation rate the share of ``escalated`` ones.
- Traces holding a ``health_check`` span (probes: ``agentwatch.health.check``) are not traffic:
  they are left out of every task metric and of the no-data counts.
- Windows end at ``end_ns`` and go back in steps of ``window_s``: window 0 is
  ``[end - window, end)``, window 1 the one before, and so on. A task belongs to the window its
  start falls in. One query returns the current window and every baseline window, for every
  group, in one ``GROUP BY``; only ``[start, end)`` of ``Timestamp`` is read (the table is
  partitioned by day and ordered by time within service and span name).
"""

# The SQL below is concatenated from constant fragments only (this module's and those of
# storage._scope); every value is a bound parameter, so the S608 string-built-SQL heuristic
# does not apply to anything here.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import pyarrow as pa

from agentwatch.storage._schema import ALERTS_TABLE
from agentwatch.storage._scope import (
    IN_RANGE,
    MODEL_NAME,
    NOT_PROBES,
    SPAN_SCOPE,
    SPANS,
    window_of,
    window_params,
)
from agentwatch.storage._scope import Scope as Scope  # re-exported: every query here takes one
from agentwatch.storage._store import Rows, Store

TaskGroup = Literal["task_type", "agent", "model", "none"]
SpanGroup = Literal["agent", "service", "task_type"]
TASK_GROUPS: Final = ("task_type", "agent", "model", "none")
SPAN_GROUPS: Final = ("agent", "service", "task_type")
TASK_METRICS: Final = (
    "cost",
    "cost_per_task",
    "error_rate",
    "escalation_rate",
    "latency_p95",
    "tokens",
)
_MAX_WINDOWS: Final = 10_000
_UNSCOPED: Final = Scope()


def _checked(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _limit(limit: int) -> int:
    if not 1 <= limit <= 1000:
        raise ValueError(f"limit must be in 1..1000, not {limit}")
    return limit


# --- SQL fragments (constants only) -------------------------------------------------------------
_ALERTS: Final = "{db:Identifier}." + ALERTS_TABLE
_AGENT_SPAN: Final = "Operation = 'invoke_agent'"
# One row per trace that matters to a task metric: its outermost (earliest) agent span says
# what task it is; cost and tokens add up over the trace. Spans that are neither agent runs,
# priced or token-carrying calls, nor probes cannot change a task metric and are skipped before
# grouping. The aggregation is the evaluator's main cost, so it is kept lean: traces are grouped
# by a 64-bit hash of their id (a number hashes and compares much faster than a 32-character
# string; a collision among the traces of a few hours is about 1 in 10^9 at a million traces),
# only the grouping value the rule needs is carried (``agent_group``), the outcome is a number
# (2 failed, 1 escalated, 0 otherwise) and the agent/task-type scope a flag; the model (from
# the first model call) is aggregated only when a query groups or filters by it.
_OUTCOME_CODE: Final = (
    "multiIf(Outcome = 'failed' OR (Outcome = '' AND StatusCode = 'Error'), 2, "
    "Outcome = 'escalated', 1, 0)"
)
_AGENT_GROUP: Final = (
    "multiIf({group_by:String} = 'task_type', TaskType, {group_by:String} = 'agent', AgentName, '')"
)
_AGENT_IN_SCOPE: Final = (
    "({agent:String} = '' OR AgentName = {agent:String}) "
    "AND ({task_type:String} = '' OR TaskType = {task_type:String})"
)
_TRACES_HEAD: Final = (
    "SELECT cityHash64(TraceId) AS trace, "
    f"countIf({_AGENT_SPAN}) > 0 AS is_task, "
    "max(HealthCheck != '') AS is_probe, "
    f"minIf(Timestamp, {_AGENT_SPAN}) AS started, "
    f"argMinIf({_AGENT_GROUP}, Timestamp, {_AGENT_SPAN}) AS agent_group, "
    f"argMinIf({_OUTCOME_CODE}, Timestamp, {_AGENT_SPAN}) AS outcome, "
    f"argMinIf(Duration, Timestamp, {_AGENT_SPAN}) AS duration_ns, "
    f"argMinIf({_AGENT_IN_SCOPE}, Timestamp, {_AGENT_SPAN}) AS agent_in_scope, "
    "sum(CostUsd) AS trace_cost, sum(InputTokens + OutputTokens) AS trace_tokens"
)
_NO_MODEL: Final = ", '' AS model"
_FIRST_MODEL: Final = f", argMinIf({MODEL_NAME}, Timestamp, {MODEL_NAME} != '') AS model"
_TRACE_ID: Final = ", any(TraceId) AS trace_id"
_TRACES_FROM: Final = (
    f" FROM {SPANS} WHERE {IN_RANGE} AND {SPAN_SCOPE} "
    f"AND ({_AGENT_SPAN} OR CostUsd > 0 OR InputTokens > 0 OR OutputTokens > 0 "
    "OR HealthCheck != '') "
    "GROUP BY trace"
)
_TASK_SCOPE: Final = (
    "is_task AND NOT is_probe AND agent_in_scope "
    "AND ({model:String} = '' OR model = {model:String})"
)
_GROUP_KEY: Final = "if({group_by:String} = 'model', model, agent_group)"
_HAS_GROUP: Final = "({group_by:String} = 'none' OR group_key != '')"
_WINDOW: Final = window_of("toUnixTimestamp64Nano(started)")


def _traces(scope: Scope, group_by: str, *, ids: bool = False) -> str:
    """The per-trace subquery, with the model only when grouped or filtered by it."""
    model = _FIRST_MODEL if group_by == "model" or scope.model else _NO_MODEL
    return _TRACES_HEAD + model + (_TRACE_ID if ids else "") + _TRACES_FROM


_TASK_WINDOWS_HEAD: Final = (
    f"SELECT {_WINDOW} AS window, {_GROUP_KEY} AS group_key, count() AS tasks, "
    "sum(trace_cost) AS cost_usd, countIf(outcome = 2) AS failed, "
    "countIf(outcome = 1) AS escalated, "
    "quantile(0.95)(duration_ns) / 1e6 AS p95_latency_ms, sum(trace_tokens) AS tokens FROM ("
)
_TASK_WINDOWS_TAIL: Final = (
    f") WHERE {_TASK_SCOPE} AND {_HAS_GROUP} GROUP BY window, group_key ORDER BY group_key, window"
)


def task_windows(
    store: Store,
    *,
    end_ns: int,
    window_s: int,
    windows: int,
    group_by: TaskGroup = "none",
    scope: Scope = _UNSCOPED,
) -> Rows:
    """Per window (0 = current, 1 = the one before, ... ``windows - 1``) and group: ``tasks``,
    ``cost_usd``, ``failed``, ``escalated``, ``p95_latency_ms`` and ``tokens``.

    Windows without a task have no row. Empty group values (tasks without a task type, say)
    are left out unless ``group_by`` is ``none``, whose single group is ``''``."""
    params = {
        "db": store.database,
        **window_params(end_ns, window_s, windows, max_windows=_MAX_WINDOWS),
        **scope.params(),
        "group_by": _checked(group_by, TASK_GROUPS, "group_by"),
    }
    sql = _TASK_WINDOWS_HEAD + _traces(scope, group_by) + _TASK_WINDOWS_TAIL
    return store.query(sql, params)


_SPEND_SQL: Final = (
    "SELECT '' AS group_key, sum(CostUsd) AS cost_usd "
    f"FROM {SPANS} WHERE {IN_RANGE} AND CostUsd > 0 AND {SPAN_SCOPE} "
    f"AND ({{model:String}} = '' OR {MODEL_NAME} = {{model:String}})"
)
_GROUPED_SPEND_HEAD: Final = f"SELECT {_GROUP_KEY} AS group_key, sum(trace_cost) AS cost_usd FROM ("
# Spend outside any agent run (no agent span) is spend too, unless a task scope is set.
_GROUPED_SPEND_TAIL: Final = (
    ") WHERE trace_cost > 0 "
    "AND (agent_in_scope OR (NOT is_task AND {agent:String} = '' AND {task_type:String} = '')) "
    "AND ({model:String} = '' OR model = {model:String}) "
    f"AND {_HAS_GROUP} GROUP BY group_key ORDER BY group_key"
)


def spend(
    store: Store,
    *,
    start_ns: int,
    end_ns: int,
    group_by: TaskGroup = "none",
    scope: Scope = _UNSCOPED,
) -> Rows:
    """Spend (``cost_usd``) in ``[start, end)`` per group, health probes included: money is
    money. Ungrouped and without an agent or task-type scope it sums priced spans directly;
    otherwise spend is attributed to the task (trace) it was part of."""
    params = {
        "db": store.database,
        "start_ns": start_ns,
        "end_ns": end_ns,
        **scope.params(),
        "group_by": _checked(group_by, TASK_GROUPS, "group_by"),
    }
    if group_by == "none" and not scope.agent and not scope.task_type:
        return store.query(_SPEND_SQL, params)
    sql = _GROUPED_SPEND_HEAD + _traces(scope, group_by) + _GROUPED_SPEND_TAIL
    return store.query(sql, params)


_SPAN_GROUP: Final = (
    "multiIf({group_by:String} = 'agent', AgentName, {group_by:String} = 'service', ServiceName, "
    "{group_by:String} = 'task_type', TaskType, '')"
)
_SPAN_WINDOWS_SQL: Final = (
    "SELECT group_key, sumIf(spans, window = 0) AS current_spans, "
    "countIf(window >= 1) AS active_windows, max(last_ns) AS last_seen_ns FROM ("
    f"SELECT {window_of('toUnixTimestamp64Nano(Timestamp)')} "
    f"AS window, {_SPAN_GROUP} AS group_key, count() AS spans, "
    "max(toUnixTimestamp64Nano(Timestamp)) AS last_ns "
    f"FROM {SPANS} WHERE {IN_RANGE} AND {SPAN_SCOPE} "
    "AND ({agent:String} = '' OR AgentName = {agent:String}) "
    "AND ({task_type:String} = '' OR TaskType = {task_type:String}) "
    f"AND group_key != '' AND {NOT_PROBES} "
    "GROUP BY window, group_key) GROUP BY group_key ORDER BY group_key"
)


def span_activity(
    store: Store,
    *,
    end_ns: int,
    window_s: int,
    windows: int,
    group_by: SpanGroup = "agent",
    scope: Scope = _UNSCOPED,
) -> Rows:
    """For the no-data rule, per group seen in the ``windows`` windows before ``end``:
    ``current_spans`` (spans in window 0), ``active_windows`` (earlier windows with any span)
    and ``last_seen_ns``. A group with no span anywhere in the range has no row. Probe traces
    do not count: an agent that only answers health checks has gone silent."""
    params = {
        "db": store.database,
        **window_params(end_ns, window_s, windows, max_windows=_MAX_WINDOWS),
        **scope.params(),
        "group_by": _checked(group_by, SPAN_GROUPS, "group_by"),
    }
    return store.query(_SPAN_WINDOWS_SQL, params)


_HEALTH_SQL: Final = (
    "SELECT check, groupArray(ts) AS run_ns, "
    "arrayReverseSort((x, t) -> t, groupArray(passed), run_ns) AS passed, "
    "arrayReverseSort((x, t) -> t, groupArray(trace_id), run_ns) AS trace_ids, "
    "arrayReverseSort((x, t) -> t, groupArray(expectation), run_ns) AS failed_expectations, "
    "arrayReverseSort((x, t) -> t, groupArray(reason), run_ns) AS reasons, "
    "arrayReverseSort(run_ns) AS run_times_ns FROM ("
    "SELECT HealthCheck AS check, toUnixTimestamp64Nano(Timestamp) AS ts, "
    "assumeNotNull(HealthPassed) AS passed, TraceId AS trace_id, "
    "SpanAttributes['agentwatch.health.failed_expectation'] AS expectation, "
    "SpanAttributes['agentwatch.health.reason'] AS reason "
    f"FROM {SPANS} WHERE {IN_RANGE} AND HealthCheck != '' AND HealthPassed IS NOT NULL "
    f"AND {SPAN_SCOPE} AND ({{check:String}} = '' OR HealthCheck = {{check:String}}) "
    "ORDER BY check, ts DESC LIMIT {runs:UInt32} BY check"
    ") GROUP BY check ORDER BY check"
)


def health_runs(
    store: Store,
    *,
    start_ns: int,
    end_ns: int,
    runs: int,
    check: str = "",
    scope: Scope = _UNSCOPED,
) -> Rows:
    """Per health check (``check`` alone when given): its latest ``runs`` results in
    ``[start, end)``, newest first, as parallel arrays ``passed`` (1/0), ``trace_ids``,
    ``failed_expectations``, ``reasons`` and ``run_times_ns``. Runs without a recorded result
    are skipped."""
    params = {
        "db": store.database,
        "start_ns": start_ns,
        "end_ns": end_ns,
        "runs": _limit(runs),
        "check": check,
        **scope.params(),
    }
    return store.query(_HEALTH_SQL, params)


_OFFENDING_HEAD: Final = "SELECT trace_id FROM ("
_OFFENDING_TAIL: Final = (
    f") WHERE {_TASK_SCOPE} AND {_GROUP_KEY} = {{group:String}} "
    "AND ({outcome:Int8} < 0 OR outcome = {outcome:Int8}) "
    "ORDER BY multiIf({metric:String} IN ('cost', 'cost_per_task'), trace_cost, "
    "{metric:String} = 'latency_p95', toFloat64(duration_ns), "
    "{metric:String} = 'tokens', toFloat64(trace_tokens), "
    "toFloat64(toUnixTimestamp64Nano(started))) DESC, trace_id "
    "LIMIT {limit:UInt32}"
)
_OUTCOME_OF: Final = {"error_rate": 2, "escalation_rate": 1}


def offending_traces(
    store: Store,
    *,
    metric: str,
    start_ns: int,
    end_ns: int,
    group_by: TaskGroup = "none",
    group: str = "",
    scope: Scope = _UNSCOPED,
    limit: int = 5,
) -> list[str]:
    """The traces that best show why ``metric`` moved for ``group`` in ``[start, end)``: the
    most expensive tasks for cost, failed ones for the error rate, escalated ones for the
    escalation rate, the slowest for latency, the hungriest for tokens."""
    params = {
        "db": store.database,
        "start_ns": start_ns,
        "end_ns": end_ns,
        **scope.params(),
        "group_by": _checked(group_by, TASK_GROUPS, "group_by"),
        "group": group,
        "metric": _checked(metric, TASK_METRICS, "metric"),
        "outcome": _OUTCOME_OF.get(metric, -1),
        "limit": _limit(limit),
    }
    sql = _OFFENDING_HEAD + _traces(scope, group_by, ids=True) + _OFFENDING_TAIL
    return [str(row[0]) for row in store.query(sql, params).rows]


_LATEST_SQL: Final = (
    f"SELECT TraceId AS trace_id, max(Timestamp) AS last FROM {SPANS} "
    f"WHERE {IN_RANGE} AND {SPAN_SCOPE} AND {_SPAN_GROUP} = {{group:String}} "
    "GROUP BY TraceId ORDER BY last DESC, trace_id LIMIT {limit:UInt32}"
)


def latest_traces(
    store: Store,
    *,
    start_ns: int,
    end_ns: int,
    group_by: SpanGroup,
    group: str,
    scope: Scope = _UNSCOPED,
    limit: int = 5,
) -> list[str]:
    """The last traces ``group`` sent in ``[start, end)``: where to look when it went silent."""
    params = {
        "db": store.database,
        "start_ns": start_ns,
        "end_ns": end_ns,
        **scope.params(),
        "group_by": _checked(group_by, SPAN_GROUPS, "group_by"),
        "group": group,
        "limit": _limit(limit),
    }
    return [str(row[0]) for row in store.query(_LATEST_SQL, params).rows]


_READABLE_SQL: Final = f"SELECT count() FROM (SELECT 1 FROM {SPANS} LIMIT 1)"


def check_readable(store: Store) -> None:
    """Raise ``StorageError`` unless the span table can be read (an evaluator that cannot
    write may still read)."""
    store.query(_READABLE_SQL, {"db": store.database})


# --- the alerts table ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AlertRow:
    """One state change of one incident, as stored: ``state`` is ``firing`` (it fired) or
    ``resolved``. Times are epoch milliseconds."""

    incident_id: str
    rule: str
    kind: str
    severity: str
    metric: str
    group_key: str
    state: Literal["firing", "resolved"]
    fired_at_ms: int
    resolved_at_ms: int | None
    updated_at_ms: int
    value: float | None
    baseline: float | None
    score: float | None
    summary: str
    trace_ids: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    notified: bool = True


_MS: Final = pa.timestamp("ms", tz="UTC")


def _finite(value: float | None) -> float | None:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return float(value)


def record_alerts(store: Store, rows: Sequence[AlertRow]) -> None:
    """Append state changes to the alerts table (one columnar insert)."""
    if not rows:
        return
    string = pa.string()
    table = pa.table(
        {
            "IncidentId": pa.array([r.incident_id for r in rows], string),
            "Rule": pa.array([r.rule for r in rows], string),
            "Kind": pa.array([r.kind for r in rows], string),
            "Severity": pa.array([r.severity for r in rows], string),
            "Metric": pa.array([r.metric for r in rows], string),
            "GroupKey": pa.array([r.group_key for r in rows], string),
            "State": pa.array([r.state for r in rows], string),
            "FiredAt": pa.array([r.fired_at_ms for r in rows], _MS),
            "ResolvedAt": pa.array([r.resolved_at_ms for r in rows], _MS),
            "UpdatedAt": pa.array([r.updated_at_ms for r in rows], _MS),
            "Value": pa.array([_finite(r.value) for r in rows], pa.float64()),
            "Baseline": pa.array([_finite(r.baseline) for r in rows], pa.float64()),
            "Score": pa.array([_finite(r.score) for r in rows], pa.float64()),
            "Summary": pa.array([r.summary for r in rows], string),
            "TraceIds": pa.array([list(r.trace_ids) for r in rows], pa.list_(string)),
            "Links": pa.array([list(r.links) for r in rows], pa.list_(string)),
            "Notified": pa.array([int(r.notified) for r in rows], pa.uint8()),
        }
    )
    store.insert_arrow(ALERTS_TABLE, table)


# Latest state of each incident; the values it fired with come from its firing row.
_INCIDENTS: Final = (
    "SELECT IncidentId AS incident_id, any(Rule) AS rule, any(Kind) AS kind, "
    "any(Severity) AS severity, any(Metric) AS metric, any(GroupKey) AS group_key, "
    "argMax(State, UpdatedAt) AS state, toUnixTimestamp64Milli(min(FiredAt)) AS fired_at_ms, "
    "toUnixTimestamp64Milli(maxOrNull(ResolvedAt)) AS resolved_at_ms, "
    "toUnixTimestamp64Milli(max(UpdatedAt)) AS updated_at_ms, "
    "argMaxIf(Value, UpdatedAt, State = 'firing') AS value, "
    "argMaxIf(Baseline, UpdatedAt, State = 'firing') AS baseline, "
    "argMaxIf(Score, UpdatedAt, State = 'firing') AS score, "
    "argMaxIf(Summary, UpdatedAt, State = 'firing') AS summary, "
    "argMaxIf(Summary, UpdatedAt, State = 'resolved') AS resolved_summary, "
    "argMaxIf(TraceIds, UpdatedAt, State = 'firing') AS trace_ids, "
    "argMaxIf(Links, UpdatedAt, State = 'firing') AS links, "
    "max(Notified) AS notified "
    f"FROM {_ALERTS} WHERE FiredAt >= fromUnixTimestamp64Milli({{since_ms:Int64}}) "
    "GROUP BY IncidentId"
)
_SEVERITY_RANK: Final = "indexOf(['critical', 'warning', 'info'], severity)"
_ACTIVE_SQL: Final = (
    f"SELECT * FROM ({_INCIDENTS}) WHERE state = 'firing' "
    f"ORDER BY {_SEVERITY_RANK}, fired_at_ms DESC, incident_id LIMIT {{limit:UInt32}}"
)
_RECENT_SQL: Final = (
    f"SELECT * FROM ({_INCIDENTS}) WHERE state = 'firing' OR updated_at_ms >= {{changed_ms:Int64}} "
    "ORDER BY state = 'firing' DESC, updated_at_ms DESC, incident_id LIMIT {limit:UInt32}"
)


def active_alerts(store: Store, *, limit: int = 100) -> Rows:
    """Incidents firing now (latest state ``firing``), most severe then newest first. For the
    Overview banner and the top of the Health & alerts page.

    Columns: incident_id, rule, kind, severity, metric, group_key, state, fired_at_ms,
    resolved_at_ms, updated_at_ms, value, baseline, score, summary, resolved_summary,
    trace_ids, links, notified."""
    return store.query(_ACTIVE_SQL, {"db": store.database, "since_ms": 0, "limit": _limit(limit)})


def recent_alerts(store: Store, *, since_ms: int, limit: int = 200) -> Rows:
    """Incidents firing now or changed since ``since_ms`` (epoch ms), firing first then most
    recently changed: the Health & alerts page's list. Same columns as ``active_alerts``."""
    # An incident that fired before ``since`` and resolved after it belongs in the list too:
    # every incident is read (the table is small) and the filter is on its latest change.
    params = {"db": store.database, "since_ms": 0, "changed_ms": since_ms, "limit": _limit(limit)}
    return store.query(_RECENT_SQL, params)


_NOTIFIED_SQL: Final = (
    "SELECT Rule AS rule, GroupKey AS group_key, "
    "toUnixTimestamp64Milli(max(FiredAt)) AS last_notified_ms "
    f"FROM {_ALERTS} WHERE State = 'firing' AND Notified = 1 "
    "AND FiredAt >= fromUnixTimestamp64Milli({since_ms:Int64}) "
    "GROUP BY rule, group_key"
)


def last_notifications(store: Store, *, since_ms: int) -> Rows:
    """Per rule and group, when an incident was last notified (firing), since ``since_ms``: an
    evaluator restarting within a cooldown does not notify the same thing again."""
    return store.query(_NOTIFIED_SQL, {"db": store.database, "since_ms": since_ms})

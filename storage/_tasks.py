"""Every dashboard query, as one named function each over a ``Store`` and ``Filters``.

Values only ever reach ClickHouse as ``{name:Type}`` bound parameters (the database name too,
as an ``Identifier``). The SQL text is assembled from the constant fragments below; the only
choice made in Python is whether a constant fragment is included.

What the numbers mean:

- A *task* is a trace with an ``invoke_agent`` span. Its type, agent, outcome, limit and
  latency come from the trace's outermost agent span in range: its root span when that is an
  agent span (a root starts first), else its earliest agent span. So nested agents and foreign
  parent spans (a web framework's request span, say) neither add tasks nor hide them. Its cost
  is the sum of ``CostUsd`` over every span of the trace. (A root agent span stored twice, by a
  client retrying a request that had in fact been stored, counts twice. Two *different* root
  agent spans in one trace, which OpenTelemetry never emits, count as two tasks too, but where
  tasks are read from the trace facts both take, field by field, the larger of their values.
  And until the store has merged the two inserts, usually minutes, the confidence distribution
  pairs each copy's decisions with that copy only.)
- Spend totals (Overview cost per task, cost summary, cost by model) count every priced span
  in range that passes the service and environment filters, model calls made outside any agent
  run included; with an agent or task-type filter, only the spans of those tasks' traces.
- Spend by task type counts each priced span in range toward its own
  ``agentwatch.task.type``, which the SDK sets on every span of an agent run. A span without
  one (older SDKs, other instrumentations) and every span of a trace with a nested or
  foreign-parented agent span count toward their trace's task type, and not at all when the
  trace is no task (model calls outside any agent run). So a run that started before the range
  counts its in-range spend toward its type although it is no task of the range.
- Iterations are ``agentwatch.task.iterations`` (counted by ``aw.iteration()``), averaged over
  the agent runs that record them, nested runs included.
- Declared tools never called: tools in ``agentwatch.agent.tools`` (``@aw.agent(tools=[...])``)
  of agent spans in range with no call among those ``tool_usage`` counts.
- Error categories are per task: ``model`` (a model call in the trace failed), ``tool``,
  ``limit`` and ``validation`` (any other failed span, or a task that failed with none of the
  others); a task can be in several.
- The outcome is ``agentwatch.task.outcome`` when set, else ``failed`` for an agent span with
  status Error and ``completed`` otherwise (for instrumentations that do not record outcomes).
- Service and environment filters apply to spans; agent and task-type filters apply to tasks,
  and reach span-level queries (tools, cost by model) through the tasks' trace ids.
- Every query reads only ``[start, end)`` of ``Timestamp`` first (the table is partitioned by
  day), except feedback, which is joined from ``start`` on: reviews arrive after the fact.

Where tasks meet facts of their whole trace (decisions by task outcome, error categories, spend
per trace, the task type of untyped spans) the queries read per-trace facts kept at write time
(``storage._schema``, migration 3) for the whole hours of the range, and compute the same facts
from the spans for the partial hours at its ends: the numbers are those of the definitions
above, at any range bounds, without reading every task's trace id.
"""

# The SQL below is concatenated from this module's own constant fragments only; every value is
# a bound parameter, so the S608 string-built-SQL heuristic does not apply to anything here.
# ruff: noqa: S608

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from agentwatch.storage._schema import (
    SPANS_TABLE,
    TRACE_FACTS_TABLE,
    trace_facts_select,
)
from agentwatch.storage._store import Rows, Store

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_NS: Final = 2**63 - 1
_HOUR_NS: Final = 3600 * 10**9
# The last whole hour a DateTime (the trace facts' Hour) holds; later spans are read as spans.
_LAST_HOUR_NS: Final = (2**32 - 1) // 3600 * 3600 * 10**9
OUTCOMES: Final = ("completed", "escalated", "failed", "limit_exceeded")


# --- filters ------------------------------------------------------------------------------------
def _ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("Filters need timezone-aware datetimes (e.g. datetime.now(UTC))")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


@dataclass(frozen=True, slots=True)
class Filters:
    """What the dashboard's sidebar selects. Empty strings and ``None`` mean "all"."""

    start: datetime | None = None
    end: datetime | None = None
    service: str = ""
    agent: str = ""
    task_type: str = ""
    environment: str = ""

    def __post_init__(self) -> None:
        start_ns, end_ns = self._bounds()
        if start_ns >= end_ns:
            raise ValueError(f"the time range is empty: start={self.start} end={self.end}")

    @classmethod
    def last(cls, duration: timedelta, *, now: datetime | None = None, **others: str) -> Filters:
        """The ``duration`` up to ``now`` (default: the current time)."""
        end = now or datetime.now(UTC)
        return cls(start=end - duration, end=end, **others)

    def _bounds(self) -> tuple[int, int]:
        start_ns = _ns(self.start) if self.start is not None else 0
        end_ns = _ns(self.end) if self.end is not None else _MAX_NS
        return start_ns, end_ns

    def previous(self) -> Filters:
        """The period of the same length just before this one (for trends)."""
        if self.start is None or self.end is None:
            raise ValueError("a previous period needs both start and end")
        return replace(self, start=self.start - (self.end - self.start), end=self.start)

    @property
    def by_task(self) -> bool:
        """Whether a task-level filter (agent, task type) is set."""
        return bool(self.agent or self.task_type)

    def params(self, store: Store) -> dict[str, Any]:
        start_ns, end_ns = self._bounds()
        # The whole hours inside the range are read from the trace facts; the partial hours
        # at both ends ([start, hours_from) and [hours_to, end)) from the spans.
        hours_from = min(-(-start_ns // _HOUR_NS) * _HOUR_NS, _LAST_HOUR_NS)
        hours_to = min(end_ns // _HOUR_NS * _HOUR_NS, _LAST_HOUR_NS)
        if hours_from >= hours_to:
            hours_from = hours_to = end_ns
        return {
            "db": store.database,
            "start_ns": start_ns,
            "end_ns": end_ns,
            "hours_from_ns": hours_from,
            "hours_to_ns": hours_to,
            "hours_from_s": hours_from // 10**9,
            "hours_to_s": hours_to // 10**9,
            "service": self.service,
            "agent": self.agent,
            "task_type": self.task_type,
            "environment": self.environment,
        }


# --- SQL fragments (constants only) -------------------------------------------------------------
_T: Final = "{db:Identifier}.otel_traces"
_IN_RANGE: Final = (
    "Timestamp >= fromUnixTimestamp64Nano({start_ns:Int64}) "
    "AND Timestamp < fromUnixTimestamp64Nano({end_ns:Int64})"
)
_SINCE_START: Final = "Timestamp >= fromUnixTimestamp64Nano({start_ns:Int64})"
_SPAN_FILTERS: Final = (
    "({service:String} = '' OR ServiceName = {service:String}) "
    "AND ({environment:String} = '' OR Environment = {environment:String})"
)
_MODEL_NAME: Final = "if(ResponseModel != '', ResponseModel, RequestModel)"
_HAS_TOKENS: Final = "(InputTokens > 0 OR OutputTokens > 0)"


_AGENT_SPANS: Final = (
    f"FROM {_T} WHERE {_IN_RANGE} AND Operation = 'invoke_agent' AND {_SPAN_FILTERS} "
)
_OUTCOME: Final = "multiIf(Outcome != '', Outcome, StatusCode = 'Error', 'failed', 'completed')"
# Traces with an agent span that is not the root: nested agents, or an agent under a foreign
# parent span. Few in practice; only these need a per-trace GROUP BY to find their task span.
_NESTED_IDS: Final = "SELECT TraceId " + _AGENT_SPANS + "AND ParentSpanId != ''"


def _tasks(only: str = "") -> str:
    """One row per task: its root agent span when the trace has one in range (a root span
    starts first, so it is the outermost), else the trace's earliest agent span in range. No
    GROUP BY over every trace: that alone took ~200 ms over a million tasks. ``only`` is an
    extra condition on the agent spans (constant SQL), e.g. ``AND TraceId IN (...)``."""
    agent_spans = _AGENT_SPANS + only + " "
    return (
        "SELECT * FROM ("
        "SELECT TraceId, Timestamp AS start_time, ServiceName AS service, AgentName AS agent, "
        f"TaskType AS task_type, {_OUTCOME} AS outcome, LimitExceeded AS limit_hit, "
        "Duration AS duration_ns " + agent_spans + "AND ParentSpanId = '' "
        "UNION ALL "
        "SELECT TraceId, min(Timestamp) AS start_time, "
        "argMin(ServiceName, Timestamp) AS service, "
        "argMin(AgentName, Timestamp) AS agent, "
        "argMin(TaskType, Timestamp) AS task_type, "
        f"argMin({_OUTCOME}, Timestamp) AS outcome, "
        "argMin(LimitExceeded, Timestamp) AS limit_hit, "
        "argMin(Duration, Timestamp) AS duration_ns "
        + agent_spans
        + f"AND TraceId IN ({_NESTED_IDS}) "
        "GROUP BY TraceId HAVING countIf(ParentSpanId = '') = 0"
        ") WHERE ({agent:String} = '' OR agent = {agent:String}) "
        "AND ({task_type:String} = '' OR task_type = {task_type:String})"
    )


_TASKS: Final = _tasks()
_TASK_IDS: Final = f"SELECT TraceId FROM ({_TASKS})"
_IN_TASKS: Final = f" AND TraceId IN ({_TASK_IDS})"
# Spend per trace. Without a task filter it includes traces with no agent span (model calls
# made outside any agent run): spend is spend.
_TRACE_COST: Final = (
    f"SELECT TraceId, sum(CostUsd) AS cost FROM {_T} "
    f"WHERE {_IN_RANGE} AND CostUsd > 0 AND {_SPAN_FILTERS}"
)
_TRACE_COST_END: Final = " GROUP BY TraceId"
_LIMITED: Final = "(outcome = 'limit_exceeded' OR limit_hit != '')"


def _trace_cost(filters: Filters) -> str:
    return _TRACE_COST + _task_traces(filters) + _TRACE_COST_END


def _task_traces(filters: Filters) -> str:
    """Restrict span-level queries to the filtered tasks' traces, when a task filter is set."""
    return _IN_TASKS if filters.by_task else ""


# --- per-trace facts ----------------------------------------------------------------------------
# Queries that need facts of a whole trace next to its task (decisions by task outcome, error
# categories, spend per trace) read them from the trace facts table (storage._schema): rows per
# hour, service, environment and trace, kept by a materialized view. The whole hours inside the
# range come from there; the partial hours at both ends are computed from the spans with the
# view's own SELECT, so the sums are those of exactly the spans in [start, end). Service and
# environment filters apply to rows (as they apply to spans); agent and task type to tasks.
_FACTS: Final = "{db:Identifier}." + TRACE_FACTS_TABLE
_FACT_HOURS: Final = "Hour >= {hours_from_s:UInt32} AND Hour < {hours_to_s:UInt32}"
_EDGE_HOURS: Final = (
    "((Timestamp >= fromUnixTimestamp64Nano({start_ns:Int64}) "
    "AND Timestamp < fromUnixTimestamp64Nano({hours_from_ns:Int64})) "
    "OR (Timestamp >= fromUnixTimestamp64Nano({hours_to_ns:Int64}) "
    "AND Timestamp < fromUnixTimestamp64Nano({end_ns:Int64})))"
)
_EDGE_FACTS: Final = trace_facts_select("{db:Identifier}." + SPANS_TABLE, _EDGE_HOURS)
_TRACE_KEY: Final = "reinterpretAsUInt128(sipHash128(TraceId))"
_TASK_FACT_COLUMNS: Final = (
    "ServiceName, Environment, TraceKey, RootAgentSpans, NestedAgentSpans, Agent, "
    "RootTaskType, RootOutcome, LimitHit, RootDuration, FirstAgent"
)


def _fact_rows(columns: str, keys: str = "") -> str:
    """``columns`` of the trace-fact rows in range; ``keys`` (constant SQL: a subquery of trace
    keys) narrows them to those traces (filtering the union once builds the key set once)."""
    rows = (
        f"SELECT {columns} FROM {_FACTS} WHERE {_FACT_HOURS} "
        f"UNION ALL SELECT {columns} FROM ({_EDGE_FACTS})"
    )
    return f"SELECT * FROM ({rows}) WHERE TraceKey IN ({keys})" if keys else rows


_OUTCOME_LIST: Final = "['completed', 'escalated', 'failed', 'limit_exceeded']"


def _packed(field: int) -> str:
    return f"base64Decode(packed[{field}])"


def _fact_traces(aggregates: str = "", columns: str = "", keys: str = "") -> str:
    """One row per trace with facts in range: whether it is a task of the filters (``selected``),
    how many times it counts (``weight``: a root agent span stored twice counts twice, as in
    ``_tasks``), the task's fields as ``_tasks`` defines them, and ``aggregates`` (constant SQL
    over the fact ``columns``); ``keys`` as for ``_fact_rows``."""
    rows = _fact_rows(_TASK_FACT_COLUMNS + columns, keys)
    return (
        "SELECT *, "
        f"if(roots > 0, root_agent, {_packed(2)}) AS agent, "
        f"if(roots > 0, root_task_type, {_packed(3)}) AS task_type, "
        f"if(roots > 0, root_outcome, {_packed(4)}) AS outcome, "
        f"if(roots > 0, root_limit_hit, {_packed(5)}) AS limit_hit, "
        "if(roots > 0, root_duration, toUInt64(packed[6])) AS duration_ns, "
        "if(roots > 0, roots, 1) AS weight, "
        "(roots > 0 OR nested > 0) "
        "AND ({agent:String} = '' OR agent = {agent:String}) "
        "AND ({task_type:String} = '' OR task_type = {task_type:String}) AS selected "
        "FROM (SELECT TraceKey, "
        f"sumIf(RootAgentSpans, {_SPAN_FILTERS}) AS roots, "
        f"sumIf(NestedAgentSpans, {_SPAN_FILTERS}) AS nested, "
        f"maxIf(Agent, {_SPAN_FILTERS}) AS root_agent, "
        f"maxIf(RootTaskType, {_SPAN_FILTERS}) AS root_task_type, "
        f"maxIf(RootOutcome, {_SPAN_FILTERS}) AS root_outcome, "
        f"maxIf(LimitHit, {_SPAN_FILTERS}) AS root_limit_hit, "
        f"maxIf(RootDuration, {_SPAN_FILTERS}) AS root_duration, "
        # Split only where the task has no root agent span (no split at all for the others).
        f"splitByChar(',', if(roots > 0, '', minIf(FirstAgent, {_SPAN_FILTERS}))) AS packed"
        f"{aggregates} FROM ({rows}) GROUP BY TraceKey)"
    )


def _fact_tasks(aggregates: str = "", columns: str = "", keys: str = "") -> str:
    """``_fact_traces`` of the tasks of the filters only."""
    return f"SELECT * FROM ({_fact_traces(aggregates, columns, keys)}) WHERE selected"


def _float(value: Any) -> float | None:
    """A float, or None for NULL / NaN (ClickHouse's avg of nothing)."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _ratio(part: float | int | None, whole: float | int | None) -> float | None:
    if part is None or not whole:
        return None
    return float(part) / float(whole)


def _one(store: Store, sql: str, params: dict[str, Any]) -> dict[str, Any]:
    result = store.query(sql, params)
    rows = result.dicts()
    return rows[0] if rows else dict.fromkeys(result.columns)


# --- overview -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Overview:
    """The Overview tiles for one period. Rates are 0..1; None when there is nothing to rate."""

    tasks: int
    completed: int
    escalated: int
    failed: int
    limit_exceeded: int
    cost_usd: float
    tool_calls: int
    tool_errors: int
    avg_iterations: float | None
    p50_latency_s: float | None
    p95_latency_s: float | None

    @property
    def completion_rate(self) -> float | None:
        return _ratio(self.completed, self.tasks)

    @property
    def escalation_rate(self) -> float | None:
        return _ratio(self.escalated, self.tasks)

    @property
    def limit_exceeded_rate(self) -> float | None:
        return _ratio(self.limit_exceeded, self.tasks)

    @property
    def cost_per_task(self) -> float | None:
        return _ratio(self.cost_usd, self.tasks)

    @property
    def tool_error_rate(self) -> float | None:
        return _ratio(self.tool_errors, self.tool_calls)


_OVERVIEW_TASKS: Final = (
    "SELECT * FROM ("
    "SELECT count() AS tasks, "
    "countIf(outcome = 'completed') AS completed, "
    "countIf(outcome = 'escalated') AS escalated, "
    "countIf(outcome = 'failed') AS failed, "
    f"countIf({_LIMITED}) AS limit_exceeded, "
    "quantiles(0.5, 0.95)(duration_ns) AS latency_ns "
    f"FROM ({_TASKS})"
    ") AS task_stats CROSS JOIN ("
    # Iterations are counted by aw.iteration() on agent runs with limits; nested runs count.
    "SELECT avgIf(Iterations, Iterations > 0) AS avg_iterations "
    + _AGENT_SPANS
    + "AND ({agent:String} = '' OR AgentName = {agent:String}) "
    "AND ({task_type:String} = '' OR TaskType = {task_type:String})"
    ") AS iteration_stats CROSS JOIN ("
    f"SELECT sum(CostUsd) AS cost_usd FROM {_T} "
    f"WHERE {_IN_RANGE} AND CostUsd > 0 AND {_SPAN_FILTERS}"
)
_OVERVIEW_TOOLS: Final = (
    ") AS cost_stats CROSS JOIN ("
    "SELECT count() AS tool_calls, countIf(ErrorType != '') AS tool_errors "
    f"FROM {_T} WHERE {_IN_RANGE} AND Operation = 'execute_tool' AND {_SPAN_FILTERS}"
)


def overview(store: Store, filters: Filters) -> Overview:
    """Task completion, escalation, cost per task, iterations, tool errors, limits, latency."""
    in_tasks = _task_traces(filters)
    sql = _OVERVIEW_TASKS + in_tasks + _OVERVIEW_TOOLS + in_tasks + ") AS tool_stats"
    row = _one(store, sql, filters.params(store))
    tasks = int(row["tasks"] or 0)
    p50, p95 = (_float(v) for v in row["latency_ns"]) if tasks else (None, None)
    return Overview(
        tasks=tasks,
        completed=int(row["completed"] or 0),
        escalated=int(row["escalated"] or 0),
        failed=int(row["failed"] or 0),
        limit_exceeded=int(row["limit_exceeded"] or 0),
        cost_usd=float(row["cost_usd"] or 0.0),
        tool_calls=int(row["tool_calls"] or 0),
        tool_errors=int(row["tool_errors"] or 0),
        avg_iterations=_float(row["avg_iterations"]),
        p50_latency_s=None if p50 is None else p50 / 1e9,
        p95_latency_s=None if p95 is None else p95 / 1e9,
    )


def overview_with_trend(store: Store, filters: Filters) -> tuple[Overview, Overview]:
    """This period's overview and the previous period's (same length, just before)."""
    return overview(store, filters), overview(store, filters.previous())


# --- outcomes and cost by task type -------------------------------------------------------------
# Spend by task type. The SDK puts agentwatch.task.type on every span of an agent run, so a
# priced span's own type says whose spend it is: a plain GROUP BY, no per-trace join. Two kinds
# of spans take their trace's task type instead, through a join over those traces only: spans
# without a type (older SDKs, other instrumentations) and spans of traces with a nested or
# foreign-parented agent span (a nested agent's spans carry its own type, not the task's);
# the latter are first taken back out of the plain GROUP BY. Excluding them there with
# ``NOT IN`` instead would read every priced span's TraceId (~3x slower at 10M spans).
_PRICED_IN_RANGE: Final = f"FROM {_T} WHERE {_IN_RANGE} AND CostUsd > 0 AND {_SPAN_FILTERS} "
_IN_NESTED: Final = f" AND TraceId IN ({_NESTED_IDS})"


def _cost_by_type(filters: Filters, *, bucketed: bool) -> str:
    """Rows (task_type[, bucket_start], cost_usd, calls): priced spans by task type."""
    in_tasks = _task_traces(filters)
    key = f"{_BUCKET_START} AS bucket_start, " if bucketed else ""
    group_by = "task_type, bucket_start" if bucketed else "task_type"

    def spans(condition: str, sign: str = "") -> str:
        return (
            f"SELECT TaskType AS task_type, {key}{sign}sum(CostUsd) AS cost_usd, "
            f"{sign}toInt64(count()) AS calls "
            + _PRICED_IN_RANGE
            + condition
            + in_tasks
            + f" GROUP BY {group_by}"
        )

    def per_trace(condition: str) -> str:
        return f"SELECT TraceId, {key}CostUsd AS cost " + _PRICED_IN_RANGE + condition + in_tasks

    own = spans("AND TaskType != ''")
    nested_own = spans("AND TaskType != ''" + _IN_NESTED, sign="-")
    untyped = f"SELECT TraceId {_PRICED_IN_RANGE}AND TaskType = ''{in_tasks}"
    # Those traces' tasks come from the trace facts, looked up by key: no trace ids of every
    # task to read and hash.
    trace_keys = f"SELECT {_TRACE_KEY} FROM ({untyped} UNION ALL {_NESTED_IDS})"
    tasks = _fact_tasks(keys=trace_keys)
    of_trace = (
        f"SELECT t.task_type AS task_type, {'c.bucket_start AS bucket_start, ' if bucketed else ''}"
        "sum(c.cost * t.weight) AS cost_usd, toInt64(sum(t.weight)) AS calls "
        f"FROM ({tasks}) AS t INNER JOIN (SELECT {_TRACE_KEY} AS TraceKey, * FROM ("
        + per_trace("AND TaskType = ''")
        + " UNION ALL "
        + per_trace("AND TaskType != ''" + _IN_NESTED)
        + f")) AS c USING TraceKey GROUP BY {group_by}"
    )
    return (
        f"SELECT {group_by}, sum(cost_usd) AS cost_usd, sum(calls) AS calls "
        f"FROM ({own} UNION ALL {nested_own} UNION ALL {of_trace}) "
        f"GROUP BY {group_by} HAVING calls != 0"
    )


_BY_TASK_TYPE_HEAD: Final = (
    "SELECT task_type, sum(n) AS tasks, sum(n_completed) AS completed, "
    "sum(n_escalated) AS escalated, sum(n_failed) AS failed, "
    "sum(n_limited) AS limit_exceeded, "
    "completed / tasks AS completion_rate, "
    "sum(spend) AS cost_usd, "
    "cost_usd / tasks AS cost_per_task, "
    "if(completed > 0, cost_usd / completed, NULL) AS cost_per_success "
    "FROM ("
    "SELECT task_type, count() AS n, "
    "countIf(outcome = 'completed') AS n_completed, "
    "countIf(outcome = 'escalated') AS n_escalated, "
    "countIf(outcome = 'failed') AS n_failed, "
    f"countIf({_LIMITED}) AS n_limited, toFloat64(0) AS spend "
    f"FROM ({_TASKS}) GROUP BY task_type "
    "UNION ALL "
    "SELECT task_type, 0, 0, 0, 0, 0, cost_usd FROM ("
)
_BY_TASK_TYPE_TAIL: Final = ")) GROUP BY task_type HAVING tasks > 0 ORDER BY tasks DESC, task_type"


def completion_by_task_type(store: Store, filters: Filters) -> Rows:
    """Per task type: tasks, each outcome's count, completion rate (and cost, see below)."""
    sql = _BY_TASK_TYPE_HEAD + _cost_by_type(filters, bucketed=False) + _BY_TASK_TYPE_TAIL
    return store.query(sql, filters.params(store))


def cost_by_task_type(store: Store, filters: Filters) -> Rows:
    """Per task type: tasks, total cost, cost per task and per successful task.

    Spend counts toward each priced span's own task type (see ``_cost_by_type``)."""
    return completion_by_task_type(store, filters)


# --- decisions ----------------------------------------------------------------------------------
_BUCKET: Final = "least(toUInt32(floor(d.Confidence * {bins:UInt32})), {bins:UInt32} - 1) AS bucket"
# Decisions come with their trace's facts, so pairing them with their task's outcome reads no
# trace ids. A fact row that holds the task's root agent span (as good as every row, once the
# store has merged a trace's inserts) pairs its decisions with that span's outcome on the spot;
# only decisions in other rows (another hour, inserts not merged yet, tasks without a root agent
# span) are grouped by trace first, for the traces with such rows. Every decision in range
# counts, whatever its service.
_TASK_ROOT_ROW: Final = (
    f"RootAgentSpans > 0 AND {_SPAN_FILTERS} "
    "AND ({agent:String} = '' OR Agent = {agent:String}) "
    "AND ({task_type:String} = '' OR RootTaskType = {task_type:String})"
)
_IN_ROOT_ROW: Final = f"RootAgentSpans > 0 AND {_SPAN_FILTERS}"
_ELSEWHERE_KEYS: Final = (
    "SELECT TraceKey FROM ("
    + _fact_rows("ServiceName, Environment, TraceKey, RootAgentSpans")
    + f") WHERE NOT ({_IN_ROOT_ROW})"
)
_CONFIDENCE_KEYS: Final = (
    "least(toUInt32(floor(d.1 * {bins:UInt32})), {bins:UInt32} - 1) AS bucket, "
    "if(d.2 != '', d.2, task_type) AS decision_task_type, outcome AS task_outcome"
)
_CONFIDENCE_SQL: Final = (
    "SELECT bucket, bucket / {bins:UInt32} AS confidence_from, decision_task_type, "
    "task_outcome, sum(n) AS decisions FROM ("
    f"SELECT {_CONFIDENCE_KEYS}, sum(RootAgentSpans) AS n FROM ("
    "SELECT Decisions, RootAgentSpans, toString(RootTaskType) AS task_type, "
    "toString(RootOutcome) AS outcome FROM ("
    + _fact_rows(
        "ServiceName, Environment, TraceKey, RootAgentSpans, Agent, RootTaskType, RootOutcome, "
        "Decisions"
    )
    + f") WHERE {_TASK_ROOT_ROW}) ARRAY JOIN Decisions AS d "
    "GROUP BY bucket, decision_task_type, task_outcome "
    f"UNION ALL SELECT {_CONFIDENCE_KEYS}, sum(weight) AS n FROM ("
    "SELECT task_type, outcome, weight, decision_list FROM ("
    + _fact_tasks(
        f", groupArrayArrayIf(Decisions, NOT ({_IN_ROOT_ROW})) AS decision_list",
        ", Decisions",
        keys=_ELSEWHERE_KEYS,
    )
    + ")) ARRAY JOIN decision_list AS d GROUP BY bucket, decision_task_type, task_outcome"
    ") GROUP BY bucket, decision_task_type, task_outcome "
    "ORDER BY bucket, decision_task_type, task_outcome"
)
_FEEDBACK: Final = (
    "SELECT TraceId, 1 AS has_feedback, "
    "toUInt8(ifNull(argMax(FeedbackCorrect, Timestamp), 0)) AS correct "
    f"FROM {_T} WHERE {_SINCE_START} AND Operation = 'feedback' "
    "AND FeedbackCorrect IS NOT NULL GROUP BY TraceId"
)
_CALIBRATION_SQL: Final = (
    f"SELECT {_BUCKET}, bucket / {{bins:UInt32}} AS confidence_from, "
    "count() AS decisions, avg(d.Confidence) AS mean_confidence, "
    "sum(f.has_feedback) AS with_feedback, sum(f.correct) AS correct, "
    "if(with_feedback > 0, correct / with_feedback, NULL) AS accuracy, "
    "countIf(t.outcome = 'completed') AS completed, "
    "countIf(t.outcome = 'escalated') AS escalated "
    f"FROM {_T} AS d INNER JOIN ({_TASKS}) AS t USING TraceId "
    f"LEFT JOIN ({_FEEDBACK}) AS f USING TraceId "
    f"WHERE {_IN_RANGE} AND d.Operation = 'decision' AND d.Confidence IS NOT NULL "
    "GROUP BY bucket ORDER BY bucket"
)


def confidence_distribution(store: Store, filters: Filters, bins: int = 20) -> Rows:
    """Decisions per confidence bucket, by task type and by the outcome of the task."""
    return store.query(_CONFIDENCE_SQL, {**filters.params(store), "bins": _bins(bins)})


def calibration(store: Store, filters: Filters, bins: int = 10) -> Rows:
    """Per confidence bucket: decisions, mean confidence, and how often human feedback in the
    same trace said the decision was right (the latest ``feedback.correct`` wins)."""
    return store.query(_CALIBRATION_SQL, {**filters.params(store), "bins": _bins(bins)})


def threshold_explorer(store: Store, filters: Filters) -> Rows:
    """Calibration at 0.01 resolution: what ``threshold_summary`` needs for any threshold."""
    return calibration(store, filters, bins=100)


def _bins(bins: int) -> int:
    if not 1 <= bins <= 1000:
        raise ValueError(f"bins must be in 1..1000, not {bins}")
    return bins


@dataclass(frozen=True, slots=True)
class ThresholdSummary:
    """What auto-approving every decision at or above ``threshold`` would have meant."""

    threshold: float
    decisions: int
    auto: int
    auto_with_feedback: int
    auto_correct: int
    below_with_feedback: int
    below_correct: int

    @property
    def auto_share(self) -> float | None:
        return _ratio(self.auto, self.decisions)

    @property
    def auto_accuracy(self) -> float | None:
        return _ratio(self.auto_correct, self.auto_with_feedback)

    @property
    def below_accuracy(self) -> float | None:
        return _ratio(self.below_correct, self.below_with_feedback)


def threshold_summary(explorer: Rows, threshold: float) -> ThresholdSummary:
    """Sum ``threshold_explorer`` rows above and below ``threshold`` (a multiple of 0.01)."""
    cut = round(threshold * 100)
    decisions = auto = auto_fb = auto_ok = below_fb = below_ok = 0
    for row in explorer.dicts():
        n, fb, ok = int(row["decisions"]), int(row["with_feedback"]), int(row["correct"])
        decisions += n
        if int(row["bucket"]) >= cut:
            auto, auto_fb, auto_ok = auto + n, auto_fb + fb, auto_ok + ok
        else:
            below_fb, below_ok = below_fb + fb, below_ok + ok
    return ThresholdSummary(threshold, decisions, auto, auto_fb, auto_ok, below_fb, below_ok)


# --- tools and errors ---------------------------------------------------------------------------
_TOOLS_SQL: Final = (
    "SELECT ToolName AS tool, anyIf(ToolTier, ToolTier != '') AS tier, count() AS calls, "
    "countIf(ErrorType != '') AS errors, errors / calls AS error_rate, "
    "quantile(0.95)(Duration) / 1e9 AS p95_latency_s "
    f"FROM {_T} WHERE {_IN_RANGE} AND Operation = 'execute_tool' AND {_SPAN_FILTERS}"
)


def tool_usage(store: Store, filters: Filters) -> Rows:
    """Per tool: calls, errors, error rate, p95 latency, risk tier."""
    sql = _TOOLS_SQL + _task_traces(filters) + " GROUP BY tool ORDER BY calls DESC, tool"
    return store.query(sql, filters.params(store))


# Declared by agent spans in range (``@aw.agent(tools=[...])``), the agent and task-type filters
# applying to the agent span itself (as for iterations).
_DECLARED_SQL: Final = (
    "SELECT tool, arraySort(groupUniqArray(agent)) AS agents FROM ("
    "SELECT AgentName AS agent, arrayJoin(groupUniqArrayArray(AgentTools)) AS tool "
    + _AGENT_SPANS
    + "AND notEmpty(AgentTools) "
    "AND ({agent:String} = '' OR AgentName = {agent:String}) "
    "AND ({task_type:String} = '' OR TaskType = {task_type:String}) GROUP BY AgentName"
    ") WHERE tool != '' GROUP BY tool ORDER BY tool"
)


def declared_tools(store: Store, filters: Filters) -> Rows:
    """The tools agents declare (``agentwatch.agent.tools`` on their agent spans in range): per
    tool, the agents that declare it, by tool name."""
    return store.query(_DECLARED_SQL, filters.params(store))


def never_called(declared: Rows, tools: Rows) -> Rows:
    """The ``declared_tools`` rows with no call among ``tool_usage``'s (same filters): declared
    tools never called in the range."""
    if not declared.rows:
        return declared  # (an empty result may come without column names)
    called = {row["tool"] for row in tools.dicts()}
    at = declared.columns.index("tool")
    return Rows(declared.columns, [row for row in declared.rows if row[at] not in called])


def unused_tools(store: Store, filters: Filters) -> Rows:
    """Tools that agents declare but that were never called in the range: per tool, the agents
    that declare it, by tool name. (The page has ``tool_usage`` already: it calls
    ``never_called`` on it and ``declared_tools``, which saves reading every tool call again.)"""
    return never_called(declared_tools(store, filters), tool_usage(store, filters))


# Error spans in range count whatever their service (as decisions do); tasks by the filters.
_ERRORS_SQL: Final = (
    "SELECT sum(weight) AS tasks, "
    "sumIf(weight, model_errors > 0) AS model_tasks, sum(weight * model_errors) AS model_spans, "
    "sumIf(weight, tool_errors > 0) AS tool_tasks, sum(weight * tool_errors) AS tool_spans, "
    f"sumIf(weight, {_LIMITED}) AS limit_tasks, "
    "sumIf(weight, other_errors > 0 OR (outcome = 'failed' AND model_errors = 0 "
    f"AND tool_errors = 0 AND NOT {_LIMITED})) AS validation_tasks, "
    "sum(weight * other_errors) AS validation_spans FROM ("
    + _fact_tasks(
        ", sum(ModelErrors) AS model_errors, sum(ToolErrors) AS tool_errors, "
        "sum(OtherErrors) AS other_errors",
        ", ModelErrors, ToolErrors, OtherErrors",
    )
    + ")"
)
ERROR_CATEGORIES: Final = ("model", "tool", "validation", "limit")


def error_categories(store: Store, filters: Filters) -> Rows:
    """Share of tasks hit by each kind of error: ``model`` (a model call failed), ``tool``,
    ``validation`` (any other error, or a task that failed with neither) and ``limit``."""
    row = _one(store, _ERRORS_SQL, filters.params(store))
    tasks = int(row["tasks"] or 0)
    spans = {
        "model": row["model_spans"],
        "tool": row["tool_spans"],
        "validation": row["validation_spans"],
        "limit": row["limit_tasks"],
    }
    out: list[tuple[Any, ...]] = []
    for category in ERROR_CATEGORIES:
        affected = int(row[f"{category}_tasks"] or 0)
        out.append((category, affected, _ratio(affected, tasks), int(spans[category] or 0)))
    return Rows(["category", "tasks", "rate", "error_spans"], out)


# --- cost ---------------------------------------------------------------------------------------
def bucket_seconds(filters: Filters, points: int = 60) -> int:
    """A round time-bucket size giving about ``points`` buckets over the filter's range."""
    start_ns, end_ns = filters._bounds()
    if filters.start is None:
        return 86_400
    span_s = (end_ns - start_ns) / 1e9 / points
    for step in (10, 30, 60, 300, 600, 900, 1800, 3600, 10800, 21600, 43200, 86400):
        if span_s <= step:
            return step
    return 86_400 * math.ceil(span_s / 86_400)


_BUCKET_START: Final = (
    "intDiv(toUInt32(toUnixTimestamp(Timestamp)), {bucket_s:UInt32}) * {bucket_s:UInt32}"
)
_COST_BY_MODEL_SQL: Final = (
    f"SELECT {_BUCKET_START} AS bucket_start, {_MODEL_NAME} AS model, "
    "sum(CostUsd) AS cost_usd, count() AS calls, "
    "sum(InputTokens) AS input_tokens, sum(OutputTokens) AS output_tokens "
    f"FROM {_T} WHERE {_IN_RANGE} AND CostUsd > 0 AND {_SPAN_FILTERS}"
)


def cost_over_time_by_model(store: Store, filters: Filters, bucket_s: int | None = None) -> Rows:
    """Spend per time bucket (unix seconds of its start) and model."""
    step = bucket_s or bucket_seconds(filters)
    sql = (
        _COST_BY_MODEL_SQL
        + _task_traces(filters)
        + " GROUP BY bucket_start, model ORDER BY bucket_start, model"
    )
    return store.query(sql, {**filters.params(store), "bucket_s": step})


def cost_over_time_by_task_type(
    store: Store, filters: Filters, bucket_s: int | None = None
) -> Rows:
    """Spend per time bucket (unix seconds of its start) and task type, with the number of
    priced calls."""
    step = bucket_s or bucket_seconds(filters)
    sql = (
        "SELECT bucket_start, task_type, cost_usd, calls FROM ("
        + _cost_by_type(filters, bucketed=True)
        + ") ORDER BY bucket_start, task_type"
    )
    return store.query(sql, {**filters.params(store), "bucket_s": step})


@dataclass(frozen=True, slots=True)
class CostSummary:
    """Spend for a period: per task, per successful task, concentration, unpriced calls."""

    tasks: int
    completed: int
    cost_usd: float
    top_tasks: int
    top_cost_usd: float
    model_calls: int
    unpriced_calls: int

    @property
    def cost_per_task(self) -> float | None:
        return _ratio(self.cost_usd, self.tasks)

    @property
    def cost_per_successful_task(self) -> float | None:
        """All spend (failed tasks included) per completed task."""
        return _ratio(self.cost_usd, self.completed)

    @property
    def top_share(self) -> float | None:
        """Share of spend in the most expensive 5% of tasks (``top_tasks`` of them)."""
        return _ratio(self.top_cost_usd, self.cost_usd)


# Tasks and spend per trace in one pass over the trace facts. Spend counts every trace with
# priced spans in range (model calls outside any agent run included), or with a task filter
# only the filtered tasks' traces; the top 5% are ``ceil(tasks * 0.05)`` of those traces.
_COST_SUMMARY_TRACES: Final = (
    "SELECT tasks, completed, cost_usd, top_tasks, "
    "arraySum(arraySlice(arrayReverseSort(costs), 1, top_tasks)) AS top_cost_usd, "
    "model_calls, unpriced_calls FROM ("
    "SELECT sumIf(weight, selected) AS tasks, "
    "sumIf(weight, selected AND outcome = 'completed') AS completed, "
    "toUInt64(ceil(tasks * 0.05)) AS top_tasks, "
    "sumIf(cost, cost > 0 AND (selected OR {by_task:UInt8} = 0)) AS cost_usd, "
    "groupArrayIf(cost, cost > 0 AND (selected OR {by_task:UInt8} = 0)) AS costs FROM ("
    + _fact_traces(f", sumIf(Spend, {_SPAN_FILTERS}) AS cost", ", Spend")
    + ")) AS trace_stats CROSS JOIN ("
    "SELECT count() AS model_calls, countIf(Priced = 0) AS unpriced_calls "
    f"FROM {_T} WHERE {_IN_RANGE} AND {_HAS_TOKENS} AND {_SPAN_FILTERS}"
)


def cost_summary(store: Store, filters: Filters) -> CostSummary:
    """Total spend, cost per (successful) task, top-5% concentration, unpriced model calls.

    The top 5% are ``ceil(tasks * 0.05)`` of the most expensive traces."""
    sql = _COST_SUMMARY_TRACES + _task_traces(filters) + ") AS call_stats"
    row = _one(store, sql, {**filters.params(store), "by_task": int(filters.by_task)})
    return CostSummary(
        tasks=int(row["tasks"] or 0),
        completed=int(row["completed"] or 0),
        cost_usd=float(row["cost_usd"] or 0.0),
        top_tasks=int(row["top_tasks"] or 0),
        top_cost_usd=float(row["top_cost_usd"] or 0.0),
        model_calls=int(row["model_calls"] or 0),
        unpriced_calls=int(row["unpriced_calls"] or 0),
    )


_UNPRICED_SQL: Final = (
    f"SELECT {_MODEL_NAME} AS model, Provider AS provider, count() AS calls, "
    "sum(InputTokens) AS input_tokens, sum(OutputTokens) AS output_tokens "
    f"FROM {_T} WHERE {_IN_RANGE} AND Priced = 0 AND {_HAS_TOKENS} AND {_SPAN_FILTERS}"
)


def unpriced_models(store: Store, filters: Filters) -> Rows:
    """Model calls with tokens but no known price, per model: add them to a prices file."""
    sql = (
        _UNPRICED_SQL
        + _task_traces(filters)
        + " GROUP BY model, provider ORDER BY calls DESC, model LIMIT 100"
    )
    return store.query(sql, filters.params(store))


_EXPENSIVE_SQL: Final = (
    "SELECT TraceId AS trace_id, toUnixTimestamp64Milli(start_time) AS start_ms, service, "
    "agent, task_type, outcome, duration_ns / 1e9 AS duration_s, c.cost AS cost_usd "
    f"FROM ({_TASKS}) AS t INNER JOIN ({_TRACE_COST}{_TRACE_COST_END}) AS c USING TraceId "
    "ORDER BY cost_usd DESC, trace_id LIMIT {limit:UInt32}"
)
# The most expensive traces (of the filtered tasks, with a task filter), as two arrays: ids
# and costs; then the tasks among them.
_TOP_TRACES_HEAD: Final = "WITH (SELECT (groupArray(TraceId), groupArray(cost)) FROM ("
_TOP_TRACES_TAIL: Final = (
    " ORDER BY cost DESC, TraceId LIMIT {candidates:UInt32})) AS top "
    "SELECT TraceId AS trace_id, toUnixTimestamp64Milli(start_time) AS start_ms, service, "
    "agent, task_type, outcome, duration_ns / 1e9 AS duration_s, "
    "top.2[indexOf(top.1, TraceId)] AS cost_usd "
    f"FROM ({_tasks('AND TraceId IN top.1')}) "
    "ORDER BY cost_usd DESC, trace_id LIMIT {limit:UInt32}"
)
_CANDIDATES_PER_ROW: Final = 4


def most_expensive_traces(store: Store, filters: Filters, limit: int = 20) -> Rows:
    """The tasks that cost the most, most expensive first.

    First among the ``4 * limit`` most expensive traces of all, which needs no join over every
    task: when at least ``limit`` of them are tasks, they are exactly the top tasks (ranked by
    cost, then trace id, as the full query ranks them). Otherwise (many costly traces without an
    agent span, or few tasks) the full query answers."""
    params = {**filters.params(store), "limit": _limit(limit)}
    sql = _TOP_TRACES_HEAD + _trace_cost(filters) + _TOP_TRACES_TAIL
    top = store.query(sql, {**params, "candidates": limit * _CANDIDATES_PER_ROW})
    if len(top.rows) == limit:
        return top
    return store.query(_EXPENSIVE_SQL, params)


def _limit(limit: int) -> int:
    if not 1 <= limit <= 10_000:
        raise ValueError(f"limit must be in 1..10000, not {limit}")
    return limit


# --- traces -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TraceFilters:
    """The Traces page's own filters, on top of ``Filters``."""

    min_cost_usd: float = 0.0
    outcome: str = ""
    model: str = ""
    errors_only: bool = False


_OUTCOME_IS: Final = "({outcome:String} = '' OR outcome = {outcome:String})"
_LATEST_TASKS: Final = (
    f"SELECT * FROM ({_TASKS}) WHERE {_OUTCOME_IS} "
    "ORDER BY start_time DESC, TraceId LIMIT {limit:UInt32}"
)
_TRACE_LIST_HEAD: Final = (
    "SELECT TraceId AS trace_id, toUnixTimestamp64Milli(start_time) AS start_ms, service, "
    "agent, task_type, outcome, limit_hit, duration_ns / 1e9 AS duration_s, "
    "s.cost AS cost_usd, s.spans AS spans, s.errors AS errors, s.tokens AS tokens, "
    "s.models AS models FROM ("
)
_TRACE_TOTALS: Final = (
    ") AS t INNER JOIN ("
    "SELECT TraceId, sum(CostUsd) AS cost, count() AS spans, "
    "countIf(ErrorType != '') AS errors, sum(InputTokens + OutputTokens) AS tokens, "
    f"arraySort(groupUniqArrayIf({_MODEL_NAME}, {_MODEL_NAME} != '')) AS models "
    f"FROM {_T} WHERE {_IN_RANGE}"
)
_TRACE_LIST_TAIL: Final = (
    " GROUP BY TraceId) AS s USING TraceId "
    f"WHERE s.cost >= {{min_cost:Float64}} AND {_OUTCOME_IS} "
    "AND ({model:String} = '' OR has(s.models, {model:String})) "
    "AND ({errors_only:UInt8} = 0 OR s.errors > 0) "
    "ORDER BY start_time DESC, trace_id LIMIT {limit:UInt32}"
)


def trace_list(
    store: Store, filters: Filters, trace_filters: TraceFilters | None = None, limit: int = 200
) -> Rows:
    """Tasks, newest first, with their cost, span and error counts and models.

    Without span-level trace filters (cost, model, errors) only the newest ``limit`` tasks'
    spans are read, found through the TraceId index."""
    tf = trace_filters or TraceFilters()
    if tf.min_cost_usd > 0 or tf.model or tf.errors_only:
        sql = _TRACE_LIST_HEAD + _TASKS + _TRACE_TOTALS + _TRACE_LIST_TAIL
    else:
        sql = (
            _TRACE_LIST_HEAD
            + _LATEST_TASKS
            + _TRACE_TOTALS
            + f" AND TraceId IN (SELECT TraceId FROM ({_LATEST_TASKS}))"
            + _TRACE_LIST_TAIL
        )
    params = {
        **filters.params(store),
        "min_cost": float(tf.min_cost_usd),
        "outcome": tf.outcome,
        "model": tf.model,
        "errors_only": int(tf.errors_only),
        "limit": _limit(limit),
    }
    return store.query(sql, params)


_TRACE_SPANS_SQL: Final = (
    "SELECT SpanId AS span_id, ParentSpanId AS parent_span_id, SpanName AS name, "
    "Operation AS operation, toUnixTimestamp64Nano(Timestamp) AS start_ns, "
    "Duration AS duration_ns, StatusCode AS status, StatusMessage AS status_message, "
    "ErrorType AS error_type, ServiceName AS service, AgentName AS agent, "
    "TaskType AS task_type, Outcome AS outcome, LimitExceeded AS limit_hit, "
    f"ToolName AS tool, ToolTier AS tier, {_MODEL_NAME} AS model, "
    "InputTokens AS input_tokens, OutputTokens AS output_tokens, CostUsd AS cost_usd, "
    "Priced AS priced, Confidence AS confidence, Route AS route, "
    "FeedbackCorrect AS feedback_correct "
    f"FROM {_T} WHERE TraceId = {{trace_id:String}} AND {_IN_RANGE} "
    "ORDER BY Timestamp, span_id LIMIT 10000"
)


def trace_spans(
    store: Store, trace_id: str, start: datetime | None = None, end: datetime | None = None
) -> Rows:
    """Every span of one trace (up to 10,000), in start order. ``start``/``end`` narrow the
    search to the partitions the trace can be in; without them the TraceId index finds it."""
    params = {**Filters(start=start, end=end).params(store), "trace_id": trace_id}
    return store.query(_TRACE_SPANS_SQL, params)


# --- sidebar and empty states -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FilterOptions:
    """The values the sidebar offers, from the agent spans in the time range."""

    services: list[str]
    agents: list[str]
    task_types: list[str]
    environments: list[str]
    models: list[str]


_OPTIONS_SQL: Final = (
    "SELECT * FROM ("
    "SELECT groupUniqArrayIf(500)(ServiceName, ServiceName != '') AS services, "
    "groupUniqArrayIf(500)(AgentName, AgentName != '') AS agents, "
    "groupUniqArrayIf(500)(TaskType, TaskType != '') AS task_types, "
    "groupUniqArrayIf(500)(Environment, Environment != '') AS environments "
    f"FROM {_T} WHERE {_IN_RANGE} AND Operation = 'invoke_agent'"
    ") AS agent_values CROSS JOIN ("
    f"SELECT groupUniqArrayIf(500)({_MODEL_NAME}, {_MODEL_NAME} != '') AS models "
    f"FROM {_T} WHERE {_IN_RANGE} AND {_HAS_TOKENS}"
    ") AS model_values"
)


def filter_options(store: Store, filters: Filters) -> FilterOptions:
    """Services, agents, task types, environments and models seen in the time range."""
    row = _one(store, _OPTIONS_SQL, filters.params(store))

    def values(key: str) -> list[str]:
        found: Sequence[str] = row[key] or []
        return sorted(found)

    return FilterOptions(
        values("services"),
        values("agents"),
        values("task_types"),
        values("environments"),
        values("models"),
    )


@dataclass(frozen=True, slots=True)
class DataPresence:
    """Whether there is anything to show: spans in the range, spans at all, the newest one."""

    spans_in_range: int
    spans_total: int
    latest: datetime | None


_PRESENCE_SQL: Final = (
    "SELECT * FROM ("
    f"SELECT count() AS spans_in_range FROM {_T} WHERE {_IN_RANGE}"
    ") AS in_range CROSS JOIN ("
    "SELECT count() AS spans_total, "
    "if(spans_total > 0, toUnixTimestamp64Milli(max(Timestamp)), 0) AS latest_ms "
    f"FROM {_T}"
    ") AS everything"
)


def data_presence(store: Store, filters: Filters) -> DataPresence:
    """For empty states: no data at all (start something) versus none in this range."""
    row = _one(store, _PRESENCE_SQL, filters.params(store))
    total = int(row["spans_total"] or 0)
    latest = (
        datetime.fromtimestamp(int(row["latest_ms"]) / 1000, tz=UTC)
        if total and row["latest_ms"]
        else None
    )
    return DataPresence(int(row["spans_in_range"] or 0), total, latest)

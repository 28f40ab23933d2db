"""What every dashboard query builds on: the tasks, the per-trace facts and the result helpers.

The queries themselves are one named function each over a ``Store`` and ``Filters``
(``storage._scope``), in one module per page group: ``_overview_queries``, ``_cost_queries``,
``_decision_queries``, ``_trace_queries``, and ``_sidebar_queries`` for the sidebar and the
empty states every page shows.

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
from typing import Any, Final

from agentwatch.storage._schema import TRACE_FACTS_TABLE, trace_facts_select
from agentwatch.storage._scope import IN_RANGE, SPAN_SCOPE, SPANS, Filters
from agentwatch.storage._store import Store

OUTCOMES: Final = ("completed", "escalated", "failed", "limit_exceeded")


# --- tasks --------------------------------------------------------------------------------------
HAS_TOKENS: Final = "(InputTokens > 0 OR OutputTokens > 0)"
AGENT_SPANS: Final = (
    f"FROM {SPANS} WHERE {IN_RANGE} AND Operation = 'invoke_agent' AND {SPAN_SCOPE} "
)
_OUTCOME: Final = "multiIf(Outcome != '', Outcome, StatusCode = 'Error', 'failed', 'completed')"
# Traces with an agent span that is not the root: nested agents, or an agent under a foreign
# parent span. Few in practice; only these need a per-trace GROUP BY to find their task span.
NESTED_IDS: Final = "SELECT TraceId " + AGENT_SPANS + "AND ParentSpanId != ''"


def tasks_sql(only: str = "") -> str:
    """One row per task: its root agent span when the trace has one in range (a root span
    starts first, so it is the outermost), else the trace's earliest agent span in range. A
    root agent span without a name (the OpenAI Agents SDK's "Agent workflow") takes the name of
    the trace's earliest nested agent span, where the framework puts the agent's. No GROUP BY
    over every trace (the slow part of reading tasks): only the traces with a nested or
    foreign-parented agent span are grouped. ``only`` is an extra condition on the agent spans
    (constant SQL), e.g. ``AND TraceId IN (...)``."""
    agent_spans = AGENT_SPANS + only + " "
    return (
        "SELECT * FROM ("
        "SELECT TraceId, Timestamp AS start_time, ServiceName AS service, AgentName AS agent, "
        f"TaskType AS task_type, {_OUTCOME} AS outcome, LimitExceeded AS limit_hit, "
        "Duration AS duration_ns " + agent_spans + "AND ParentSpanId = '' "
        f"AND NOT (AgentName = '' AND TraceId IN ({NESTED_IDS})) "
        "UNION ALL "
        "SELECT TraceId, min(Timestamp) AS start_time, "
        "argMin(ServiceName, Timestamp) AS service, "
        "if(countIf(ParentSpanId = '') = 0, argMin(AgentName, Timestamp), "
        "argMinIf(AgentName, Timestamp, ParentSpanId != '')) AS agent, "
        "argMin(TaskType, Timestamp) AS task_type, "
        f"argMin({_OUTCOME}, Timestamp) AS outcome, "
        "argMin(LimitExceeded, Timestamp) AS limit_hit, "
        "argMin(Duration, Timestamp) AS duration_ns "
        + agent_spans
        + f"AND TraceId IN ({NESTED_IDS}) "
        "GROUP BY TraceId HAVING countIf(ParentSpanId = '') = 0 "
        "OR countIf(ParentSpanId = '' AND AgentName != '') = 0"
        ") WHERE ({agent:String} = '' OR agent = {agent:String}) "
        "AND ({task_type:String} = '' OR task_type = {task_type:String})"
    )


TASKS: Final = tasks_sql()
_TASK_IDS: Final = f"SELECT TraceId FROM ({TASKS})"
_IN_TASKS: Final = f" AND TraceId IN ({_TASK_IDS})"

LIMITED: Final = "(outcome = 'limit_exceeded' OR limit_hit != '')"


def task_traces(filters: Filters) -> str:
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
_EDGE_FACTS: Final = trace_facts_select(SPANS, _EDGE_HOURS)
TRACE_KEY: Final = "reinterpretAsUInt128(sipHash128(TraceId))"
_TASK_FACT_COLUMNS: Final = (
    "ServiceName, Environment, TraceKey, RootAgentSpans, NestedAgentSpans, Agent, "
    "RootTaskType, RootOutcome, LimitHit, RootDuration, FirstAgent"
)


def fact_rows(columns: str, keys: str = "") -> str:
    """``columns`` of the trace-fact rows in range; ``keys`` (constant SQL: a subquery of trace
    keys) narrows them to those traces (filtering the union once builds the key set once)."""
    rows = (
        f"SELECT {columns} FROM {_FACTS} WHERE {_FACT_HOURS} "
        f"UNION ALL SELECT {columns} FROM ({_EDGE_FACTS})"
    )
    return f"SELECT * FROM ({rows}) WHERE TraceKey IN ({keys})" if keys else rows


def _packed(field: int) -> str:
    return f"base64Decode(packed[{field}])"


def fact_traces(aggregates: str = "", columns: str = "", keys: str = "") -> str:
    """One row per trace with facts in range: whether it is a task of the filters (``selected``),
    how many times it counts (``weight``: a root agent span stored twice counts twice, as in
    ``tasks_sql``), the task's fields as ``tasks_sql`` defines them, and ``aggregates``
    (constant SQL over the fact ``columns``); ``keys`` as for ``fact_rows``."""
    rows = fact_rows(_TASK_FACT_COLUMNS + columns, keys)
    return (
        "SELECT *, "
        # An unnamed root agent span takes its first nested agent span's name.
        f"if(roots > 0 AND root_agent != '', root_agent, {_packed(2)}) AS agent, "
        f"if(roots > 0, root_task_type, {_packed(3)}) AS task_type, "
        f"if(roots > 0, root_outcome, {_packed(4)}) AS outcome, "
        f"if(roots > 0, root_limit_hit, {_packed(5)}) AS limit_hit, "
        "if(roots > 0, root_duration, toUInt64(packed[6])) AS duration_ns, "
        "if(roots > 0, roots, 1) AS weight, "
        "(roots > 0 OR nested > 0) "
        "AND ({agent:String} = '' OR agent = {agent:String}) "
        "AND ({task_type:String} = '' OR task_type = {task_type:String}) AS selected "
        "FROM (SELECT TraceKey, "
        f"sumIf(RootAgentSpans, {SPAN_SCOPE}) AS roots, "
        f"sumIf(NestedAgentSpans, {SPAN_SCOPE}) AS nested, "
        f"maxIf(Agent, {SPAN_SCOPE}) AS root_agent, "
        f"maxIf(RootTaskType, {SPAN_SCOPE}) AS root_task_type, "
        f"maxIf(RootOutcome, {SPAN_SCOPE}) AS root_outcome, "
        f"maxIf(LimitHit, {SPAN_SCOPE}) AS root_limit_hit, "
        f"maxIf(RootDuration, {SPAN_SCOPE}) AS root_duration, "
        # Split only where the task has no named root agent span (none for the others).
        f"splitByChar(',', if(roots > 0 AND root_agent != '', '', "
        f"minIf(FirstAgent, {SPAN_SCOPE}))) AS packed"
        f"{aggregates} FROM ({rows}) GROUP BY TraceKey)"
    )


def fact_tasks(aggregates: str = "", columns: str = "", keys: str = "") -> str:
    """``fact_traces`` of the tasks of the filters only."""
    return f"SELECT * FROM ({fact_traces(aggregates, columns, keys)}) WHERE selected"


# --- result helpers ---------------------------------------------------------------------------
def float_or_none(value: Any) -> float | None:
    """A float, or None for NULL / NaN (ClickHouse's avg of nothing)."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def ratio(part: float | int | None, whole: float | int | None) -> float | None:
    if part is None or not whole:
        return None
    return float(part) / float(whole)


def first_row(store: Store, sql: str, params: dict[str, Any]) -> dict[str, Any]:
    result = store.query(sql, params)
    rows = result.dicts()
    return rows[0] if rows else dict.fromkeys(result.columns)


def checked_limit(limit: int) -> int:
    if not 1 <= limit <= 10_000:
        raise ValueError(f"limit must be in 1..10000, not {limit}")
    return limit

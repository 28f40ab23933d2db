"""The Cost page's queries: spend summary, spend over time, spend by task type (which the
Overview shows too, with each task type's outcomes), unpriced models and the most expensive tasks.

What the numbers mean is defined once, in ``storage._tasks``.
"""

# The SQL below is concatenated from constant fragments only (this module's and those of
# storage._scope and storage._tasks); every value is a bound parameter, so the S608
# string-built-SQL heuristic does not apply to anything here.
# ruff: noqa: S608

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from agentwatch.storage._scope import (
    BUCKET_START,
    IN_RANGE,
    MODEL_NAME,
    SPAN_SCOPE,
    SPANS,
    Filters,
    bucket_seconds,
)
from agentwatch.storage._store import Rows, Store
from agentwatch.storage._tasks import (
    HAS_TOKENS,
    LIMITED,
    NESTED_IDS,
    TASKS,
    TRACE_KEY,
    checked_limit,
    fact_tasks,
    fact_traces,
    first_row,
    ratio,
    task_traces,
    tasks_sql,
)

# --- spend per trace ---------------------------------------------------------------------------
# Spend per trace. Without a task filter it includes traces with no agent span (model calls
# made outside any agent run): spend is spend.
_TRACE_COST: Final = (
    f"SELECT TraceId, sum(CostUsd) AS cost FROM {SPANS} "
    f"WHERE {IN_RANGE} AND CostUsd > 0 AND {SPAN_SCOPE}"
)
_TRACE_COST_END: Final = " GROUP BY TraceId"


def _trace_cost(filters: Filters) -> str:
    return _TRACE_COST + task_traces(filters) + _TRACE_COST_END


# --- outcomes and cost by task type -------------------------------------------------------------
# Spend by task type. The SDK puts agentwatch.task.type on every span of an agent run, so a
# priced span's own type says whose spend it is: a plain GROUP BY, no per-trace join. Two kinds
# of spans take their trace's task type instead, through a join over those traces only: spans
# without a type (older SDKs, other instrumentations) and spans of traces with a nested or
# foreign-parented agent span (a nested agent's spans carry its own type, not the task's);
# the latter are first taken back out of the plain GROUP BY. Excluding them there with
# ``NOT IN`` instead would read every priced span's TraceId.
_PRICED_IN_RANGE: Final = f"FROM {SPANS} WHERE {IN_RANGE} AND CostUsd > 0 AND {SPAN_SCOPE} "
_IN_NESTED: Final = f" AND TraceId IN ({NESTED_IDS})"


def _cost_by_type(filters: Filters, *, bucketed: bool) -> str:
    """Rows (task_type[, bucket_start], cost_usd, calls): priced spans by task type."""
    in_tasks = task_traces(filters)
    key = f"{BUCKET_START} AS bucket_start, " if bucketed else ""
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
    trace_keys = f"SELECT {TRACE_KEY} FROM ({untyped} UNION ALL {NESTED_IDS})"
    tasks = fact_tasks(keys=trace_keys)
    of_trace = (
        f"SELECT t.task_type AS task_type, {'c.bucket_start AS bucket_start, ' if bucketed else ''}"
        "sum(c.cost * t.weight) AS cost_usd, toInt64(sum(t.weight)) AS calls "
        f"FROM ({tasks}) AS t INNER JOIN (SELECT {TRACE_KEY} AS TraceKey, * FROM ("
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
    f"countIf({LIMITED}) AS n_limited, toFloat64(0) AS spend "
    f"FROM ({TASKS}) GROUP BY task_type "
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


# --- spend over time, summary, unpriced calls, most expensive tasks ----------------------------
_COST_BY_MODEL_SQL: Final = (
    f"SELECT {BUCKET_START} AS bucket_start, {MODEL_NAME} AS model, "
    "sum(CostUsd) AS cost_usd, count() AS calls, "
    "sum(InputTokens) AS input_tokens, sum(OutputTokens) AS output_tokens "
    f"FROM {SPANS} WHERE {IN_RANGE} AND CostUsd > 0 AND {SPAN_SCOPE}"
)


def cost_over_time_by_model(store: Store, filters: Filters, bucket_s: int | None = None) -> Rows:
    """Spend per time bucket (unix seconds of its start) and model."""
    step = bucket_s or bucket_seconds(filters)
    sql = (
        _COST_BY_MODEL_SQL
        + task_traces(filters)
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
        return ratio(self.cost_usd, self.tasks)

    @property
    def cost_per_successful_task(self) -> float | None:
        """All spend (failed tasks included) per completed task."""
        return ratio(self.cost_usd, self.completed)

    @property
    def top_share(self) -> float | None:
        """Share of spend in the most expensive 5% of tasks (``top_tasks`` of them)."""
        return ratio(self.top_cost_usd, self.cost_usd)


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
    + fact_traces(f", sumIf(Spend, {SPAN_SCOPE}) AS cost", ", Spend")
    + ")) AS trace_stats CROSS JOIN ("
    "SELECT count() AS model_calls, countIf(Priced = 0) AS unpriced_calls "
    f"FROM {SPANS} WHERE {IN_RANGE} AND {HAS_TOKENS} AND {SPAN_SCOPE}"
)


def cost_summary(store: Store, filters: Filters) -> CostSummary:
    """Total spend, cost per (successful) task, top-5% concentration, unpriced model calls.

    The top 5% are ``ceil(tasks * 0.05)`` of the most expensive traces."""
    sql = _COST_SUMMARY_TRACES + task_traces(filters) + ") AS call_stats"
    row = first_row(store, sql, {**filters.params(store), "by_task": int(filters.by_task)})
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
    f"SELECT {MODEL_NAME} AS model, Provider AS provider, count() AS calls, "
    "sum(InputTokens) AS input_tokens, sum(OutputTokens) AS output_tokens "
    f"FROM {SPANS} WHERE {IN_RANGE} AND Priced = 0 AND {HAS_TOKENS} AND {SPAN_SCOPE}"
)


def unpriced_models(store: Store, filters: Filters) -> Rows:
    """Model calls with tokens but no known price, per model: add them to a prices file."""
    sql = (
        _UNPRICED_SQL
        + task_traces(filters)
        + " GROUP BY model, provider ORDER BY calls DESC, model LIMIT 100"
    )
    return store.query(sql, filters.params(store))


_EXPENSIVE_SQL: Final = (
    "SELECT TraceId AS trace_id, toUnixTimestamp64Milli(start_time) AS start_ms, service, "
    "agent, task_type, outcome, duration_ns / 1e9 AS duration_s, c.cost AS cost_usd "
    f"FROM ({TASKS}) AS t INNER JOIN ({_TRACE_COST}{_TRACE_COST_END}) AS c USING TraceId "
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
    f"FROM ({tasks_sql('AND TraceId IN top.1')}) "
    "ORDER BY cost_usd DESC, trace_id LIMIT {limit:UInt32}"
)
_CANDIDATES_PER_ROW: Final = 4


def most_expensive_traces(store: Store, filters: Filters, limit: int = 20) -> Rows:
    """The tasks that cost the most, most expensive first.

    First among the ``4 * limit`` most expensive traces of all, which needs no join over every
    task: when at least ``limit`` of them are tasks, they are exactly the top tasks (ranked by
    cost, then trace id, as the full query ranks them). Otherwise (many costly traces without an
    agent span, or few tasks) the full query answers."""
    params = {**filters.params(store), "limit": checked_limit(limit)}
    sql = _TOP_TRACES_HEAD + _trace_cost(filters) + _TOP_TRACES_TAIL
    top = store.query(sql, {**params, "candidates": limit * _CANDIDATES_PER_ROW})
    if len(top.rows) == limit:
        return top
    return store.query(_EXPENSIVE_SQL, params)

"""The Overview page's queries: the tiles (with their trend), tool usage and error categories.

What the numbers mean is defined once, in ``storage._tasks``; the Overview's outcomes and cost
by task type are ``_cost_queries.completion_by_task_type``, its confidence distribution
``_decision_queries.confidence_distribution``.
"""

# The SQL below is concatenated from constant fragments only (this module's and those of
# storage._scope and storage._tasks); every value is a bound parameter, so the S608
# string-built-SQL heuristic does not apply to anything here.
# ruff: noqa: S608

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from agentwatch.storage._scope import IN_RANGE, SPAN_SCOPE, SPANS, Filters
from agentwatch.storage._store import Rows, Store
from agentwatch.storage._tasks import (
    AGENT_SPANS,
    LIMITED,
    TASKS,
    fact_tasks,
    first_row,
    float_or_none,
    ratio,
    task_traces,
)


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
        return ratio(self.completed, self.tasks)

    @property
    def escalation_rate(self) -> float | None:
        return ratio(self.escalated, self.tasks)

    @property
    def limit_exceeded_rate(self) -> float | None:
        return ratio(self.limit_exceeded, self.tasks)

    @property
    def cost_per_task(self) -> float | None:
        return ratio(self.cost_usd, self.tasks)

    @property
    def tool_error_rate(self) -> float | None:
        return ratio(self.tool_errors, self.tool_calls)


_OVERVIEW_TASKS: Final = (
    "SELECT * FROM ("
    "SELECT count() AS tasks, "
    "countIf(outcome = 'completed') AS completed, "
    "countIf(outcome = 'escalated') AS escalated, "
    "countIf(outcome = 'failed') AS failed, "
    f"countIf({LIMITED}) AS limit_exceeded, "
    "quantiles(0.5, 0.95)(duration_ns) AS latency_ns "
    f"FROM ({TASKS})"
    ") AS task_stats CROSS JOIN ("
    # Iterations are counted by aw.iteration() on agent runs with limits; nested runs count.
    "SELECT avgIf(Iterations, Iterations > 0) AS avg_iterations "
    + AGENT_SPANS
    + "AND ({agent:String} = '' OR AgentName = {agent:String}) "
    "AND ({task_type:String} = '' OR TaskType = {task_type:String})"
    ") AS iteration_stats CROSS JOIN ("
    f"SELECT sum(CostUsd) AS cost_usd FROM {SPANS} "
    f"WHERE {IN_RANGE} AND CostUsd > 0 AND {SPAN_SCOPE}"
)
_OVERVIEW_TOOLS: Final = (
    ") AS cost_stats CROSS JOIN ("
    "SELECT count() AS tool_calls, countIf(ErrorType != '') AS tool_errors "
    f"FROM {SPANS} WHERE {IN_RANGE} AND Operation = 'execute_tool' AND {SPAN_SCOPE}"
)


def overview(store: Store, filters: Filters) -> Overview:
    """Task completion, escalation, cost per task, iterations, tool errors, limits, latency."""
    in_tasks = task_traces(filters)
    sql = _OVERVIEW_TASKS + in_tasks + _OVERVIEW_TOOLS + in_tasks + ") AS tool_stats"
    row = first_row(store, sql, filters.params(store))
    tasks = int(row["tasks"] or 0)
    p50, p95 = (float_or_none(v) for v in row["latency_ns"]) if tasks else (None, None)
    return Overview(
        tasks=tasks,
        completed=int(row["completed"] or 0),
        escalated=int(row["escalated"] or 0),
        failed=int(row["failed"] or 0),
        limit_exceeded=int(row["limit_exceeded"] or 0),
        cost_usd=float(row["cost_usd"] or 0.0),
        tool_calls=int(row["tool_calls"] or 0),
        tool_errors=int(row["tool_errors"] or 0),
        avg_iterations=float_or_none(row["avg_iterations"]),
        p50_latency_s=None if p50 is None else p50 / 1e9,
        p95_latency_s=None if p95 is None else p95 / 1e9,
    )


def overview_with_trend(store: Store, filters: Filters) -> tuple[Overview, Overview]:
    """This period's overview and the previous period's (same length, just before)."""
    return overview(store, filters), overview(store, filters.previous())


# --- tools and errors ---------------------------------------------------------------------------
_TOOLS_SQL: Final = (
    "SELECT ToolName AS tool, anyIf(ToolTier, ToolTier != '') AS tier, count() AS calls, "
    "countIf(ErrorType != '') AS errors, errors / calls AS error_rate, "
    "quantile(0.95)(Duration) / 1e9 AS p95_latency_s "
    f"FROM {SPANS} WHERE {IN_RANGE} AND Operation = 'execute_tool' AND {SPAN_SCOPE}"
)


def tool_usage(store: Store, filters: Filters) -> Rows:
    """Per tool: calls, errors, error rate, p95 latency, risk tier."""
    sql = _TOOLS_SQL + task_traces(filters) + " GROUP BY tool ORDER BY calls DESC, tool"
    return store.query(sql, filters.params(store))


# Declared by agent spans in range (``@aw.agent(tools=[...])``), or by the model requests of a
# named agent (PydanticAI's gen_ai.tool.definitions), the agent and task-type filters applying
# to the declaring span itself (as for iterations).
_DECLARED_SQL: Final = (
    "SELECT tool, arraySort(groupUniqArray(agent)) AS agents FROM ("
    "SELECT AgentName AS agent, arrayJoin(groupUniqArrayArray(AgentTools)) AS tool "
    f"FROM {SPANS} WHERE {IN_RANGE} AND (Operation = 'invoke_agent' OR AgentName != '') "
    f"AND {SPAN_SCOPE} AND notEmpty(AgentTools) "
    "AND ({agent:String} = '' OR AgentName = {agent:String}) "
    "AND ({task_type:String} = '' OR TaskType = {task_type:String}) GROUP BY AgentName"
    ") WHERE tool != '' GROUP BY tool ORDER BY tool"
)


def declared_tools(store: Store, filters: Filters) -> Rows:
    """The tools agents declare (``agentwatch.agent.tools`` on their agent spans in range, or
    ``gen_ai.tool.definitions`` on spans of a named agent): per tool, the agents that declare
    it, by tool name."""
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
    f"sumIf(weight, {LIMITED}) AS limit_tasks, "
    "sumIf(weight, other_errors > 0 OR (outcome = 'failed' AND model_errors = 0 "
    f"AND tool_errors = 0 AND NOT {LIMITED})) AS validation_tasks, "
    "sum(weight * other_errors) AS validation_spans FROM ("
    + fact_tasks(
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
    row = first_row(store, _ERRORS_SQL, filters.params(store))
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
        out.append((category, affected, ratio(affected, tasks), int(spans[category] or 0)))
    return Rows(["category", "tasks", "rate", "error_spans"], out)

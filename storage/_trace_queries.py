"""The Traces page's queries: the task list with its own filters, and one trace's spans.

What the numbers mean is defined once, in ``storage._tasks``.
"""

# The SQL below is concatenated from constant fragments only (this module's and those of
# storage._scope and storage._tasks); every value is a bound parameter, so the S608
# string-built-SQL heuristic does not apply to anything here.
# ruff: noqa: S608

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from agentwatch.storage._scope import IN_RANGE, MODEL_NAME, SPANS, Filters
from agentwatch.storage._store import Rows, Store
from agentwatch.storage._tasks import TASKS, checked_limit


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
    f"SELECT * FROM ({TASKS}) WHERE {_OUTCOME_IS} "
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
    f"arraySort(groupUniqArrayIf({MODEL_NAME}, {MODEL_NAME} != '')) AS models "
    f"FROM {SPANS} WHERE {IN_RANGE}"
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
    trace_filters = trace_filters or TraceFilters()
    if trace_filters.min_cost_usd > 0 or trace_filters.model or trace_filters.errors_only:
        sql = _TRACE_LIST_HEAD + TASKS + _TRACE_TOTALS + _TRACE_LIST_TAIL
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
        "min_cost": float(trace_filters.min_cost_usd),
        "outcome": trace_filters.outcome,
        "model": trace_filters.model,
        "errors_only": int(trace_filters.errors_only),
        "limit": checked_limit(limit),
    }
    return store.query(sql, params)


# The fields of a span that a trace's page and its action log both show.
_SPAN_FIELDS: Final = (
    "SELECT SpanId AS span_id, ParentSpanId AS parent_span_id, SpanName AS name, "
    "Operation AS operation, toUnixTimestamp64Nano(Timestamp) AS start_ns, "
    "Duration AS duration_ns, StatusCode AS status, StatusMessage AS status_message, "
    "ErrorType AS error_type, ServiceName AS service, AgentName AS agent, "
    "TaskType AS task_type, Outcome AS outcome, LimitExceeded AS limit_hit, "
    f"ToolName AS tool, ToolTier AS tier, {MODEL_NAME} AS model, "
    "InputTokens AS input_tokens, OutputTokens AS output_tokens, "
)
_TRACE_SPANS_SQL: Final = (
    _SPAN_FIELDS + "CostUsd AS cost_usd, "
    "Priced AS priced, Confidence AS confidence, Route AS route, "
    "FeedbackCorrect AS feedback_correct "
    f"FROM {SPANS} WHERE TraceId = {{trace_id:String}} AND {IN_RANGE} "
    "ORDER BY Timestamp, span_id LIMIT 10000"
)


def trace_spans(
    store: Store, trace_id: str, start: datetime | None = None, end: datetime | None = None
) -> Rows:
    """Every span of one trace (up to 10,000), in start order. ``start``/``end`` narrow the
    search to the partitions the trace can be in; without them the TraceId index finds it."""
    params = {**Filters(start=start, end=end).params(store), "trace_id": trace_id}
    return store.query(_TRACE_SPANS_SQL, params)


# A trace as a structured action log (``agentwatch export trace``): every span with the fields
# a step needs, its attributes included (the content captured, redacted at the source).
_TRACE_EXPORT_SQL: Final = (
    _SPAN_FIELDS + "CacheReadTokens AS cache_read_tokens, CostUsd AS cost_usd, Priced AS priced, "
    "DecisionName AS decision, Confidence AS confidence, Route AS route, "
    "SpanAttributes AS attributes "
    f"FROM {SPANS} WHERE TraceId = {{trace_id:String}} "
    "ORDER BY Timestamp, span_id LIMIT 10000"
)


def trace_for_export(store: Store, trace_id: str) -> Rows:
    """Every span of one trace (up to 10,000) in start order, with its attributes."""
    return store.query(_TRACE_EXPORT_SQL, {**Filters().params(store), "trace_id": trace_id})

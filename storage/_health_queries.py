"""Health queries: probe results for the Health & alerts page, and the per-window series that
passive health (``agentwatch.alerts._passive``) judges.

Every value reaches ClickHouse as a ``{name:Type}`` bound parameter; the SQL text is constant
fragments, this module's and ``storage._scope``'s.

Probes: a health check run is a span with ``agentwatch.health.check`` (column ``HealthCheck``)
and ``agentwatch.health.passed`` (``HealthPassed``); ``agentwatch.health.failed_expectation``,
``.reason`` and ``.latency_ms`` stay in ``SpanAttributes``. Runs without a recorded result are
left out. The sidebar's service and environment filters apply to them; agent and task type do
not (a probe's root span has neither).

Passive health reads windows the way the alert evaluator does (``_scope.window_params``):
windows end at ``end_ns`` and go back in steps of ``window_s``; window 0 is ``[end - window,
end)``, window 1 the one before, and so on. Traces holding a probe span are not traffic and
count nowhere here.

- ``agent_runs``: ``invoke_agent`` spans per agent and window.
- ``chat_output_tokens``: the median and spread of output tokens per model call (``chat``,
  ``text_completion``, ``generate_content`` with output tokens) per agent and window. A call's
  agent is its own ``gen_ai.agent.name`` when set, else its trace's outermost agent span's.
- ``decision_confidence``: the median and spread of ``agentwatch.decision.confidence`` per task
  type and window. A decision's task type is its own ``agentwatch.task.type`` when set (the SDK
  sets it), else its trace's outermost agent span's.

The spread is the interquartile range / 1.349 (a robust standard deviation of the values): with
the count it gives the noise of a window's median, so a quiet window is not over-read.
"""

# The SQL below is concatenated from constant fragments only (this module's and those of
# storage._scope); every value is a bound parameter, so the S608 string-built-SQL heuristic
# does not apply to anything here.
# ruff: noqa: S608

from __future__ import annotations

from typing import Any, Final

from agentwatch.storage._schema import ALERTS_TABLE
from agentwatch.storage._scope import (
    BUCKET_START,
    IN_RANGE,
    NOT_PROBES,
    SPAN_SCOPE,
    SPANS,
    Filters,
    bucket_seconds,
    window_of,
    window_params,
)
from agentwatch.storage._scope import Scope as Scope  # re-exported: every series takes one
from agentwatch.storage._store import Rows, Store

MAX_WINDOWS: Final = 1000
_UNSCOPED: Final = Scope()


# --- SQL fragments (constants only) -------------------------------------------------------------
_RUNS: Final = "HealthCheck != '' AND HealthPassed IS NOT NULL"
_PASSED: Final = "assumeNotNull(HealthPassed)"
_ATTR: Final = "SpanAttributes['agentwatch.health.{}']"
_MODEL_CALL: Final = "Operation IN ('chat', 'text_completion', 'generate_content')"


# --- probes -------------------------------------------------------------------------------------
_CHECKS_SQL: Final = (
    "SELECT HealthCheck AS check, count() AS runs, "
    f"sum({_PASSED}) AS passed, passed / runs AS pass_rate, "
    "toUnixTimestamp64Milli(max(Timestamp)) AS last_run_ms, "
    f"argMax({_PASSED}, Timestamp) AS last_passed, "
    "argMax(TraceId, Timestamp) AS last_trace_id, "
    f"toFloat64OrNull(argMax({_ATTR.format('latency_ms')}, Timestamp)) AS last_latency_ms, "
    f"toUnixTimestamp64Milli(maxIfOrNull(Timestamp, {_PASSED} = 0)) AS last_failure_ms, "
    f"argMaxIf({_ATTR.format('failed_expectation')}, Timestamp, {_PASSED} = 0) "
    "AS last_failed_expectation, "
    f"argMaxIf({_ATTR.format('reason')}, Timestamp, {_PASSED} = 0) AS last_failure_reason, "
    f"argMaxIf(TraceId, Timestamp, {_PASSED} = 0) AS last_failure_trace_id, "
    "arrayStringConcat(arraySort(groupUniqArray(ServiceName)), ', ') AS services "
    f"FROM {SPANS} WHERE {IN_RANGE} AND {_RUNS} AND {SPAN_SCOPE} "
    "GROUP BY check ORDER BY check"
)


def health_checks(store: Store, filters: Filters) -> Rows:
    """One row per health check that ran in the range: ``runs``, ``passed``, ``pass_rate``, its
    last run (``last_run_ms``, ``last_passed`` 1/0, ``last_trace_id``, ``last_latency_ms``) and
    its last failure (``last_failure_ms`` or None, ``last_failed_expectation``,
    ``last_failure_reason``, ``last_failure_trace_id``; empty strings when it never failed), and
    the ``services`` it ran in."""
    return store.query(_CHECKS_SQL, filters.params(store))


_PASS_RATE_SQL: Final = (
    f"SELECT HealthCheck AS check, {BUCKET_START} AS bucket_start, count() AS runs, "
    f"sum({_PASSED}) AS passed, passed / runs AS pass_rate "
    f"FROM {SPANS} WHERE {IN_RANGE} AND {_RUNS} AND {SPAN_SCOPE} "
    "GROUP BY check, bucket_start ORDER BY check, bucket_start"
)


def health_pass_rate(store: Store, filters: Filters, bucket_s: int | None = None) -> Rows:
    """Per health check and time bucket (unix seconds of its start; buckets without a run have
    no row): ``runs``, ``passed`` and ``pass_rate``."""
    step = bucket_s or bucket_seconds(filters)
    if step <= 0:
        raise ValueError(f"bucket_s must be positive, not {step}")
    return store.query(_PASS_RATE_SQL, {**filters.params(store), "bucket_s": step})


_ALERTS_TABLE_SQL: Final = (
    "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {table:String}"
)


def alerts_table_exists(store: Store) -> bool:
    """Whether the store has the alerts table (a store written only by another OTLP writer, or
    not yet migrated, has none: it then has no alerts)."""
    rows = store.query(_ALERTS_TABLE_SQL, {"db": store.database, "table": ALERTS_TABLE})
    return bool(rows.scalar())


# --- passive health series ----------------------------------------------------------------------
_AGENT_RUNS_SQL: Final = (
    f"SELECT AgentName AS agent, {window_of('toUnixTimestamp64Nano(Timestamp)')} AS window, "
    "count() AS runs, max(toUnixTimestamp64Nano(Timestamp)) AS last_ns "
    f"FROM {SPANS} WHERE {IN_RANGE} AND Operation = 'invoke_agent' AND AgentName != '' "
    f"AND {SPAN_SCOPE} AND ({{agent:String}} = '' OR AgentName = {{agent:String}}) "
    f"AND {NOT_PROBES} "
    "GROUP BY agent, window ORDER BY agent, window"
)


def _series_params(
    store: Store, end_ns: int, window_s: int, windows: int, scope: Scope
) -> dict[str, Any]:
    windows_at = window_params(end_ns, window_s, windows, max_windows=MAX_WINDOWS)
    return {"db": store.database, **windows_at, **scope.params()}


def agent_runs(
    store: Store, *, end_ns: int, window_s: int, windows: int, scope: Scope = _UNSCOPED
) -> Rows:
    """Per agent and window (0 = the latest): ``runs`` (its ``invoke_agent`` spans) and
    ``last_ns``, its latest run's start. Windows without a run have no row; an agent with no run
    in any of the ``windows`` has none at all."""
    return store.query(_AGENT_RUNS_SQL, _series_params(store, end_ns, window_s, windows, scope))


def _per_trace(value: str, keep: str, owner: str, trace_owner: str) -> str:
    """Per trace: its outermost agent span's ``trace_owner`` column, whether it is a probe,
    and ``(own owner, value, start ns)`` of each span matching ``keep``."""
    return (
        "SELECT cityHash64(TraceId) AS trace, "
        f"argMinIf({trace_owner}, Timestamp, Operation = 'invoke_agent') AS trace_owner, "
        "max(HealthCheck != '') AS is_probe, "
        f"groupArrayIf(({owner}, {value}, toUnixTimestamp64Nano(Timestamp)), {keep}) AS items "
        f"FROM {SPANS} WHERE {IN_RANGE} AND {SPAN_SCOPE} "
        f"AND (Operation = 'invoke_agent' OR HealthCheck != '' OR ({keep})) "
        "GROUP BY trace"
    )


def _medians(subject: str, count: str, median: str, inner: str, filter_param: str) -> str:
    """Per subject and window: the count, the median and the spread (interquartile range /
    1.349, a robust standard deviation of the values) of the traces' items."""
    return (
        f"SELECT {subject}, window, {count}, quartiles[2] AS {median}, "
        "(quartiles[3] - quartiles[1]) / 1.349 AS spread FROM ("
        f"SELECT if(item.1 != '', item.1, trace_owner) AS {subject}, "
        f"{window_of('item.3')} AS window, count() AS {count}, "
        "quantilesExactInclusive(0.25, 0.5, 0.75)(item.2) AS quartiles "
        f"FROM ({inner}) ARRAY JOIN items AS item "
        f"WHERE NOT is_probe AND {subject} != '' "
        f"AND ({{{filter_param}:String}} = '' OR {subject} = {{{filter_param}:String}}) "
        f"GROUP BY {subject}, window) ORDER BY {subject}, window"
    )


_CHAT_TOKENS_SQL: Final = _medians(
    "agent",
    "calls",
    "median_output_tokens",
    _per_trace(
        "toFloat64(OutputTokens)",
        f"{_MODEL_CALL} AND OutputTokens > 0",
        "toString(AgentName)",
        "toString(AgentName)",
    ),
    "agent",
)


def chat_output_tokens(
    store: Store, *, end_ns: int, window_s: int, windows: int, scope: Scope = _UNSCOPED
) -> Rows:
    """Per agent and window (0 = the latest): ``calls`` (model calls with output tokens),
    ``median_output_tokens`` per call and ``spread`` (interquartile range / 1.349). Windows
    without a call have no row."""
    return store.query(_CHAT_TOKENS_SQL, _series_params(store, end_ns, window_s, windows, scope))


_CONFIDENCE_SQL: Final = _medians(
    "task_type",
    "decisions",
    "median_confidence",
    _per_trace(
        "assumeNotNull(Confidence)",
        "Confidence IS NOT NULL",
        "toString(TaskType)",
        "toString(TaskType)",
    ),
    "task_type",
)


def decision_confidence(
    store: Store, *, end_ns: int, window_s: int, windows: int, scope: Scope = _UNSCOPED
) -> Rows:
    """Per task type and window (0 = the latest): ``decisions``, ``median_confidence`` and
    ``spread`` (interquartile range / 1.349). Windows without a decision have no row."""
    return store.query(_CONFIDENCE_SQL, _series_params(store, end_ns, window_s, windows, scope))

"""The audit of actions: every call of a tool that writes, with its justification.

A tool's risk tier (``@aw.tool(tier=...)``, ``agentwatch.tool.tier``) says what it may do:
``read``, ``write_safe``, ``write_risky``, ``destructive``. Every call of the three writing tiers
in range is listed, newest first, with the closest decision before it in the same trace (its
name, confidence, route and reasoning, when content capture recorded the reasoning): the
justification a reviewer reads.

The access-pattern review (``access_patterns``) lists, per agent, every tool it called and its
tier, in the range and in the period of the same length before it, so a tool an agent never
used before stands out.
"""

from __future__ import annotations

from typing import Final

from agentwatch.storage._scope import IN_RANGE, SPAN_SCOPE, SPANS, Filters, epoch_ns
from agentwatch.storage._store import Rows, Store
from agentwatch.storage._tasks import checked_limit

WRITING_TIERS: Final = ("write_safe", "write_risky", "destructive")
_SINCE_PREVIOUS: Final = (
    "Timestamp >= fromUnixTimestamp64Nano({previous_start_ns:Int64}) "
    "AND Timestamp < fromUnixTimestamp64Nano({end_ns:Int64})"
)

_WRITING_CALL: Final = (
    "Operation = 'execute_tool' AND ToolTier IN ('write_safe', 'write_risky', 'destructive')"
)
# Only the traces of writing calls can hold their justification or agent run: the joins'
# right sides are read for those traces alone.
_WRITING_TRACES: Final = (
    f"SELECT TraceId FROM {SPANS} WHERE {IN_RANGE} AND {SPAN_SCOPE} "  # noqa: S608 - constant SQL
    f"AND {_WRITING_CALL}"
)
# A tool call's agent: the one its span names, else that of the agent run it belongs to (the
# latest started before it in its trace), joined as ``run``.
_CALL_AGENT: Final = "if(action.AgentName != '', action.AgentName, run.AgentName) AS agent"


def _runs_of_calls(runs_where: str) -> str:
    """The ``ASOF`` join of ``action`` (tool calls) to their agent runs among the agent spans
    matching ``runs_where`` (constant SQL)."""
    return (
        "ASOF LEFT JOIN (SELECT TraceId, Timestamp, AgentName "  # noqa: S608 - constant SQL
        f"FROM {SPANS} WHERE {runs_where} AND Operation = 'invoke_agent') AS run "
        "ON action.TraceId = run.TraceId AND action.Timestamp >= run.Timestamp"
    )


_ACTIONS_SQL: Final = (
    "SELECT * FROM ("  # noqa: S608 - constant SQL; every value is a bound parameter
    f"SELECT toUnixTimestamp64Milli(action.Timestamp) AS time_ms, {_CALL_AGENT}, "
    "action.ToolName AS tool, action.ToolTier AS tier, action.Environment AS environment, "
    "action.ServiceName AS service, if(action.StatusCode = 'Error', 'error', 'ok') AS outcome, "
    "action.ErrorType AS error_type, decision.DecisionName AS decision, "
    "decision.Confidence AS confidence, decision.Route AS route, "
    "decision.reasoning AS justification, action.TraceId AS trace_id, "
    "action.SpanId AS span_id, action.Timestamp AS at "
    f"FROM (SELECT * FROM {SPANS} WHERE {IN_RANGE} AND {SPAN_SCOPE} "
    f"AND {_WRITING_CALL} "
    "AND ({tier:String} = '' OR ToolTier = {tier:String}) "
    "AND ({tool:String} = '' OR ToolName = {tool:String}) "
    "AND ({outcome:String} = '' OR if(StatusCode = 'Error', 'error', 'ok') = {outcome:String})"
    ") AS action "
    # The closest decision before the call in its trace: its justification.
    "ASOF LEFT JOIN (SELECT TraceId, Timestamp, DecisionName, Confidence, Route, "
    "SpanAttributes['agentwatch.decision.reasoning'] AS reasoning "
    f"FROM {SPANS} WHERE {IN_RANGE} AND Operation = 'decision' "
    f"AND TraceId IN ({_WRITING_TRACES})) AS decision "
    "ON action.TraceId = decision.TraceId AND action.Timestamp >= decision.Timestamp "
    + _runs_of_calls(f"{IN_RANGE} AND TraceId IN ({_WRITING_TRACES})")
    + ") WHERE ({agent:String} = '' OR agent = {agent:String}) "
    "ORDER BY at DESC, span_id LIMIT {limit:UInt32}"
)


def risky_actions(
    store: Store,
    filters: Filters,
    *,
    tier: str = "",
    tool: str = "",
    outcome: str = "",
    limit: int = 1000,
) -> Rows:
    """The writing tools' calls in range (newest first), by the sidebar's filters and a
    ``tier`` (one of ``WRITING_TIERS``), ``tool`` name and ``outcome`` (``ok`` or ``error``)."""
    if tier and tier not in WRITING_TIERS:
        raise ValueError(f"tier must be one of {', '.join(WRITING_TIERS)}, not {tier!r}")
    if outcome not in ("", "ok", "error"):
        raise ValueError(f"outcome must be 'ok' or 'error', not {outcome!r}")
    params = {
        **filters.params(store),
        "tier": tier,
        "tool": tool,
        "outcome": outcome,
        "limit": checked_limit(limit),
    }
    return store.query(_ACTIONS_SQL, params)


# Riskiest first; untiered tools (0) last.
_TIER_RANK: Final = "indexOf(['destructive', 'write_risky', 'write_safe', 'read'], tier)"
# Per agent, every tool it called, this period against the one of the same length before it.
_ACCESS_SQL: Final = (
    "SELECT agent, tool, tier, countIf(at >= fromUnixTimestamp64Nano({start_ns:Int64})) AS calls, "  # noqa: S608 - constant SQL; every value is a bound parameter
    "countIf(at < fromUnixTimestamp64Nano({start_ns:Int64})) AS previous_calls, "
    "calls > 0 AND previous_calls = 0 AS new, calls = 0 AND previous_calls > 0 AS dropped "
    f"FROM (SELECT {_CALL_AGENT}, action.ToolName AS tool, action.ToolTier AS tier, "
    "action.Timestamp AS at "
    "FROM (SELECT TraceId, Timestamp, AgentName, ToolName, ToolTier "
    f"FROM {SPANS} WHERE {_SINCE_PREVIOUS} AND {SPAN_SCOPE} AND Operation = 'execute_tool') "
    "AS action "
    + _runs_of_calls(_SINCE_PREVIOUS)
    + ") WHERE ({agent:String} = '' OR agent = {agent:String}) "
    "GROUP BY agent, tool, tier "
    f"ORDER BY agent, new DESC, {_TIER_RANK} = 0, {_TIER_RANK}, tool"
)


def access_patterns(store: Store, filters: Filters) -> Rows:
    """Per agent, each tool it called (with its tier) in the range and in the period of the same
    length before it: ``new`` when called now and not then, ``dropped`` the other way round.
    Without both range bounds there is no previous period: every tool counts as new."""
    params = filters.params(store)
    previous_start = params["start_ns"]
    if filters.start is not None and filters.end is not None:
        previous_start = epoch_ns(filters.start - (filters.end - filters.start))
    return store.query(_ACCESS_SQL, {**params, "previous_start_ns": max(previous_start, 0)})

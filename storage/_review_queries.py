"""The review queue: what a person should look at, and what reviewers answered.

An item is one span: a decision routed ``review`` or ``escalate``, a decision a review rule
flags (confidence below the rule's bar, for its task type, agent, service or environment), a
call of a ``write_risky`` or ``destructive`` tool, or the outermost agent span of a task that
ended ``escalated`` or ``failed`` (``storage._tasks``'s outcome) when no decision of its trace
is in the queue (that decision carries the task's outcome). An item lists every reason it is
there.

A review is a ``feedback`` span whose parent is the item's span (``aw.record_feedback`` with
the span's reference, or the dashboard's Correct / Wrong buttons, which send one over OTLP).
Every answer is kept; the latest one is the item's answer. Feedback is read from the range's
start on, with no end: reviews arrive after the fact.
"""

# The SQL below is concatenated from constant fragments only (this module's and those of
# storage._scope and storage._tasks); every value, the review rules' included, is a bound
# parameter, so the S608 string-built-SQL heuristic does not apply to anything here.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from agentwatch.storage._scope import IN_RANGE, SINCE_START, SPAN_SCOPE, SPANS, Filters
from agentwatch.storage._store import Rows, Store
from agentwatch.storage._tasks import TASKS, checked_limit

ReviewStatus: TypeAlias = Literal["", "pending", "reviewed"]
REVIEW_STATUSES: Final = ("pending", "reviewed")
ITEM_KINDS: Final = ("decision", "action", "task")
REVIEW_TIERS: Final = ("write_risky", "destructive")
QUEUED_OUTCOMES: Final = ("escalated", "failed")

# Feedback attributes a review carries besides the SDK's own (``agentwatch.feedback.*``).
REVIEWER: Final = "agentwatch.feedback.reviewer"
LABEL: Final = "agentwatch.feedback.label"
COMMENT: Final = "agentwatch.feedback.comment"
ABOUT: Final = "agentwatch.feedback.about"
"""What a review judged: ``decision``, ``action`` (a tool call) or ``task``. Calibration reads
every feedback in a trace except that about an action: whether a refund should have gone out
says nothing about how sure the decision before it was."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewRule:
    """Flags decisions with confidence below ``confidence_below`` (``[[review]]`` in the rules
    file); an empty field matches anything. ``route`` keeps decisions routed so (``auto``:
    the ones no person would otherwise see)."""

    name: str
    confidence_below: float
    route: str = ""
    task_type: str = ""
    agent: str = ""
    service: str = ""
    environment: str = ""


_QUEUED_TASKS: Final = (
    f"SELECT TraceId, start_time FROM ({TASKS}) WHERE outcome IN ('escalated', 'failed')"
)
_ITEM_COLUMNS: Final = (
    "SELECT TraceId, SpanId, Timestamp, ServiceName, Environment, AgentName, TaskType, "
    "Operation, DecisionName, Confidence, Route, ToolName, ToolTier, StatusCode, "
    "StatusMessage, ErrorType "
)
# A decision can be an item only when routed to people or below some rule's bar: the others
# are left out before the joins (which rule flags it is decided after them, with its task).
_MAYBE_QUEUED: Final = (
    "(Route IN ('review', 'escalate') OR (notEmpty({rule_below:Array(Float64)}) "
    "AND ifNull(Confidence < arrayMax({rule_below:Array(Float64)}), 0)))"
)
# Two reads (the operations are disjoint): the tuple IN is evaluated on agent spans only.
_CANDIDATES: Final = (
    f"{_ITEM_COLUMNS}FROM {SPANS} WHERE {IN_RANGE} AND {SPAN_SCOPE} AND ("
    f"(Operation = 'decision' AND {_MAYBE_QUEUED}) "
    "OR (Operation = 'execute_tool' AND ToolTier IN ('write_risky', 'destructive'))) "
    f"UNION ALL {_ITEM_COLUMNS}FROM {SPANS} WHERE {IN_RANGE} AND {SPAN_SCOPE} "
    f"AND Operation = 'invoke_agent' AND (TraceId, Timestamp) IN ({_QUEUED_TASKS})"
)
# What only the page's rows need, read for them alone (``_details``): the attribute map is
# the costliest column to read.
_DETAILS_SQL: Final = (
    "SELECT TraceId, SpanId, SpanAttributes['agentwatch.decision.reasoning'] AS reasoning, "
    "if(SpanAttributes['gen_ai.tool.call.arguments'] != '', "
    "SpanAttributes['gen_ai.tool.call.arguments'], SpanAttributes['input.value']) AS arguments "
    f"FROM {SPANS} WHERE {IN_RANGE} AND TraceId IN {{trace_ids:Array(String)}} "
    "AND SpanId IN {span_ids:Array(String)}"
)
# The task each item belongs to: its agent, type and outcome.
_TASK_OF: Final = (
    "SELECT TraceId, agent AS task_agent, task_type AS task_task_type, outcome AS task_outcome "
    f"FROM ({TASKS})"
)
# Every answer about a span; the latest is its answer.
_REVIEWS: Final = (
    "SELECT TraceId, ParentSpanId AS SpanId, count() AS reviews, "
    "argMax(FeedbackCorrect, Timestamp) AS answer_correct, "
    f"argMax(SpanAttributes['{REVIEWER}'], Timestamp) AS answer_reviewer, "
    f"argMax(SpanAttributes['{LABEL}'], Timestamp) AS answer_label, "
    f"argMax(SpanAttributes['{COMMENT}'], Timestamp) AS answer_comment, "
    "toUnixTimestamp64Milli(max(Timestamp)) AS answered_ms "
    f"FROM {SPANS} WHERE {SINCE_START} AND Operation = 'feedback' "
    "AND FeedbackCorrect IS NOT NULL GROUP BY TraceId, SpanId"
)
# The rules, as parallel arrays of bound parameters: rule i flags a decision when every one of
# its fields matches (an empty one matches anything) and the confidence is below its bar.
_FLAGGED_BY: Final = (
    "arrayMap(i -> {rule_names:Array(String)}[i], arrayFilter(i -> "
    "item.Operation = 'decision' AND ifNull(item.Confidence < {rule_below:Array(Float64)}[i], 0) "
    "AND ({rule_route:Array(String)}[i] = '' OR item.Route = {rule_route:Array(String)}[i]) "
    "AND ({rule_task_type:Array(String)}[i] = '' OR task_type = {rule_task_type:Array(String)}[i]) "
    "AND ({rule_agent:Array(String)}[i] = '' OR agent = {rule_agent:Array(String)}[i]) "
    "AND ({rule_service:Array(String)}[i] = '' "
    "OR item.ServiceName = {rule_service:Array(String)}[i]) "
    "AND ({rule_environment:Array(String)}[i] = '' "
    "OR item.Environment = {rule_environment:Array(String)}[i]), "
    "arrayEnumerate({rule_names:Array(String)})))"
)
_ITEM_FIELDS: Final = (
    "SELECT toUnixTimestamp64Milli(item.Timestamp) AS time_ms, "
    "multiIf(item.Operation = 'decision', 'decision', item.Operation = 'execute_tool', 'action', "
    "'task') AS kind, "
    "if(task.task_agent != '', task.task_agent, item.AgentName) AS agent, "
    "if(task.task_task_type != '', task.task_task_type, item.TaskType) AS task_type, "
    "item.ServiceName AS service, item.Environment AS environment, "
    "item.DecisionName AS decision, item.Confidence AS confidence, item.Route AS route, "
    "item.ToolName AS tool, item.ToolTier AS tier, "
    "if(item.StatusCode = 'Error', 'error', 'ok') AS span_status, "
    "item.ErrorType AS error_type, item.StatusMessage AS error_message, "
    "task.task_outcome AS task_outcome, "
    f"{_FLAGGED_BY} AS flagged_by, "
    "arrayConcat("
    "if(item.Operation = 'decision' AND item.Route IN ('review', 'escalate'), "
    "['routed ' || item.Route], []), "
    "if(item.Operation = 'execute_tool', [item.ToolTier || ' tool'], []), "
    "if(item.Operation = 'invoke_agent', ['task ' || task.task_outcome], []), "
    "arrayMap(name -> 'rule: ' || name, flagged_by)) AS reasons, "
    "item.TraceId AS trace_id, item.SpanId AS span_id"
)
_ITEMS_FROM: Final = (
    f" FROM ({_CANDIDATES}) AS item LEFT JOIN ({_TASK_OF}) AS task ON task.TraceId = item.TraceId"
)
_ITEMS: Final = (
    f"{_ITEM_FIELDS}, "
    "ifNull(review.reviews, 0) AS reviews, review.answer_correct AS correct, "
    "review.answer_reviewer AS reviewer, review.answer_label AS label, "
    "review.answer_comment AS comment, review.answered_ms AS reviewed_ms"
    f"{_ITEMS_FROM} LEFT JOIN ({_REVIEWS}) AS review "
    "ON review.TraceId = item.TraceId AND review.SpanId = item.SpanId"
)
# The traces with a queued decision: the items without their answers (which have no say in
# whether a span is an item; the answers' join is the costlier half of the items).
_QUEUED_DECISION_TRACES: Final = (
    f"SELECT trace_id FROM ({_ITEM_FIELDS}{_ITEMS_FROM}) "
    "WHERE kind = 'decision' AND length(reasons) > 0"
)
_QUEUED: Final = (
    f"FROM ({_ITEMS}) "
    "WHERE length(reasons) > 0 "
    "AND ({agent:String} = '' OR agent = {agent:String}) "
    "AND ({task_type:String} = '' OR task_type = {task_type:String}) "
    "AND ({kind:String} = '' OR kind = {kind:String}) "
    "AND ({status:String} = '' OR if(reviews > 0, 'reviewed', 'pending') = {status:String}) "
    # A failed or escalated task is its own item only when no decision of its trace is queued.
    f"AND NOT (kind = 'task' AND trace_id IN ({_QUEUED_DECISION_TRACES})) "
)
# The columns of a queue row, in order; reasoning and arguments come from ``_DETAILS_SQL``.
_ROW: Final = (
    "time_ms, kind, agent, task_type, service, environment, decision, confidence, route, "
    "tool, tier, span_status, error_type, error_message, task_outcome, flagged_by, reasons, "
    "trace_id, span_id, reviews, correct, reviewer, label, comment, reviewed_ms"
)
_QUEUE_SQL: Final = (
    f"SELECT {_ROW} " + _QUEUED + "ORDER BY time_ms DESC, span_id LIMIT {limit:UInt32}"
)
_COUNTS_SQL: Final = (
    "SELECT countIf(reviews = 0) AS pending, countIf(reviews > 0) AS reviewed " + _QUEUED
)
_ANSWERS_SQL: Final = (
    "SELECT toUnixTimestamp64Milli(Timestamp) AS time_ms, FeedbackCorrect AS correct, "
    f"SpanAttributes['{REVIEWER}'] AS reviewer, SpanAttributes['{LABEL}'] AS label, "
    f"SpanAttributes['{COMMENT}'] AS comment, SpanId AS feedback_span_id "
    f"FROM {SPANS} WHERE {SINCE_START} AND TraceId = {{trace_id:String}} "
    "AND ParentSpanId = {span_id:String} AND Operation = 'feedback' "
    "AND FeedbackCorrect IS NOT NULL "
    "ORDER BY Timestamp DESC, SpanId LIMIT 1000"
)


def _checked_kind(kind: str) -> str:
    if kind not in ("", *ITEM_KINDS):
        raise ValueError(f"kind must be one of {', '.join(ITEM_KINDS)}, not {kind!r}")
    return kind


def _rule_params(rules: Sequence[ReviewRule]) -> dict[str, Any]:
    return {
        "rule_names": [r.name for r in rules],
        "rule_below": [float(r.confidence_below) for r in rules],
        "rule_route": [r.route for r in rules],
        "rule_task_type": [r.task_type for r in rules],
        "rule_agent": [r.agent for r in rules],
        "rule_service": [r.service for r in rules],
        "rule_environment": [r.environment for r in rules],
    }


def review_queue(
    store: Store,
    filters: Filters,
    rules: Sequence[ReviewRule] = (),
    *,
    status: ReviewStatus = "",
    kind: str = "",
    limit: int = 500,
) -> Rows:
    """The queue's items in range (newest first) by the sidebar's filters, ``status``
    (``pending``/``reviewed``) and ``kind`` (``decision``, ``action`` or ``task``), each with its
    reasons and its latest answer (``reviews`` counts every answer)."""
    if status not in ("", *REVIEW_STATUSES):
        raise ValueError(f"status must be one of {', '.join(REVIEW_STATUSES)}, not {status!r}")
    params = {
        **filters.params(store),
        **_rule_params(rules),
        "status": status,
        "kind": _checked_kind(kind),
        "limit": checked_limit(limit),
    }
    return _with_details(store, params, store.query(_QUEUE_SQL, params))


def _with_details(store: Store, params: dict[str, Any], queue: Rows) -> Rows:
    """The queue's rows with each span's reasoning and arguments (read for these spans only)."""
    trace_at, span_at = queue.columns.index("trace_id"), queue.columns.index("span_id")
    details: dict[tuple[str, str], tuple[str, str]] = {}
    if queue.rows:
        found = store.query(
            _DETAILS_SQL,
            {
                **params,
                "trace_ids": sorted({row[trace_at] for row in queue.rows}),
                "span_ids": sorted({row[span_at] for row in queue.rows}),
            },
        )
        details = {(t, s): (reasoning, arguments) for t, s, reasoning, arguments in found.rows}
    rows = [(*row, *details.get((row[trace_at], row[span_at]), ("", ""))) for row in queue.rows]
    return Rows([*queue.columns, "reasoning", "arguments"], rows)


@dataclass(frozen=True, slots=True)
class QueueCounts:
    pending: int
    reviewed: int


def review_counts(
    store: Store, filters: Filters, rules: Sequence[ReviewRule] = (), *, kind: str = ""
) -> QueueCounts:
    """How many of the queue's items in range (any number, not only a page of them) wait for
    an answer and how many have one, by the sidebar's filters and ``kind``."""
    params = {
        **filters.params(store),
        **_rule_params(rules),
        "status": "",
        "kind": _checked_kind(kind),
    }
    (row,) = store.query(_COUNTS_SQL, params).dicts()
    return QueueCounts(int(row["pending"]), int(row["reviewed"]))


def review_answers(store: Store, filters: Filters, trace_id: str, span_id: str) -> Rows:
    """Every answer about one span, the latest first (from the range's start on)."""
    params = {**filters.params(store), "trace_id": trace_id.lower(), "span_id": span_id.lower()}
    return store.query(_ANSWERS_SQL, params)

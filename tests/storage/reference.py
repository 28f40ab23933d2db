"""The dashboard's numbers recomputed in plain Python from the raw stored rows.

Rows are read with one plain SELECT of the exporter columns (``SpanAttributes`` and
``ResourceAttributes`` as maps); everything else is derived here from the attributes, not from
the typed columns the queries use. Cost and ``Priced`` come from the collector as stored.
The definitions are the ones documented in ``agentwatch.storage._tasks``.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentwatch.storage._scope import Filters
from agentwatch.storage._store import Store

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MODEL_OPERATIONS = ("chat", "text_completion", "generate_content")
Counter_ = dict[str, int]


def approx(value: Any) -> Any:
    """Tolerant float comparison; None must be matched exactly (newer pytest refuses it)."""
    return value if value is None else pytest.approx(value, rel=1e-9, abs=1e-12)


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    ts: int  # ns since the epoch
    name: str
    service: str
    status: str
    duration: int  # ns
    cost: float
    priced: int
    attrs: dict[str, str] = field(repr=False)
    resource: dict[str, str] = field(repr=False)

    @property
    def operation(self) -> str:
        return self.attrs.get("gen_ai.operation.name", "")

    @property
    def environment(self) -> str:
        return self.resource.get("deployment.environment.name", "")

    @property
    def agent(self) -> str:
        return self.attrs.get("gen_ai.agent.name", "")

    @property
    def task_type(self) -> str:
        return self.attrs.get("agentwatch.task.type", "")

    @property
    def error_type(self) -> str:
        return self.attrs.get("error.type") or ("_OTHER" if self.status == "Error" else "")

    @property
    def model(self) -> str:
        return self.attrs.get("gen_ai.response.model") or self.attrs.get("gen_ai.request.model", "")

    @property
    def tokens(self) -> tuple[int, int]:
        return (
            int(self.attrs.get("gen_ai.usage.input_tokens", "0")),
            int(self.attrs.get("gen_ai.usage.output_tokens", "0")),
        )

    @property
    def confidence(self) -> float | None:
        raw = self.attrs.get("agentwatch.decision.confidence")
        return float(raw) if raw is not None else None

    @property
    def feedback_correct(self) -> bool | None:
        raw = self.attrs.get("agentwatch.feedback.correct")
        return None if raw is None else raw == "true"


def load_spans(store: Store, database: str = "agentwatch") -> list[Span]:
    rows = store.query(
        "SELECT TraceId, SpanId, ParentSpanId, toUnixTimestamp64Nano(Timestamp), SpanName, "
        "ServiceName, StatusCode, Duration, CostUsd, Priced, SpanAttributes, ResourceAttributes "
        "FROM {db:Identifier}.otel_traces",
        {"db": database},
    ).rows
    return [
        Span(
            r[0],
            r[1],
            r[2],
            int(r[3]),
            r[4],
            r[5],
            r[6],
            int(r[7]),
            float(r[8]),
            int(r[9]),
            dict(r[10]),
            dict(r[11]),
        )
        for r in rows
    ]


def ns(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000


def in_range(span: Span, filters: Filters) -> bool:
    start = ns(filters.start) if filters.start else 0
    end = ns(filters.end) if filters.end else 2**63 - 1
    return start <= span.ts < end


def span_ok(span: Span, filters: Filters) -> bool:
    return (
        in_range(span, filters)
        and (not filters.service or span.service == filters.service)
        and (not filters.environment or span.environment == filters.environment)
    )


@dataclass(frozen=True)
class Task:
    trace_id: str
    start: int
    service: str
    agent: str
    task_type: str
    outcome: str
    limit_hit: str
    duration: int

    @property
    def limited(self) -> bool:
        return self.outcome == "limit_exceeded" or bool(self.limit_hit)


def tasks(spans: Iterable[Span], filters: Filters) -> dict[str, Task]:
    """Trace id -> task, from the trace's earliest agent span."""
    first: dict[str, Span] = {}
    for s in spans:
        earlier = s.trace_id not in first or s.ts < first[s.trace_id].ts
        if s.operation == "invoke_agent" and span_ok(s, filters) and earlier:
            first[s.trace_id] = s
    out = {}
    for trace_id, s in first.items():
        outcome = s.attrs.get("agentwatch.task.outcome") or (
            "failed" if s.status == "Error" else "completed"
        )
        task = Task(
            trace_id,
            s.ts,
            s.service,
            s.agent,
            s.task_type,
            outcome,
            s.attrs.get("agentwatch.limit.exceeded", ""),
            s.duration,
        )
        if (not filters.agent or task.agent == filters.agent) and (
            not filters.task_type or task.task_type == filters.task_type
        ):
            out[trace_id] = task
    return out


def task_filtered(spans: Iterable[Span], filters: Filters) -> list[Span]:
    """Spans passing the span filters, and in the filtered tasks' traces if a task filter is set."""
    ids = set(tasks(spans, filters)) if (filters.agent or filters.task_type) else None
    return [s for s in spans if span_ok(s, filters) and (ids is None or s.trace_id in ids)]


def linear_quantile(values: list[float], level: float) -> float:
    ordered = sorted(values)
    index = level * (len(ordered) - 1)
    lo, hi = math.floor(index), math.ceil(index)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (index - lo)


def overview(spans: list[Span], filters: Filters) -> dict[str, Any]:
    ts = tasks(spans, filters)
    outcomes = [t.outcome for t in ts.values()]
    scoped = task_filtered(spans, filters)
    tools = [s for s in scoped if s.operation == "execute_tool"]
    iterations = [
        int(s.attrs["agentwatch.task.iterations"])
        for s in spans
        if s.operation == "invoke_agent"
        and span_ok(s, filters)
        and (not filters.agent or s.agent == filters.agent)
        and (not filters.task_type or s.task_type == filters.task_type)
        and int(s.attrs.get("agentwatch.task.iterations", "0")) > 0
    ]
    durations = [float(t.duration) for t in ts.values()]
    return {
        "tasks": len(ts),
        "completed": outcomes.count("completed"),
        "escalated": outcomes.count("escalated"),
        "failed": outcomes.count("failed"),
        "limit_exceeded": sum(t.limited for t in ts.values()),
        "cost_usd": sum(s.cost for s in scoped if s.cost > 0),
        "tool_calls": len(tools),
        "tool_errors": sum(1 for s in tools if s.error_type),
        "avg_iterations": sum(iterations) / len(iterations) if iterations else None,
        "p50_latency_s": linear_quantile(durations, 0.5) / 1e9 if durations else None,
        "p95_latency_s": linear_quantile(durations, 0.95) / 1e9 if durations else None,
    }


def trace_costs(spans: Iterable[Span], filters: Filters) -> dict[str, float]:
    """Spend per trace over the span-filtered spans in range (no task restriction)."""
    out: dict[str, float] = defaultdict(float)
    for s in spans:
        if s.cost > 0 and span_ok(s, filters):
            out[s.trace_id] += s.cost
    return out


def by_task_type(spans: list[Span], filters: Filters) -> dict[str, dict[str, Any]]:
    costs = trace_costs(spans, filters)
    out: dict[str, dict[str, Any]] = {}
    for t in tasks(spans, filters).values():
        row = out.setdefault(
            t.task_type,
            {
                "tasks": 0,
                "completed": 0,
                "escalated": 0,
                "failed": 0,
                "limit_exceeded": 0,
                "cost_usd": 0.0,
            },
        )
        row["tasks"] += 1
        row["completed"] += t.outcome == "completed"
        row["escalated"] += t.outcome == "escalated"
        row["failed"] += t.outcome == "failed"
        row["limit_exceeded"] += t.limited
        row["cost_usd"] += costs.get(t.trace_id, 0.0)
    return out


def spend_by_task_type(spans: list[Span], filters: Filters) -> dict[str, float]:
    """Spend per task type as ``_queries`` documents it: each priced span in range toward its
    own task type; untyped spans and every span of a trace with a nested or foreign-parented
    agent span toward their trace's task type, and not at all when the trace is no task. (Equal
    to ``by_task_type``'s cost when no trace is cut by the range.)"""
    ts = tasks(spans, filters)
    nested = {
        s.trace_id
        for s in spans
        if s.operation == "invoke_agent" and s.parent_id and span_ok(s, filters)
    }
    out: dict[str, float] = defaultdict(float)
    for s in task_filtered(spans, filters):
        if s.cost <= 0:
            continue
        if s.task_type and s.trace_id not in nested:
            out[s.task_type] += s.cost
        elif s.trace_id in ts:
            out[ts[s.trace_id].task_type] += s.cost
    return dict(out)


def decisions(spans: list[Span], filters: Filters) -> list[tuple[Span, Task]]:
    ts = tasks(spans, filters)
    return [
        (s, ts[s.trace_id])
        for s in spans
        if s.operation == "decision"
        and in_range(s, filters)
        and s.confidence is not None
        and s.trace_id in ts
    ]


def bucket(confidence: float, bins: int) -> int:
    return min(math.floor(confidence * bins), bins - 1)


def feedback(spans: list[Span], filters: Filters) -> dict[str, bool]:
    """Trace id -> the latest feedback.correct recorded from ``filters.start`` on."""
    latest: dict[str, Span] = {}
    start = ns(filters.start) if filters.start else 0
    for s in spans:
        later = s.trace_id not in latest or s.ts > latest[s.trace_id].ts
        if s.operation == "feedback" and s.ts >= start and s.feedback_correct is not None and later:
            latest[s.trace_id] = s
    return {k: bool(v.feedback_correct) for k, v in latest.items()}


def calibration(spans: list[Span], filters: Filters, bins: int) -> dict[int, dict[str, Any]]:
    fb = feedback(spans, filters)
    out: dict[int, dict[str, Any]] = {}
    for d, t in decisions(spans, filters):
        assert d.confidence is not None
        row = out.setdefault(
            bucket(d.confidence, bins),
            {
                "decisions": 0,
                "confidence_sum": 0.0,
                "with_feedback": 0,
                "correct": 0,
                "completed": 0,
                "escalated": 0,
            },
        )
        row["decisions"] += 1
        row["confidence_sum"] += d.confidence
        if d.trace_id in fb:
            row["with_feedback"] += 1
            row["correct"] += fb[d.trace_id]
        row["completed"] += t.outcome == "completed"
        row["escalated"] += t.outcome == "escalated"
    return out


def tools(spans: list[Span], filters: Filters) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for s in task_filtered(spans, filters):
        if s.operation != "execute_tool":
            continue
        row = out.setdefault(
            s.attrs["gen_ai.tool.name"],
            {
                "tier": s.attrs.get("agentwatch.tool.tier", ""),
                "calls": 0,
                "errors": 0,
                "durations": [],
            },
        )
        row["calls"] += 1
        row["errors"] += bool(s.error_type)
        row["durations"].append(float(s.duration))
    return out


def error_categories(spans: list[Span], filters: Filters) -> dict[str, dict[str, int]]:
    ts = tasks(spans, filters)
    per_trace: dict[str, Counter_] = defaultdict(lambda: {"model": 0, "tool": 0, "other": 0})
    for s in spans:
        if not (s.error_type and in_range(s, filters)):
            continue
        if s.operation in MODEL_OPERATIONS:
            per_trace[s.trace_id]["model"] += 1
        elif s.operation == "execute_tool":
            per_trace[s.trace_id]["tool"] += 1
        elif s.operation != "invoke_agent":
            per_trace[s.trace_id]["other"] += 1
    out = {c: {"tasks": 0, "error_spans": 0} for c in ("model", "tool", "validation", "limit")}
    for trace_id, t in ts.items():
        e = per_trace.get(trace_id, {"model": 0, "tool": 0, "other": 0})
        for category, key in (("model", "model"), ("tool", "tool")):
            out[category]["tasks"] += e[key] > 0
            out[category]["error_spans"] += e[key]
        out["limit"]["tasks"] += t.limited
        out["limit"]["error_spans"] += t.limited
        validation = e["other"] > 0 or (
            t.outcome == "failed" and e["model"] == 0 and e["tool"] == 0 and not t.limited
        )
        out["validation"]["tasks"] += validation
        out["validation"]["error_spans"] += e["other"]
    return out


def unused_tools(spans: list[Span], filters: Filters) -> dict[str, list[str]]:
    """Tool -> agents declaring it (``agentwatch.agent.tools`` on agent spans in range, agent and
    task-type filters on the agent span), for tools with no call among ``tools``'s calls."""
    declared: dict[str, set[str]] = defaultdict(set)
    for s in spans:
        raw = s.attrs.get("agentwatch.agent.tools")
        if not (raw and s.operation == "invoke_agent" and span_ok(s, filters)):
            continue
        if (filters.agent and s.agent != filters.agent) or (
            filters.task_type and s.task_type != filters.task_type
        ):
            continue
        for tool in json.loads(raw):
            declared[tool].add(s.agent)
    called = tools(spans, filters)
    return {t: sorted(a) for t, a in declared.items() if t not in called}

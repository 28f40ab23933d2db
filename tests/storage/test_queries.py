"""Every dashboard query (``storage._overview_queries``, ``_cost_queries``, ``_decision_queries``,
``_trace_queries``, ``_sidebar_queries`` and ``_scope``) against a real collector's store, checked
against ``reference``."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentwatch.storage import _cost_queries as cost_queries
from agentwatch.storage import _decision_queries as decision_queries
from agentwatch.storage import _overview_queries as overview_queries
from agentwatch.storage import _sidebar_queries as sidebar_queries
from agentwatch.storage import _trace_queries as trace_queries
from agentwatch.storage._schema import migrations
from agentwatch.storage._scope import Filters, bucket_seconds
from agentwatch.storage._store import Rows, ServerStore, Store
from agentwatch.storage._trace_queries import TraceFilters

from . import reference as ref
from .fleet import ODD_TASK_TYPE, Fleet, periods
from .reference import approx

FILTER_CASES: dict[str, dict[str, Any]] = {
    "all": {},
    "service": {"service": "support-fleet"},
    "environment": {"environment": "staging"},
    "task_type": {"task_type": "refund"},
    "agent": {"agent": "router"},
    "agent_and_type": {"agent": "support", "task_type": "order_status"},
    "service_and_type": {"service": "billing-fleet", "task_type": "technical_issue"},
    "nothing_matches": {"task_type": "no such type"},
    "odd_value": {"task_type": ODD_TASK_TYPE},
}


@pytest.fixture(params=[*FILTER_CASES, "current_period", "previous_period"])
def filters(request: pytest.FixtureRequest, fleet: Fleet) -> Filters:
    if request.param == "current_period":
        return periods(fleet)[0]
    if request.param == "previous_period":
        return periods(fleet)[1]
    return Filters(**FILTER_CASES[request.param])


def by_key(rows: Rows, key: str) -> dict[Any, dict[str, Any]]:
    return {row[key]: row for row in rows.dicts()}


# --- the data itself ------------------------------------------------------------------------------
def test_every_exported_span_is_stored_once(fleet: Fleet) -> None:
    assert len(fleet.spans) == fleet.exported
    assert len({(s.trace_id, s.span_id) for s in fleet.spans}) == fleet.exported


def test_overview_counts_what_the_demo_fleet_counted(fleet: Fleet) -> None:
    """The fleet counts handled / failed / limit_exceeded itself, outside agentwatch."""
    totals = [
        overview_queries.overview(fleet.store, Filters(service=s))
        for s in ("support-fleet", "billing-fleet")
    ]
    assert sum(o.tasks for o in totals) == sum(fleet.outcomes.values()) == 240
    assert sum(o.failed for o in totals) == fleet.outcomes["failed"]
    assert sum(o.limit_exceeded for o in totals) == fleet.outcomes["limit_exceeded"]
    assert sum(o.completed + o.escalated for o in totals) == fleet.outcomes["handled"]


# --- overview -------------------------------------------------------------------------------------
def test_overview_matches_the_raw_rows(fleet: Fleet, filters: Filters) -> None:
    got = overview_queries.overview(fleet.store, filters)
    want = ref.overview(fleet.spans, filters)
    assert got.tasks == want["tasks"]
    assert got.completed == want["completed"]
    assert got.escalated == want["escalated"]
    assert got.failed == want["failed"]
    assert got.limit_exceeded == want["limit_exceeded"]
    assert got.tool_calls == want["tool_calls"]
    assert got.tool_errors == want["tool_errors"]
    assert got.cost_usd == approx(want["cost_usd"])
    assert got.avg_iterations == approx(want["avg_iterations"])
    assert got.p50_latency_s == approx(want["p50_latency_s"])
    assert got.p95_latency_s == approx(want["p95_latency_s"])
    if want["tasks"]:
        assert got.completion_rate == approx(want["completed"] / want["tasks"])
        assert got.escalation_rate == approx(want["escalated"] / want["tasks"])
        assert got.limit_exceeded_rate == approx(want["limit_exceeded"] / want["tasks"])
        assert got.cost_per_task == approx(want["cost_usd"] / want["tasks"])
    else:
        assert got.completion_rate is None
        assert got.cost_per_task is None
        assert got.p95_latency_s is None
    if want["tool_calls"]:
        assert got.tool_error_rate == approx(want["tool_errors"] / want["tool_calls"])


def test_trend_compares_with_the_period_just_before(fleet: Fleet) -> None:
    current, previous = periods(fleet)
    now, before = overview_queries.overview_with_trend(fleet.store, current)
    assert before == overview_queries.overview(fleet.store, previous)
    assert before.tasks == 100  # batch A
    assert now.tasks == 100 + 40 + 6  # batches B and C, and the edge cases' six tasks
    refund_now = overview_queries.overview(
        fleet.store, Filters(current.start, current.end, task_type="refund")
    )
    refund_before = overview_queries.overview(
        fleet.store, Filters(previous.start, previous.end, task_type="refund")
    )
    assert refund_now.cost_per_task is not None
    assert refund_before.cost_per_task is not None
    assert refund_now.cost_per_task > 2 * refund_before.cost_per_task  # the staged cost spike


def test_an_empty_period_has_no_rates(fleet: Fleet) -> None:
    empty = Filters(start=datetime(2001, 1, 1, tzinfo=UTC), end=datetime(2001, 1, 2, tzinfo=UTC))
    o = overview_queries.overview(fleet.store, empty)
    assert (o.tasks, o.cost_usd, o.tool_calls) == (0, 0.0, 0)
    assert o.completion_rate is None
    assert o.tool_error_rate is None
    assert o.avg_iterations is None
    assert o.p50_latency_s is None
    assert o.p95_latency_s is None
    summary = cost_queries.cost_summary(fleet.store, empty)
    assert summary.cost_per_successful_task is None
    assert summary.top_share is None
    assert cost_queries.completion_by_task_type(fleet.store, empty).rows == []
    presence = sidebar_queries.data_presence(fleet.store, empty)
    assert presence.spans_in_range == 0
    assert presence.spans_total == fleet.exported


# --- what counts as a task ------------------------------------------------------------------------
def test_nested_agents_and_foreign_parents_make_one_task_each(fleet: Fleet) -> None:
    edge = {
        row["task_type"]: row
        for row in trace_queries.trace_list(fleet.store, Filters(service="edge-cases")).dicts()
    }
    assert sorted(edge) == sorted(
        ["custom_model", "model_error", "refund", "triage", "validation", ODD_TASK_TYPE]
    )
    assert edge["triage"]["agent"] == "router"  # the outer agent, not the nested worker
    assert edge["refund"]["agent"] == "worker"  # its parent span was never exported
    assert edge["model_error"]["outcome"] == "failed"
    assert edge["validation"]["outcome"] == "failed"
    worker_parent = next(
        s.parent_id
        for s in fleet.spans
        if s.trace_id == edge["refund"]["trace_id"] and s.operation == "invoke_agent"
    )
    assert worker_parent  # not a root span, still a task


def test_error_categories_tell_model_tool_validation_and_limit_apart(fleet: Fleet) -> None:
    edge = by_key(
        overview_queries.error_categories(fleet.store, Filters(service="edge-cases")), "category"
    )
    assert edge["model"]["tasks"] == 1
    assert edge["model"]["error_spans"] == 1
    assert edge["validation"]["tasks"] == 1
    assert edge["tool"]["tasks"] == 0
    assert edge["limit"]["tasks"] == 0
    assert edge["model"]["rate"] == approx(1 / 6)


def test_unpriced_model_calls_are_counted_not_free(fleet: Fleet) -> None:
    summary = cost_queries.cost_summary(fleet.store, Filters(service="edge-cases"))
    assert summary.unpriced_calls == 1
    unpriced = cost_queries.unpriced_models(fleet.store, Filters())
    assert [(r["model"], r["calls"]) for r in unpriced.dicts()] == [("my-finetune-x", 1)]
    want = [s for s in fleet.spans if s.model == "my-finetune-x"]
    assert unpriced.dicts()[0]["input_tokens"] == want[0].tokens[0]


def test_spend_outside_agents_counts_in_totals_but_not_per_task_type(fleet: Fleet) -> None:
    filters = Filters(service="edge-cases")
    loose = [s for s in fleet.spans if s.service == "edge-cases" and s.cost > 0]
    total = sum(s.cost for s in loose)
    agentless = {s.trace_id for s in loose} - set(ref.tasks(fleet.spans, filters))
    assert len(agentless) == 1
    assert overview_queries.overview(fleet.store, filters).cost_usd == approx(total)
    per_type = sum(
        r["cost_usd"] for r in cost_queries.cost_by_task_type(fleet.store, filters).dicts()
    )
    outside = sum(s.cost for s in loose if s.trace_id in agentless)
    assert per_type == approx(total - outside)


# --- by task type ---------------------------------------------------------------------------------
def test_completion_and_cost_by_task_type(fleet: Fleet, filters: Filters) -> None:
    got = by_key(cost_queries.completion_by_task_type(fleet.store, filters), "task_type")
    want = ref.by_task_type(fleet.spans, filters)
    assert set(got) == set(want)
    for task_type, w in want.items():
        g = got[task_type]
        for key in ("tasks", "completed", "escalated", "failed", "limit_exceeded"):
            assert g[key] == w[key], (task_type, key)
        assert g["completion_rate"] == approx(w["completed"] / w["tasks"])
        assert g["cost_usd"] == approx(w["cost_usd"])
        assert g["cost_per_task"] == approx(w["cost_usd"] / w["tasks"])
        if w["completed"]:
            assert g["cost_per_success"] == approx(w["cost_usd"] / w["completed"])
        else:
            assert g["cost_per_success"] is None
    assert cost_queries.cost_by_task_type(
        fleet.store, filters
    ) == cost_queries.completion_by_task_type(fleet.store, filters)


# --- decisions ------------------------------------------------------------------------------------
def test_confidence_distribution(fleet: Fleet, filters: Filters) -> None:
    got = {
        (r["bucket"], r["decision_task_type"], r["task_outcome"]): r["decisions"]
        for r in decision_queries.confidence_distribution(fleet.store, filters, bins=20).dicts()
    }
    want: dict[tuple[int, str, str], int] = {}
    for d, t in ref.decisions(fleet.spans, filters):
        assert d.confidence is not None
        key = (ref.bucket(d.confidence, 20), d.task_type or t.task_type, t.outcome)
        want[key] = want.get(key, 0) + 1
    assert got == want


@pytest.mark.parametrize("bins", [10, 100])
def test_calibration_joins_feedback_by_trace(fleet: Fleet, filters: Filters, bins: int) -> None:
    got = by_key(decision_queries.calibration(fleet.store, filters, bins=bins), "bucket")
    want = ref.calibration(fleet.spans, filters, bins)
    assert set(got) == set(want)
    for b, w in want.items():
        g = got[b]
        assert g["confidence_from"] == approx(b / bins)
        for key in ("decisions", "with_feedback", "correct", "completed", "escalated"):
            assert g[key] == w[key], (b, key)
        assert g["mean_confidence"] == approx(w["confidence_sum"] / w["decisions"])
        expected = w["correct"] / w["with_feedback"] if w["with_feedback"] else None
        assert g["accuracy"] == approx(expected)
    if filters == Filters():
        assert sum(w["with_feedback"] for w in want.values()) > 20  # feedback was joined


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.6, 0.73, 0.85, 0.99, 1.0])
def test_threshold_summary_matches_brute_force(fleet: Fleet, threshold: float) -> None:
    filters = Filters()
    got = decision_queries.threshold_summary(
        decision_queries.threshold_explorer(fleet.store, filters), threshold
    )
    fb = ref.feedback(fleet.spans, filters)
    pairs = ref.decisions(fleet.spans, filters)
    auto = [d for d, _ in pairs if ref.bucket(d.confidence or 0.0, 100) >= round(threshold * 100)]
    below = [d for d, _ in pairs if d not in auto]
    assert got.decisions == len(pairs)
    assert got.auto == len(auto)
    assert got.auto_with_feedback == sum(d.trace_id in fb for d in auto)
    assert got.auto_correct == sum(fb.get(d.trace_id, False) for d in auto)
    assert got.below_with_feedback == sum(d.trace_id in fb for d in below)
    assert got.below_correct == sum(fb.get(d.trace_id, False) for d in below)
    assert got.auto_share == approx(len(auto) / len(pairs))


# --- tools and errors -----------------------------------------------------------------------------
def test_tool_usage(fleet: Fleet, filters: Filters) -> None:
    got = by_key(overview_queries.tool_usage(fleet.store, filters), "tool")
    want = ref.tools(fleet.spans, filters)
    assert set(got) == set(want)
    for tool, w in want.items():
        g = got[tool]
        assert (g["tier"], g["calls"], g["errors"]) == (w["tier"], w["calls"], w["errors"])
        assert g["error_rate"] == approx(w["errors"] / w["calls"])
        assert g["p95_latency_s"] == approx(ref.linear_quantile(w["durations"], 0.95) / 1e9)
    if filters == Filters():
        assert got["lookup_order"]["errors"] > 0  # the demo's tools fail now and then


def test_unused_tools(fleet: Fleet, filters: Filters) -> None:
    got = {
        r["tool"]: list(r["agents"])
        for r in overview_queries.unused_tools(fleet.store, filters).dicts()
    }
    assert got == ref.unused_tools(fleet.spans, filters)


def test_declared_tools_lists_every_tool_an_agent_declares(fleet: Fleet) -> None:
    rows = overview_queries.declared_tools(fleet.store, Filters()).dicts()
    assert [(r["tool"], list(r["agents"])) for r in rows] == [
        (tool, ["support"])
        for tool in sorted(("lookup_order", "search_kb", "issue_refund", "close_account"))
    ]


def test_a_declared_tool_that_is_never_called_is_listed(fleet: Fleet) -> None:
    """The demo agent declares close_account and never calls it; its other tools are called."""
    rows = overview_queries.unused_tools(fleet.store, Filters()).dicts()
    assert [(r["tool"], list(r["agents"])) for r in rows] == [("close_account", ["support"])]


def test_error_categories(fleet: Fleet, filters: Filters) -> None:
    rows = overview_queries.error_categories(fleet.store, filters)
    assert [r["category"] for r in rows.dicts()] == ["model", "tool", "validation", "limit"]
    want = ref.error_categories(fleet.spans, filters)
    tasks = len(ref.tasks(fleet.spans, filters))
    for row in rows.dicts():
        w = want[row["category"]]
        assert (row["tasks"], row["error_spans"]) == (w["tasks"], w["error_spans"]), row
        assert row["rate"] == approx(w["tasks"] / tasks if tasks else None)


# --- cost -----------------------------------------------------------------------------------------
def test_cost_over_time_by_model(fleet: Fleet, filters: Filters) -> None:
    step = bucket_seconds(filters)
    rows = cost_queries.cost_over_time_by_model(fleet.store, filters)
    want: dict[tuple[int, str], float] = {}
    for s in ref.task_filtered(fleet.spans, filters):
        if s.cost > 0:
            key = (s.ts // 1_000_000_000 // step * step, s.model)
            want[key] = want.get(key, 0.0) + s.cost
    got = {(r["bucket_start"], r["model"]): r["cost_usd"] for r in rows.dicts()}
    assert got == {k: approx(v) for k, v in want.items()}


def test_cost_over_time_by_task_type(fleet: Fleet, filters: Filters) -> None:
    rows = cost_queries.cost_over_time_by_task_type(fleet.store, filters, bucket_s=60)
    want = ref.by_task_type(fleet.spans, filters)
    got: dict[str, float] = {}
    for r in rows.dicts():
        assert r["bucket_start"] % 60 == 0
        got[r["task_type"]] = got.get(r["task_type"], 0.0) + r["cost_usd"]
    assert got == {k: approx(v["cost_usd"]) for k, v in want.items() if v["cost_usd"] > 0}


def test_bucket_seconds_gives_about_sixty_round_buckets() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert bucket_seconds(Filters.last(timedelta(minutes=15), now=now)) == 30
    assert bucket_seconds(Filters.last(timedelta(hours=1), now=now)) == 60
    assert bucket_seconds(Filters.last(timedelta(days=1), now=now)) == 1800
    assert bucket_seconds(Filters.last(timedelta(days=30), now=now)) == 43200
    assert bucket_seconds(Filters.last(timedelta(days=365), now=now)) == 7 * 86400
    assert bucket_seconds(Filters()) == 86400


def test_cost_summary(fleet: Fleet, filters: Filters) -> None:
    got = cost_queries.cost_summary(fleet.store, filters)
    want_tasks = ref.tasks(fleet.spans, filters)
    scoped = ref.task_filtered(fleet.spans, filters)
    costs = ref.trace_costs(scoped, filters)
    total = sum(costs.values())
    top_n = math.ceil(len(want_tasks) * 0.05)
    with_tokens = [s for s in scoped if s.tokens[0] > 0 or s.tokens[1] > 0]
    assert got.tasks == len(want_tasks)
    assert got.completed == sum(t.outcome == "completed" for t in want_tasks.values())
    assert got.cost_usd == approx(total)
    assert got.top_tasks == top_n
    assert got.top_cost_usd == approx(sum(sorted(costs.values(), reverse=True)[:top_n]))
    assert got.model_calls == len(with_tokens)
    assert got.unpriced_calls == sum(1 for s in with_tokens if not s.priced)
    if got.completed:
        assert got.cost_per_successful_task == approx(total / got.completed)
    if total:
        assert got.top_share == approx(got.top_cost_usd / total)


def test_most_expensive_traces(fleet: Fleet, filters: Filters) -> None:
    rows = cost_queries.most_expensive_traces(fleet.store, filters, limit=7).dicts()
    costs = ref.trace_costs(fleet.spans, filters)
    ts = ref.tasks(fleet.spans, filters)
    ranked = sorted(((c, t) for t, c in costs.items() if t in ts), key=lambda x: (-x[0], x[1]))
    assert [r["trace_id"] for r in rows] == [t for _, t in ranked[:7]]
    assert [r["cost_usd"] for r in rows] == [approx(c) for c, _ in ranked[:7]]
    for r in rows:
        assert r["task_type"] == ts[r["trace_id"]].task_type
        assert r["duration_s"] == approx(ts[r["trace_id"]].duration / 1e9)


# --- traces ---------------------------------------------------------------------------------------
TRACE_FILTER_CASES = {
    "none": TraceFilters(),
    "outcome": TraceFilters(outcome="escalated"),
    "min_cost": TraceFilters(min_cost_usd=0.01),
    "model": TraceFilters(model="gpt-4o"),
    "errors": TraceFilters(errors_only=True),
    "all_of_them": TraceFilters(
        min_cost_usd=0.001, outcome="failed", model="gpt-4o", errors_only=True
    ),
}


@pytest.mark.parametrize("case", TRACE_FILTER_CASES)
def test_trace_list(fleet: Fleet, case: str) -> None:
    tf = TRACE_FILTER_CASES[case]
    filters = Filters()
    rows = trace_queries.trace_list(fleet.store, filters, tf, limit=50).dicts()
    ts = ref.tasks(fleet.spans, filters)
    per_trace: dict[str, list[ref.Span]] = {}
    for s in fleet.spans:
        per_trace.setdefault(s.trace_id, []).append(s)
    want = []
    for trace_id, t in ts.items():
        spans = per_trace[trace_id]
        cost = sum(s.cost for s in spans)
        models = sorted({s.model for s in spans if s.model})
        errors = sum(1 for s in spans if s.error_type)
        if cost < tf.min_cost_usd or (tf.outcome and t.outcome != tf.outcome):
            continue
        if (tf.model and tf.model not in models) or (tf.errors_only and not errors):
            continue
        want.append((-t.start, trace_id, cost, len(spans), errors, models))
    want.sort()
    assert [r["trace_id"] for r in rows] == [w[1] for w in want[:50]]
    for r, w in zip(rows, want, strict=False):
        assert (r["spans"], r["errors"], list(r["models"])) == (w[3], w[4], w[5])
        assert r["cost_usd"] == approx(w[2])
    assert rows, "every case should find some traces in the demo data"


def test_trace_spans_returns_the_whole_trace(fleet: Fleet) -> None:
    edge = trace_queries.trace_list(
        fleet.store, Filters(service="edge-cases", task_type="triage")
    ).dicts()
    trace_id = edge[0]["trace_id"]
    spans = trace_queries.trace_spans(fleet.store, trace_id).dicts()
    want = sorted((s for s in fleet.spans if s.trace_id == trace_id), key=lambda s: s.ts)
    assert [s["span_id"] for s in spans] == [s.span_id for s in want]
    assert [s["operation"] for s in spans] == ["invoke_agent", "chat", "invoke_agent", "chat"]
    assert spans[2]["parent_span_id"] == spans[0]["span_id"]
    narrowed = trace_queries.trace_spans(fleet.store, trace_id, fleet.started, fleet.finished)
    assert narrowed.dicts() == spans
    assert trace_queries.trace_spans(fleet.store, "0" * 32).rows == []


# --- sidebar, empty states, parameters ------------------------------------------------------------
def test_filter_options(fleet: Fleet) -> None:
    options = sidebar_queries.filter_options(fleet.store, Filters())
    assert options.services == ["billing-fleet", "edge-cases", "support-fleet"]
    assert options.environments == ["prod", "staging"]
    assert options.agents == ["edge", "router", "support", "worker"]
    assert "refund" in options.task_types
    assert "triage" in options.task_types
    assert options.models == sorted({s.model for s in fleet.spans if s.model and s.tokens[0]})


def test_data_presence(fleet: Fleet) -> None:
    presence = sidebar_queries.data_presence(fleet.store, periods(fleet)[0])
    assert presence.spans_total == fleet.exported
    assert presence.spans_in_range == sum(1 for s in fleet.spans if s.ts >= ref.ns(fleet.middle))
    newest = max(s.ts for s in fleet.spans)
    assert presence.latest is not None
    assert abs(ref.ns(presence.latest) - newest) < 1_000_000


def test_values_that_need_escaping_match_exactly(fleet: Fleet) -> None:
    got = overview_queries.overview(fleet.store, Filters(task_type=ODD_TASK_TYPE))
    assert got.tasks == 1
    assert [
        r["task_type"] for r in cost_queries.completion_by_task_type(fleet.store, Filters()).dicts()
    ].count(ODD_TASK_TYPE) == 1
    server = ServerStore(fleet.query_url)
    try:
        assert overview_queries.overview(server, Filters(task_type=ODD_TASK_TYPE)).tasks == 1
    finally:
        server.close()


@pytest.mark.parametrize(
    "value",
    [
        "refund' OR '1'='1",
        "x'); DROP TABLE otel_traces; --",
        "{task_type:String}",
        "back\\slash\ttab\nnewline",
    ],
)
def test_filter_values_are_bound_not_spliced(fleet: Fleet, value: str) -> None:
    for field in ("task_type", "agent", "service", "environment"):
        values: dict[str, Any] = {field: value}
        assert overview_queries.overview(fleet.store, Filters(**values)).tasks == 0
    rows = trace_queries.trace_list(
        fleet.store, Filters(), TraceFilters(outcome=value, model=value)
    )
    assert rows.rows == []
    assert fleet.store.query("SELECT count() FROM agentwatch.otel_traces").scalar() > 0


def test_filters_reject_naive_datetimes_and_empty_ranges() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Filters(start=datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test
    now = datetime.now(UTC)
    with pytest.raises(ValueError, match="empty"):
        Filters(start=now, end=now)
    with pytest.raises(ValueError, match="previous period"):
        Filters(start=now).previous()


def test_query_sizes_are_bounded(fleet: Fleet) -> None:
    with pytest.raises(ValueError, match="bins"):
        decision_queries.calibration(fleet.store, Filters(), bins=0)
    with pytest.raises(ValueError, match="limit"):
        trace_queries.trace_list(fleet.store, Filters(), limit=100_000)


# --- ranges that cut through hours ----------------------------------------------------------------
# Whole hours are read from the trace facts, partial hours from the spans. The fleet's spans are
# copied into another database, shifted so that the first span after the fleet's middle starts
# exactly on an hour, in two inserts (so a trace's facts are split over several rows), and the
# ranges below cut traces at and between hour boundaries.
HOURS_DB = "agentwatch_hours"
FACTS_ONLY_DB = "agentwatch_facts_only"
HOUR = timedelta(hours=1)
_COPIED = (
    "Timestamp, TraceId, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName, "
    "ResourceAttributes, SpanAttributes, Duration, StatusCode, StatusMessage, CostUsd, Priced"
)


@dataclass(frozen=True)
class Shifted:
    store: Store  # reads the copy, through the collector's ClickHouse HTTP endpoint
    spans: list[ref.Span]
    hour: datetime  # where the first span after the fleet's middle now starts
    started: datetime
    finished: datetime


def _copy_shifted(fleet: Fleet, database: str) -> tuple[datetime, timedelta]:
    """Copy the fleet's spans into ``database``; the first span of batch B starts exactly on
    the hour returned. Returns that hour and the shift."""
    first_after = min(s.ts for s in fleet.spans if s.ts >= ref.ns(fleet.middle))
    hour_s = math.ceil(fleet.middle.timestamp() / 3600) * 3600 + 3600
    shift_ns = hour_s * 10**9 - first_after
    fleet.store.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    for migration in migrations(database, 30):
        for statement in migration.statements:
            fleet.store.command(statement)
    for half in (0, 1):
        fleet.store.command(
            f"INSERT INTO {database}.otel_traces ({_COPIED}) SELECT "
            "fromUnixTimestamp64Nano(toUnixTimestamp64Nano(Timestamp) + {shift:Int64}), "
            + _COPIED.split(", ", 1)[1]
            + " FROM agentwatch.otel_traces WHERE cityHash64(SpanId) % 2 = {half:UInt8}",
            {"shift": shift_ns, "half": half},
        )
    return datetime.fromtimestamp(hour_s, tz=UTC), timedelta(microseconds=shift_ns / 1000)


@pytest.fixture(scope="module")
def shifted(fleet: Fleet) -> Iterator[Shifted]:
    hour, shift = _copy_shifted(fleet, HOURS_DB)
    store = ServerStore(fleet.url_for(HOURS_DB))
    try:
        spans = ref.load_spans(fleet.store, HOURS_DB)
        assert len(spans) == fleet.exported
        yield Shifted(store, spans, hour, fleet.started + shift, fleet.finished + shift)
    finally:
        store.close()


EDGE_CASES = ("whole_hours", "cut_after_the_hour", "cut_before_the_hour", "cut_by_service")


@pytest.fixture(params=EDGE_CASES)
def edge(shifted: Shifted, request: pytest.FixtureRequest) -> Filters:
    h = shifted.hour
    after = h + (shifted.finished - h) / 2  # inside batch B
    before = h - (h - shifted.started) / 2  # inside batch A
    return {
        "whole_hours": Filters(start=h - HOUR, end=h + HOUR),
        "cut_after_the_hour": Filters(start=h - HOUR, end=after),
        "cut_before_the_hour": Filters(start=before, end=h + HOUR),
        "cut_by_service": Filters(start=before, end=after, service="support-fleet"),
    }[request.param]


def test_hour_edges_error_categories(shifted: Shifted, edge: Filters) -> None:
    want = ref.error_categories(shifted.spans, edge)
    got = by_key(overview_queries.error_categories(shifted.store, edge), "category")
    assert {c: (r["tasks"], r["error_spans"]) for c, r in got.items()} == {
        c: (w["tasks"], w["error_spans"]) for c, w in want.items()
    }
    assert len(ref.tasks(shifted.spans, edge)) > 20  # the range holds tasks


def test_hour_edges_confidence_distribution(shifted: Shifted, edge: Filters) -> None:
    got = {
        (r["bucket"], r["decision_task_type"], r["task_outcome"]): r["decisions"]
        for r in decision_queries.confidence_distribution(shifted.store, edge, bins=20).dicts()
    }
    want: dict[tuple[int, str, str], int] = {}
    for d, t in ref.decisions(shifted.spans, edge):
        assert d.confidence is not None
        key = (ref.bucket(d.confidence, 20), d.task_type or t.task_type, t.outcome)
        want[key] = want.get(key, 0) + 1
    assert got == want


def test_hour_edges_cost_summary(shifted: Shifted, edge: Filters) -> None:
    got = cost_queries.cost_summary(shifted.store, edge)
    tasks = ref.tasks(shifted.spans, edge)
    costs = ref.trace_costs(shifted.spans, edge)
    top_n = math.ceil(len(tasks) * 0.05)
    assert (got.tasks, got.completed) == (
        len(tasks),
        sum(t.outcome == "completed" for t in tasks.values()),
    )
    assert got.cost_usd == approx(sum(costs.values()))
    assert got.top_cost_usd == approx(sum(sorted(costs.values(), reverse=True)[:top_n]))


def test_hour_edges_spend_by_task_type(shifted: Shifted, edge: Filters) -> None:
    want = ref.spend_by_task_type(shifted.spans, edge)
    with_tasks = {t.task_type for t in ref.tasks(shifted.spans, edge).values()}
    got = by_key(cost_queries.completion_by_task_type(shifted.store, edge), "task_type")
    assert {k: r["cost_usd"] for k, r in got.items()} == {
        k: approx(want.get(k, 0.0)) for k in with_tasks
    }
    over_time: dict[str, float] = {}
    for r in cost_queries.cost_over_time_by_task_type(shifted.store, edge, bucket_s=600).dicts():
        over_time[r["task_type"]] = over_time.get(r["task_type"], 0.0) + r["cost_usd"]
    assert over_time == {k: approx(v) for k, v in want.items()}


def test_whole_hours_are_read_from_the_trace_facts(fleet: Fleet) -> None:
    """With the spans gone and their facts kept, whole hours still show the tasks (read from
    the facts) and a range of partial hours shows none (read from the spans)."""
    hour, _ = _copy_shifted(fleet, FACTS_ONLY_DB)
    fleet.store.command(f"TRUNCATE TABLE {FACTS_ONLY_DB}.otel_traces")
    store = ServerStore(fleet.url_for(FACTS_ONLY_DB))
    try:
        whole = overview_queries.error_categories(
            store, Filters(start=hour - HOUR, end=hour + HOUR)
        )
        partial = overview_queries.error_categories(
            store, Filters(start=hour - HOUR / 2, end=hour + HOUR / 2)
        )
    finally:
        store.close()
    assert by_key(whole, "category")["limit"]["tasks"] == fleet.outcomes["limit_exceeded"]
    assert by_key(partial, "category")["limit"]["tasks"] == 0


# --- the same answers through the collector's ClickHouse HTTP endpoint ----------------------------
def _same(a: Any, b: Any) -> None:
    if isinstance(a, Rows):
        assert isinstance(b, Rows)
        if not a.rows:
            assert b.rows == []
            return
        assert a.columns == b.columns
        assert len(a.rows) == len(b.rows)
        for ra, rb in zip(a.rows, b.rows, strict=True):
            assert [approx(x) if isinstance(x, float) else x for x in ra] == [
                list(x) if isinstance(x, tuple) else x for x in rb
            ]
    else:
        assert type(a) is type(b)
        for name in a.__dataclass_fields__:
            x, y = getattr(a, name), getattr(b, name)
            assert (approx(x) if isinstance(x, float) else x) == y, name


QUERIES = [
    overview_queries.overview,
    cost_queries.completion_by_task_type,
    decision_queries.confidence_distribution,
    decision_queries.calibration,
    overview_queries.tool_usage,
    overview_queries.unused_tools,
    overview_queries.declared_tools,
    overview_queries.error_categories,
    cost_queries.cost_over_time_by_model,
    cost_queries.cost_over_time_by_task_type,
    cost_queries.cost_summary,
    cost_queries.unpriced_models,
    cost_queries.most_expensive_traces,
    trace_queries.trace_list,
    sidebar_queries.filter_options,
    sidebar_queries.data_presence,
]


def test_every_query_reads_the_same_through_clickhouse_connect(fleet: Fleet) -> None:
    server = ServerStore(fleet.query_url)
    try:
        odd = Filters(task_type=ODD_TASK_TYPE)
        for filters in (
            Filters(),
            Filters(task_type="refund", environment="prod"),
            periods(fleet)[0],
            odd,
        ):
            for query in QUERIES:
                _same(query(fleet.store, filters), query(server, filters))
        trace_id = trace_queries.trace_list(server, Filters()).dicts()[0]["trace_id"]
        _same(
            trace_queries.trace_spans(fleet.store, trace_id),
            trace_queries.trace_spans(server, trace_id),
        )
    finally:
        server.close()

"""Figure builders and number formatting, on query results from the seeded store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go
import pytest

from agentwatch.dashboards import _figures as figures
from agentwatch.dashboards import _format as fmt
from agentwatch.storage import _cost_queries as cost_queries
from agentwatch.storage import _decision_queries as decision_queries
from agentwatch.storage import _overview_queries as overview_queries
from agentwatch.storage import _trace_queries as trace_queries
from agentwatch.storage._overview_queries import Overview
from agentwatch.storage._scope import Filters
from agentwatch.storage._store import Rows
from agentwatch.storage._tasks import OUTCOMES
from tests.storage import reference as ref
from tests.storage.fleet import Fleet, periods
from tests.storage.reference import approx

ALL = Filters()


def ys(fig: go.Figure) -> list[float]:
    return [float(y) for trace in fig.data if trace.y is not None for y in trace.y if y is not None]


def annotation_texts(fig: go.Figure) -> list[str]:
    return [a.text for a in fig.layout.annotations]


# --- figures --------------------------------------------------------------------------------------
def test_completion_by_task_type(fleet: Fleet) -> None:
    rows = cost_queries.completion_by_task_type(fleet.store, ALL)
    fig = figures.completion_by_task_type(rows)
    assert [t.name for t in fig.data] == ["completed", "escalated", "failed", "limit exceeded"]
    want = ref.by_task_type(fleet.spans, ALL)
    for trace, outcome in zip(fig.data, OUTCOMES, strict=True):
        got = {y or "": x for y, x in zip(trace.y, trace.x, strict=True)}
        assert got == {("(none)" if k == "" else k): v[outcome] for k, v in want.items()}
    assert fig.layout.barmode == "stack"


def test_cost_by_task_type(fleet: Fleet) -> None:
    rows = cost_queries.cost_by_task_type(fleet.store, ALL)
    fig = figures.cost_by_task_type(rows)
    per_task, per_success = fig.data
    want = ref.by_task_type(fleet.spans, ALL)
    for task_type, cost in zip(per_task.x, per_task.y, strict=True):
        assert cost == approx(want[task_type]["cost_usd"] / want[task_type]["tasks"])
    assert len(per_success.y) == len(want)


def test_confidence_histograms_count_every_decision(fleet: Fleet) -> None:
    rows = decision_queries.confidence_distribution(fleet.store, ALL, bins=20)
    decisions = len(ref.decisions(fleet.spans, ALL))
    by_outcome = figures.confidence_by_outcome(rows, 20)
    assert sum(ys(by_outcome)) == decisions
    assert {t.name for t in by_outcome.data} <= {
        "completed",
        "escalated",
        "failed",
        "limit exceeded",
    }
    assert all(0 <= x <= 1 for t in by_outcome.data for x in t.x)
    by_type = figures.confidence_by_task_type(rows, 20)
    assert sum(ys(by_type)) == decisions
    assert {t.name for t in by_type.data} == {
        d.task_type for d, _ in ref.decisions(fleet.spans, ALL)
    }


def test_error_categories(fleet: Fleet) -> None:
    rows = overview_queries.error_categories(fleet.store, ALL)
    fig = figures.error_categories(rows)
    (bars,) = fig.data
    assert list(bars.x) == [figures.CATEGORY_LABELS[c] for c in overview_queries.ERROR_CATEGORIES]
    assert list(bars.y) == [r["rate"] for r in rows.dicts()]


@pytest.mark.parametrize("group", ["model", "task_type"])
def test_cost_over_time_stacks_all_spend(fleet: Fleet, group: str) -> None:
    if group == "model":
        rows = cost_queries.cost_over_time_by_model(fleet.store, ALL, bucket_s=60)
    else:
        rows = cost_queries.cost_over_time_by_task_type(fleet.store, ALL, bucket_s=60)
    fig = figures.cost_over_time(rows, group)
    total = sum(r["cost_usd"] for r in rows.dicts())
    assert sum(ys(fig)) == approx(total)
    assert {t.name for t in fig.data} == {r[group] for r in rows.dicts()}
    assert all(isinstance(x, datetime) and x.tzinfo is UTC for t in fig.data for x in t.x)
    if group == "model":
        want = sum(s.cost for s in fleet.spans if s.cost > 0)
        assert total == approx(want)


def test_calibration_diagram(fleet: Fleet) -> None:
    rows = decision_queries.calibration(fleet.store, ALL, bins=10)
    fig = figures.calibration(rows)
    names = [t.name for t in fig.data]
    assert names == ["decisions", "perfectly calibrated", "correct (feedback)"]
    rated = [r for r in rows.dicts() if r["accuracy"] is not None]
    assert list(fig.data[2].y) == [r["accuracy"] for r in rated]
    assert sum(fig.data[0].y) == len(ref.decisions(fleet.spans, ALL))


def test_threshold_curve_marks_the_threshold(fleet: Fleet) -> None:
    explorer = decision_queries.threshold_explorer(fleet.store, ALL)
    fig = figures.threshold_curve(explorer, 0.7)
    share, accuracy = fig.data
    assert len(share.x) == 101
    assert share.y[0] == 1.0  # everything is auto-approved at threshold 0
    assert share.y[70] == decision_queries.threshold_summary(explorer, 0.7).auto_share
    assert accuracy.y[70] == decision_queries.threshold_summary(explorer, 0.7).auto_accuracy
    assert [s.x0 for s in fig.layout.shapes] == [0.7]


def test_tool_table_lists_declared_tools_never_called_after_the_called_ones(fleet: Fleet) -> None:
    tools = overview_queries.tool_usage(fleet.store, ALL)
    table = figures.tool_usage_table(tools, overview_queries.unused_tools(fleet.store, ALL)).dicts()
    assert [r["tool"] for r in table] == [*(r["tool"] for r in tools.dicts()), "close_account"]
    assert [r["never_called"] for r in table] == [False] * len(tools.rows) + [True]
    assert (table[-1]["calls"], table[-1]["errors"], table[-1]["error_rate"]) == (0, 0, None)
    assert table[0]["calls"] == tools.dicts()[0]["calls"]


def test_the_note_names_each_unused_tool_and_who_declares_it(fleet: Fleet) -> None:
    note = figures.unused_tools_note(overview_queries.unused_tools(fleet.store, ALL))
    assert note == "Declared but never called in this range: close_account (declared by support)."
    assert figures.unused_tools_note(Rows(["tool", "agents"], [])) == ""


def test_waterfall_of_a_nested_trace(fleet: Fleet) -> None:
    trace_id = trace_queries.trace_list(fleet.store, Filters(task_type="triage")).dicts()[0][
        "trace_id"
    ]
    spans = trace_queries.trace_spans(fleet.store, trace_id)
    fig = figures.waterfall(spans)
    labels = list(fig.layout.yaxis.ticktext)
    assert labels == [
        "invoke_agent router",
        "\u2003chat gpt-4o-mini",
        "\u2003invoke_agent worker",
        "\u2003\u2003chat gpt-4o",
    ]
    bars = {i: (b, x) for t in fig.data for i, b, x in zip(t.y, t.base, t.x, strict=True)}
    rows = spans.dicts()
    t0 = rows[0]["start_ns"]
    for i, row in enumerate(rows):
        base, width = bars[i]
        assert base == approx((row["start_ns"] - t0) / 1e6)
        assert width == approx(max(row["duration_ns"] / 1e6, 0.001))
    assert {t.name for t in fig.data} == {"invoke_agent", "chat"}


def test_waterfall_marks_errors(fleet: Fleet) -> None:
    trace_id = trace_queries.trace_list(fleet.store, Filters(task_type="model_error")).dicts()[0][
        "trace_id"
    ]
    fig = figures.waterfall(trace_queries.trace_spans(fleet.store, trace_id))
    errors = [t for t in fig.data if t.name == "error"]
    assert len(errors) == 1
    assert errors[0].marker.color == figures.ERROR_COLOR
    assert len(errors[0].y) == 2  # the failed model call and the agent it failed
    assert any("ConnectionError" in text for text in errors[0].hovertext)


EMPTY = Rows([], [])


@pytest.mark.parametrize(
    "build",
    [
        figures.completion_by_task_type,
        figures.cost_by_task_type,
        figures.confidence_by_outcome,
        figures.confidence_by_task_type,
        figures.error_categories,
        lambda rows: figures.cost_over_time(rows, "model"),
        figures.calibration,
        lambda rows: figures.threshold_curve(rows, 0.5),
        figures.waterfall,
    ],
)
def test_empty_results_give_an_empty_figure_that_says_so(build: Any) -> None:
    fig = build(EMPTY)
    assert isinstance(fig, go.Figure)
    assert fig.data == ()
    assert len(annotation_texts(fig)) == 1
    assert annotation_texts(fig)[0].startswith("No ")


# --- formatting and tiles -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fn", "value", "text"),
    [
        (fmt.pct, 0.8734, "87.3%"),
        (fmt.pct, None, "—"),
        (fmt.usd, 0.004567, "$0.0046"),
        (fmt.usd, 12.3456, "$12.35"),
        (fmt.usd, 12345.6, "$12,346"),
        (fmt.seconds, 0.0004, "0.40 ms"),
        (fmt.seconds, 0.25, "250 ms"),
        (fmt.seconds, 3.5, "3.50 s"),
        (fmt.number, 2.04, "2.0"),
        (fmt.count, 12345, "12,345"),
    ],
)
def test_formats(fn: Any, value: Any, text: str) -> None:
    assert fn(value) == text


def test_deltas() -> None:
    assert fmt.delta_pp(0.9, 0.85) == "+5.0 pp"
    assert fmt.delta_pp(0.8, 0.85) == "-5.0 pp"
    assert fmt.delta_pp(0.8, None) is None
    assert fmt.delta_usd(0.01, 0.015) == "-$0.0050"
    assert fmt.delta_seconds(1.5, 1.0) == "+500 ms"
    assert fmt.delta_number(3.0, 2.5) == "+0.5"


def test_safe_url_hides_the_password() -> None:
    assert fmt.safe_url("http://u:secret@h:8123/db") == "http://u:***@h:8123/db"
    assert fmt.safe_url("http://h:8123/db") == "http://h:8123/db"


def test_tiles_compare_periods_and_targets(fleet: Fleet) -> None:
    current, previous = periods(fleet)
    now, before = (
        overview_queries.overview(fleet.store, current),
        overview_queries.overview(fleet.store, previous),
    )
    tiles = {t.label: t for t in fmt.overview_tiles(now, before, fmt.Targets())}
    assert list(tiles) == [
        "Tasks",
        "Task completion",
        "Escalation rate",
        "Cost per task",
        "Iterations per task",
        "Tool error rate",
        "Limit exceeded",
        "Agent latency p50",
        "Agent latency p95",
    ]
    assert tiles["Tasks"].value == f"{now.tasks:,}"
    assert tiles["Tasks"].delta == f"+{now.tasks - before.tasks}"
    completion = tiles["Task completion"]
    assert completion.value == fmt.pct(now.completion_rate)
    assert completion.delta == fmt.delta_pp(now.completion_rate, before.completion_rate)
    assert completion.delta_color == "normal"
    assert completion.on_target == (now.completion_rate >= 0.85)  # type: ignore[operator]
    cost = tiles["Cost per task"]
    assert cost.value == fmt.usd(now.cost_per_task)
    assert cost.delta is not None
    assert cost.delta.startswith("+")  # the staged refund cost spike is in the current period
    assert cost.delta_color == "inverse"
    assert cost.target == "target ≤ $0.02"
    assert tiles["Agent latency p50"].target == ""
    assert tiles["Agent latency p50"].status == ""
    strict = fmt.overview_tiles(now, before, fmt.Targets(cost_per_task=0.0))
    assert next(t for t in strict if t.label == "Cost per task").status.endswith("off target")


def test_tiles_without_data_judge_nothing() -> None:
    empty = Overview(0, 0, 0, 0, 0, 0.0, 0, 0, None, None, None)
    tiles = fmt.overview_tiles(empty, empty, fmt.Targets())
    assert [t.value for t in tiles] == ["0"] + ["—"] * 8
    assert all(t.delta is None for t in tiles)
    assert all(t.on_target is None for t in tiles)
    assert tiles[1].status == "target ≥ 85.0% · no data yet"

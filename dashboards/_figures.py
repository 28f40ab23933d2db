"""Plotly figures for the dashboard pages, built from query results (``Rows``).

Plain functions, no Streamlit: each takes what a dashboard query in ``agentwatch.storage``
returned and gives back a ``plotly.graph_objects.Figure``. An empty result gives an empty
figure that says so, never an exception. (The Overview's tool usage is a table: its rows are
built here too.)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import plotly.graph_objects as go

from agentwatch.storage._decision_queries import threshold_summary
from agentwatch.storage._store import Rows
from agentwatch.storage._tasks import OUTCOMES

OUTCOME_COLORS: Final[Mapping[str, str]] = {
    "completed": "#2e9e5b",
    "escalated": "#e0a526",
    "failed": "#d64545",
    "limit_exceeded": "#8e5cc2",
}
OPERATION_COLORS: Final[Mapping[str, str]] = {
    "invoke_agent": "#4c78a8",
    "chat": "#f58518",
    "execute_tool": "#54a24b",
    "decision": "#b279a2",
    "feedback": "#9d755d",
}
ERROR_COLOR: Final = "#d64545"
CATEGORY_LABELS: Final[Mapping[str, str]] = {
    "model": "Model call failed",
    "tool": "Tool call failed",
    "validation": "Other / validation",
    "limit": "Limit exceeded",
}
_MARGIN: Final = {"l": 10, "r": 10, "t": 40, "b": 10}


def new_figure(title: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, margin=_MARGIN, legend={"orientation": "h", "y": -0.2})
    return fig


def mark_empty(fig: go.Figure, message: str = "No data in this range") -> go.Figure:
    fig.add_annotation(
        text=message, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5, font={"size": 14}
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def _label(value: str, blank: str = "(none)") -> str:
    return value or blank


def completion_by_task_type(rows: Rows) -> go.Figure:
    """Stacked horizontal bars: each task type's tasks by outcome."""
    fig = new_figure("Outcomes by task type")
    data = rows.dicts()
    if not data:
        return mark_empty(fig)
    types = [_label(r["task_type"]) for r in data]
    for outcome in OUTCOMES:
        fig.add_trace(
            go.Bar(
                name=outcome.replace("_", " "),
                y=types,
                x=[r[outcome] for r in data],
                orientation="h",
                marker_color=OUTCOME_COLORS[outcome],
                customdata=[[r["tasks"], r["completion_rate"]] for r in data],
                hovertemplate="%{y}: %{x} of %{customdata[0]} tasks<extra>" + outcome + "</extra>",
            )
        )
    fig.update_layout(barmode="stack", xaxis_title="tasks", yaxis={"autorange": "reversed"})
    return fig


def cost_by_task_type(rows: Rows) -> go.Figure:
    """Grouped bars: cost per task and cost per successful task, for each task type."""
    fig = new_figure("Cost per task type")
    data = rows.dicts()
    if not data:
        return mark_empty(fig)
    types = [_label(r["task_type"]) for r in data]
    fig.add_trace(go.Bar(name="per task", x=types, y=[r["cost_per_task"] for r in data]))
    fig.add_trace(
        go.Bar(name="per successful task", x=types, y=[r["cost_per_success"] for r in data])
    )
    fig.update_layout(barmode="group", yaxis_title="USD", yaxis_tickprefix="$")
    return fig


def confidence_by_outcome(rows: Rows, bins: int = 20) -> go.Figure:
    """Stacked histogram of decision confidence, split by the outcome of the decision's task."""
    fig = new_figure("Decision confidence by task outcome")
    data = rows.dicts()
    if not data:
        return mark_empty(fig, "No decisions in this range")
    counts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for r in data:
        counts[r["task_outcome"]][int(r["bucket"])] += int(r["decisions"])
    width = 1 / bins
    for outcome in [*OUTCOMES, *sorted(set(counts) - set(OUTCOMES))]:
        if outcome not in counts:
            continue
        buckets = sorted(counts[outcome])
        fig.add_trace(
            go.Bar(
                name=outcome.replace("_", " "),
                x=[(b + 0.5) * width for b in buckets],
                y=[counts[outcome][b] for b in buckets],
                width=width * 0.95,
                marker_color=OUTCOME_COLORS.get(outcome),
            )
        )
    fig.update_layout(barmode="stack", xaxis={"title": "confidence", "range": [0, 1]})
    fig.update_layout(yaxis_title="decisions")
    return fig


def confidence_by_task_type(rows: Rows, bins: int = 20) -> go.Figure:
    """Stacked histogram of decision confidence, split by task type."""
    fig = new_figure("Decision confidence by task type")
    data = rows.dicts()
    if not data:
        return mark_empty(fig, "No decisions in this range")
    counts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for r in data:
        counts[_label(r["decision_task_type"])][int(r["bucket"])] += int(r["decisions"])
    width = 1 / bins
    for task_type in sorted(counts):
        buckets = sorted(counts[task_type])
        fig.add_trace(
            go.Bar(
                name=task_type,
                x=[(b + 0.5) * width for b in buckets],
                y=[counts[task_type][b] for b in buckets],
                width=width * 0.95,
            )
        )
    fig.update_layout(barmode="stack", xaxis={"title": "confidence", "range": [0, 1]})
    fig.update_layout(yaxis_title="decisions")
    return fig


def error_categories(rows: Rows) -> go.Figure:
    """Bars: the share of tasks hit by each category of error."""
    fig = new_figure("Tasks hit by errors, by category")
    data = rows.dicts()
    if not data or not any(r["tasks"] for r in data):
        return mark_empty(fig, "No errors in this range")
    fig.add_trace(
        go.Bar(
            x=[CATEGORY_LABELS.get(r["category"], r["category"]) for r in data],
            y=[r["rate"] or 0.0 for r in data],
            customdata=[[r["tasks"], r["error_spans"]] for r in data],
            hovertemplate="%{x}: %{y:.1%} of tasks (%{customdata[0]} tasks, "
            "%{customdata[1]} error spans)<extra></extra>",
            marker_color=ERROR_COLOR,
        )
    )
    fig.update_layout(yaxis={"title": "share of tasks", "tickformat": ".0%"})
    return fig


def cost_over_time(rows: Rows, group: str) -> go.Figure:
    """Stacked bars of spend per time bucket, one series per ``group`` (model or task_type)."""
    fig = new_figure(f"Spend over time by {group.replace('_', ' ')}")
    data = rows.dicts()
    if not data:
        return mark_empty(fig, "No priced model calls in this range")
    series: dict[str, dict[int, float]] = defaultdict(dict)
    for r in data:
        series[_label(r[group])][int(r["bucket_start"])] = float(r["cost_usd"])
    for name in sorted(series, key=lambda n: -sum(series[n].values())):
        points = sorted(series[name].items())
        fig.add_trace(
            go.Bar(
                name=name,
                x=[datetime.fromtimestamp(t, tz=UTC) for t, _ in points],
                y=[cost for _, cost in points],
            )
        )
    fig.update_layout(barmode="stack", yaxis_title="USD", yaxis_tickprefix="$")
    return fig


def calibration(rows: Rows) -> go.Figure:
    """Reliability diagram: how often decisions were right (per feedback) at each confidence,
    against the diagonal of perfect calibration; decision counts as bars behind."""
    fig = new_figure("Calibration: confidence vs. feedback says correct")
    data = [r for r in rows.dicts() if r["decisions"]]
    if not data:
        return mark_empty(fig, "No decisions in this range")
    fig.add_trace(
        go.Bar(
            name="decisions",
            x=[r["mean_confidence"] for r in data],
            y=[r["decisions"] for r in data],
            yaxis="y2",
            opacity=0.25,
            marker_color="#888888",
            width=0.05,
        )
    )
    fig.add_trace(
        go.Scatter(
            name="perfectly calibrated",
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            line={"dash": "dot", "color": "#888888"},
        )
    )
    rated = [r for r in data if r["accuracy"] is not None]
    fig.add_trace(
        go.Scatter(
            name="correct (feedback)",
            x=[r["mean_confidence"] for r in rated],
            y=[r["accuracy"] for r in rated],
            mode="lines+markers",
            customdata=[[r["with_feedback"]] for r in rated],
            hovertemplate="confidence %{x:.2f}: %{y:.0%} correct of %{customdata[0]} "
            "reviewed<extra></extra>",
        )
    )
    fig.update_layout(
        xaxis={"title": "confidence", "range": [0, 1]},
        yaxis={"title": "share correct", "range": [0, 1.05], "tickformat": ".0%"},
        yaxis2={"title": "decisions", "overlaying": "y", "side": "right", "showgrid": False},
    )
    return fig


def threshold_curve(explorer: Rows, threshold: float) -> go.Figure:
    """Auto-approval share and accuracy for every threshold, with the chosen one marked."""
    fig = new_figure("What an auto-approve threshold would have meant")
    if not explorer.rows:
        return mark_empty(fig, "No decisions in this range")
    cuts = [i / 100 for i in range(101)]
    summaries = [threshold_summary(explorer, t) for t in cuts]
    fig.add_trace(
        go.Scatter(name="auto-approved", x=cuts, y=[s.auto_share for s in summaries], mode="lines")
    )
    fig.add_trace(
        go.Scatter(
            name="correct when auto-approved",
            x=cuts,
            y=[s.auto_accuracy for s in summaries],
            mode="lines",
        )
    )
    fig.add_vline(x=threshold, line_dash="dash", line_color="#444444")
    fig.update_layout(
        xaxis={"title": "auto-approve at confidence ≥", "range": [0, 1]},
        yaxis={"title": "share", "range": [0, 1.05], "tickformat": ".0%"},
    )
    return fig


TOOL_COLUMNS: Final = ("tool", "tier", "calls", "errors", "error_rate", "p95_latency_s")


def tool_usage_table(tools: Rows, unused: Rows) -> Rows:
    """The Overview's tool table: ``tool_usage`` rows, then each tool an agent declares but
    never called (``unused_tools``) with no calls, flagged in ``never_called``."""
    rows: list[tuple[Any, ...]] = [
        (*(row[c] for c in TOOL_COLUMNS), False) for row in tools.dicts()
    ]
    rows += [(row["tool"], "", 0, 0, None, None, True) for row in unused.dicts()]
    return Rows([*TOOL_COLUMNS, "never_called"], rows)


def unused_tools_note(unused: Rows) -> str:
    """One line naming the declared tools never called, and the agents declaring each."""
    if not unused.rows:
        return ""
    names = ", ".join(
        f"{row['tool']} (declared by {', '.join(row['agents'])})" for row in unused.dicts()
    )
    return f"Declared but never called in this range: {names}."


def _depths(spans: Sequence[Mapping[str, Any]]) -> list[int]:
    parents = {s["span_id"]: s["parent_span_id"] for s in spans}
    depths = []
    for s in spans:
        depth, parent, seen = 0, s["parent_span_id"], set()
        while parent in parents and parent not in seen:
            seen.add(parent)
            depth += 1
            parent = parents[parent]
        depths.append(depth)
    return depths


def _span_hover(s: Mapping[str, Any]) -> str:
    parts = [f"<b>{s['name']}</b>", f"{s['duration_ns'] / 1e6:.2f} ms"]
    if s.get("model"):
        parts.append(f"model {s['model']}: {s['input_tokens']} in / {s['output_tokens']} out")
        parts.append(f"cost ${s['cost_usd']:.5f}" if s["priced"] else "unpriced")
    if s.get("tool"):
        parts.append(f"tool {s['tool']} ({s['tier'] or 'no tier'})")
    if s.get("confidence") is not None:
        parts.append(f"confidence {s['confidence']:.2f} → {s['route'] or 'no route'}")
    if s.get("outcome"):
        parts.append(f"outcome {s['outcome']}")
    if s.get("error_type"):
        parts.append(f"error {s['error_type']}: {s['status_message'][:200]}")
    return "<br>".join(parts)


def waterfall(spans: Rows | Iterable[Mapping[str, Any]]) -> go.Figure:
    """One trace's spans as a waterfall: a bar from each span's start to its end, indented by
    depth, colored by operation (errors in red), in start order."""
    fig = new_figure("Trace waterfall")
    data = spans.dicts() if isinstance(spans, Rows) else list(spans)
    if not data:
        return mark_empty(fig, "No spans found for this trace")
    data.sort(key=lambda s: (s["start_ns"], s["span_id"]))
    t0 = data[0]["start_ns"]
    labels = ["\u2003" * d + s["name"] for d, s in zip(_depths(data), data, strict=True)]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(data):
        groups["error" if s["error_type"] else (s["operation"] or "other")].append(i)
    for group, idx in groups.items():
        fig.add_trace(
            go.Bar(
                name=group,
                orientation="h",
                y=idx,
                base=[(data[i]["start_ns"] - t0) / 1e6 for i in idx],
                x=[max(data[i]["duration_ns"] / 1e6, 0.001) for i in idx],
                marker_color=ERROR_COLOR if group == "error" else OPERATION_COLORS.get(group),
                hovertext=[_span_hover(data[i]) for i in idx],
                hoverinfo="text",
            )
        )
    fig.update_layout(
        barmode="overlay",
        height=max(240, 28 * len(data) + 120),
        xaxis_title="ms since the trace started",
        yaxis={
            "tickmode": "array",
            "tickvals": list(range(len(data))),
            "ticktext": labels,
            "autorange": "reversed",
        },
    )
    return fig

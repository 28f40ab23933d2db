"""The dashboard pages. ``app.py`` draws the sidebar and runs ``st.navigation``; each file under
``pages/`` calls one ``*_page()`` function here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import streamlit as st

from agentwatch.dashboards import _figures as figures
from agentwatch.dashboards import _health_view as health_view
from agentwatch.dashboards import _review_view as review_view
from agentwatch.dashboards._data import Unavailable, query
from agentwatch.dashboards._format import (
    NONE,
    Targets,
    count,
    overview_tiles,
    pct,
    usd,
    when,
)
from agentwatch.dashboards._login import sign_out_button, signed_in
from agentwatch.storage import _cost_queries as cost_queries
from agentwatch.storage import _decision_queries as decision_queries
from agentwatch.storage import _overview_queries as overview_queries
from agentwatch.storage import _sidebar_queries as sidebar_queries
from agentwatch.storage import _trace_queries as trace_queries
from agentwatch.storage._action_log import json_lines, trace_action_log
from agentwatch.storage._audit_queries import WRITING_TIERS, access_patterns, risky_actions
from agentwatch.storage._scope import Filters
from agentwatch.storage._store import Rows
from agentwatch.storage._tasks import OUTCOMES
from agentwatch.storage._trace_queries import TraceFilters

ALL: Final = "All"
RANGES: Final[dict[str, timedelta | None]] = {
    "Last 15 minutes": timedelta(minutes=15),
    "Last hour": timedelta(hours=1),
    "Last 6 hours": timedelta(hours=6),
    "Last 24 hours": timedelta(days=1),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
    "Custom (UTC)": None,
}
DEFAULT_RANGE: Final = "Last hour"
REFRESH_S: Final = 30
# Rounding "now" up to this step keeps cache keys stable between reruns within it.
NOW_STEP_S: Final = 10
NO_DATA: Final = (
    "No agent data yet. Run `agentwatch up --demo` to watch a simulated fleet of support agents, "
    'or point an agent at the collector: `aw.configure(endpoint="http://localhost:4318")` '
    "(or set `OTEL_EXPORTER_OTLP_ENDPOINT`)."
)

_EARLIEST: Final = datetime(2000, 1, 1)  # noqa: DTZ001 - the widget is naive; read as UTC
_LATEST: Final = datetime(2100, 1, 1)  # noqa: DTZ001
# Session-state keys of the sidebar filters.
K_RANGE, K_FROM, K_TO = "aw_range", "aw_from", "aw_to"
K_SERVICE, K_AGENT, K_TASK_TYPE, K_ENV = "aw_service", "aw_agent", "aw_task_type", "aw_env"


# --- the app shell --------------------------------------------------------------------------------
PAGE_DIR: Final = Path(__file__).resolve().parent / "pages"
_SHELL: Final = "aw_shell_ran"


def pages() -> list[Any]:
    """The pages, for ``st.navigation``."""
    return [
        # Material icons ship with Streamlit; emoji need a font many servers lack.
        st.Page(
            PAGE_DIR / "overview.py", title="Overview", icon=":material/dashboard:", default=True
        ),
        st.Page(PAGE_DIR / "cost.py", title="Cost", icon=":material/payments:"),
        st.Page(
            PAGE_DIR / "decisions.py", title="Decisions & confidence", icon=":material/target:"
        ),
        st.Page(PAGE_DIR / "traces.py", title="Traces", icon=":material/account_tree:"),
        st.Page(PAGE_DIR / "review.py", title="Review", icon=":material/fact_check:"),
        st.Page(PAGE_DIR / "audit.py", title="Audit of actions", icon=":material/policy:"),
        st.Page(PAGE_DIR / "health.py", title="Health & alerts", icon=":material/monitor_heart:"),
    ]


def shell() -> None:
    """What ``app.py`` does on every run: sign-in, navigation, sidebar, then the chosen page."""
    if not signed_in():
        st.stop()
    navigation = st.navigation(pages())
    sidebar()
    sign_out_button()
    st.session_state[_SHELL] = True
    navigation.run()


def page(render: Callable[[], None]) -> None:
    """Run a page, through ``app.py``.

    ``app.py`` sits next to ``pages/``, so on a fresh server's first run Streamlit uses its
    legacy pages-directory mode, and a deep link (``/cost``) runs the page file alone: no
    sidebar, no filters. ``st.navigation`` ends that mode for the whole server, so the page
    calls it and reruns; the rerun goes through ``app.py`` to the same page.
    """
    if not st.session_state.pop(_SHELL, False):
        st.navigation(pages(), position="hidden")
        st.rerun()
    render()


# --- sidebar and filters --------------------------------------------------------------------------
def _now() -> datetime:
    epoch = datetime.now(UTC).timestamp()
    return datetime.fromtimestamp(math.ceil(epoch / NOW_STEP_S) * NOW_STEP_S, tz=UTC)


def _utc(value: Any, fallback: datetime) -> datetime:
    if not isinstance(value, datetime):
        return fallback
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def time_filters() -> Filters:
    """The sidebar's time range, with "now" read afresh (the Overview tiles refresh with it)."""
    choice = st.session_state.get(K_RANGE, DEFAULT_RANGE)
    duration = RANGES.get(choice, RANGES[DEFAULT_RANGE])
    now = _now()
    if duration is not None:
        return Filters.last(duration, now=now)
    start = _utc(st.session_state.get(K_FROM), now - timedelta(hours=1))
    end = _utc(st.session_state.get(K_TO), now)
    if end <= start:
        end = start + timedelta(minutes=1)
    return Filters(start=start, end=end)


def current_filters() -> Filters:
    """Everything the sidebar selects."""

    def pick(key: str) -> str:
        value = st.session_state.get(key, ALL)
        return "" if value in (ALL, None) else str(value)

    return replace(
        time_filters(),
        service=pick(K_SERVICE),
        agent=pick(K_AGENT),
        task_type=pick(K_TASK_TYPE),
        environment=pick(K_ENV),
    )


def _choice(label: str, key: str, values: Sequence[str]) -> None:
    options = [ALL, *values]
    chosen = st.session_state.get(key)
    if chosen and chosen not in options:
        options.append(chosen)  # keep a selection the new time range has no data for
    st.sidebar.selectbox(label, options, key=key)


def sidebar() -> None:
    """The global filters. Drawn on every run, before the page, so they persist across pages."""
    st.sidebar.selectbox("Time range", list(RANGES), index=1, key=K_RANGE)
    if st.session_state.get(K_RANGE) not in RANGES or RANGES[st.session_state[K_RANGE]] is None:
        # Defaults go into session state once: a default that moved with the clock would
        # make a new widget on every run and lose what the user picked.
        now = _now().replace(tzinfo=None)
        st.session_state.setdefault(K_FROM, now - timedelta(hours=1))
        st.session_state.setdefault(K_TO, now)
        for label, key in (("From (UTC)", K_FROM), ("To (UTC)", K_TO)):
            st.sidebar.datetime_input(label, min_value=_EARLIEST, max_value=_LATEST, key=key)
    try:
        options = query(sidebar_queries.filter_options, time_filters())
    except Unavailable:
        options = sidebar_queries.FilterOptions([], [], [], [], [])
    _choice("Service", K_SERVICE, options.services)
    _choice("Agent", K_AGENT, options.agents)
    _choice("Task type", K_TASK_TYPE, options.task_types)
    _choice("Environment", K_ENV, options.environments)
    st.sidebar.caption(f"Data refreshes every {REFRESH_S} s on the Overview; queries are cached.")


def describe(filters: Filters) -> str:
    if filters.start is None or filters.end is None:
        return "All time"
    parts = [f"{filters.start:%Y-%m-%d %H:%M:%S} to {filters.end:%Y-%m-%d %H:%M:%S} UTC"]
    for name, value in (
        ("service", filters.service),
        ("agent", filters.agent),
        ("task type", filters.task_type),
        ("environment", filters.environment),
    ):
        if value:
            parts.append(f"{name} {value}")
    return " · ".join(parts)


def has_data(filters: Filters) -> bool:
    """Show the right empty state and return False when there is nothing to draw."""
    presence = query(sidebar_queries.data_presence, filters)
    if presence.spans_total == 0:
        st.info(NO_DATA)
        return False
    if presence.spans_in_range == 0:
        latest = f"{presence.latest:%Y-%m-%d %H:%M:%S} UTC" if presence.latest else "unknown"
        st.info(
            f"No spans in this time range. The newest span is from {latest}: widen the time "
            "range in the sidebar, or check that your agents still send to the collector."
        )
        return False
    return True


def _header(title: str) -> Filters | None:
    """Title and caption; the filters when there is data to show, else None (empty state)."""
    st.title(title)
    filters = current_filters()
    st.caption(describe(filters))
    try:
        return filters if has_data(filters) else None
    except Unavailable as exc:
        st.error(str(exc))
        return None


def _table(rows: Rows, columns: dict[str, Any] | None = None) -> None:
    st.dataframe(rows.dicts(), hide_index=True, column_config=columns)


# --- Overview -------------------------------------------------------------------------------------
K_TARGET_PREFIX: Final = "aw_target_"


def _targets() -> Targets:
    defaults = Targets()
    values = {}
    for name in (field.name for field in fields(Targets)):
        value = st.session_state.get(K_TARGET_PREFIX + name, getattr(defaults, name))
        values[name] = float(value)
    return Targets(**values)


def _targets_editor() -> None:
    defaults = Targets()
    with st.expander("Targets"):
        cols = st.columns(4)
        specs = (
            ("completion_rate", "Task completion at least", 0.0, 1.0, 0.01),
            ("escalation_rate", "Escalation rate at most", 0.0, 1.0, 0.01),
            ("cost_per_task", "Cost per task at most (USD)", 0.0, 1000.0, 0.001),
            ("avg_iterations", "Iterations per task at most", 0.0, 1000.0, 0.5),
            ("tool_error_rate", "Tool error rate at most", 0.0, 1.0, 0.01),
            ("limit_exceeded_rate", "Limit exceeded at most", 0.0, 1.0, 0.01),
            ("p95_latency_s", "Agent latency p95 at most (s)", 0.0, 86400.0, 1.0),
        )
        for i, (name, label, low, high, step) in enumerate(specs):
            key = K_TARGET_PREFIX + name
            if key not in st.session_state:
                st.session_state[key] = float(getattr(defaults, name))
            cols[i % 4].number_input(
                label, min_value=low, max_value=high, step=step, key=key, format="%.3f"
            )


@st.fragment(run_every=REFRESH_S)
def overview_tiles_fragment() -> None:
    """The KPI tiles, re-queried every REFRESH_S seconds without rerunning the page."""
    filters = current_filters()
    try:
        now, before = (
            query(overview_queries.overview, filters),
            query(overview_queries.overview, filters.previous()),
        )
    except Unavailable as exc:
        st.error(str(exc))
        return
    tiles = overview_tiles(now, before, _targets())
    for row in range(0, len(tiles), 3):
        for col, tile in zip(st.columns(3), tiles[row : row + 3], strict=False):
            with col:
                st.metric(
                    tile.label,
                    tile.value,
                    tile.delta,
                    delta_color=tile.delta_color,
                    help=tile.help,
                    border=True,
                )
                if tile.status:
                    mark = "" if tile.on_target is None else ("✅ " if tile.on_target else "⚠️ ")
                    st.caption(mark + tile.status)
    st.caption(
        f"Deltas compare with the {describe(filters.previous()).split(' · ')[0]} period. "
        f"Refreshed at {datetime.now(UTC):%H:%M:%S} UTC."
    )


def overview_page() -> None:
    filters = _header("Overview")
    health_view.alert_banner()
    if filters is None:
        return
    _targets_editor()
    overview_tiles_fragment()
    try:
        by_type = query(cost_queries.completion_by_task_type, filters)
        confidence = query(decision_queries.confidence_distribution, filters, 20)
        tools = query(overview_queries.tool_usage, filters)
        unused = overview_queries.never_called(
            query(overview_queries.declared_tools, filters), tools
        )
        errors = query(overview_queries.error_categories, filters)
    except Unavailable as exc:
        st.error(str(exc))
        return
    left, right = st.columns(2)
    left.plotly_chart(figures.completion_by_task_type(by_type))
    right.plotly_chart(figures.cost_by_task_type(by_type))
    left, right = st.columns(2)
    left.plotly_chart(figures.confidence_by_outcome(confidence, 20))
    right.plotly_chart(figures.error_categories(errors))
    st.subheader("Tool usage")
    table = figures.tool_usage_table(tools, unused)
    if table.rows:
        _table(
            table,
            {
                "error_rate": st.column_config.NumberColumn("error rate", format="percent"),
                "p95_latency_s": st.column_config.NumberColumn("p95 latency (s)", format="%.3f"),
                "never_called": st.column_config.CheckboxColumn("declared, never called"),
            },
        )
        if unused.rows:
            st.caption(figures.unused_tools_note(unused))
    else:
        st.info("No tool calls in this range.")


# --- Cost -----------------------------------------------------------------------------------------
def cost_page() -> None:
    filters = _header("Cost")
    if filters is None:
        return
    try:
        summary = query(cost_queries.cost_summary, filters)
        unpriced = query(cost_queries.unpriced_models, filters) if summary.unpriced_calls else None
        by_model = query(cost_queries.cost_over_time_by_model, filters)
        by_type_over_time = query(cost_queries.cost_over_time_by_task_type, filters)
        by_type = query(cost_queries.cost_by_task_type, filters)
        expensive = query(cost_queries.most_expensive_traces, filters, 20)
    except Unavailable as exc:
        st.error(str(exc))
        return
    cols = st.columns(5)
    cols[0].metric("Total spend", usd(summary.cost_usd), border=True)
    cols[1].metric("Cost per task", usd(summary.cost_per_task), border=True)
    cols[2].metric(
        "Cost per successful task",
        usd(summary.cost_per_successful_task),
        help="All spend, failed tasks included, divided by the completed tasks.",
        border=True,
    )
    cols[3].metric(
        "Spend in the top 5% of tasks",
        pct(summary.top_share),
        help=f"Share of spend in the {count(summary.top_tasks)} most expensive tasks.",
        border=True,
    )
    cols[4].metric(
        "Unpriced model calls",
        count(summary.unpriced_calls),
        help="Model calls with tokens whose model has no known price: not counted as $0.",
        border=True,
    )
    if unpriced is not None and unpriced.rows:
        calls = (
            "1 model call has"
            if summary.unpriced_calls == 1
            else f"{summary.unpriced_calls:,} model calls have"
        )
        st.warning(
            f"{calls} no known price, so the spend above leaves them out. Add their models "
            "to a prices file (`agentwatch collector --prices prices.toml`)."
        )
        _table(unpriced)
    left, right = st.columns(2)
    left.plotly_chart(figures.cost_over_time(by_model, "model"))
    right.plotly_chart(figures.cost_over_time(by_type_over_time, "task_type"))
    st.subheader("Cost per task type")
    if by_type.rows:
        shown = ["task_type", "tasks", "completed", "cost_usd", "cost_per_task", "cost_per_success"]
        _table(
            Rows(shown, [tuple(r[c] for c in shown) for r in by_type.dicts()]),
            {
                name: st.column_config.NumberColumn(name.replace("_", " "), format="$%.4f")
                for name in ("cost_usd", "cost_per_task", "cost_per_success")
            },
        )
    st.subheader("Most expensive tasks")
    if expensive.rows:
        _table(
            Rows(
                ["started", *expensive.columns[2:], "trace_id"],
                [
                    (when(r["start_ms"]), *list(r.values())[2:], r["trace_id"])
                    for r in expensive.dicts()
                ],
            ),
            {"cost_usd": st.column_config.NumberColumn("cost", format="$%.4f")},
        )
    else:
        st.info("No priced tasks in this range.")


# --- Decisions & confidence -----------------------------------------------------------------------
K_THRESHOLD: Final = "aw_threshold"


def decisions_page() -> None:
    filters = _header("Decisions & confidence")
    if filters is None:
        return
    try:
        calibration = query(decision_queries.calibration, filters, 10)
        explorer = query(decision_queries.threshold_explorer, filters)
        confidence = query(decision_queries.confidence_distribution, filters, 20)
    except Unavailable as exc:
        st.error(str(exc))
        return
    if not explorer.rows:
        st.info(
            "No decisions in this range. Record them with "
            "`aw.record_decision(name, confidence, thresholds=aw.Thresholds(...))`; "
            "`aw.record_feedback(ref, correct=...)` later says whether they were right."
        )
        return
    overall = decision_queries.threshold_summary(explorer, 0.0)
    reviewed = overall.auto_with_feedback
    cols = st.columns(3)
    cols[0].metric("Decisions", count(overall.decisions), border=True)
    cols[1].metric("With feedback", count(reviewed), border=True)
    cols[2].metric(
        "Correct per feedback",
        pct(overall.auto_accuracy),
        help="Share of reviewed decisions that feedback marked correct.",
        border=True,
    )
    st.plotly_chart(figures.calibration(calibration))
    if not reviewed:
        st.caption(
            "No feedback yet: calibration needs `aw.record_feedback(ref, correct=...)` "
            "in the decisions' traces."
        )
    st.subheader("Threshold explorer")
    threshold = st.slider(
        "Auto-approve decisions at confidence ≥", 0.0, 1.0, 0.85, 0.01, key=K_THRESHOLD
    )
    at = decision_queries.threshold_summary(explorer, threshold)
    cols = st.columns(3)
    cols[0].metric("Auto-approved", pct(at.auto_share), help=f"{at.auto:,} decisions", border=True)
    cols[1].metric(
        "Correct when auto-approved",
        pct(at.auto_accuracy),
        help=f"Per feedback on {at.auto_with_feedback:,} of them.",
        border=True,
    )
    cols[2].metric(
        "Correct below the threshold",
        pct(at.below_accuracy),
        help=f"Per feedback on {at.below_with_feedback:,} decisions sent to people.",
        border=True,
    )
    st.plotly_chart(figures.threshold_curve(explorer, threshold))
    st.plotly_chart(figures.confidence_by_task_type(confidence, 20))


# --- Traces ---------------------------------------------------------------------------------------
K_MIN_COST, K_OUTCOME, K_MODEL = "aw_min_cost", "aw_outcome", "aw_model"
K_ERRORS, K_TRACE, K_TRACE_ID = "aw_errors_only", "aw_trace", "aw_trace_id"
ANY: Final = "Any"


def _trace_label(row: dict[str, Any]) -> str:
    return (
        f"{when(row['start_ms']):%H:%M:%S} · {row['task_type'] or NONE} · {row['outcome']} · "
        f"{usd(row['cost_usd'])} · {row['trace_id'][:12]}"
    )


def traces_page() -> None:
    filters = _header("Traces")
    if filters is None:
        return
    try:
        models = query(sidebar_queries.filter_options, filters).models
    except Unavailable as exc:
        st.error(str(exc))
        return
    cols = st.columns(4)
    min_cost = cols[0].number_input(
        "Cost at least (USD)", min_value=0.0, value=0.0, step=0.001, format="%.4f", key=K_MIN_COST
    )
    outcome = cols[1].selectbox("Outcome", [ANY, *OUTCOMES], key=K_OUTCOME)
    model = cols[2].selectbox("Model", [ANY, *models], key=K_MODEL)
    errors_only = cols[3].checkbox("Errors only", key=K_ERRORS)
    trace_filters = TraceFilters(
        min_cost_usd=float(min_cost),
        outcome="" if outcome == ANY else str(outcome),
        model="" if model == ANY else str(model),
        errors_only=bool(errors_only),
    )
    try:
        traces = query(trace_queries.trace_list, filters, trace_filters, 200)
    except Unavailable as exc:
        st.error(str(exc))
        return
    rows = traces.dicts()
    st.caption(f"{len(rows)} tasks, newest first (at most 200).")
    if not rows:
        st.info("No traces match these filters.")
    else:
        _table(
            Rows(
                ["started", *traces.columns[2:], "trace_id"],
                [(when(r["start_ms"]), *list(r.values())[2:], r["trace_id"]) for r in rows],
            ),
            {"cost_usd": st.column_config.NumberColumn("cost", format="$%.4f")},
        )
    by_id = {r["trace_id"]: r for r in rows}
    chosen = st.selectbox(
        "Trace",
        list(by_id),
        format_func=lambda trace_id: _trace_label(by_id[trace_id]),
        key=K_TRACE,
    )
    linked = str(st.query_params.get("trace_id", "")).strip()
    if linked and K_TRACE_ID not in st.session_state:
        st.session_state[K_TRACE_ID] = linked  # /traces?trace_id=... (alerts link here)
    typed = st.text_input("…or open a trace by id", key=K_TRACE_ID).strip().lower()
    trace_id = typed or chosen
    if not trace_id:
        return
    try:
        spans = query(trace_queries.trace_spans, trace_id)
    except Unavailable as exc:
        st.error(str(exc))
        return
    if not spans.rows:
        st.warning(f"No spans found for trace {trace_id}.")
        return
    st.subheader(f"Trace {trace_id}")
    st.plotly_chart(figures.waterfall(spans))
    _table(spans)
    try:
        steps = query(trace_action_log, trace_id)
    except Unavailable as exc:
        st.error(str(exc))
        return
    st.download_button(
        "Download the action log (JSON lines)",
        json_lines(steps),
        file_name=f"trace-{trace_id}.jsonl",
        mime="application/jsonl",
        help="One step per line in order, as `agentwatch export trace` writes it (README).",
    )


# --- Audit of actions -----------------------------------------------------------------------------
K_AUDIT_TIER: Final = "audit_tier"
K_AUDIT_OUTCOME: Final = "audit_outcome"
K_AUDIT_TOOL: Final = "audit_tool"


def audit_page() -> None:
    st.title("Audit of actions")
    filters = current_filters()
    st.caption(describe(filters))
    calls, access = st.tabs(["Calls of writing tools", "Access patterns"])
    with calls:
        _writing_calls(filters)
    with access:
        _access_patterns(filters)


def _writing_calls(filters: Filters) -> None:
    st.caption(
        "Every call of a tool that writes (write_safe, write_risky, destructive), newest first, "
        "with the closest decision before it as its justification."
    )
    left, middle, right = st.columns(3)
    tier = left.selectbox("Tier", ["", *WRITING_TIERS], key=K_AUDIT_TIER, format_func=_all)
    outcome = middle.selectbox(
        "Outcome", ["", "ok", "error"], key=K_AUDIT_OUTCOME, format_func=_all
    )
    tool = right.text_input("Tool", key=K_AUDIT_TOOL).strip()
    try:
        actions = query(risky_actions, filters, tier=tier, tool=tool, outcome=outcome)
    except Unavailable as exc:
        st.error(str(exc))
        return
    rows = actions.dicts()
    if not rows:
        st.info("No calls of writing tools match these filters.")
        return
    st.caption(f"{len(rows)} calls, newest first (at most 1,000).")
    shown = Rows(
        ["time", *[c for c in actions.columns if c not in ("time_ms", "span_id", "at")]],
        [
            (
                when(r["time_ms"]),
                *[v for c, v in r.items() if c not in ("time_ms", "span_id", "at")],
            )
            for r in rows
        ],
    )
    _table(shown)
    st.download_button(
        "Download as CSV",
        _csv(shown),
        file_name="agentwatch-audit.csv",
        mime="text/csv",
    )


def _access_patterns(filters: Filters) -> None:
    st.caption(
        "Per agent, every tool it called and its tier, in this range and in the period of the "
        "same length before it. New: called now and not then."
    )
    try:
        patterns = query(access_patterns, filters)
    except Unavailable as exc:
        st.error(str(exc))
        return
    rows = patterns.dicts()
    if not rows:
        st.info("No tool calls in this range or the one before it.")
        return
    new = [r for r in rows if r["new"]]
    if new:
        st.warning(
            "New since the previous period: "
            + "; ".join(
                f"{r['agent'] or NONE} → {r['tool']} ({r['tier'] or 'no tier'})" for r in new
            )
        )
    st.dataframe(
        [
            {
                "agent": r["agent"],
                "tool": r["tool"],
                "tier": r["tier"],
                "calls": r["calls"],
                "previous period": r["previous_calls"],
                "change": "new" if r["new"] else "dropped" if r["dropped"] else "",
            }
            for r in rows
        ],
        hide_index=True,
    )


def _all(value: str) -> str:
    return value or "all"


def _csv(rows: Rows) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(rows.columns)
    writer.writerows(rows.rows)
    return out.getvalue()


# --- Review ---------------------------------------------------------------------------------------
def review_page() -> None:
    st.title("Review")
    filters = current_filters()
    st.caption(
        describe(filters) + " · decisions routed to people or flagged by a review rule, calls "
        "of write_risky and destructive tools, escalated and failed tasks; newest first"
    )
    review_view.review_page(filters)


# --- Health & alerts ------------------------------------------------------------------------------
def health_page() -> None:
    st.title("Health & alerts")
    filters = current_filters()
    st.caption(describe(filters))
    health_view.health_page(filters)

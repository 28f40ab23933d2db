"""The Health & alerts page and the Overview's alert banner.

``_views.health_page`` calls ``health_page(filters)``; ``_views.overview_page`` calls
``alert_banner()``. The page shows, top to bottom: alerts firing now and alerts that changed in
the selected range (from the alerts table the evaluator writes), each with what moved, by how
much, against what baseline, and links to its traces (``traces?trace_id=...``); every health
check (probe) with its status (its last result), last run, pass rate and last failure, and its
pass rate over time; and passive health (silent agents, longer answers, confidence drops) as of
the end of the selected range.

The figure builder and the text builders are plain functions (no Streamlit), tested directly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import plotly.graph_objects as go
import streamlit as st

from agentwatch.alerts._passive import check_passive_health, end_ns
from agentwatch.alerts._passive_detect import PassiveFinding, PassiveSettings
from agentwatch.dashboards._data import Unavailable, query
from agentwatch.dashboards._figures import mark_empty, new_figure
from agentwatch.dashboards._format import NONE, pct, when
from agentwatch.storage._alert_queries import active_alerts, recent_alerts
from agentwatch.storage._health_queries import (
    alerts_table_exists,
    health_checks,
    health_pass_rate,
)
from agentwatch.storage._scope import Filters
from agentwatch.storage._store import Rows

NO_CHECKS: Final = (
    "No health checks reported yet: register one with `@aw.health_check(name=..., "
    'expect=aw.expect.contains("..."), every_s=60)` on a function that asks your agent a '
    "question with a known answer, then call `aw.start_health_checks()` (or run it once with "
    "`agentwatch health run module:probe`)."
)
NO_ALERTS: Final = "No alerts: nothing is firing, and no alert fired or resolved in this range."
NO_TRAFFIC: Final = "No agent traffic from {start} to {end} to judge."
ALL_HEALTHY: Final = "No silent agents, no answers much longer than usual, no confidence drops."
PASSIVE: Final = PassiveSettings()
ACTIVE_LIMIT: Final = 50
RECENT_LIMIT: Final = 100
TRACE_LINKS: Final = 5
_MD_SPECIAL: Final = frozenset("\\`*_{}[]<>()#+!|~$")


# --- text ---------------------------------------------------------------------------------------
def md(text: str) -> str:
    """``text`` with Markdown's special characters escaped (reasons, summaries and names are
    data, never markup: a ``$`` would start a formula)."""
    return "".join(f"\\{c}" if c in _MD_SPECIAL else c for c in text)


def code(text: str) -> str:
    """``text`` as inline code (backticks inside become quotes)."""
    return "`" + text.replace("`", "'") + "`"


def stamp(epoch_ms: int | float | None) -> str:
    if epoch_ms is None:
        return NONE
    return f"{when(epoch_ms):%Y-%m-%d %H:%M:%S} UTC"


def trace_link(trace_id: str, label: str | None = None) -> str:
    """A Markdown link to the Traces page on ``trace_id`` (relative: works behind a prefix)."""
    return f"[{md(label or trace_id[:12])}](traces?trace_id={quote(trace_id, safe='')})"


def trace_links(trace_ids: Sequence[str], limit: int = TRACE_LINKS) -> str:
    if not trace_ids:
        return ""
    return "Traces: " + " · ".join(trace_link(t) for t in list(trace_ids)[:limit])


def _num(value: float) -> str:
    return f"{value:.4g}"


def change_text(value: float | None, baseline: float | None) -> str:
    """What the value is against its baseline (or threshold or budget), and by how much."""
    if value is None:
        return ""
    if baseline is None:
        return f"value {_num(value)}"
    text = f"value {_num(value)} vs baseline {_num(baseline)}"
    if baseline == 0:
        return text
    return f"{text} (x{value / baseline:.1f}, {value - baseline:+.4g})"


def alert_text(row: Mapping[str, Any]) -> str:
    """One alert as Markdown: rule, group, state and times, what moved, value against the
    baseline, and links to its traces."""
    group = row["group_key"] or "all"
    firing = row["state"] == "firing"
    if firing:
        head = f"**{md(row['rule'])}** · {code(group)} · firing since {stamp(row['fired_at_ms'])}"
    else:
        head = (
            f"**{md(row['rule'])}** · {code(group)} · resolved at {stamp(row['resolved_at_ms'])} "
            f"(fired {stamp(row['fired_at_ms'])})"
        )
    lines = [head, md(str(row["summary"] or ""))]
    change = change_text(row["value"], row["baseline"])
    if change:
        metric = row["metric"] or "value"
        lines.append(f"{code(metric)}: {change}")
    if not firing and row.get("resolved_summary"):
        lines.append("Resolved: " + md(str(row["resolved_summary"])))
    links = trace_links(list(row["trace_ids"] or ()))
    if links:
        lines.append(links)
    return "\n\n".join(line for line in lines if line)


def banner_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """The Overview's banner: how many alerts fire, and one line each."""
    n = len(rows)
    head = f"**{n} alert{'s' if n != 1 else ''} firing** (details on Health & alerts):"
    items = [
        f"- **{md(r['rule'])}** · {code(r['group_key'] or 'all')}: {md(str(r['summary'] or ''))}"
        for r in rows
    ]
    return "\n".join([head, "", *items])


def check_status(last_passed: int | bool | None) -> str:
    return "✅ passing" if last_passed else "❌ failing"


def failure_text(row: Mapping[str, Any]) -> str:
    """A check whose last run failed: when, which expectation, why, and its trace."""
    expectation = str(row["last_failed_expectation"] or "")
    reason = str(row["last_failure_reason"] or "")
    why = ": ".join(part for part in (md(expectation), md(reason)) if part) or "no reason recorded"
    text = (
        f"**{md(row['check'])}** failed its last run at {stamp(row['last_run_ms'])}: {why} "
        f"(passed {row['passed']} of {row['runs']} runs in this range)"
    )
    if row["last_trace_id"]:
        text += " · " + trace_link(str(row["last_trace_id"]), "trace")
    return text


def checks_table(rows: Rows) -> Rows:
    """The health checks table: status first, times as datetimes."""
    columns = [
        "status",
        "check",
        "last_run",
        "pass_rate",
        "runs",
        "last_failure",
        "failed_expectation",
        "reason",
        "services",
    ]
    out = [
        (
            check_status(r["last_passed"]),
            r["check"],
            when(r["last_run_ms"]),
            r["pass_rate"],
            r["runs"],
            when(r["last_failure_ms"]) if r["last_failure_ms"] is not None else None,
            r["last_failed_expectation"],
            r["last_failure_reason"],
            r["services"],
        )
        for r in rows.dicts()
    ]
    return Rows(columns, out)


def passive_status(breaching: bool | None) -> str:
    if breaching is None:
        return "❔ cannot tell"
    return "⚠️ unhealthy" if breaching else "✅ healthy"


def no_traffic_text(end: datetime, settings: PassiveSettings = PASSIVE) -> str:
    """No agent ran in the windows passive health reads (they end ``settle_s`` before ``end``)."""
    last_ns = end_ns(end, settings)
    first_ns = last_ns - (settings.baseline_windows + 1) * settings.window_s * 1_000_000_000
    return NO_TRAFFIC.format(start=stamp(first_ns / 1e6), end=stamp(last_ns / 1e6))


def passive_text(finding: PassiveFinding) -> str:
    return f"**{finding.title}: {md(finding.subject)}** · {md(finding.summary)}"


def passive_table(findings: Sequence[PassiveFinding]) -> Rows:
    return Rows(
        ["status", "signal", "subject", "summary"],
        [
            (passive_status(finding.breaching), finding.title, finding.subject, finding.summary)
            for finding in findings
        ],
    )


# --- figures ------------------------------------------------------------------------------------
def pass_rate_figure(rows: Rows) -> go.Figure:
    """One line per health check: the share of its runs that passed, per time bucket (from
    ``health_pass_rate``). Hover shows passed of runs."""
    fig = new_figure("Health check pass rate")
    data = rows.dicts()
    if not data:
        return mark_empty(fig, "No health check runs in this range")
    by_check: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in data:
        by_check[str(row["check"])].append(row)
    for check, points in by_check.items():
        fig.add_trace(
            go.Scatter(
                name=check,
                x=[datetime.fromtimestamp(int(p["bucket_start"]), UTC) for p in points],
                y=[float(p["pass_rate"]) for p in points],
                mode="lines+markers",
                customdata=[[int(p["passed"]), int(p["runs"])] for p in points],
                hovertemplate="%{x}: %{y:.0%} (%{customdata[0]} of %{customdata[1]} runs)"
                "<extra>" + check + "</extra>",
            )
        )
    fig.update_yaxes(title="passed", tickformat=".0%", range=[-0.05, 1.05])
    return fig


# --- Streamlit ----------------------------------------------------------------------------------
def alert_banner() -> None:
    """On the Overview: the alerts firing now, only when there are any. Says nothing when the
    store cannot be read (the page's own header says so) or has no alerts table."""
    try:
        if not query(alerts_table_exists):
            return
        active = query(active_alerts, limit=ACTIVE_LIMIT).dicts()
    except Unavailable:
        return
    if not active:
        return
    show = st.error if any(r["severity"] == "critical" for r in active) else st.warning
    show(banner_text(active), icon="🚨")


def _since_ms(filters: Filters) -> int:
    return 0 if filters.start is None else round(filters.start.timestamp() * 1000)


def _alerts(filters: Filters) -> None:
    st.header("Alerts")
    if not query(alerts_table_exists):
        st.info(NO_ALERTS)
        return
    active = query(active_alerts, limit=ACTIVE_LIMIT).dicts()
    recent = query(recent_alerts, since_ms=_since_ms(filters), limit=RECENT_LIMIT).dicts()
    if not active and not recent:
        st.info(NO_ALERTS)
        return
    st.subheader(f"Firing now ({len(active)})")
    if not active:
        st.success("Nothing is firing.")
    for row in active:
        show = st.error if row["severity"] == "critical" else st.warning
        show(alert_text(row))
    resolved = [r for r in recent if r["state"] != "firing"]
    st.subheader(f"Resolved in this range ({len(resolved)})")
    if not resolved:
        st.caption("No alert resolved in this range.")
    for row in resolved:
        st.container(border=True).markdown("✅ " + alert_text(row))


def _checks(filters: Filters) -> None:
    st.header("Health checks")
    checks = query(health_checks, filters)
    if not checks.rows:
        st.info(NO_CHECKS)
        return
    rows = checks.dicts()
    failing = [r for r in rows if not r["last_passed"]]
    cols = st.columns(3)
    cols[0].metric("Health checks", f"{len(rows):,}", border=True)
    cols[1].metric("Failing now", f"{len(failing):,}", border=True)
    runs = sum(int(r["runs"]) for r in rows)
    passed = sum(int(r["passed"]) for r in rows)
    cols[2].metric("Runs passed", pct(passed / runs if runs else None), border=True)
    for row in failing:
        st.error(failure_text(row))
    st.dataframe(
        checks_table(checks).dicts(),
        hide_index=True,
        column_config={
            "pass_rate": st.column_config.NumberColumn("pass rate", format="percent"),
            "last_run": st.column_config.DatetimeColumn("last run (UTC)"),
            "last_failure": st.column_config.DatetimeColumn("last failure (UTC)"),
            "failed_expectation": st.column_config.TextColumn("failed expectation"),
        },
    )
    st.plotly_chart(pass_rate_figure(query(health_pass_rate, filters)))


def _passive(filters: Filters) -> None:
    st.header("Passive health")
    end = filters.end or datetime.now(UTC)
    window_min = PASSIVE.window_s / 60
    hours = PASSIVE.window_s * PASSIVE.baseline_windows / 3600
    st.caption(
        f"From the spans agents already send, as of {end:%Y-%m-%d %H:%M:%S} UTC: the last "
        f"{window_min:g} minutes against the {PASSIVE.baseline_windows} windows "
        f"({hours:g} h) before. Health-check traffic does not count."
    )
    findings = query(check_passive_health, end, PASSIVE, filters.scope)
    if not findings:
        st.info(no_traffic_text(end))
        return
    unhealthy = [x for x in findings if x.breaching]
    for finding in unhealthy:
        st.warning(passive_text(finding))
    if not unhealthy:
        st.success(ALL_HEALTHY)
    st.dataframe(passive_table(findings).dicts(), hide_index=True)


def health_page(filters: Filters) -> None:
    """The Health & alerts page below its title and caption."""
    try:
        _alerts(filters)
        _checks(filters)
        _passive(filters)
    except Unavailable as exc:
        st.error(str(exc))

"""The Health & alerts page and the Overview's alert banner, rendered with Streamlit's AppTest
against a seeded store read through the collector's query endpoint, and the page's figure and
text builders.

The seeded store is its own database on the fleet's chDB engine: health-check runs (one check
passing throughout, one whose last runs failed with a reason), an agent that stopped 20 minutes
ago after hours of traffic, and alerts recorded with the storage functions the evaluator uses
(one firing, one fired and resolved).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from agentwatch.dashboards import _data
from agentwatch.dashboards import _health_view as health_view
from agentwatch.storage import _alert_queries as alert_queries
from agentwatch.storage import _health_queries as health_queries
from agentwatch.storage._scope import Filters
from agentwatch.storage._store import EmbeddedStore, Rows, apply_migrations
from tests.alerts.workload import NS, Spans, ns
from tests.storage.fleet import Fleet

from .conftest import PAGE_DIR
from .test_pages import texts

DATABASE = "agentwatch_health_page"
FAILING, PASSING = "refund-policy", "greeting"
EXPECTATION = "contains('30 days')"
REASON = "the answer does not contain '30 days': 'Returns within $14 days_'"
FIRING_SUMMARY = (
    "cost_per_task rose to 0.1 from a baseline of 0.02 "
    "(x5.0, robust z 12.0 over 24 windows, 40 tasks now)"
)
RESOLVED_SUMMARY = "error_rate rose to 0.3 from a baseline of 0.02"
FIRING_TRACES = ("a" * 32, "b" * 32)


@dataclass(frozen=True)
class Seeded:
    url: str
    store: EmbeddedStore
    now: datetime
    runs: dict[str, list[bool]]  # per check, oldest first


def _probes(spans: Spans, now_ns: int) -> dict[str, list[bool]]:
    """Runs every 2 minutes over the last 30: ``greeting`` always passes; ``refund-policy``
    passes, then fails its last 3 runs."""
    runs: dict[str, list[bool]] = {FAILING: [], PASSING: []}
    for k in range(15, 0, -1):
        moment = now_ns - k * 120 * NS
        spans.probe(moment, check=PASSING)
        runs[PASSING].append(True)
        passed = k > 3
        spans.probe(
            moment + NS,
            check=FAILING,
            passed=passed,
            expectation="" if passed else EXPECTATION,
            reason="" if passed else REASON,
        )
        runs[FAILING].append(passed)
    return runs


def _alerts(now_ms: int) -> list[alert_queries.AlertRow]:
    firing = alert_queries.AlertRow(
        incident_id="inc-firing",
        rule="refund cost per task",
        kind="anomaly",
        severity="warning",
        metric="cost_per_task",
        group_key="task_type=refund",
        state="firing",
        fired_at_ms=now_ms - 600_000,
        resolved_at_ms=None,
        updated_at_ms=now_ms - 600_000,
        value=0.1,
        baseline=0.02,
        score=12.0,
        summary=FIRING_SUMMARY,
        trace_ids=FIRING_TRACES,
    )
    fired = alert_queries.AlertRow(
        incident_id="inc-resolved",
        rule="error rate spike",
        kind="anomaly",
        severity="critical",
        metric="error_rate",
        group_key="task_type=billing",
        state="firing",
        fired_at_ms=now_ms - 1_500_000,
        resolved_at_ms=None,
        updated_at_ms=now_ms - 1_500_000,
        value=0.3,
        baseline=0.02,
        score=9.0,
        summary=RESOLVED_SUMMARY,
        trace_ids=("c" * 32,),
    )
    resolved = alert_queries.AlertRow(
        incident_id="inc-resolved",
        rule="error rate spike",
        kind="anomaly",
        severity="critical",
        metric="error_rate",
        group_key="task_type=billing",
        state="resolved",
        fired_at_ms=now_ms - 1_500_000,
        resolved_at_ms=now_ms - 900_000,
        updated_at_ms=now_ms - 900_000,
        value=0.02,
        baseline=0.02,
        score=0.0,
        summary="error_rate back to 0.02",
    )
    return [firing, fired, resolved]


@pytest.fixture(scope="module")
def seeded(fleet: Fleet) -> Iterator[Seeded]:
    store = EmbeddedStore(fleet.store.path, database=DATABASE)  # one more connection
    try:
        apply_migrations(store)
        now = datetime.now(UTC)
        now_ns = ns(now)
        spans = Spans()
        runs = _probes(spans, now_ns)
        # An agent that ran every 5 minutes for four and a half hours, until 20 minutes ago.
        for k in range(54, 3, -1):
            spans.task(now_ns - k * 300 * NS, agent="tracker", task_type="order_status")
        store.insert_arrow("otel_traces", spans.table())
        alert_queries.record_alerts(store, _alerts(now_ns // 1_000_000))
        yield Seeded(fleet.url_for(DATABASE), store, now, runs)
    finally:
        store.close()


def _point_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv(_data.ENV_URL, url)
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def health_page(entry: Path, seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    _point_at(monkeypatch, seeded.url)
    return _open(entry, "health")


def _open(entry: Path, page: str) -> AppTest:
    at = AppTest.from_file(entry, default_timeout=60).run()
    assert not at.exception, at.exception
    if page != "overview":
        at.switch_page(str(PAGE_DIR / f"{page}.py")).run()
        assert not at.exception, at.exception
    return at


# --- the page -------------------------------------------------------------------------------------
def test_each_health_check_shows_its_status_pass_rate_and_last_failure(
    health_page: AppTest, seeded: Seeded
) -> None:
    table = {row["check"]: row for row in health_page.dataframe[0].value.to_dict("records")}
    assert {check: row["status"] for check, row in table.items()} == {
        FAILING: "❌ failing",
        PASSING: "✅ passing",
    }
    for check, runs in seeded.runs.items():
        assert table[check]["runs"] == len(runs)
        assert table[check]["pass_rate"] == pytest.approx(sum(runs) / len(runs))
    assert table[FAILING]["failed_expectation"] == EXPECTATION
    assert table[FAILING]["reason"] == REASON
    assert table[PASSING]["reason"] == ""
    assert {m.label: m.value for m in health_page.metric}["Failing now"] == "1"


def test_a_failing_check_says_why_and_links_its_trace(health_page: AppTest) -> None:
    (failure,) = [e for e in texts(health_page.error) if FAILING in e]
    assert failure.startswith(f"**{FAILING}** failed its last run at ")
    assert f"{health_view.md(EXPECTATION)}: {health_view.md(REASON)}" in failure
    assert "(passed 12 of 15 runs in this range)" in failure
    assert "](traces?trace_id=" in failure


def test_the_pass_rate_is_drawn_per_check(health_page: AppTest) -> None:
    (chart,) = health_page.get("plotly_chart")
    assert {line["name"] for line in json.loads(chart.proto.spec)["data"]} == {FAILING, PASSING}


def test_a_firing_alert_says_what_moved_against_what_baseline_with_trace_links(
    health_page: AppTest,
) -> None:
    (alert,) = [w for w in texts(health_page.warning) if "refund cost per task" in w]
    assert alert.startswith("**refund cost per task** · `task_type=refund` · firing since ")
    assert health_view.md(FIRING_SUMMARY) in alert
    assert "`cost_per_task`: value 0.1 vs baseline 0.02 (x5.0, +0.08)" in alert
    for trace_id in FIRING_TRACES:
        assert f"](traces?trace_id={trace_id})" in alert


def test_a_resolved_alert_is_listed_with_when_it_resolved(health_page: AppTest) -> None:
    (resolved,) = [m for m in texts(health_page.markdown) if "error rate spike" in m]
    assert resolved.startswith("✅ **error rate spike** · `task_type=billing` · resolved at ")
    assert health_view.md(RESOLVED_SUMMARY) in resolved
    assert "Resolved: error\\_rate back to 0.02" in resolved


def test_passive_health_flags_the_agent_that_went_silent(health_page: AppTest) -> None:
    (silent,) = [e for e in texts(health_page.warning) if "Silent agent" in e]
    assert silent.startswith("**Silent agent: tracker** · no runs in the last 15 min; it ran in")


def test_a_store_without_checks_or_alerts_says_how_to_get_them(
    entry: Path, fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    _point_at(monkeypatch, fleet.empty_url)  # a span table only: no alerts table either
    at = _open(entry, "health")
    assert not at.error, texts(at.error)
    alerts, checks, traffic = texts(at.info)
    assert (alerts, checks) == (health_view.NO_ALERTS, health_view.NO_CHECKS)
    assert traffic.startswith("No agent traffic from ")


# --- the Overview banner --------------------------------------------------------------------------
def test_the_overview_banner_lists_the_firing_alerts(
    entry: Path, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    _point_at(monkeypatch, seeded.url)
    at = _open(entry, "overview")
    (banner,) = texts(at.warning)
    assert banner.startswith("**1 alert firing** (details on Health & alerts):")
    assert (
        f"- **refund cost per task** · `task_type=refund`: {health_view.md(FIRING_SUMMARY)}"
        in banner
    )


def test_the_overview_has_no_banner_without_firing_alerts(
    entry: Path, fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    _point_at(monkeypatch, fleet.query_url)
    at = _open(entry, "overview")
    assert not at.warning
    assert not at.error


# --- figure and text builders ---------------------------------------------------------------------
def test_the_pass_rate_figure_has_a_line_per_check_with_its_rates(seeded: Seeded) -> None:
    filters = Filters.last(timedelta(hours=1), now=seeded.now + timedelta(seconds=1))
    rows = health_queries.health_pass_rate(seeded.store, filters, bucket_s=600)
    fig = health_view.pass_rate_figure(rows)
    lines = {trace.name: trace for trace in fig.data}
    assert set(lines) == {FAILING, PASSING}
    assert set(lines[PASSING].y) == {1.0}
    failing = lines[FAILING]
    passed = sum(p for p, _ in failing.customdata)
    runs = sum(n for _, n in failing.customdata)
    assert (passed, runs) == (12, 15)
    assert all(x.tzinfo is UTC for x in failing.x)
    assert fig.layout.yaxis.tickformat == ".0%"


def test_the_pass_rate_figure_without_runs_says_so() -> None:
    fig = health_view.pass_rate_figure(
        Rows(["check", "bucket_start", "runs", "passed", "pass_rate"], [])
    )
    assert not fig.data
    assert [a.text for a in fig.layout.annotations] == ["No health check runs in this range"]


@pytest.mark.parametrize(
    ("value", "baseline", "text"),
    [
        (0.1, 0.02, "value 0.1 vs baseline 0.02 (x5.0, +0.08)"),
        (3.0, 0.0, "value 3 vs baseline 0"),
        (12.5, None, "value 12.5"),
        (None, 1.0, ""),
    ],
)
def test_change_text_says_how_far_from_the_baseline(
    value: float | None, baseline: float | None, text: str
) -> None:
    assert health_view.change_text(value, baseline) == text


def test_no_traffic_names_the_hours_passive_health_read() -> None:
    end = datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)  # windows end 30 s (settle) earlier
    assert health_view.no_traffic_text(end) == (
        "No agent traffic from 2030-01-01 07:45:00 UTC to 2030-01-01 12:00:00 UTC to judge."
    )


def test_data_is_escaped_not_read_as_markdown() -> None:
    assert health_view.md("costs $5 *now* [x](y) a_b") == r"costs \$5 \*now\* \[x\]\(y\) a\_b"

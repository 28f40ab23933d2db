"""Every page rendered with Streamlit's AppTest, reading the seeded collector's query endpoint
through clickhouse-connect exactly as ``agentwatch up`` runs the dashboard."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from agentwatch.dashboards import _data, _health_view, _views
from agentwatch.dashboards import _format as fmt
from agentwatch.storage import _cost_queries as cost_queries
from agentwatch.storage._scope import Filters
from tests.storage import reference as ref
from tests.storage.fleet import Fleet

from .conftest import APP, PAGE_DIR

PAGES = ("overview", "cost", "decisions", "traces", "review", "audit", "health")


@pytest.fixture
def url(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv(_data.ENV_URL, fleet.query_url)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield fleet.query_url
    st.cache_resource.clear()  # closes nothing by itself; drop the clients


def open_page(entry: Path, page: str = "overview") -> AppTest:
    at = AppTest.from_file(entry, default_timeout=60).run()
    assert not at.exception, at.exception
    if page != "overview":
        switch(at, page)
    return at


def switch(at: AppTest, page: str) -> None:
    at.switch_page(str(PAGE_DIR / f"{page}.py")).run()  # absolute: joined as it is
    assert not at.exception, at.exception


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def deltas(at: AppTest) -> dict[str, str]:
    return {m.label: m.delta for m in at.metric}


def texts(elements: object) -> list[str]:
    return [e.value for e in elements]  # type: ignore[attr-defined]


# --- every page -----------------------------------------------------------------------------------
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_errors(entry: Path, url: str, page: str) -> None:
    at = open_page(entry, page)
    assert not at.error, texts(at.error)
    if page == "health":
        infos = texts(at.info)  # the fleet sends no probes and the evaluator does not run
        assert _health_view.NO_CHECKS in infos
        assert _health_view.NO_ALERTS in infos
    else:
        assert at.title[0].value in {
            "Overview",
            "Cost",
            "Decisions & confidence",
            "Traces",
            "Review",
            "Audit of actions",
        }
        assert at.metric or page in ("traces", "audit")


# --- Overview -------------------------------------------------------------------------------------
def expected_tiles(fleet: Fleet, filters: Filters) -> dict[str, str]:
    """The tile values, recomputed from the raw rows (the seeded data is all in the last hour)."""
    want = ref.overview(fleet.spans, filters)
    tasks = want["tasks"]
    return {
        "Tasks": fmt.count(tasks),
        "Task completion": fmt.pct(want["completed"] / tasks),
        "Escalation rate": fmt.pct(want["escalated"] / tasks),
        "Cost per task": fmt.usd(want["cost_usd"] / tasks),
        "Iterations per task": fmt.number(want["avg_iterations"]),
        "Tool error rate": fmt.pct(want["tool_errors"] / want["tool_calls"]),
        "Limit exceeded": fmt.pct(want["limit_exceeded"] / tasks),
        "Agent latency p50": fmt.seconds(want["p50_latency_s"]),
        "Agent latency p95": fmt.seconds(want["p95_latency_s"]),
    }


def test_overview_tiles_show_the_numbers_of_the_raw_rows(
    entry: Path, fleet: Fleet, url: str
) -> None:
    at = open_page(entry)
    assert metrics(at) == expected_tiles(fleet, Filters())
    assert metrics(at)["Tasks"] == "246"
    # The hour before the seeded data is empty: no trends to show yet.
    assert set(deltas(at).values()) == {""}
    captions = texts(at.caption)
    assert (
        "⚠️ target ≥ 85.0% · off target" in captions or "✅ target ≥ 85.0% · on target" in captions
    )
    assert len(at.get("plotly_chart")) == 4
    assert len(at.dataframe) == 1  # tool usage


def test_overview_flags_declared_tools_never_called(entry: Path, url: str) -> None:
    """The demo agent declares close_account and never calls it: the tool table lists it, with
    no calls, and a caption says who declares it."""
    at = open_page(entry)
    table = at.dataframe[0].value
    never_called = list(table.loc[table["never_called"], "tool"])
    assert never_called == ["close_account"]
    assert list(table.loc[table["never_called"], "calls"]) == [0]
    assert "Declared but never called in this range: close_account (declared by support)." in (
        texts(at.caption)
    )


def test_sidebar_filters_change_every_tile(entry: Path, fleet: Fleet, url: str) -> None:
    at = open_page(entry)
    at.selectbox(key=_views.K_TASK_TYPE).set_value("refund").run()
    at.selectbox(key=_views.K_ENV).set_value("prod").run()
    assert not at.exception
    assert metrics(at) == expected_tiles(fleet, Filters(task_type="refund", environment="prod"))
    # The filters persist across pages.
    switch(at, "cost")
    summary = cost_queries.cost_summary(
        fleet.store, Filters(task_type="refund", environment="prod")
    )
    assert metrics(at)["Total spend"] == fmt.usd(summary.cost_usd)


def test_targets_are_configurable(entry: Path, url: str) -> None:
    at = open_page(entry)
    at.number_input(key=_views.K_TARGET_PREFIX + "completion_rate").set_value(0.0).run()
    assert "✅ target ≥ 0.0% · on target" in texts(at.caption)
    at.number_input(key=_views.K_TARGET_PREFIX + "completion_rate").set_value(1.0).run()
    assert "⚠️ target ≥ 100.0% · off target" in texts(at.caption)


def test_custom_time_range(entry: Path, fleet: Fleet, url: str) -> None:
    at = open_page(entry)
    at.selectbox(key=_views.K_RANGE).set_value("Custom (UTC)").run()
    start = fleet.started.replace(second=0, microsecond=0)
    end = (fleet.finished + timedelta(minutes=1)).replace(second=0, microsecond=0)
    at.datetime_input(key=_views.K_FROM).set_value(start.replace(tzinfo=None))
    at.datetime_input(key=_views.K_TO).set_value(end.replace(tzinfo=None))
    at.run()
    assert not at.exception
    assert metrics(at) == expected_tiles(fleet, Filters(start=start, end=end))
    assert f"{start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC" in texts(at.caption)


def test_a_range_without_spans_says_where_the_data_is(entry: Path, url: str) -> None:
    at = open_page(entry)
    at.selectbox(key=_views.K_RANGE).set_value("Custom (UTC)").run()
    at.datetime_input(key=_views.K_FROM).set_value(datetime(2001, 1, 1, 0, 0))  # noqa: DTZ001 - the widget is naive, read as UTC
    at.datetime_input(key=_views.K_TO).set_value(datetime(2001, 1, 1, 1, 0))  # noqa: DTZ001
    at.run()
    assert not at.exception
    (info,) = texts(at.info)
    assert info.startswith("No spans in this time range. The newest span is from 20")
    assert not at.metric


def test_no_data_at_all_tells_how_to_get_some(
    entry: Path, fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(_data.ENV_URL, fleet.empty_url)
    for page in ("overview", "cost", "decisions", "traces"):
        at = open_page(entry, page)
        assert texts(at.info) == [_views.NO_DATA], page
        assert "agentwatch up --demo" in _views.NO_DATA


def test_an_unreachable_store_is_an_error_message_not_a_crash(
    entry: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        monkeypatch.setenv(_data.ENV_URL, f"http://reader:hunter2@127.0.0.1:{port}/agentwatch")
        st.cache_resource.clear()
        at = open_page(entry)
    (error,) = texts(at.error)
    assert error.startswith(
        f"Cannot read ClickHouse at http://reader:***@127.0.0.1:{port}/agentwatch"
    )
    assert "agentwatch up" in error
    assert "hunter2" not in error


def test_a_deep_link_on_a_fresh_server_still_gets_the_sidebar(fleet: Fleet, url: str) -> None:
    """Run ``app.py`` where it lives, next to ``pages/``: Streamlit's legacy pages-directory
    mode then runs ``pages/cost.py`` alone first; the page must rerun itself through app.py."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("pages/cost.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Cost"
    assert [s.key for s in at.sidebar.selectbox] == [
        _views.K_RANGE,
        _views.K_SERVICE,
        _views.K_AGENT,
        _views.K_TASK_TYPE,
        _views.K_ENV,
    ]
    summary = cost_queries.cost_summary(fleet.store, Filters())
    assert metrics(at)["Total spend"] == fmt.usd(summary.cost_usd)
    at.sidebar.selectbox(key=_views.K_SERVICE).set_value("billing-fleet").run()  # legacy again
    billing = cost_queries.cost_summary(fleet.store, Filters(service="billing-fleet"))
    assert metrics(at)["Total spend"] == fmt.usd(billing.cost_usd)


def test_a_malformed_url_is_an_error_message_not_a_crash(
    entry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(_data.ENV_URL, "localhost:8123")
    at = open_page(entry)
    (error,) = texts(at.error)
    assert error.startswith("Cannot read ClickHouse at localhost:8123: ")
    assert "http://user:pass@host:8123/db" in error


# --- Cost -----------------------------------------------------------------------------------------
def test_cost_page(entry: Path, fleet: Fleet, url: str) -> None:
    at = open_page(entry, "cost")
    filters = Filters()
    costs = ref.trace_costs(fleet.spans, filters)
    total = sum(costs.values())
    tasks = ref.tasks(fleet.spans, filters)
    completed = sum(t.outcome == "completed" for t in tasks.values())
    top = sorted(costs.values(), reverse=True)[: -(-len(tasks) // 20)]
    assert metrics(at) == {
        "Total spend": fmt.usd(total),
        "Cost per task": fmt.usd(total / len(tasks)),
        "Cost per successful task": fmt.usd(total / completed),
        "Spend in the top 5% of tasks": fmt.pct(sum(top) / total),
        "Unpriced model calls": "1",
    }
    (warning,) = texts(at.warning)
    assert warning.startswith("1 model call has no known price")
    tables = at.dataframe
    assert len(tables) == 3  # unpriced models, cost per task type, most expensive tasks
    assert list(tables[0].value["model"]) == ["my-finetune-x"]
    assert len(at.get("plotly_chart")) == 2


# --- Decisions & confidence -----------------------------------------------------------------------
def test_decisions_page_and_threshold_slider(entry: Path, fleet: Fleet, url: str) -> None:
    at = open_page(entry, "decisions")
    filters = Filters()
    pairs = ref.decisions(fleet.spans, filters)
    fb = ref.feedback(fleet.spans, filters)
    reviewed = [d for d, _ in pairs if d.trace_id in fb]
    assert metrics(at)["Decisions"] == fmt.count(len(pairs))
    assert metrics(at)["With feedback"] == fmt.count(len(reviewed))
    assert metrics(at)["Correct per feedback"] == fmt.pct(
        sum(fb[d.trace_id] for d in reviewed) / len(reviewed)
    )
    at.slider(key=_views.K_THRESHOLD).set_value(0.7).run()
    assert not at.exception
    auto = [d for d, _ in pairs if ref.bucket(d.confidence or 0.0, 100) >= 70]
    auto_reviewed = [d for d in auto if d.trace_id in fb]
    assert metrics(at)["Auto-approved"] == fmt.pct(len(auto) / len(pairs))
    assert metrics(at)["Correct when auto-approved"] == fmt.pct(
        sum(fb[d.trace_id] for d in auto_reviewed) / len(auto_reviewed)
    )
    assert len(at.get("plotly_chart")) == 3


# --- Traces ---------------------------------------------------------------------------------------
def test_traces_page_lists_filters_and_opens_a_trace(entry: Path, fleet: Fleet, url: str) -> None:
    at = open_page(entry, "traces")
    assert not at.error
    table, spans = at.dataframe  # the trace list, and the spans of the selected trace
    assert len(table.value) == 200  # 246 tasks, the newest 200
    newest = max(ref.tasks(fleet.spans, Filters()).values(), key=lambda t: t.start)
    assert at.selectbox(key=_views.K_TRACE).value == newest.trace_id
    assert len(at.get("plotly_chart")) == 1  # the newest trace's waterfall
    assert set(spans.value["span_id"]) == {
        s.span_id for s in fleet.spans if s.trace_id == newest.trace_id
    }
    # The trace can be taken away as its action log (the lines `agentwatch export trace` writes).
    (download,) = at.get("download_button")
    assert download.proto.label == "Download the action log (JSON lines)"

    at.checkbox(key=_views.K_ERRORS).check().run()
    at.selectbox(key=_views.K_OUTCOME).set_value("failed").run()
    failed = [t for t in ref.tasks(fleet.spans, Filters()).values() if t.outcome == "failed"]
    table = at.dataframe[0]
    assert len(table.value) == len(failed)
    assert set(table.value["outcome"]) == {"failed"}

    triage = next(t for t in ref.tasks(fleet.spans, Filters()).values() if t.task_type == "triage")
    at.text_input(key=_views.K_TRACE_ID).set_value(triage.trace_id).run()
    assert not at.exception
    assert at.subheader[-1].value == f"Trace {triage.trace_id}"
    spans_table = at.dataframe[-1]
    assert list(spans_table.value["name"]) == [
        "invoke_agent router",
        "chat gpt-4o-mini",
        "invoke_agent worker",
        "chat gpt-4o",
    ]


def test_audit_page_lists_every_writing_call_and_narrows_by_tier(
    entry: Path, fleet: Fleet, url: str
) -> None:
    from agentwatch.storage._audit_queries import risky_actions

    at = open_page(entry, "audit")
    assert not at.error, texts(at.error)
    everything = risky_actions(fleet.store, Filters()).dicts()
    assert {r["tier"] for r in everything} == {"write_risky"}  # what the demo fleet calls
    table, _access = at.dataframe  # the calls tab, then the access-pattern tab
    assert len(table.value) == len(everything)
    assert set(table.value["tool"]) == {r["tool"] for r in everything}
    (download,) = at.get("download_button")
    assert download.proto.label == "Download as CSV"

    at.selectbox(key=_views.K_AUDIT_TIER).set_value("write_risky").run()
    assert len(at.dataframe[0].value) == len(everything)
    at.selectbox(key=_views.K_AUDIT_TIER).set_value("destructive").run()
    assert not at.exception
    assert len(at.dataframe) == 1  # only the access patterns are left
    assert texts(at.info) == ["No calls of writing tools match these filters."]


def test_audit_page_reviews_each_agents_access_patterns(
    entry: Path, fleet: Fleet, url: str
) -> None:
    at = open_page(entry, "audit")
    access = at.dataframe[-1].value

    tools = {
        (s.attrs.get("gen_ai.tool.name"), s.attrs.get("agentwatch.tool.tier", ""))
        for s in fleet.spans
        if s.operation == "execute_tool"
    }
    assert set(zip(access["tool"], access["tier"], strict=True)) == tools
    # The fleet ran minutes ago, so the previous hour saw none of it: every tool is new.
    assert set(access["change"]) == {"new"}
    (warning,) = at.warning
    assert warning.value.startswith("New since the previous period: ")


def test_an_unknown_trace_id_is_a_warning(entry: Path, url: str) -> None:
    at = open_page(entry, "traces")
    at.text_input(key=_views.K_TRACE_ID).set_value("f" * 32).run()
    assert texts(at.warning) == [f"No spans found for trace {'f' * 32}."]

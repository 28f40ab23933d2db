"""The evaluator's queries, on hand-made spans whose answers are known, on both backends.

``embedded`` runs them in chDB in this process; ``server`` sends them through ServerStore's
clickhouse-connect client over real HTTP to the collector's ClickHouse HTTP endpoint (writes
enabled) in front of the same engine: one SQL dialect, two protocols.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentwatch.query._endpoint import QueryEndpoint
from agentwatch.storage import _alert_queries as alert_queries
from agentwatch.storage._schema import SPANS_TABLE, alerts_table_ddl
from agentwatch.storage._store import ServerStore, Store

from .conftest import new_store
from .workload import NS, Spans

W = 300
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
END = round(NOW.timestamp()) * NS
ODD = "it's a \\ back\tslash"


@pytest.fixture(params=["embedded", "server"])
def backend(request: pytest.FixtureRequest, engine_dir: Path) -> Iterator[Store]:
    embedded = new_store(engine_dir)
    try:
        if request.param == "embedded":
            yield embedded
            return
        with QueryEndpoint(embedded, port=0, allow_write=True) as endpoint:
            server = ServerStore(endpoint.client_url(embedded.database))
            try:
                yield server
            finally:
                server.close()
    finally:
        embedded.close()


def insert(store: Store, spans: Spans) -> None:
    store.insert_arrow(SPANS_TABLE, spans.table())


def windows(store: Store, **options: object) -> list[dict[str, object]]:
    rows = alert_queries.task_windows(store, end_ns=END, window_s=W, windows=3, **options)  # type: ignore[arg-type]
    return [
        {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}
        for row in rows.dicts()
    ]


def test_task_windows_sum_each_group_per_window(backend: Store) -> None:
    spans = Spans()
    spans.task(END - 10 * NS, task_type="refund", cost=0.1, outcome="failed", duration_ms=100)
    spans.task(END - 20 * NS, task_type="refund", cost=0.2, outcome="escalated", duration_ms=200)
    spans.task(END - W * NS - 5 * NS, task_type="refund", cost=0.4, duration_ms=300)
    spans.task(END - 30 * NS, task_type="billing", cost=0.05, input_tokens=10, output_tokens=5)
    insert(backend, spans)
    rows = windows(backend, group_by="task_type")
    assert [(r["group_key"], r["window"], r["tasks"], r["cost_usd"]) for r in rows] == [
        ("billing", 0, 1, 0.05),
        ("refund", 0, 2, 0.3),
        ("refund", 1, 1, 0.4),
    ]
    refund_now = rows[1]
    assert (refund_now["failed"], refund_now["escalated"], refund_now["tokens"]) == (1, 1, 2000)
    assert rows[0]["tokens"] == 15


def test_a_window_is_closed_at_its_start_and_open_at_its_end(backend: Store) -> None:
    spans = Spans()
    spans.task(END - W * NS, task_type="first-instant-of-window-0")
    spans.task(END - W * NS - 1, task_type="last-instant-of-window-1")
    spans.task(END, task_type="at-the-end-so-not-yet")
    insert(backend, spans)
    assert {r["group_key"]: r["window"] for r in windows(backend, group_by="task_type")} == {
        "first-instant-of-window-0": 0,
        "last-instant-of-window-1": 1,
    }


def test_probe_traces_are_not_tasks(backend: Store) -> None:
    spans = Spans()
    spans.task(END - 10 * NS, task_type="refund", cost=0.1)
    spans.probe(END - 20 * NS, task_type="refund", cost=9.0)
    insert(backend, spans)
    [row] = windows(backend, group_by="task_type")
    assert (row["tasks"], row["cost_usd"]) == (1, 0.1)


def test_a_nested_agent_run_is_part_of_its_outer_task(backend: Store) -> None:
    spans = Spans()
    trace = spans.task(END - 10 * NS, task_type="refund", cost=0.1)
    spans.task(END - 9 * NS, task_type="lookup", cost=0.2, trace=trace, parent="outer")
    insert(backend, spans)
    [row] = windows(backend, group_by="task_type")
    assert (row["group_key"], row["tasks"], row["cost_usd"]) == ("refund", 1, 0.3)


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        ("agent", {("support", 2), ("tracker", 1)}),
        ("model", {("gpt-4o", 2), ("gpt-4o-mini", 1)}),
        ("none", {("", 3)}),
    ],
)
def test_task_windows_group_by_agent_model_or_nothing(
    backend: Store, group_by: str, expected: set[tuple[str, int]]
) -> None:
    spans = Spans()
    spans.task(END - 10 * NS, agent="support", model="gpt-4o")
    spans.task(END - 11 * NS, agent="support", model="gpt-4o-mini")
    spans.task(END - 12 * NS, agent="tracker", model="gpt-4o")
    insert(backend, spans)
    assert {(r["group_key"], r["tasks"]) for r in windows(backend, group_by=group_by)} == expected


def test_scope_keeps_only_matching_tasks_and_spans(backend: Store) -> None:
    spans = Spans()
    spans.task(END - 10 * NS, task_type="refund", service="support-bot")
    spans.task(END - 11 * NS, task_type="billing", service="support-bot")
    spans.task(END - 12 * NS, task_type="refund", service="other-bot")
    insert(backend, spans)
    scope = alert_queries.Scope(service="support-bot", task_type="refund")
    assert [(r["group_key"], r["tasks"]) for r in windows(backend, scope=scope)] == [("", 1)]


def test_a_model_scope_keeps_the_tasks_whose_first_model_call_used_it(backend: Store) -> None:
    spans = Spans()
    spans.task(END - 10 * NS, task_type="refund", model="gpt-4o")
    spans.task(END - 11 * NS, task_type="refund", model="gpt-4o-mini")
    insert(backend, spans)
    rows = windows(backend, group_by="task_type", scope=alert_queries.Scope(model="gpt-4o-mini"))
    assert [(r["group_key"], r["tasks"]) for r in rows] == [("refund", 1)]


def test_spend_outside_agent_runs_counts_unless_a_task_scope_is_set(backend: Store) -> None:
    spans = Spans()
    spans.task(END - 10 * NS, task_type="refund", cost=0.25)
    spans.task(END - 20 * NS, task_type="billing", cost=0.5)
    spans.call(END - 30 * NS, cost=1.0)  # a model call outside any agent run
    insert(backend, spans)
    start = END - 3600 * NS
    by_model = alert_queries.spend(backend, start_ns=start, end_ns=END, group_by="model").dicts()
    refund = alert_queries.spend(
        backend, start_ns=start, end_ns=END, scope=alert_queries.Scope(task_type="refund")
    )
    assert [(r["group_key"], round(r["cost_usd"], 6)) for r in by_model + refund.dicts()] == [
        ("gpt-4o", 1.75),
        ("", 0.25),
    ]


def test_p95_latency_is_in_milliseconds(backend: Store) -> None:
    spans = Spans()
    for _ in range(20):
        spans.task(END - 10 * NS, duration_ms=250.0)
    insert(backend, spans)
    [row] = windows(backend)
    assert row["p95_latency_ms"] == pytest.approx(250.0)


def test_spend_counts_every_priced_call_probes_included(backend: Store) -> None:
    spans = Spans()
    spans.task(END - 10 * NS, agent="support", cost=0.25)
    spans.probe(END - 20 * NS, cost=0.5)
    spans.task(END - 2 * 86_400 * NS, cost=100.0)  # before the range
    insert(backend, spans)
    start = END - 3600 * NS
    [row] = alert_queries.spend(backend, start_ns=start, end_ns=END).dicts()
    assert row["cost_usd"] == pytest.approx(0.75)
    grouped = alert_queries.spend(backend, start_ns=start, end_ns=END, group_by="agent").dicts()
    assert [(r["group_key"], round(r["cost_usd"], 6)) for r in grouped] == [("support", 0.75)]


def test_span_activity_counts_the_current_window_and_active_earlier_ones(backend: Store) -> None:
    spans = Spans()
    for k in (1, 2, 4):  # "support" was active three windows back, then went silent
        spans.task(END - k * W * NS - NS, agent="support")
    spans.task(END - NS, agent="tracker")
    insert(backend, spans)
    rows = alert_queries.span_activity(
        backend, end_ns=END, window_s=W, windows=5, group_by="agent"
    ).dicts()
    assert [(r["group_key"], r["current_spans"], r["active_windows"]) for r in rows] == [
        ("support", 0, 3),
        ("tracker", 1, 0),
    ]
    assert rows[0]["last_seen_ns"] == END - W * NS - NS


def test_span_activity_ignores_probe_traffic(backend: Store) -> None:
    spans = Spans()
    spans.task(END - W * NS - NS, agent="support")
    spans.probe(END - NS)  # the probe runs the agent "support" now
    insert(backend, spans)
    [row] = alert_queries.span_activity(
        backend, end_ns=END, window_s=W, windows=2, group_by="agent"
    ).dicts()
    assert (row["current_spans"], row["active_windows"]) == (0, 1)


def test_health_runs_lists_the_latest_results_newest_first(backend: Store) -> None:
    spans = Spans()
    traces = [
        spans.probe(END - 300 * NS, passed=True),
        spans.probe(END - 200 * NS, passed=False, expectation="contains", reason="no '30 days'"),
        spans.probe(END - 100 * NS, passed=False, expectation="max_length", reason="too long"),
    ]
    spans.probe(END - 50 * NS, check="other", passed=True)
    insert(backend, spans)
    [row] = alert_queries.health_runs(
        backend, start_ns=END - 3600 * NS, end_ns=END, runs=2, check="refund-policy"
    ).dicts()
    assert row["passed"] == [0, 0]
    assert row["trace_ids"] == [traces[2], traces[1]]
    assert row["failed_expectations"] == ["max_length", "contains"]
    assert row["reasons"] == ["too long", "no '30 days'"]


def test_offending_traces_for_cost_are_the_most_expensive(backend: Store) -> None:
    spans = Spans()
    cheap = spans.task(END - 10 * NS, task_type="refund", cost=0.01)
    dear = spans.task(END - 11 * NS, task_type="refund", cost=1.0)
    middle = spans.task(END - 12 * NS, task_type="refund", cost=0.1)
    spans.task(END - 13 * NS, task_type="billing", cost=5.0)
    insert(backend, spans)
    found = alert_queries.offending_traces(
        backend,
        metric="cost",
        start_ns=END - W * NS,
        end_ns=END,
        group_by="task_type",
        group="refund",
        limit=5,
    )
    assert found == [dear, middle, cheap]


def test_offending_traces_for_the_error_rate_are_the_failed_tasks(backend: Store) -> None:
    spans = Spans()
    failed = spans.task(END - 10 * NS, task_type="refund", outcome="failed")
    spans.task(END - 11 * NS, task_type="refund", outcome="completed")
    insert(backend, spans)
    found = alert_queries.offending_traces(
        backend,
        metric="error_rate",
        start_ns=END - W * NS,
        end_ns=END,
        group_by="task_type",
        group="refund",
    )
    assert found == [failed]


def test_a_group_value_needing_escapes_is_bound_intact(backend: Store) -> None:
    spans = Spans()
    odd = spans.task(END - 10 * NS, task_type=ODD, cost=0.5)
    insert(backend, spans)
    assert [r["group_key"] for r in windows(backend, group_by="task_type")] == [ODD]
    found = alert_queries.offending_traces(
        backend, metric="cost", start_ns=END - W * NS, end_ns=END, group_by="task_type", group=ODD
    )
    assert found == [odd]


def test_latest_traces_are_the_last_a_group_sent(backend: Store) -> None:
    spans = Spans()
    old = spans.task(END - 900 * NS, agent="tracker")
    new = spans.task(END - 600 * NS, agent="tracker")
    spans.task(END - 10 * NS, agent="support")
    insert(backend, spans)
    found = alert_queries.latest_traces(
        backend, start_ns=END - 3600 * NS, end_ns=END, group_by="agent", group="tracker"
    )
    assert found == [new, old]


MS = END // 1_000_000 - 86_400_000  # a day ago, in epoch milliseconds


def _row(state: str, updated_ms: int, **changes: object) -> alert_queries.AlertRow:
    fields: dict[str, object] = {
        "incident_id": "inc-1",
        "rule": "cost spike",
        "kind": "anomaly",
        "severity": "warning",
        "metric": "cost",
        "group_key": "task_type=refund",
        "state": state,
        "fired_at_ms": MS + 1_000,
        "resolved_at_ms": None if state == "firing" else MS + updated_ms,
        "updated_at_ms": MS + updated_ms,
        "value": 5.0,
        "baseline": 1.0,
        "score": 9.5,
        "summary": f"{state} summary",
        "trace_ids": ("t1", "t2"),
        "links": ("http://dash/traces?trace_id=t1",),
        **changes,
    }
    return alert_queries.AlertRow(**fields)  # type: ignore[arg-type]


def test_an_incident_is_active_until_its_resolved_row(backend: Store) -> None:
    alert_queries.record_alerts(backend, [_row("firing", 1_000)])
    [active] = alert_queries.active_alerts(backend).dicts()
    assert (active["incident_id"], active["state"], active["trace_ids"]) == (
        "inc-1",
        "firing",
        ["t1", "t2"],
    )
    alert_queries.record_alerts(
        backend, [_row("resolved", 9_000, value=1.1, summary="back to normal")]
    )
    assert alert_queries.active_alerts(backend).rows == []


def test_recent_alerts_keep_the_values_an_incident_fired_with(backend: Store) -> None:
    alert_queries.record_alerts(
        backend,
        [_row("firing", 1_000), _row("resolved", 9_000, value=1.1, summary="back to normal")],
    )
    [incident] = alert_queries.recent_alerts(backend, since_ms=MS + 5_000).dicts()
    assert (incident["state"], incident["value"], incident["summary"]) == (
        "resolved",
        5.0,
        "firing summary",
    )
    assert (incident["resolved_summary"], incident["resolved_at_ms"]) == (
        "back to normal",
        MS + 9_000,
    )
    assert alert_queries.recent_alerts(backend, since_ms=MS + 10_000).rows == []


def test_last_notifications_give_each_rule_and_group_its_latest_notified_firing(
    backend: Store,
) -> None:
    alert_queries.record_alerts(
        backend,
        [
            _row("firing", 1_000),
            _row("firing", 5_000, incident_id="inc-2", fired_at_ms=MS + 5_000),
            _row("firing", 7_000, incident_id="inc-3", fired_at_ms=MS + 7_000, notified=False),
        ],
    )
    rows = alert_queries.last_notifications(backend, since_ms=0).dicts()
    assert [(r["rule"], r["group_key"], r["last_notified_ms"]) for r in rows] == [
        ("cost spike", "task_type=refund", MS + 5_000)
    ]


@pytest.mark.parametrize("name", ["alerts; DROP TABLE x", "1st", "a.b", ""])
def test_the_alerts_table_ddl_takes_only_plain_identifiers(name: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        alerts_table_ddl(name, 30)

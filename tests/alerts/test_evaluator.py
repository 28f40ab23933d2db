"""The evaluator on real stored spans: the default rules over a seeded workload in chDB.

Spans are inserted with timestamps relative to a fixed ``NOW`` and the evaluator is given the
moment of each pass, one pass per 5-minute window, so nothing waits for a clock. Window ``i``
is ``[T0 + i*W, T0 + (i+1)*W)`` and the pass at its end judges it against the 24 before.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentwatch.alerts._evaluator import EvaluationPass, Evaluator, EvaluatorSettings
from agentwatch.alerts._notify import Alert, ConsoleNotifier, Dispatcher
from agentwatch.alerts._rules import (
    DailyBudgetRule,
    Rule,
    ThresholdRule,
    default_rules,
    demo_rules,
)
from agentwatch.storage import _alert_queries as alert_queries
from agentwatch.storage._schema import ALERTS_TABLE, SPANS_TABLE
from agentwatch.storage._store import EmbeddedStore

from .conftest import new_store
from .workload import NS, Profile, Spans, Spike, at, ns, steady_workload

RecordProperty = Callable[[str, object], None]
Passes = list[tuple[int, EvaluationPass]]

W = 300
NOW = datetime.fromtimestamp(datetime.now(UTC).timestamp() // W * W, UTC)
T0 = ns(NOW) - 36 * W * NS  # window 0 starts here; windows 0..23 are the first baseline
SPIKE_START, SPIKE_LENGTH = 24, 4
SPIKE_END = SPIKE_START + SPIKE_LENGTH
DASHBOARD = "http://dash.example:8501"


def window_start(i: int) -> int:
    return T0 + i * W * NS


def evaluator(store: EmbeddedStore, rules: Sequence[Rule] | None = None, **options: object):
    settings = EvaluatorSettings(settle_s=0, dashboard_url=DASHBOARD, **options)  # type: ignore[arg-type]
    return Evaluator(store, rules, settings=settings)


def run(ev: Evaluator, windows: range, *, t0: int = T0, window_s: int = W) -> Passes:
    """One pass at the end of each window."""
    return [(i, ev.evaluate(at(t0 + (i + 1) * window_s * NS))) for i in windows]


def alerts(passes: Passes, event: str = "fired") -> list[tuple[int, Alert]]:
    return [(i, a) for i, p in passes for a in p.alerts if a.event == event]


def seeded(store: EmbeddedStore, spans: Spans) -> EmbeddedStore:
    store.insert_arrow(SPANS_TABLE, spans.table())
    return store


# --- a steady workload ----------------------------------------------------------------------
STEADY_PASSES = 60


@pytest.fixture(scope="module")
def steady(engine_dir: Path):
    store = new_store(engine_dir)
    spans = steady_workload(
        Spans(), start_ns=T0 - 60 * W * NS, windows=24 + STEADY_PASSES, window_s=W, seed=5
    )
    seeded(store, spans)
    try:
        yield run(evaluator(store), range(-36, -36 + STEADY_PASSES))
    finally:
        store.close()


def test_a_steady_workload_raises_no_alert(steady: Passes, record_property: RecordProperty):
    judged = [v for _, p in steady for v in p.verdicts if v.breaching is not None]
    breaching = [v for v in judged if v.breaching]
    record_property("steady_passes", len(steady))
    record_property("steady_false_positive_verdicts", f"{len(breaching)}/{len(judged)}")
    # Each pass judges 3 task types for 2 spike rules and 2 agents for silence.
    assert (alerts(steady), len(judged) >= 6 * STEADY_PASSES) == ([], True)


# --- cost and error spikes ------------------------------------------------------------------
@dataclass(frozen=True)
class SpikeRun:
    metric: str
    rule: str
    passes: Passes
    spans: Spans
    store: EmbeddedStore


SPIKES = {
    "cost": ("cost spike", {"cost_factor": 5.0}),
    "error_rate": ("error spike", {"error_rate": 0.30}),
}


@pytest.fixture(scope="module", params=list(SPIKES))
def spike(request: pytest.FixtureRequest, engine_dir: Path):
    """refund spikes over windows 24..27 (cost x5, or errors 2% -> 30%); passes 24..35."""
    metric = request.param
    rule, change = SPIKES[metric]
    store = new_store(engine_dir)
    spike = Spike("refund", window_start(SPIKE_START), window_start(SPIKE_END), **change)
    spans = steady_workload(Spans(), start_ns=T0, windows=36, window_s=W, seed=11, spikes=[spike])
    seeded(store, spans)
    try:
        yield SpikeRun(metric, rule, run(evaluator(store), range(SPIKE_START, 36)), spans, store)
    finally:
        store.close()


def test_a_spike_fires_within_two_windows(spike: SpikeRun) -> None:
    [(index, _)] = alerts(spike.passes)
    assert index - SPIKE_START in (0, 1)


def test_the_spike_alert_names_the_rule_and_the_task_type(spike: SpikeRun) -> None:
    [(_, fired)] = alerts(spike.passes)
    assert (fired.rule, fired.group) == (spike.rule, "task_type=refund")


def test_the_spike_alert_resolves_after_the_spike_ends(spike: SpikeRun) -> None:
    [(index, resolved)] = alerts(spike.passes, "resolved")
    resolve_after = 2  # the default rules' clear passes before resolving
    assert SPIKE_END <= index < SPIKE_END + resolve_after
    assert resolved.group == "task_type=refund"


def test_the_spike_alert_says_what_moved_by_how_much_against_what_baseline(
    spike: SpikeRun,
) -> None:
    [(_, fired)] = alerts(spike.passes)
    assert fired.summary.startswith(f"{spike.metric} rose to ")
    assert " from a baseline of " in fired.summary
    assert (fired.value or 0.0) > 3 * (fired.baseline or float("inf")), fired.summary


def test_the_spike_alert_links_refund_traces_of_the_window_that_fired(spike: SpikeRun) -> None:
    [(index, fired)] = alerts(spike.passes)
    start, end = window_start(index), window_start(index + 1)
    table = spike.spans
    refund_traces = {
        table.trace_id[row]
        for row, attrs in enumerate(table.attributes)
        if attrs.get("agentwatch.task.type") == "refund" and start <= table.timestamp[row] < end
    }
    assert len(fired.trace_ids) == 5
    assert set(fired.trace_ids) <= refund_traces
    assert fired.links[0] == f"{DASHBOARD}/traces?trace_id={fired.trace_ids[0]}"


def test_the_linked_traces_are_what_the_metric_is_about(spike: SpikeRun) -> None:
    """The most expensive refund tasks of the window for cost, its failed ones for errors."""
    [(index, fired)] = alerts(spike.passes)
    start, end = window_start(index), window_start(index + 1)
    table = spike.spans
    agent_rows = [
        row
        for row, attrs in enumerate(table.attributes)
        if attrs.get("agentwatch.task.type") == "refund" and start <= table.timestamp[row] < end
    ]
    if spike.metric == "cost":
        cost = {table.trace_id[r]: table.cost[r + 1] for r in agent_rows}  # its chat span
        expected = set(sorted(cost, key=cost.__getitem__, reverse=True)[:5])
    else:
        failed = [
            r for r in agent_rows if table.attributes[r]["agentwatch.task.outcome"] == "failed"
        ]
        expected = {table.trace_id[r] for r in failed}
    assert (set(fired.trace_ids) <= expected, len(fired.trace_ids)) == (True, min(5, len(expected)))


def test_the_incident_is_recorded_fired_then_resolved(spike: SpikeRun) -> None:
    [(fired_at, fired)] = alerts(spike.passes)
    [(resolved_at, _)] = alerts(spike.passes, "resolved")
    [incident] = alert_queries.recent_alerts(spike.store, since_ms=0).dicts()
    assert (incident["incident_id"], incident["state"], incident["group_key"]) == (
        fired.incident_id,
        "resolved",
        "task_type=refund",
    )
    assert incident["fired_at_ms"] == window_start(fired_at + 1) // 1_000_000
    assert incident["resolved_at_ms"] == window_start(resolved_at + 1) // 1_000_000


def test_kept_windows_give_the_verdicts_of_querying_every_window_again(spike: SpikeRun) -> None:
    """The spike run's evaluator kept each judged window; a new evaluator per pass queries
    the whole baseline every time. Their verdicts agree."""

    def verdicts(result: EvaluationPass) -> list[tuple[str, str, bool | None, str]]:
        return sorted((v.rule, v.group, v.breaching, v.summary) for v in result.verdicts)

    fresh = [evaluator(spike.store).evaluate(result.at) for _, result in spike.passes]
    assert [verdicts(r) for r in fresh] == [verdicts(r) for _, r in spike.passes]


# --- silence and probes ---------------------------------------------------------------------
def busy_agents(spans: Spans, *, silent_s: int | None = None, probes: bool = False) -> Spans:
    """Agents "support" and "tracker" with tasks every minute for 2.5 hours before NOW;
    "tracker" stops ``silent_s`` before NOW (then answers only probes if ``probes``)."""
    end = ns(NOW)
    for minute in range(150):
        moment = end - (minute + 1) * 60 * NS + NS
        spans.task(moment, agent="support")
        if silent_s is None or moment < end - silent_s * NS:
            spans.task(moment, agent="tracker", task_type="order_status")
        elif probes:
            spans.probe(moment, check="tracker-alive")
    return spans


def test_a_silent_agent_fires_the_no_data_rule(store: EmbeddedStore) -> None:
    seeded(store, busy_agents(Spans(), silent_s=20 * 60))
    result = evaluator(store).evaluate(NOW)
    assert [(a.rule, a.group) for a in result.alerts] == [("agent silent", "agent=tracker")]


def test_an_agent_answering_only_probes_is_silent(store: EmbeddedStore) -> None:
    seeded(store, busy_agents(Spans(), silent_s=20 * 60, probes=True))
    result = evaluator(store).evaluate(NOW)
    assert [(a.rule, a.group) for a in result.alerts] == [("agent silent", "agent=tracker")]


def test_a_failing_probe_fires_the_health_rule(store: EmbeddedStore) -> None:
    spans = Spans()
    end = ns(NOW)
    spans.probe(end - 600 * NS, check="refund-policy", passed=True)
    failing = spans.probe(
        end - 300 * NS,
        check="refund-policy",
        passed=False,
        expectation="contains('30 days')",
        reason="the answer does not contain '30 days'",
    )
    spans.probe(end - 300 * NS, check="order-lookup", passed=True)
    [fired] = evaluator(seeded(store, spans)).evaluate(NOW).alerts
    assert (fired.rule, fired.group, fired.severity) == (
        "health check failing",
        "check=refund-policy",
        "critical",
    )
    assert fired.summary == (
        "failed the last 1 run: contains('30 days') (the answer does not contain '30 days')"
    )
    assert fired.trace_ids == (failing,)


def test_a_passing_run_resolves_the_health_alert(store: EmbeddedStore) -> None:
    spans = Spans()
    spans.probe(ns(NOW) - 300 * NS, passed=False, expectation="max_length")
    ev = evaluator(seeded(store, spans))
    first = ev.evaluate(NOW)
    later = Spans()
    later.probe(ns(NOW) + 10 * NS, passed=True)
    seeded(store, later)
    second = ev.evaluate(NOW + timedelta(minutes=1))
    assert ([a.event for a in first.alerts], [a.event for a in second.alerts]) == (
        ["fired"],
        ["resolved"],
    )


# --- budgets --------------------------------------------------------------------------------
def test_a_daily_budget_fires_once_spend_today_passes_it(store: EmbeddedStore) -> None:
    rule = DailyBudgetRule(name="daily spend", kind="daily_budget", budget_usd=1.0)
    midnight = NOW.replace(hour=0, minute=0, second=0)
    spans = Spans()
    spans.task(ns(midnight) - 60 * NS, cost=5.0)  # yesterday
    if NOW - midnight < timedelta(minutes=2):
        pytest.skip("too close to midnight UTC for spend today")
    for _ in range(3):
        spans.task(ns(NOW) - 60 * NS, cost=0.4)
    [fired] = evaluator(seeded(store, spans), [rule]).evaluate(NOW).alerts
    assert fired.summary == "spent $1.20 today of a $1.00 daily budget (120%)"


def test_an_alert_whose_group_has_no_data_any_more_resolves(store: EmbeddedStore) -> None:
    rule = ThresholdRule(
        name="refund spend",
        kind="threshold",
        metric="cost",
        op=">",
        value=1.0,
        group_by="task_type",
        resolve_after=1,
    )
    spans = Spans()
    spans.task(ns(NOW) - 60 * NS, task_type="refund", cost=2.0)  # then no refund task at all
    ev = evaluator(seeded(store, spans), [rule])
    first, later = ev.evaluate(NOW), ev.evaluate(NOW + timedelta(minutes=5))
    assert [(a.event, a.summary) for a in first.alerts + later.alerts] == [
        ("fired", "cost is 2 (alert when > 1)"),
        ("resolved", "no data in the window"),
    ]


# --- de-duplication, cooldown, restarts -----------------------------------------------------
@pytest.fixture(scope="module")
def twice(engine_dir: Path):
    """refund cost spikes twice, 40 minutes apart (windows 24..25 and 32..33)."""
    store = new_store(engine_dir)
    spikes = [
        Spike("refund", window_start(24), window_start(26), cost_factor=5.0),
        Spike("refund", window_start(32), window_start(34), cost_factor=5.0),
    ]
    seeded(
        store, steady_workload(Spans(), start_ns=T0, windows=36, window_s=W, seed=3, spikes=spikes)
    )
    try:
        yield store
    finally:
        store.close()


def cost_rule() -> list[Rule]:
    return [r for r in default_rules() if r.name == "cost spike"]


def forget_alerts(store: EmbeddedStore) -> None:
    store.command(f"TRUNCATE TABLE {store.database}.{ALERTS_TABLE}")


def test_a_new_incident_within_the_cooldown_is_recorded_but_not_notified(twice: EmbeddedStore):
    forget_alerts(twice)
    passes = run(evaluator(twice, cost_rule()), range(24, 36))
    fired = [(i, a.notify) for i, a in alerts(passes)]
    assert fired == [(24, True), (32, False)]


def test_a_restarted_evaluator_resumes_the_open_incident(twice: EmbeddedStore) -> None:
    forget_alerts(twice)
    before = run(evaluator(twice, cost_rule()), range(24, 25))
    after = run(evaluator(twice, cost_rule()), range(25, 30))
    [(_, fired)] = alerts(before)
    assert [(a.event, a.incident_id, a.notify) for _, p in after for a in p.alerts] == [
        ("resolved", fired.incident_id, True)
    ]


def test_notifications_go_out_when_the_alerts_table_cannot_be_written(
    store: EmbeddedStore,
) -> None:
    spans = Spans()
    spans.probe(ns(NOW) - 300 * NS, passed=False)
    seeded(store, spans)
    store.command(f"DROP TABLE {store.database}.{ALERTS_TABLE}")
    printed = io.StringIO()
    dispatcher = Dispatcher([ConsoleNotifier(printed)])
    ev = Evaluator(store, settings=EvaluatorSettings(settle_s=0), dispatcher=dispatcher)
    result = ev.evaluate(NOW)
    assert dispatcher.close(10)
    assert ("record" in result.errors, len(result.alerts)) == (True, 1)
    assert "FIRING: health check failing [check=refund-policy]" in printed.getvalue()


def test_a_failing_rule_does_not_stop_the_others(store: EmbeddedStore) -> None:
    spans = busy_agents(Spans(), silent_s=20 * 60)
    spans.probe(ns(NOW) - 300 * NS, passed=False)
    seeded(store, spans)
    # The probe rule reads HealthPassed; without it its query fails, the others' do not.
    store.command(f"ALTER TABLE {store.database}.{SPANS_TABLE} DROP COLUMN HealthPassed")
    result = evaluator(store).evaluate(NOW)
    assert (list(result.errors), [a.rule for a in result.alerts]) == (
        ["health check failing"],
        ["agent silent"],
    )


# --- scheduling and the demo ----------------------------------------------------------------
def test_each_rule_is_evaluated_once_per_its_interval(store: EmbeddedStore) -> None:
    ev = evaluator(store)
    evaluated = [
        ev.evaluate(NOW + timedelta(seconds=s), only_due=True).evaluated for s in (0, 30, 60, 300)
    ]
    assert evaluated == [
        ["cost spike", "error spike", "agent silent", "health check failing"],
        [],
        ["agent silent", "health check failing"],
        ["cost spike", "error spike", "agent silent", "health check failing"],
    ]


def test_the_demo_rules_catch_the_demo_spikes_a_window_after_they_start(
    store: EmbeddedStore,
) -> None:
    """As ``agentwatch up --demo`` runs: ~30 refund tasks a 20-second window among ~120,
    failing ~9% of the time; from minute 1 to minute 3 refund cost x5 and failures ~50%. The
    first minute's three windows are the baseline: both alerts fire on the spike's first
    window, within two minutes of the start, and hold through the spike (the error rate's
    baseline soon includes spiking windows, so later windows may look normal) until six clear
    windows, the spike's length, have passed."""
    window = 20
    t0 = ns(NOW) - 18 * window * NS
    profiles = [
        Profile("refund", tasks_per_window=30, cost_per_task=0.009, error_rate=0.09),
        Profile("order_status", tasks_per_window=48, cost_per_task=0.002, error_rate=0.04),
    ]
    spike = Spike("refund", t0 + 60 * NS, t0 + 180 * NS, cost_factor=5.0, error_rate=0.5)
    spans = steady_workload(
        Spans(), start_ns=t0, windows=18, window_s=window, seed=8, profiles=profiles, spikes=[spike]
    )
    passes = run(evaluator(seeded(store, spans), demo_rules()), range(18), t0=t0, window_s=window)
    changes = sorted((i, a.event, a.rule) for i, a in alerts(passes) + alerts(passes, "resolved"))
    assert changes == [
        (3, "fired", "cost spike"),
        (3, "fired", "error spike"),
        (9, "resolved", "error spike"),
        (11, "resolved", "cost spike"),
    ]

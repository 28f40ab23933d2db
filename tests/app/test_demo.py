"""The demo fleet and its schedule, in memory: simulated latency, what a ticket records with
content capture on, the health probes, and how ``agentwatch up --demo`` paces its workers."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

from agentwatch._testing import CapturedSpans, attributes, capture_spans
from agentwatch.app._demo import (
    MODEL_LATENCY_S,
    TOOL_LATENCY_S,
    DemoFleet,
    demo_health_checks,
)
from agentwatch.app._up import MAX_DEMO_WORKERS, DemoSchedule, _Pacer

LATENCY_SCALE = 0.01  # model calls take 3-25 ms, tools 0.5-4 ms


def seconds(span: object) -> float:
    start, end = getattr(span, "start_time", 0), getattr(span, "end_time", 0)
    return float(end - start) / 1e9


def test_calls_take_their_simulated_time_scaled(agentwatch_spans: CapturedSpans) -> None:
    DemoFleet(3, latency_scale=LATENCY_SCALE).run(20)

    fastest, slowest = (s * LATENCY_SCALE for s in MODEL_LATENCY_S)
    model_calls = [seconds(s) for s in agentwatch_spans.llm_calls()]
    assert model_calls
    assert all(fastest <= t < slowest + 0.02 for t in model_calls), model_calls
    for span in agentwatch_spans.tools():
        name = attributes(span)["gen_ai.tool.name"]
        low = TOOL_LATENCY_S[name][0] * LATENCY_SCALE
        assert low <= seconds(span) < TOOL_LATENCY_S[name][1] * LATENCY_SCALE + 0.02


def test_latency_does_not_change_what_the_tickets_do() -> None:
    """The waits are drawn from an RNG of their own: the same seed runs the same tickets."""
    runs = []
    for scale in (0.0, LATENCY_SCALE):
        with capture_spans() as spans:
            outcomes = DemoFleet(5, latency_scale=scale).run(15)
        runs.append((outcomes, Counter(s.name for s in spans.spans)))
    assert runs[0] == runs[1]


def test_stopping_cuts_the_simulated_waits_short(agentwatch_spans: CapturedSpans) -> None:
    stop = threading.Event()
    stop.set()
    DemoFleet(3, latency_scale=100.0, stop=stop).run(3)  # minutes per call, were it waiting
    assert all(seconds(s) < 1.0 for s in agentwatch_spans.spans)


def test_with_content_capture_decisions_carry_redacted_reasoning_and_tools_arguments() -> None:
    with capture_spans(capture_content=True) as spans:
        DemoFleet(3, destructive_rate=0.2).run(60)

    routes = Counter(attributes(d).get("agentwatch.decision.route") for d in spans.decisions())
    assert min(routes[route] for route in ("auto", "review", "escalate")) > 0, routes
    reasoning = [str(attributes(d)["agentwatch.decision.reasoning"]) for d in spans.decisions()]
    assert all(reasoning)
    assert not any("@customers.example.com" in text for text in reasoning)  # e-mails redacted

    by_tool: dict[str, list[dict[str, object]]] = {}
    for span in spans.tools():
        attrs = attributes(span)
        arguments = json.loads(str(attrs["gen_ai.tool.call.arguments"]))
        by_tool.setdefault(str(attrs["gen_ai.tool.name"]), []).append(arguments)
    assert set(by_tool["issue_refund"][0]) == {"order_id", "amount"}
    assert by_tool["close_account"][0]["reason"] == "customer request"


def test_by_default_the_fleet_never_closes_an_account(agentwatch_spans: CapturedSpans) -> None:
    """The seeded fleets of the storage and dashboard tests rely on one declared, unused tool."""
    DemoFleet(11).run(200)
    called = {attributes(s)["gen_ai.tool.name"] for s in agentwatch_spans.tools()}
    assert "close_account" not in called
    assert {"lookup_order", "search_kb", "issue_refund"} <= called


def test_one_probe_passes_and_the_other_fails_while_the_order_service_is_down(
    agentwatch_spans: CapturedSpans,
) -> None:
    down = threading.Event()
    policy, order_status = demo_health_checks(DemoFleet(9), order_service_down=down.is_set)

    assert policy.run().passed
    assert order_status.run().passed
    down.set()
    failed = order_status.run()
    assert not failed.passed
    assert "matches" in str(failed.failed_expectation)
    assert policy.run().passed

    checks = [attributes(s) for s in agentwatch_spans.spans if s.name.startswith("health_check")]
    assert [(c["agentwatch.health.check"], c["agentwatch.health.passed"]) for c in checks] == [
        ("refund-policy", True),
        ("order-status", True),
        ("order-status", False),
        ("refund-policy", True),
    ]


def test_the_spike_starts_a_minute_in_and_lasts_two_the_probe_fails_a_little_before() -> None:
    schedule = DemoSchedule()
    moments = (0, 44.9, 45, 59.9, 60, 179.9, 180)
    assert [schedule.spiking(t) for t in moments] == [False] * 4 + [True] * 2 + [False]
    assert [schedule.order_service_down(t) for t in moments] == [False] * 2 + [True] * 4 + [False]


@pytest.mark.parametrize(
    ("rate", "latency", "workers"),
    [(6.0, 1.0, 43), (6.0, 0.0, 1), (50.0, 0.05, 19), (1000.0, 1.0, MAX_DEMO_WORKERS)],
)
def test_enough_workers_keep_the_pace(rate: float, latency: float, workers: int) -> None:
    assert DemoSchedule(tickets_per_s=rate, latency_scale=latency).workers() == workers


def test_the_pacer_hands_out_start_times_at_the_rate_up_to_the_ticket_count() -> None:
    pacer = _Pacer(DemoSchedule(tickets_per_s=4.0, tickets=3), started=100.0)
    assert [pacer.claim() for _ in range(4)] == [100.0, 100.25, 100.5, None]

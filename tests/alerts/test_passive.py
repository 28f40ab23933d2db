"""Passive health on real stored spans: silent agents, longer answers and confidence drops.

Spans are built as the collector stores them (``tests.alerts.workload.Spans``, plus decision
spans) and inserted with ``insert_arrow`` into a database of the test's own on the package's
chDB engine (``conftest``), with timestamps in the last hours (the span table keeps 30 days).
Window ``i`` of a workload is ``[T0 + i*W, T0 + (i+1)*W)``; evaluating at the end of window
``i`` judges it against the ``baseline_windows`` before it, and nothing waits for a clock.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from agentwatch.alerts._passive import check_passive_health
from agentwatch.alerts._passive_detect import (
    Median,
    PassiveFinding,
    PassiveSettings,
    confidence_drop,
    longer_answers,
    silent_agent,
)
from agentwatch.storage import _health_queries as health_queries
from agentwatch.storage._store import EmbeddedStore
from tests.alerts.workload import NS, Spans, at, ns

SETTINGS = PassiveSettings(settle_s=0)
W = SETTINGS.window_s
WINDOWS = 40  # a steady workload is judged at the end of windows 16..39: 24 evaluations
NOW = datetime.fromtimestamp(datetime.now(UTC).timestamp() // W * W, UTC)
T0 = ns(NOW) - WINDOWS * W * NS
LAST = WINDOWS - 1
AGENTS = (("support", "refund"), ("tracker", "order_status"))


@dataclass(frozen=True)
class Change:
    """From window ``start`` on, ``agent`` runs no more, or its answers are ``tokens_factor``
    times as long, or its decisions' confidence is ``confidence``."""

    agent: str
    start: int = LAST
    silent: bool = False
    tokens_factor: float = 1.0
    confidence: float | None = None


class Workload(Spans):
    """Tasks with one model call and one decision each."""

    def decision(
        self, start_ns: int, trace: str, parent: str, confidence: float, agent: str, task_type: str
    ) -> None:
        attributes = {
            "gen_ai.operation.name": "decision",
            "agentwatch.decision.name": "approve",
            "agentwatch.decision.confidence": f"{confidence:.4f}",
            "gen_ai.agent.name": agent,
        }
        if task_type:
            attributes["agentwatch.task.type"] = task_type
        self._span(
            start_ns, trace, parent, "decision approve", "support-bot", attributes, duration_ns=0
        )


def workload(*changes: Change, seed: int = 7, tasks_per_window: float = 30.0) -> Workload:
    """``WINDOWS`` windows of steady traffic from each of ``AGENTS``: tasks per window ~
    Poisson, output tokens per call lognormal around 300, confidence around 0.85."""
    rng = random.Random(seed)
    spans = Workload()
    for w in range(WINDOWS):
        for agent, task_type in AGENTS:
            change = next((c for c in changes if c.agent == agent and w >= c.start), None)
            if change is not None and change.silent:
                continue
            factor = change.tokens_factor if change is not None else 1.0
            centre = change.confidence if change and change.confidence is not None else 0.85
            tasks = max(0, round(rng.gauss(tasks_per_window, math.sqrt(tasks_per_window))))
            for _ in range(tasks):
                moment = T0 + w * W * NS + rng.randrange(W * NS - 10_000_000)
                tokens = round(rng.lognormvariate(math.log(300 * factor), 0.45))
                trace = spans.task(
                    moment, agent=agent, task_type=task_type, output_tokens=max(1, tokens)
                )
                root = spans.span_id[-3]
                confidence = min(1.0, max(0.0, rng.gauss(centre, 0.08)))
                spans.decision(moment + 3_000_000, trace, root, confidence, agent, task_type)
    return spans


def evaluate(store: EmbeddedStore, window: int = LAST) -> list[PassiveFinding]:
    """Passive health at the end of ``window``."""
    return check_passive_health(store, at(T0 + (window + 1) * W * NS), SETTINGS)


def by_subject(findings: list[PassiveFinding], kind: str) -> dict[str, PassiveFinding]:
    return {finding.subject: finding for finding in findings if finding.kind == kind}


# --- steady traffic ---------------------------------------------------------------------------
def test_a_steady_workload_raises_nothing_over_24_evaluations(
    store: EmbeddedStore, record_property: Callable[[str, object], None]
) -> None:
    store.insert_arrow("otel_traces", workload().table())
    judged = false_positives = 0
    for window in range(SETTINGS.baseline_windows, WINDOWS):
        for finding in evaluate(store, window):
            assert finding.breaching is not None, finding  # every signal was judged
            judged += 1
            false_positives += bool(finding.breaching)
    record_property("passive_false_positives", f"{false_positives} of {judged}")
    assert judged == 24 * 3 * len(AGENTS)
    assert false_positives == 0


# --- the three signals ------------------------------------------------------------------------
def test_an_agent_gone_silent_is_flagged(store: EmbeddedStore) -> None:
    store.insert_arrow("otel_traces", workload(Change("tracker", silent=True)).table())
    silent = by_subject(evaluate(store), "silent_agent")
    assert silent["tracker"].breaching is True
    assert silent["tracker"].summary.startswith("no runs in the last 15 min; it ran in 16 of")
    assert silent["support"].breaching is False


def test_much_longer_answers_are_flagged(store: EmbeddedStore) -> None:
    store.insert_arrow("otel_traces", workload(Change("support", tokens_factor=3.0)).table())
    longer = by_subject(evaluate(store), "longer_answers")
    flagged = longer["support"]
    assert flagged.breaching is True
    assert flagged.value is not None
    assert flagged.baseline is not None
    assert flagged.value / flagged.baseline > 2.0
    assert longer["tracker"].breaching is False


def test_a_confidence_drop_is_flagged_for_its_task_type(store: EmbeddedStore) -> None:
    store.insert_arrow("otel_traces", workload(Change("support", confidence=0.6)).table())
    confidence = by_subject(evaluate(store), "confidence_drop")
    assert confidence["refund"].breaching is True
    assert confidence["refund"].summary.startswith("median decision confidence fell to 0.")
    assert confidence["refund"].value == pytest.approx(0.6, abs=0.05)
    assert confidence["order_status"].breaching is False


def test_an_agent_answering_only_health_probes_is_silent(store: EmbeddedStore) -> None:
    spans = workload(Change("tracker", silent=True))
    for k in range(10):  # probes keep asking the silent agent in the latest window
        spans.probe(T0 + LAST * W * NS + k * 60 * NS, task_type="order_status")
    store.insert_arrow("otel_traces", spans.table())
    assert by_subject(evaluate(store), "silent_agent")["tracker"].breaching is True


# --- the judgement on numbers -----------------------------------------------------------------
def test_an_agent_that_rarely_runs_is_not_called_silent() -> None:
    runs = {3: 4, 9: 2, 14: 5}  # active in 3 of the 16 baseline windows, none now
    finding = silent_agent("nightly", runs, SETTINGS)
    assert finding.breaching is None
    assert "too rarely to call it silent" in finding.summary


def test_answers_clearly_but_not_much_longer_are_not_flagged() -> None:
    history = {k: Median(300.0 + k % 3, 40, spread=30.0) for k in range(1, 17)}
    finding = longer_answers("support", {0: Median(500.0, 40, spread=30.0), **history}, SETTINGS)
    assert finding.breaching is False  # far outside the noise, but x1.7, not x2


def test_a_dip_within_the_noise_of_a_small_window_is_not_a_drop() -> None:
    """Busy windows give a tight baseline (medians 0.85 +- 0.003), but 20 decisions spread
    +-0.2 give a median that easily wanders 0.13 below it."""
    history = {k: Median(0.85 + (k % 3) * 0.003, 400, spread=0.2) for k in range(1, 17)}
    finding = confidence_drop("refund", {0: Median(0.72, 20, spread=0.2), **history}, SETTINGS)
    assert finding.breaching is False


# --- the queries on stored rows ---------------------------------------------------------------
def _window_of(start_ns: int, end_ns: int) -> int:
    return (end_ns - 1 - start_ns) // (W * NS)


def test_output_token_medians_are_those_of_the_stored_calls(store: EmbeddedStore) -> None:
    spans = workload(Change("support", tokens_factor=2.0, start=30))
    store.insert_arrow("otel_traces", spans.table())
    end = T0 + WINDOWS * W * NS
    want: dict[tuple[str, int], list[float]] = defaultdict(list)
    agent_of = {}
    for trace, attrs in zip(spans.trace_id, spans.attributes, strict=True):
        if attrs.get("gen_ai.operation.name") == "invoke_agent":
            agent_of[trace] = attrs["gen_ai.agent.name"]
    for ts, trace, attrs in zip(spans.timestamp, spans.trace_id, spans.attributes, strict=True):
        if attrs.get("gen_ai.operation.name") == "chat":
            key = (agent_of[trace], _window_of(ts, end))
            want[key].append(float(attrs["gen_ai.usage.output_tokens"]))
    rows = health_queries.chat_output_tokens(store, end_ns=end, window_s=W, windows=WINDOWS).dicts()
    got = {(r["agent"], r["window"]): (r["calls"], r["median_output_tokens"]) for r in rows}
    assert got == {key: (len(v), statistics.median(v)) for key, v in want.items()}


def test_a_decision_without_a_task_type_counts_for_its_traces_task_type(
    store: EmbeddedStore,
) -> None:
    spans = Workload()
    end = T0 + WINDOWS * W * NS
    for i, confidence in enumerate((0.2, 0.4, 0.9)):
        moment = end - (i + 1) * NS
        trace = spans.task(moment, agent="support", task_type="refund")
        spans.decision(moment + 1000, trace, spans.span_id[-3], confidence, "support", "")
    store.insert_arrow("otel_traces", spans.table())
    rows = health_queries.decision_confidence(store, end_ns=end, window_s=W, windows=1).dicts()
    assert [(r["task_type"], r["decisions"], r["median_confidence"]) for r in rows] == [
        ("refund", 3, pytest.approx(0.4))
    ]

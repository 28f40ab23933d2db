"""examples/support_agent.py runs, and every SDK feature it demonstrates shows up in its spans."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from opentelemetry.sdk.trace import ReadableSpan

import agentwatch as aw
from agentwatch import _semconv as semconv
from agentwatch._testing import CapturedSpans
from tests.sdk.conftest import ContextErrors
from tests.sdk.support import attrs, parent_id, span_id, trace_id

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support_agent.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("support_agent_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example() -> Iterator[ModuleType]:
    module = load_example()
    yield module
    sys.modules.pop(module.__name__, None)


@pytest.fixture(scope="module")
def spans(example: ModuleType) -> list[ReadableSpan]:
    """The spans of one run of the example's main(), content capture on as the example sets it."""
    with aw.capture_spans(capture_content=True, redact=example.REDACT) as captured:
        assert example.main([]) == 0
        return captured.spans


def named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def test_main_keeps_an_existing_setup_and_leaves_no_context_errors(
    example: ModuleType, agentwatch_spans: CapturedSpans, context_errors: ContextErrors
) -> None:
    assert example.main([]) == 0

    assert aw.is_configured(), "main() must not shut down a setup it did not make"
    assert len(agentwatch_spans.agents()) == 8
    assert context_errors() == []


def test_support_runs_record_every_outcome(spans: list[ReadableSpan]) -> None:
    outcomes = Counter(
        attrs(s)["agentwatch.task.outcome"]
        for s in named(spans, "invoke_agent support")
        if attrs(s)["agentwatch.task.type"] == "refund"
    )

    assert outcomes == Counter(completed=1, escalated=2, failed=1, limit_exceeded=1)
    (limited,) = [s for s in spans if attrs(s).get("agentwatch.limit.exceeded")]
    assert attrs(limited)["agentwatch.limit.exceeded"] == "iterations"
    (failed,) = [s for s in spans if attrs(s).get("agentwatch.task.outcome") == "failed"]
    assert attrs(failed)[semconv.ERROR_TYPE] == "TimeoutError"


def test_tools_carry_their_tiers(spans: list[ReadableSpan]) -> None:
    tiers = {
        attrs(s)[semconv.GEN_AI_TOOL_NAME]: attrs(s).get("agentwatch.tool.tier")
        for s in spans
        if attrs(s).get(semconv.GEN_AI_OPERATION_NAME) == "execute_tool"
    }

    assert tiers == {
        "lookup_order": "read",
        "search_kb": "read",
        "issue_refund": "write_risky",
        "crm.add_note": "write_safe",
        "fetch_history": "read",
    }


def test_thread_pool_tools_belong_to_their_agent_run(spans: list[ReadableSpan]) -> None:
    agents = {span_id(s): s for s in named(spans, "invoke_agent support")}

    searches = named(spans, "execute_tool search_kb")
    assert searches
    for search in searches:
        owner = agents[parent_id(search) or 0]
        assert trace_id(search) == trace_id(owner)


def test_async_gather_tools_and_sub_agent_nest_under_triage(spans: list[ReadableSpan]) -> None:
    (triage,) = named(spans, "invoke_agent triage")
    (classifier,) = named(spans, "invoke_agent classifier")

    history = named(spans, "execute_tool fetch_history")
    assert [parent_id(s) for s in history] == [span_id(triage)] * 3
    assert parent_id(classifier) == span_id(triage)
    assert attrs(classifier)["agentwatch.task.type"] == "billing_dispute"


def test_llm_usage_is_read_from_every_response_shape(spans: list[ReadableSpan]) -> None:
    (chat,) = named(spans, "chat gpt-4o")[:1]
    assert attrs(chat)[semconv.GEN_AI_RESPONSE_MODEL] == "gpt-4o-2024-08-06"
    assert attrs(chat)[semconv.GEN_AI_USAGE_CACHE_READ_TOKENS] == 256

    (openai_stream,) = named(spans, "chat gpt-4o-mini")
    assert attrs(openai_stream)[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 410
    assert attrs(openai_stream)[semconv.GEN_AI_OUTPUT_MESSAGES] == (
        "Thanks for reaching out. Your order is on its way."
    )

    (anthropic,) = named(spans, "chat claude-3-5-haiku-20241022")
    assert attrs(anthropic)[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 120 + 900
    assert attrs(anthropic)[semconv.GEN_AI_PROVIDER_NAME] == "anthropic"

    (anthropic_stream,) = named(spans, "chat claude-3-5-sonnet-20241022")
    assert attrs(anthropic_stream)[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 80
    assert attrs(anthropic_stream)[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 9


def test_manual_usage_lands_on_the_tool_span(spans: list[ReadableSpan]) -> None:
    search = named(spans, "execute_tool search_kb")[0]

    assert attrs(search)[semconv.GEN_AI_RESPONSE_MODEL] == "text-embedding-3-small"
    assert attrs(search)[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 12


def test_decisions_are_routed_and_reasoning_is_redacted(spans: list[ReadableSpan]) -> None:
    decisions = named(spans, "decision approve_refund")
    routes = sorted(attrs(s)["agentwatch.decision.route"] for s in decisions)

    assert routes == ["auto", "escalate", "review"]
    reasoning = " ".join(attrs(s)["agentwatch.decision.reasoning"] for s in decisions)
    assert "[REDACTED:email]" in reasoning
    assert "[REDACTED:phone]" in reasoning
    assert "[REDACTED:card]" in reasoning
    assert attrs(named(spans, "decision answer_directly")[0])["agentwatch.decision.route"] == (
        "auto"
    )


def test_feedback_joins_the_trace_of_the_run_it_is_about(spans: list[ReadableSpan]) -> None:
    support_traces = {trace_id(s) for s in named(spans, "invoke_agent support")}

    feedback = named(spans, "feedback")
    assert len(feedback) == 2
    assert {trace_id(f) for f in feedback} <= support_traces
    assert sorted(attrs(f)["agentwatch.feedback.correct"] for f in feedback) == [False, True]


def test_no_captured_text_contains_raw_personal_data(spans: list[ReadableSpan]) -> None:
    texts = [str(v) for s in spans for v in attrs(s).values() if isinstance(v, str)]

    assert any("[REDACTED" in t for t in texts)
    for secret in ("jane@example.com", "415 555 0100", "4111 1111 1111 1111", "C-1"):
        assert not any(secret in t for t in texts), secret


def test_script_runs_and_prints_spans_to_the_console() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "OTEL_EXPORTER_OTLP", "AGENTWATCH_"))
    }

    result = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert '"name": "invoke_agent support"' in result.stdout
    assert "tickets: failed=1, handled=3, limit_exceeded:iterations=1" in result.stderr

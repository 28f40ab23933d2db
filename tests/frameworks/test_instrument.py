"""``aw.instrument()`` with the real frameworks: one line, and their runs reach the collector.

Each test configures agentwatch to export over OTLP/HTTP to the shared in-process collector
(its own service name, so its rows are its own), calls ``aw.instrument()``, runs a framework's
agent that has no instrumentation of its own (``agents.run_plain``) against the fake OpenAI
server, and reads what was stored. The dev extra installs every framework: none is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentwatch as aw
from tests.frameworks import agents
from tests.frameworks.agents import INSTRUCTIONS, MODEL, QUESTION, TOOL_NAME, Run
from tests.frameworks.collector import FrameworkCollector
from tests.frameworks.conftest import TOOL_CALLS
from tests.frameworks.fake_openai import (
    CACHED_TOKENS,
    FINAL_ANSWER,
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    FakeOpenAI,
)

pytestmark = pytest.mark.slow

FRAMEWORKS = ("pydantic-ai", "openai-agents", "langgraph")
MODEL_CALLS = 2  # the tool call, then the answer
# Prompt text of every run: none of it may be stored while content capture is off.
PROMPT_TEXT = (QUESTION, INSTRUCTIONS, agents.weather("Paris"))


@pytest.fixture(autouse=True)
def instrumentation_off_afterwards() -> Iterator[None]:
    """Instrumentors patch process-wide: leave none on for the next test (or test module)."""
    yield
    aw.uninstrument()
    aw.shutdown()


def configure(collector: FrameworkCollector, service: str, **options: Any) -> InMemorySpanExporter:
    """agentwatch exporting to the collector; also to memory, to know how many spans to await."""
    memory = InMemorySpanExporter()
    aw.configure(
        service_name=service,
        exporter=OTLPSpanExporter(endpoint=collector.url + "/v1/traces", timeout=10),
        span_processors=[SimpleSpanProcessor(memory)],
        **options,
    )
    return memory


def run_and_store(
    collector: FrameworkCollector, llm: FakeOpenAI, framework: str, service: str, memory: Any
) -> list[dict[str, Any]]:
    output, tool_calls = agents.run_plain(framework, llm.base_url)
    assert output == FINAL_ANSWER
    assert tool_calls == TOOL_CALLS
    assert aw.force_flush()
    finished = memory.get_finished_spans()
    assert finished, f"{framework}: nothing recorded"
    collector.wait_for(Run(framework, service, output, tool_calls, tuple(finished)))
    stored = collector.spans(service)
    assert len(stored) == len(finished)
    return stored


def statuses(results: tuple[aw.InstrumentationResult, ...]) -> dict[str, str]:
    return {result.name: result.status for result in results}


def test_instrument_turns_on_what_is_installed_and_reports_it(
    collector: FrameworkCollector, caplog: pytest.LogCaptureFixture
) -> None:
    configure(collector, "aw-instrument-report")
    caplog.set_level("INFO", logger="agentwatch")

    first = aw.instrument()
    again = aw.instrument()

    # The openai client's spans would repeat the frameworks' model calls: off unless asked.
    assert statuses(first) == {
        "pydantic-ai": "enabled",
        "openai-agents": "enabled",
        "langgraph": "enabled",
        "openai": "skipped",
    }
    assert statuses(again) == {
        "pydantic-ai": "already enabled",
        "openai-agents": "already enabled",
        "langgraph": "already enabled",
        "openai": "skipped",
    }
    logged = [r.getMessage() for r in caplog.records if r.name == "agentwatch"]
    assert (
        "agentwatch.instrument: langgraph enabled (OpenInference LangChainInstrumentor)" in logged
    )


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_framework_run_is_exported_through_agentwatch(
    collector: FrameworkCollector, llm: FakeOpenAI, framework: str
) -> None:
    service = f"aw-instrument-{framework}"
    memory = configure(collector, service)
    aw.instrument()
    aw.instrument()  # a second call must not record anything twice

    stored = run_and_store(collector, llm, framework, service, memory)

    model_calls = [s for s in stored if s["InputTokens"] > 0]
    assert len(model_calls) == MODEL_CALLS
    for call in model_calls:
        assert call["RequestModel"] == MODEL
        assert call["InputTokens"] == INPUT_TOKENS
        assert call["OutputTokens"] == OUTPUT_TOKENS
        assert call["CacheReadTokens"] == CACHED_TOKENS
        assert call["CostUsd"] > 0
    facts = collector.facts(service)
    assert facts["tool_usage"] == [(TOOL_NAME, TOOL_CALLS)]
    assert facts["model_calls"] == MODEL_CALLS
    assert facts["tasks"] == 1
    # The framework's own spans, under agentwatch's service name: our provider exported them.
    assert {s["ScopeName"] for s in stored} & {"agentwatch", ""} == set()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_no_prompt_text_is_stored_while_content_capture_is_off(
    collector: FrameworkCollector, llm: FakeOpenAI, framework: str
) -> None:
    service = f"aw-instrument-private-{framework}"
    memory = configure(collector, service)
    aw.instrument()

    stored = run_and_store(collector, llm, framework, service, memory)

    raw = json.dumps(stored, default=str)
    assert [text for text in PROMPT_TEXT if text in raw] == []


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_content_capture_on_reaches_the_frameworks_too(
    collector: FrameworkCollector, llm: FakeOpenAI, framework: str
) -> None:
    """The other side of the privacy test, so it cannot pass vacuously: with capture on (applied
    by a second instrument() call after a first with it off), the question is stored."""
    configure(collector, f"aw-instrument-before-{framework}")
    aw.instrument()
    service = f"aw-instrument-content-{framework}"
    memory = configure(collector, service, capture_content=True)

    assert statuses(aw.instrument(framework)) == {framework: "enabled"}
    stored = run_and_store(collector, llm, framework, service, memory)

    assert QUESTION in json.dumps(stored, default=str)


def test_the_openai_client_by_name_records_each_call_once(
    collector: FrameworkCollector, llm: FakeOpenAI
) -> None:
    service = "aw-instrument-openai"
    memory = configure(collector, service)

    first = aw.instrument("openai")
    again = aw.instrument("openai")

    assert statuses(first) == {"openai": "enabled"}
    assert "openai-v2" in first[0].detail
    assert statuses(again) == {"openai": "already enabled"}
    stored = run_and_store(collector, llm, "openai", service, memory)
    assert len(stored) == MODEL_CALLS
    assert {s["RequestModel"] for s in stored} == {MODEL}
    assert [s["InputTokens"] for s in stored] == [INPUT_TOKENS] * MODEL_CALLS
    raw = json.dumps(stored, default=str)
    assert [text for text in PROMPT_TEXT if text in raw] == []


@pytest.mark.parametrize(
    ("framework", "stopped"),
    [("pydantic-ai", True), ("openai-agents", False), ("langgraph", False)],
)
def test_a_framework_run_is_held_to_the_limits_of_the_agent_around_it(
    collector: FrameworkCollector, llm: FakeOpenAI, framework: str, stopped: bool
) -> None:
    """Inside ``@aw.agent(limits=...)`` a framework's model calls are charged to the run. The
    next model call is refused once it is over: PydanticAI stops there (the agent gets
    AgentLimitExceeded); the OpenAI Agents SDK and LangChain swallow what their tracing hooks
    raise, so those runs finish, and the task is recorded as over its limit."""
    memory = configure(collector, f"aw-limits-{framework}")
    aw.instrument(framework)
    before = len(llm.paths())

    @aw.agent(name="held", limits=aw.Limits(max_tokens=100))
    def held() -> tuple[str, int]:
        return agents.run_plain(framework, llm.base_url)

    if stopped:
        with pytest.raises(aw.AgentLimitExceeded) as raised:
            held()
        assert raised.value.limit == "tokens"
        assert len(llm.paths()) - before == 1  # the second model call never went out
    else:
        held()
        assert len(llm.paths()) - before == MODEL_CALLS
    assert aw.force_flush()
    (agent,) = [s for s in memory.get_finished_spans() if s.name == "invoke_agent held"]
    assert agent.attributes is not None
    assert agent.attributes["agentwatch.task.outcome"] == "limit_exceeded"
    assert agent.attributes["agentwatch.limit.exceeded"] == "tokens"

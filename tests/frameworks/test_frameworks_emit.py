"""Real agent frameworks, instrumented as their users would, exporting to a real collector.

Each test runs the two-step tool-using agent of ``agents.py`` (one ``get_weather`` call, then
the answer) against the fake OpenAI server on loopback, over OTLP/HTTP into one shared
collector, and checks what is stored and what the dashboard's queries return that is right
today: tokens (cache and reasoning where the instrumentation reports them), models, cost, tool
calls, tasks. What is still wrong (issue #13: unnamed tasks, LangGraph's task latency, tool
calls counted twice when ``@aw.agent`` wraps a framework run, unmapped attributes) is not
asserted here; /tmp/frameworks_report.md and ``python -m tests.frameworks.inspect_runs`` show it.

The dev extra installs every framework here (``agentwatch[frameworks]``): a broken install
fails these tests rather than skipping them. Only OpenLLMetry, which no extra of ours
installs, skips when absent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.frameworks import agents
from tests.frameworks.agents import AGENT_NAME, MODEL, TOOL_NAME, Run
from tests.frameworks.collector import FrameworkCollector
from tests.frameworks.conftest import TOOL_CALLS
from tests.frameworks.fake_openai import (
    CACHED_TOKENS,
    FINAL_ANSWER,
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    REASONING_TOKENS,
    FakeOpenAI,
)

pytestmark = pytest.mark.slow

MODEL_CALLS = 2  # the tool call, then the answer
# OpenLLMetry's openai instrumentation declares a pydantic model the pre-2.0 way when imported.
OPENLLMETRY_IMPORT_WARNING = "ignore:Support for class-based `config` is deprecated"


@dataclass(frozen=True)
class Stored:
    run: Run
    spans: list[dict[str, Any]]
    facts: dict[str, Any]

    def model_spans(self) -> list[dict[str, Any]]:
        return [s for s in self.spans if s["InputTokens"] > 0 or s["OutputTokens"] > 0]


def run_and_read(
    collector: FrameworkCollector,
    llm: FakeOpenAI,
    runner: Callable[[str, str], Run],
) -> Stored:
    run = runner(collector.url, llm.base_url)
    collector.wait_for(run)
    return Stored(run, collector.spans(run.service), collector.facts(run.service))


def assert_ran(stored: Stored) -> None:
    """The agent really ran: the tool once, then the final answer."""
    assert stored.run.output == FINAL_ANSWER
    assert stored.run.tool_calls == TOOL_CALLS
    assert len(stored.spans) == len(stored.run.spans)


def assert_model_calls(stored: Stored, *, cache_read: bool, reasoning: bool) -> None:
    """Each model call stored with its model, provider, tokens and a price."""
    calls = stored.model_spans()
    assert len(calls) == MODEL_CALLS
    for call in calls:
        assert call["Operation"] == "chat"
        assert call["RequestModel"] == MODEL
        assert call["ResponseModel"] == MODEL
        assert call["Provider"] == "openai"
        assert call["InputTokens"] == INPUT_TOKENS
        assert call["OutputTokens"] == OUTPUT_TOKENS
        if cache_read:
            assert call["CacheReadTokens"] == CACHED_TOKENS
        if reasoning:
            assert call["ReasoningTokens"] == REASONING_TOKENS
        assert call["Priced"] == 1
        assert call["CostUsd"] > 0
    facts = stored.facts
    assert facts["model_calls"] == MODEL_CALLS
    assert facts["unpriced_calls"] == 0
    assert facts["cost_usd"] == pytest.approx(sum(c["CostUsd"] for c in calls))


def assert_tool_counted_once(stored: Stored) -> None:
    assert stored.facts["tool_usage"] == [(TOOL_NAME, TOOL_CALLS)]
    assert stored.facts["tool_calls"] == TOOL_CALLS


def assert_one_task(stored: Stored) -> dict[str, Any]:
    facts = stored.facts
    assert facts["tasks"] == 1
    assert facts["completed"] == 1
    assert len(facts["trace_list"]) == 1
    task: dict[str, Any] = facts["trace_list"][0]
    assert task["outcome"] == "completed"
    assert task["spans"] == len(stored.spans)
    assert task["tokens"] == MODEL_CALLS * (INPUT_TOKENS + OUTPUT_TOKENS)
    return task


def root_span(stored: Stored) -> dict[str, Any]:
    roots = [s for s in stored.spans if not s["ParentSpanId"]]
    assert len(roots) == 1
    return roots[0]


# -- PydanticAI ---------------------------------------------------------------------------------
def test_pydantic_ai_run_is_a_complete_named_task(
    collector: FrameworkCollector, llm: FakeOpenAI
) -> None:

    stored = run_and_read(collector, llm, agents.run_pydantic_ai)

    assert_ran(stored)
    assert_model_calls(stored, cache_read=True, reasoning=True)
    assert_tool_counted_once(stored)
    task = assert_one_task(stored)
    assert task["agent"] == AGENT_NAME
    root = root_span(stored)
    assert root["Operation"] == "invoke_agent"
    assert task["duration_s"] == pytest.approx(root["Duration"] / 1e9)
    assert stored.facts["tasks per agent filter"] == {AGENT_NAME: 1}
    # The model requests declare the agent's tools (gen_ai.tool.definitions).
    assert stored.facts["declared_tools"] == [TOOL_NAME]
    conversations = {s["ConversationId"] for s in stored.spans}
    assert len(conversations) == 1
    assert conversations != {""}


def test_aw_agent_around_pydantic_ai_gives_the_task_its_type(
    collector: FrameworkCollector, llm: FakeOpenAI
) -> None:

    stored = run_and_read(collector, llm, agents.run_pydantic_ai_wrapped)

    assert_ran(stored)
    assert_model_calls(stored, cache_read=True, reasoning=True)
    task = assert_one_task(stored)
    assert task["agent"] == AGENT_NAME
    assert task["task_type"] == "forecast"
    root = root_span(stored)
    assert root["ScopeName"] == "agentwatch"
    assert task["duration_s"] == pytest.approx(root["Duration"] / 1e9)
    # One trace: PydanticAI's spans nest under ours (shared context, separate providers).
    assert len({s["TraceId"] for s in stored.spans}) == 1
    # One tool call, one span: our @aw.tool annotates PydanticAI's span of the same call.
    assert_tool_counted_once(stored)
    (tool,) = [s for s in stored.spans if s["Operation"] == "execute_tool"]
    assert tool["ScopeName"] != "agentwatch"
    assert (tool["ToolTier"], tool["TaskType"]) == ("read", "forecast")
    assert stored.facts["declared_tools"] == [TOOL_NAME]


# -- OpenAI Agents SDK --------------------------------------------------------------------------
def test_openai_agents_responses_api_over_openinference(
    collector: FrameworkCollector, llm: FakeOpenAI
) -> None:
    before = len(llm.paths())

    stored = run_and_read(collector, llm, agents.run_openai_agents)

    assert llm.paths()[before:] == ["/v1/responses"] * MODEL_CALLS
    assert_ran(stored)
    assert_model_calls(stored, cache_read=True, reasoning=True)
    assert_tool_counted_once(stored)
    assert_one_task(stored)
    # The task is the root "Agent workflow" span, with the whole run's duration.
    root = root_span(stored)
    assert root["SpanName"] == "Agent workflow"
    assert root["Operation"] == "invoke_agent"
    assert stored.facts["trace_list"][0]["duration_s"] == pytest.approx(root["Duration"] / 1e9)
    named = [s for s in stored.spans if s["AgentName"]]
    assert [s["AgentName"] for s in named] == [AGENT_NAME]
    # The unnamed workflow span takes the agent's name from the span nested under it, so the
    # sidebar's agent filter finds the run.
    assert stored.facts["trace_list"][0]["agent"] == AGENT_NAME
    assert stored.facts["tasks per agent filter"] == {AGENT_NAME: 1}


def test_openai_agents_chat_completions_over_openinference(
    collector: FrameworkCollector, llm: FakeOpenAI
) -> None:
    before = len(llm.paths())

    stored = run_and_read(
        collector,
        llm,
        lambda c, u: agents.run_openai_agents(c, u, "fw-openai-agents-chat", "chat_completions"),
    )

    assert llm.paths()[before:] == ["/v1/chat/completions"] * MODEL_CALLS
    assert_ran(stored)
    # OpenInference's generation spans carry no cached or reasoning token counts.
    assert_model_calls(stored, cache_read=False, reasoning=False)
    assert_tool_counted_once(stored)
    assert_one_task(stored)


# -- LangGraph ----------------------------------------------------------------------------------
def test_langgraph_react_agent_over_openinference(
    collector: FrameworkCollector, llm: FakeOpenAI
) -> None:

    stored = run_and_read(collector, llm, agents.run_langgraph)

    assert_ran(stored)
    assert_model_calls(stored, cache_read=True, reasoning=True)
    assert_tool_counted_once(stored)
    task = assert_one_task(stored)
    # The graph's root span (an OpenInference CHAIN) is the task, with the whole run's
    # duration and the graph's name; its "agent" node spans are nested agent spans.
    root = root_span(stored)
    assert root["SpanName"] == "LangGraph"
    assert (root["Operation"], root["AgentName"]) == ("invoke_agent", "LangGraph")
    assert task["agent"] == "LangGraph"
    assert task["duration_s"] == pytest.approx(root["Duration"] / 1e9)
    assert stored.facts["tasks per agent filter"] == {"LangGraph": 1}


# -- plain OpenAI client ------------------------------------------------------------------------
def test_openai_client_over_otel_openai_v2(collector: FrameworkCollector, llm: FakeOpenAI) -> None:

    stored = run_and_read(collector, llm, agents.run_openai_v2)

    assert_ran(stored)
    # openai-v2 records neither cached nor reasoning tokens.
    assert_model_calls(stored, cache_read=False, reasoning=False)
    # No agent and no tool spans from a client instrumentation: model calls only, no task.
    assert stored.facts["tasks"] == 0
    assert stored.facts["tool_calls"] == 0


@pytest.mark.filterwarnings(OPENLLMETRY_IMPORT_WARNING)
def test_openai_client_over_openllmetry(collector: FrameworkCollector, llm: FakeOpenAI) -> None:
    pytest.importorskip("opentelemetry.instrumentation.openai")

    stored = run_and_read(collector, llm, agents.run_openllmetry)

    assert_ran(stored)
    # OpenLLMetry's reasoning tokens are gen_ai.usage.reasoning_tokens: not mapped yet.
    assert_model_calls(stored, cache_read=True, reasoning=True)
    assert stored.facts["tasks"] == 0
    assert stored.facts["tool_calls"] == 0


def test_fake_server_drives_any_number_of_tool_calls() -> None:
    """The fake server's own contract, through the real ``openai`` client: ``tool_calls``
    calls, then the answer, each reply with usage; streaming chat too."""
    import openai

    calls: list[str] = []
    with (
        FakeOpenAI(tool_calls=3) as server,
        openai.OpenAI(base_url=server.base_url, api_key="x") as client,
    ):
        messages: list[Any] = [{"role": "user", "content": "weather?"}]
        for _ in range(10):
            reply = client.chat.completions.create(
                model=MODEL,
                messages=messages,
                tools=agents.TOOLS,  # type: ignore[arg-type]
            )
            assert reply.usage is not None
            assert reply.usage.prompt_tokens == INPUT_TOKENS
            message = reply.choices[0].message
            if not message.tool_calls:
                break
            calls.append(message.tool_calls[0].function.arguments)  # type: ignore[union-attr]
            messages.append(message.model_dump(exclude_none=True))
            messages.append(
                {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "sunny"}
            )
        assert message.content == FINAL_ANSWER
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "weather?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        stream.close()
    assert calls == ['{"city": "Paris"}'] * 3
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == FINAL_ANSWER
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == OUTPUT_TOKENS

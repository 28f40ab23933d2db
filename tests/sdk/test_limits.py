"""Limits: each budget stops the run with AgentLimitExceeded, recorded on the agent span, and
limits hold whether or not agentwatch is configured."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

import agentwatch as aw
from agentwatch import _semconv as semconv
from agentwatch._limits import estimate_cost_usd
from agentwatch._testing import CapturedSpans
from tests.sdk.support import attrs, framework_tracer, openai_chat, openai_chunks


def limit_attrs(captured: CapturedSpans, name: str) -> tuple[Any, ...]:
    span_attrs = attrs(captured.one(name))
    return (
        span_attrs.get("agentwatch.task.outcome"),
        span_attrs.get("agentwatch.limit.exceeded"),
        span_attrs.get(semconv.LIMIT_VALUE),
        span_attrs.get(semconv.LIMIT_MAXIMUM),
    )


def test_iterations_limit(agentwatch_spans: CapturedSpans) -> None:
    counted: list[int] = []

    @aw.agent(limits=aw.Limits(max_iterations=2))
    def loop() -> None:
        while True:
            counted.append(aw.iteration())

    with pytest.raises(aw.AgentLimitExceeded) as raised:
        loop()

    assert counted == [1, 2]
    assert (raised.value.limit, raised.value.value, raised.value.maximum) == ("iterations", 3, 2)
    assert limit_attrs(agentwatch_spans, "invoke_agent loop") == (
        "limit_exceeded",
        "iterations",
        3.0,
        2.0,
    )
    span = agentwatch_spans.one("invoke_agent loop")
    assert attrs(span)[semconv.TASK_ITERATIONS] == 3
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)[semconv.ERROR_TYPE] == "agentwatch._errors.AgentLimitExceeded"


def test_tokens_limit_stops_the_llm_call_that_crosses_it(agentwatch_spans: CapturedSpans) -> None:
    calls: list[int] = []

    @aw.llm(provider="openai")
    def ask(model: str) -> dict[str, Any]:
        calls.append(1)
        return openai_chat(prompt_tokens=300, completion_tokens=100)

    @aw.agent(limits=aw.Limits(max_tokens=1000))
    def loop() -> None:
        while True:
            ask(model="gpt-4o")

    with pytest.raises(aw.AgentLimitExceeded) as raised:
        loop()

    assert len(calls) == 3  # 400, 800, then 1200 > 1000
    assert raised.value.limit == "tokens"
    assert limit_attrs(agentwatch_spans, "invoke_agent loop") == (
        "limit_exceeded",
        "tokens",
        1200.0,
        1000.0,
    )
    # The model call itself succeeded and keeps its usage; the run is what was stopped.
    assert all(s.status.status_code is StatusCode.UNSET for s in agentwatch_spans.llm_calls())


def test_tokens_limit_counts_streamed_usage_once_consumed(agentwatch_spans: CapturedSpans) -> None:
    @aw.llm(provider="openai")
    def ask(model: str) -> Iterator[dict[str, Any]]:
        return iter(openai_chunks(prompt_tokens=900, completion_tokens=200))

    @aw.agent(limits=aw.Limits(max_tokens=1000))
    def handle() -> None:
        for _chunk in ask(model="gpt-4o"):
            pass

    with pytest.raises(aw.AgentLimitExceeded, match="tokens"):
        handle()

    assert limit_attrs(agentwatch_spans, "invoke_agent handle")[:2] == (
        "limit_exceeded",
        "tokens",
    )


def test_cost_limit_prices_recorded_usage_of_a_known_model(
    agentwatch_spans: CapturedSpans,
) -> None:
    one_call = estimate_cost_usd("gpt-4o", "openai", 100_000, 10_000)
    assert one_call is not None
    assert one_call > 0

    @aw.agent(limits=aw.Limits(max_cost_usd=one_call * 1.5))
    def handle() -> None:
        for _ in range(2):
            aw.record_usage(
                model="gpt-4o", provider="openai", input_tokens=100_000, output_tokens=10_000
            )

    with pytest.raises(aw.AgentLimitExceeded) as raised:
        handle()

    assert raised.value.limit == "cost"
    assert math.isclose(raised.value.value, 2 * one_call)
    outcome, limit, value, maximum = limit_attrs(agentwatch_spans, "invoke_agent handle")
    assert (outcome, limit) == ("limit_exceeded", "cost")
    assert math.isclose(value, 2 * one_call)
    assert math.isclose(maximum, one_call * 1.5)


def test_cost_limit_ignores_models_without_a_price(agentwatch_spans: CapturedSpans) -> None:
    @aw.agent(limits=aw.Limits(max_cost_usd=0.0001))
    def handle() -> str:
        aw.record_usage(model="in-house-model-v0", input_tokens=10**6, output_tokens=10**6)
        return "ok"

    assert handle() == "ok"
    assert attrs(agentwatch_spans.one("invoke_agent handle"))["agentwatch.task.outcome"] == (
        "completed"
    )


def test_tool_calls_limit_stops_before_the_tool_runs(agentwatch_spans: CapturedSpans) -> None:
    ran: list[str] = []

    @aw.tool
    def lookup(order_id: str) -> None:
        ran.append(order_id)

    @aw.agent(limits=aw.Limits(max_tool_calls=2))
    def handle() -> None:
        for order_id in ("a", "b", "c", "d"):
            lookup(order_id)

    with pytest.raises(aw.AgentLimitExceeded) as raised:
        handle()

    assert ran == ["a", "b"]
    assert (raised.value.limit, raised.value.value, raised.value.maximum) == ("tool_calls", 3, 2)
    assert limit_attrs(agentwatch_spans, "invoke_agent handle") == (
        "limit_exceeded",
        "tool_calls",
        3.0,
        2.0,
    )
    assert len(agentwatch_spans.named("execute_tool lookup")) == 2


def test_wall_time_limit_is_checked_by_check_limits(agentwatch_spans: CapturedSpans) -> None:
    @aw.agent(limits=aw.Limits(max_wall_time_s=0.001))
    def handle() -> None:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            aw.check_limits()

    with pytest.raises(aw.AgentLimitExceeded) as raised:
        handle()

    assert raised.value.limit == "wall_time"
    assert raised.value.value > 0.001
    assert limit_attrs(agentwatch_spans, "invoke_agent handle")[:2] == (
        "limit_exceeded",
        "wall_time",
    )


def test_async_agent_limit_is_recorded(agentwatch_spans: CapturedSpans) -> None:
    @aw.tool
    async def step() -> None:
        await asyncio.sleep(0)

    @aw.agent(limits=aw.Limits(max_tool_calls=1))
    async def handle() -> None:
        await step()
        await step()

    with pytest.raises(aw.AgentLimitExceeded):
        asyncio.run(handle())

    assert limit_attrs(agentwatch_spans, "invoke_agent handle")[:2] == (
        "limit_exceeded",
        "tool_calls",
    )


def test_agent_that_catches_the_limit_still_records_it(agentwatch_spans: CapturedSpans) -> None:
    @aw.agent(limits=aw.Limits(max_iterations=1))
    def handle() -> str:
        try:
            aw.iteration()
            aw.iteration()
        except aw.AgentLimitExceeded:
            return "gave up politely"
        return "unreachable"

    assert handle() == "gave up politely"
    assert limit_attrs(agentwatch_spans, "invoke_agent handle")[:2] == (
        "limit_exceeded",
        "iterations",
    )


def test_limits_belong_to_each_run_separately(agentwatch_spans: CapturedSpans) -> None:
    @aw.agent(limits=aw.Limits(max_iterations=2))
    def handle() -> int:
        aw.iteration()
        return aw.iteration()

    assert [handle(), handle(), handle()] == [2, 2, 2]


def test_a_nested_agent_without_limits_is_charged_to_the_outer_budget(
    agentwatch_spans: CapturedSpans,
) -> None:
    """Tool calls made by a sub-agent count against the agent that called it: an outer budget
    cannot be escaped by delegating the work."""
    ran: list[str] = []

    @aw.tool
    def lookup(order_id: str) -> None:
        ran.append(order_id)

    @aw.agent
    def researcher() -> None:
        for order_id in ("a", "b", "c"):
            lookup(order_id)

    @aw.agent(limits=aw.Limits(max_tool_calls=2))
    def handle() -> None:
        researcher()

    with pytest.raises(aw.AgentLimitExceeded) as raised:
        handle()

    assert ran == ["a", "b"]
    assert (raised.value.limit, raised.value.value, raised.value.maximum) == ("tool_calls", 3, 2)
    for agent in ("invoke_agent researcher", "invoke_agent handle"):
        assert limit_attrs(agentwatch_spans, agent)[:2] == ("limit_exceeded", "tool_calls")


def test_a_nested_agent_with_its_own_limits_charges_both_budgets(
    agentwatch_spans: CapturedSpans,
) -> None:
    """Tokens used inside a sub-agent with its own (looser) limits still count against the
    outer agent's, which stops the second sub-run."""

    @aw.llm(provider="openai")
    def ask(model: str) -> dict[str, Any]:
        return openai_chat(prompt_tokens=300, completion_tokens=100)

    @aw.agent(limits=aw.Limits(max_tokens=10_000))
    def writer() -> None:
        ask(model="gpt-4o")
        ask(model="gpt-4o")

    @aw.agent(limits=aw.Limits(max_tokens=1000))
    def handle() -> None:
        writer()  # 800 tokens: within both budgets
        writer()  # 1200 > 1000 after its first call

    with pytest.raises(aw.AgentLimitExceeded) as raised:
        handle()

    assert (raised.value.limit, raised.value.value) == ("tokens", 1200)
    assert len(agentwatch_spans.llm_calls()) == 3
    assert limit_attrs(agentwatch_spans, "invoke_agent handle")[:2] == ("limit_exceeded", "tokens")


def test_iterations_are_each_agents_own(agentwatch_spans: CapturedSpans) -> None:
    """A sub-agent's loop iterations do not count against the outer agent's max_iterations."""

    @aw.agent
    def inner() -> int:
        return max(aw.iteration() for _ in range(5))

    @aw.agent(limits=aw.Limits(max_iterations=2))
    def outer() -> int:
        aw.iteration()
        return inner()

    assert outer() == 5
    (outer_span,) = agentwatch_spans.named("invoke_agent outer")
    assert attrs(outer_span)[semconv.TASK_ITERATIONS] == 1


def test_iteration_outside_an_agent_counts_nothing() -> None:
    assert aw.iteration() == 0
    aw.check_limits()  # no run: nothing to exceed, nothing raised


# --- limits hold without configure() ----------------------------------------------------------


def test_iterations_limit_is_enforced_when_not_configured() -> None:
    assert not aw.is_configured()

    @aw.agent(limits=aw.Limits(max_iterations=1))
    def loop() -> None:
        while True:
            aw.iteration()

    with pytest.raises(aw.AgentLimitExceeded, match="iterations"):
        loop()


def test_tool_calls_limit_is_enforced_when_not_configured() -> None:
    assert not aw.is_configured()
    ran: list[int] = []

    @aw.tool
    def lookup() -> None:
        ran.append(1)

    @aw.agent(limits=aw.Limits(max_tool_calls=1))
    def handle() -> None:
        lookup()
        lookup()

    with pytest.raises(aw.AgentLimitExceeded, match="tool_calls"):
        handle()
    assert ran == [1]


def test_tokens_limit_is_enforced_when_not_configured() -> None:
    assert not aw.is_configured()

    @aw.llm
    def ask(model: str) -> dict[str, Any]:
        return openai_chat(prompt_tokens=500, completion_tokens=500)

    @aw.agent(limits=aw.Limits(max_tokens=100))
    def handle() -> None:
        ask(model="gpt-4o")

    with pytest.raises(aw.AgentLimitExceeded, match="tokens"):
        handle()


def test_async_tool_calls_limit_is_enforced_when_not_configured() -> None:
    @aw.tool
    async def lookup() -> None:
        return None

    @aw.agent(limits=aw.Limits(max_tool_calls=0))
    async def handle() -> None:
        await lookup()

    with pytest.raises(aw.AgentLimitExceeded, match="tool_calls"):
        asyncio.run(handle())


def test_cost_limit_is_enforced_when_not_configured() -> None:
    @aw.agent(limits=aw.Limits(max_cost_usd=0.01))
    def handle() -> None:
        aw.record_usage(model="gpt-4o", input_tokens=1_000_000, output_tokens=0)

    with pytest.raises(aw.AgentLimitExceeded, match="cost"):
        handle()


# --- Limits validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_iterations": -1},
        {"max_tokens": -5},
        {"max_cost_usd": float("nan")},
        {"max_cost_usd": float("inf")},
        {"max_tool_calls": -1},
        {"max_wall_time_s": -0.5},
    ],
)
def test_invalid_limits_are_configuration_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(aw.ConfigurationError, match=next(iter(kwargs))):
        aw.Limits(**kwargs)  # type: ignore[arg-type]


def test_agent_limit_exceeded_is_an_agentwatch_error_with_a_readable_message() -> None:
    exc = aw.AgentLimitExceeded("cost", 0.75, 0.5)

    assert isinstance(exc, aw.AgentwatchError)
    assert str(exc) == "agent limit exceeded: cost reached 0.75 (maximum 0.5)"


def framework_model_call(tracer: Any, tokens_in: int, tokens_out: int) -> None:
    """A model call as another instrumentation records it (PydanticAI, OpenInference, ...)."""
    with tracer.start_as_current_span(
        "chat gpt-4o", attributes={"gen_ai.operation.name": "chat"}
    ) as span:
        span.set_attribute("gen_ai.usage.input_tokens", tokens_in)
        span.set_attribute("gen_ai.usage.output_tokens", tokens_out)


def test_a_frameworks_model_calls_count_against_the_limits_of_the_agent_around_them(
    agentwatch_spans: CapturedSpans,
) -> None:
    """A framework run inside ``@aw.agent(limits=...)``: its model calls (spans of another
    instrumentation on agentwatch's provider, as ``aw.instrument`` wires them) are charged as
    they end, and its next model call is refused once the run is over."""
    tracer = framework_tracer()
    calls: list[int] = []

    @aw.agent(limits=aw.Limits(max_tokens=1000))
    def framework_loop() -> None:
        while True:
            framework_model_call(tracer, 300, 100)
            calls.append(1)

    with pytest.raises(aw.AgentLimitExceeded) as raised:
        framework_loop()

    assert len(calls) == 3  # 400, 800, 1200 > 1000: the fourth call is refused as it starts
    assert raised.value.limit == "tokens"
    assert limit_attrs(agentwatch_spans, "invoke_agent framework_loop") == (
        "limit_exceeded",
        "tokens",
        1200.0,
        1000.0,
    )


def test_a_frameworks_model_calls_outside_any_agent_are_only_recorded(
    agentwatch_spans: CapturedSpans,
) -> None:
    tracer = framework_tracer()
    for _ in range(5):
        framework_model_call(tracer, 10_000, 10_000)

    assert len(agentwatch_spans.named("chat gpt-4o")) == 5

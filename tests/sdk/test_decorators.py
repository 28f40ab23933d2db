"""@agent, @tool and @llm: span names and attributes (GenAI semconv), every kind of callable,
and one trace with correct parents for nested calls."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import SpanKind, StatusCode

import agentwatch as aw
from agentwatch import _semconv as semconv
from agentwatch._testing import CapturedSpans
from tests.sdk.support import (
    attrs,
    framework_tracer,
    openai_chat,
    parent_id,
    span_id,
    trace_id,
)


def assert_chain(*spans: ReadableSpan) -> None:
    """``spans`` form one trace, each the direct child of the one before; the first is a root."""
    assert spans[0].parent is None
    assert len({trace_id(s) for s in spans}) == 1
    for parent, child in itertools.pairwise(spans):
        assert parent_id(child) == span_id(parent), f"{child.name} is not a child of {parent.name}"


# --- names and attributes ---------------------------------------------------------------------


def test_agent_span_follows_genai_conventions(agentwatch_spans: CapturedSpans) -> None:
    @aw.agent(name="support", task_type="refund", description="Handles tickets", agent_id="a-1")
    def handle() -> str:
        return "done"

    handle()

    span = agentwatch_spans.one("invoke_agent support")
    assert span.kind is SpanKind.INTERNAL
    assert attrs(span)[semconv.GEN_AI_OPERATION_NAME] == "invoke_agent"
    assert attrs(span)[semconv.GEN_AI_AGENT_NAME] == "support"
    assert attrs(span)[semconv.GEN_AI_AGENT_DESCRIPTION] == "Handles tickets"
    assert attrs(span)[semconv.GEN_AI_AGENT_ID] == "a-1"
    assert attrs(span)["agentwatch.task.type"] == "refund"
    assert attrs(span)["agentwatch.task.outcome"] == "completed"
    assert span.status.status_code is StatusCode.UNSET


def test_agent_name_defaults_to_the_function_name(agentwatch_spans: CapturedSpans) -> None:
    @aw.agent
    def triage() -> None:
        return None

    triage()

    assert attrs(agentwatch_spans.one("invoke_agent triage"))[semconv.GEN_AI_AGENT_NAME] == "triage"


def test_tool_span_follows_genai_conventions(agentwatch_spans: CapturedSpans) -> None:
    @aw.tool(tier="write_risky")
    def issue_refund(order_id: str) -> str:
        """Refund an order.

        Longer text that is not part of the description.
        """
        return f"refunded {order_id}"

    issue_refund("o-1")

    span = agentwatch_spans.one("execute_tool issue_refund")
    assert span.kind is SpanKind.INTERNAL
    assert attrs(span)[semconv.GEN_AI_OPERATION_NAME] == "execute_tool"
    assert attrs(span)[semconv.GEN_AI_TOOL_NAME] == "issue_refund"
    assert attrs(span)[semconv.GEN_AI_TOOL_TYPE] == "function"
    assert attrs(span)[semconv.GEN_AI_TOOL_DESCRIPTION] == "Refund an order."
    assert attrs(span)["agentwatch.tool.tier"] == "write_risky"


def test_a_tool_inside_a_frameworks_span_of_the_same_call_annotates_it(
    agentwatch_spans: CapturedSpans,
) -> None:
    """One tool call, one span: ``@aw.tool`` called from a framework's own tool span (as
    PydanticAI runs a tool) puts its tier and task type on that span instead of nesting a second
    ``execute_tool`` span; the framework ends its span."""

    @aw.tool(tier="destructive")
    def delete_order(order_id: str) -> str:
        return f"deleted {order_id}"

    @aw.agent(name="support", task_type="cleanup")
    def agent() -> str:
        attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "delete_order"}
        with framework_tracer().start_as_current_span("running tool", attributes=attributes):
            return delete_order("o-1")

    assert agent() == "deleted o-1"

    (tool,) = agentwatch_spans.tools()
    assert tool.name == "running tool"
    assert tool.instrumentation_scope is not None
    assert tool.instrumentation_scope.name == "some.framework"
    assert attrs(tool)["agentwatch.tool.tier"] == "destructive"
    assert attrs(tool)[semconv.TASK_TYPE] == "cleanup"
    assert parent_id(tool) == span_id(agentwatch_spans.one("invoke_agent support"))


@pytest.mark.parametrize(
    ("attributes", "why"),
    [
        ({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "other"}, "another tool"),
        ({"gen_ai.operation.name": "chat"}, "not a tool span"),
    ],
)
def test_a_tool_under_any_other_span_has_its_own(
    agentwatch_spans: CapturedSpans, attributes: dict[str, str], why: str
) -> None:
    @aw.tool
    def delete_order(order_id: str) -> str:
        return f"deleted {order_id}"

    with framework_tracer().start_as_current_span("outer", attributes=attributes):
        delete_order("o-1")

    ours = agentwatch_spans.one("execute_tool delete_order")
    assert parent_id(ours) == span_id(agentwatch_spans.one("outer")), why


def test_a_tool_that_calls_itself_nests_its_own_spans(agentwatch_spans: CapturedSpans) -> None:
    @aw.tool
    def countdown(n: int) -> int:
        return n if n == 0 else countdown(n - 1)

    countdown(2)

    assert len(agentwatch_spans.named("execute_tool countdown")) == 3


def test_tool_name_and_description_can_be_given(agentwatch_spans: CapturedSpans) -> None:
    @aw.tool(name="orders.search", description="Search orders")
    def search() -> list[str]:
        return []

    search()

    span = agentwatch_spans.one("execute_tool orders.search")
    assert attrs(span)[semconv.GEN_AI_TOOL_DESCRIPTION] == "Search orders"
    assert "agentwatch.tool.tier" not in attrs(span)


def test_llm_span_is_named_after_the_model_keyword(agentwatch_spans: CapturedSpans) -> None:
    @aw.llm(provider="openai")
    def ask(*, model: str, messages: list[dict[str, str]]) -> dict[str, Any]:
        return openai_chat(model="gpt-4o-2024-08-06")

    ask(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])

    span = agentwatch_spans.one("chat gpt-4o")
    assert span.kind is SpanKind.CLIENT
    assert attrs(span)[semconv.GEN_AI_OPERATION_NAME] == "chat"
    assert attrs(span)[semconv.GEN_AI_PROVIDER_NAME] == "openai"
    assert attrs(span)[semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o"
    assert attrs(span)[semconv.GEN_AI_RESPONSE_MODEL] == "gpt-4o-2024-08-06"
    assert attrs(span)[semconv.GEN_AI_RESPONSE_ID] == "chatcmpl-abc123"
    assert attrs(span)[semconv.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert attrs(span)[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 120
    assert attrs(span)[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 30


def test_llm_model_given_to_the_decorator_names_the_span(agentwatch_spans: CapturedSpans) -> None:
    @aw.llm(provider="anthropic", model="claude-3-5-haiku-20241022")
    def ask(prompt: str) -> str:
        return "plain text, no usage"

    assert ask("hi") == "plain text, no usage"

    span = agentwatch_spans.one("chat claude-3-5-haiku-20241022")
    assert attrs(span)[semconv.GEN_AI_REQUEST_MODEL] == "claude-3-5-haiku-20241022"
    assert semconv.GEN_AI_USAGE_INPUT_TOKENS not in attrs(span)


def test_llm_span_takes_its_name_from_the_response_when_no_model_is_known(
    agentwatch_spans: CapturedSpans,
) -> None:
    @aw.llm
    def ask(prompt: str) -> dict[str, Any]:
        return openai_chat(model="gpt-4o-mini-2024-07-18")

    ask("hi")

    span = agentwatch_spans.one("chat gpt-4o-mini-2024-07-18")
    assert semconv.GEN_AI_REQUEST_MODEL not in attrs(span)
    assert attrs(span)[semconv.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"


def test_llm_span_without_any_model_is_named_after_the_operation(
    agentwatch_spans: CapturedSpans,
) -> None:
    @aw.llm(operation="text_completion")
    def complete(prompt: str) -> str:
        return "ok"

    complete("hi")

    span = agentwatch_spans.one("text_completion")
    assert attrs(span)[semconv.GEN_AI_OPERATION_NAME] == "text_completion"


def test_decorated_function_keeps_its_name_doc_and_wrapped() -> None:
    def lookup(order_id: str) -> str:
        """Look an order up."""
        return order_id

    traced = aw.tool(tier="read")(lookup)

    assert traced.__name__ == "lookup"
    assert traced.__doc__ == "Look an order up."
    assert traced.__wrapped__ is lookup  # type: ignore[attr-defined]


def test_current_span_inside_a_tool_is_the_tool_span(agentwatch_spans: CapturedSpans) -> None:
    seen: list[int] = []

    @aw.tool
    def inside() -> None:
        seen.append(trace.get_current_span().get_span_context().span_id)

    inside()

    assert seen == [span_id(agentwatch_spans.one("execute_tool inside"))]
    assert not trace.get_current_span().get_span_context().is_valid, "context was not restored"


# --- every kind of callable, nested into one trace ------------------------------------------


def test_sync_agent_tool_llm_form_one_trace(agentwatch_spans: CapturedSpans) -> None:
    @aw.llm(provider="openai")
    def ask(model: str) -> dict[str, Any]:
        return openai_chat()

    @aw.tool
    def research() -> str:
        ask(model="gpt-4o")
        return "notes"

    @aw.agent
    def handle() -> str:
        return research()

    assert handle() == "notes"

    assert_chain(
        agentwatch_spans.one("invoke_agent handle"),
        agentwatch_spans.one("execute_tool research"),
        agentwatch_spans.one("chat gpt-4o"),
    )


def test_async_agent_tool_llm_form_one_trace(agentwatch_spans: CapturedSpans) -> None:
    @aw.llm(provider="openai")
    async def ask(model: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        return openai_chat()

    @aw.tool
    async def research() -> str:
        await ask(model="gpt-4o")
        return "notes"

    @aw.agent
    async def handle() -> str:
        return await research()

    assert asyncio.run(handle()) == "notes"

    assert_chain(
        agentwatch_spans.one("invoke_agent handle"),
        agentwatch_spans.one("execute_tool research"),
        agentwatch_spans.one("chat gpt-4o"),
    )
    assert attrs(agentwatch_spans.one("chat gpt-4o"))[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 120


def test_generator_agent_and_tool_form_one_trace(agentwatch_spans: CapturedSpans) -> None:
    @aw.llm
    def ask(model: str) -> dict[str, Any]:
        return openai_chat()

    @aw.tool
    def pages() -> Iterator[int]:
        for page in range(3):
            ask(model="gpt-4o")
            yield page

    @aw.agent
    def handle() -> Iterator[int]:
        yield from pages()

    assert list(handle()) == [0, 1, 2]

    agent_span = agentwatch_spans.one("invoke_agent handle")
    tool_span = agentwatch_spans.one("execute_tool pages")
    llm_spans = agentwatch_spans.named("chat gpt-4o")
    assert len(llm_spans) == 3
    for llm_span in llm_spans:
        assert_chain(agent_span, tool_span, llm_span)
    assert attrs(agent_span)["agentwatch.task.outcome"] == "completed"


def test_async_generator_agent_and_tool_form_one_trace(agentwatch_spans: CapturedSpans) -> None:
    @aw.llm
    async def ask(model: str) -> dict[str, Any]:
        return openai_chat()

    @aw.tool
    async def pages() -> AsyncIterator[int]:
        for page in range(3):
            await ask(model="gpt-4o")
            yield page

    @aw.agent
    async def handle() -> AsyncIterator[int]:
        async for page in pages():
            yield page

    async def consume() -> list[int]:
        return [page async for page in handle()]

    assert asyncio.run(consume()) == [0, 1, 2]

    agent_span = agentwatch_spans.one("invoke_agent handle")
    tool_span = agentwatch_spans.one("execute_tool pages")
    llm_spans = agentwatch_spans.named("chat gpt-4o")
    assert len(llm_spans) == 3
    for llm_span in llm_spans:
        assert_chain(agent_span, tool_span, llm_span)


def test_generator_span_covers_consumption_not_creation(agentwatch_spans: CapturedSpans) -> None:
    @aw.tool
    def numbers() -> Iterator[int]:
        yield 1
        yield 2

    gen = numbers()
    assert agentwatch_spans.spans == []
    assert next(gen) == 1
    assert agentwatch_spans.spans == []
    assert list(gen) == [2]
    assert len(agentwatch_spans.named("execute_tool numbers")) == 1


def test_generator_return_value_send_and_throw_pass_through(
    agentwatch_spans: CapturedSpans,
) -> None:
    @aw.tool
    def echo() -> Generator[str, str, str]:
        received = yield "ready"
        try:
            yield f"got {received}"
        except KeyError:
            yield "handled KeyError"
        return "finished"

    def drive() -> Generator[str, str, None]:
        result = yield from echo()
        yield result

    gen = drive()
    assert next(gen) == "ready"
    assert gen.send("ping") == "got ping"
    assert gen.throw(KeyError("k")) == "handled KeyError"
    assert list(gen) == ["finished"]
    assert len(agentwatch_spans.named("execute_tool echo")) == 1


def test_async_generator_asend_and_athrow_pass_through(agentwatch_spans: CapturedSpans) -> None:
    @aw.tool
    async def echo() -> AsyncGenerator[str, str]:
        received = yield "ready"
        try:
            yield f"got {received}"
        except KeyError:
            yield "handled KeyError"

    async def drive() -> list[str]:
        agen = echo()
        out = [await agen.__anext__()]
        out.append(await agen.asend("ping"))
        out.append(await agen.athrow(KeyError("k")))
        out.extend([item async for item in agen])
        return out

    assert asyncio.run(drive()) == ["ready", "got ping", "handled KeyError"]
    assert len(agentwatch_spans.named("execute_tool echo")) == 1


class OrderService:
    prefix = "order"

    def __init__(self) -> None:
        self.calls = 0

    @aw.tool(tier="read")
    def lookup(self, order_id: str) -> str:
        self.calls += 1
        return f"{self.prefix}:{order_id}"

    @aw.tool(tier="read")
    async def lookup_async(self, order_id: str) -> str:
        return f"{self.prefix}:{order_id}"

    @classmethod
    @aw.tool(tier="read")
    def describe(cls, order_id: str) -> str:
        return f"{cls.__name__}:{order_id}"

    @staticmethod
    @aw.tool(tier="read")
    def normalize(order_id: str) -> str:
        return order_id.upper()

    @aw.agent(task_type="order_status")
    def handle(self, order_id: str) -> str:
        return self.lookup(order_id)


def test_instance_method_is_traced_and_bound(agentwatch_spans: CapturedSpans) -> None:
    service = OrderService()

    assert service.lookup("o-1") == "order:o-1"

    assert service.calls == 1
    assert attrs(agentwatch_spans.one("execute_tool lookup"))[semconv.GEN_AI_TOOL_NAME] == "lookup"


def test_async_instance_method_is_traced(agentwatch_spans: CapturedSpans) -> None:
    assert asyncio.run(OrderService().lookup_async("o-2")) == "order:o-2"
    assert len(agentwatch_spans.named("execute_tool lookup_async")) == 1


def test_classmethod_and_staticmethod_are_traced(agentwatch_spans: CapturedSpans) -> None:
    assert OrderService.describe("o-3") == "OrderService:o-3"
    assert OrderService().normalize("o-4") == "O-4"
    assert len(agentwatch_spans.named("execute_tool describe")) == 1
    assert len(agentwatch_spans.named("execute_tool normalize")) == 1


def test_agent_method_calling_tool_method_forms_one_trace(
    agentwatch_spans: CapturedSpans,
) -> None:
    OrderService().handle("o-5")

    assert_chain(
        agentwatch_spans.one("invoke_agent handle"), agentwatch_spans.one("execute_tool lookup")
    )


def test_method_arguments_are_captured_without_self_or_cls() -> None:
    with aw.capture_spans(capture_content=True) as captured:
        OrderService().lookup("o-6")
        OrderService.describe("o-7")

    assert attrs(captured.one("execute_tool lookup"))[semconv.GEN_AI_TOOL_CALL_ARGUMENTS] == (
        '{"order_id": "o-6"}'
    )
    assert attrs(captured.one("execute_tool describe"))[semconv.GEN_AI_TOOL_CALL_ARGUMENTS] == (
        '{"order_id": "o-7"}'
    )


def test_nested_agent_inherits_the_outer_task_type(agentwatch_spans: CapturedSpans) -> None:
    @aw.agent(name="sub")
    def sub_agent() -> None:
        return None

    @aw.agent(name="main", task_type="billing_dispute")
    def main_agent() -> None:
        sub_agent()

    main_agent()

    inner = agentwatch_spans.one("invoke_agent sub")
    assert attrs(inner)["agentwatch.task.type"] == "billing_dispute"
    assert_chain(agentwatch_spans.one("invoke_agent main"), inner)


def test_agent_nests_under_a_span_from_the_applications_own_tracer(
    agentwatch_spans: CapturedSpans,
) -> None:
    app_tracer = TracerProvider().get_tracer("the-web-app")

    @aw.agent
    def handle() -> None:
        return None

    with app_tracer.start_as_current_span("POST /tickets") as request_span:
        handle()

    agent_span = agentwatch_spans.one("invoke_agent handle")
    assert trace_id(agent_span) == request_span.get_span_context().trace_id
    assert parent_id(agent_span) == request_span.get_span_context().span_id


@pytest.mark.parametrize("tier", ["read", "write_safe", "write_risky", "destructive"])
def test_every_tool_tier_is_accepted(agentwatch_spans: CapturedSpans, tier: str) -> None:
    @aw.tool(tier=tier)
    def act() -> None:
        return None

    act()

    assert attrs(agentwatch_spans.one("execute_tool act"))["agentwatch.tool.tier"] == tier


def test_every_span_of_a_run_carries_its_task_type(agentwatch_spans: CapturedSpans) -> None:
    """Tool and model spans inside an agent run get its task type; outside a run they get none."""

    @aw.tool
    def lookup() -> str:
        return "found"

    @aw.llm(provider="openai")
    def ask() -> dict[str, Any]:
        return openai_chat(model="gpt-4o")

    @aw.agent(task_type="refund")
    def handle() -> None:
        lookup()
        ask()

    handle()
    lookup()

    inside, outside = agentwatch_spans.named("execute_tool lookup")
    assert attrs(inside)[semconv.TASK_TYPE] == "refund"
    assert attrs(agentwatch_spans.one("chat gpt-4o"))[semconv.TASK_TYPE] == "refund"
    assert semconv.TASK_TYPE not in attrs(outside)


def test_an_agent_declares_its_tools(agentwatch_spans: CapturedSpans) -> None:
    """``tools=`` records the declared tools' names (from @tool functions or strings)."""

    @aw.tool(name="search_orders")
    def search() -> None:
        return None

    @aw.agent(tools=[search, "close_account"])
    def handle() -> None:
        search()

    handle()
    root = agentwatch_spans.one("invoke_agent handle")
    assert attrs(root)[semconv.AGENT_TOOLS] == ("search_orders", "close_account")


def test_declaring_something_that_is_not_a_tool_is_a_configuration_error() -> None:
    """A tools= entry with no name is refused when the agent is decorated."""
    with pytest.raises(aw.ConfigurationError):
        aw.agent(tools=[42])  # type: ignore[list-item]

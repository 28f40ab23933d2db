"""Streamed model calls and generators: the span ends once the stream is consumed (or closed),
carries the streamed usage, and the OpenTelemetry context is never detached in the wrong place."""

from __future__ import annotations

import asyncio
import contextvars
import gc
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import StatusCode

import agentwatch as aw
from agentwatch import _semconv as semconv
from agentwatch._testing import CapturedSpans
from tests.sdk.conftest import ContextErrors
from tests.sdk.support import (
    AsyncStream,
    SyncStream,
    agen_of,
    anthropic_events,
    as_object,
    attrs,
    openai_chunks,
    openai_response_events,
    parent_id,
    span_id,
)


async def anext_of(agen: AsyncGenerator[int, None]) -> int:
    return await agen.__anext__()


def no_current_span() -> bool:
    return not trace.get_current_span().get_span_context().is_valid


# --- returned streams -------------------------------------------------------------------------


def test_returned_openai_stream_ends_the_span_when_consumed_with_final_usage(
    agentwatch_spans: CapturedSpans, context_errors: ContextErrors
) -> None:
    @aw.llm(provider="openai")
    def ask(model: str) -> Iterator[dict[str, Any]]:
        return iter(openai_chunks(prompt_tokens=80, completion_tokens=12, cached_tokens=16))

    stream = ask(model="gpt-4o")
    assert agentwatch_spans.spans == [], "span ended before the stream was consumed"
    chunks = list(stream)

    assert len(chunks) == 5
    span = agentwatch_spans.one("chat gpt-4o")
    assert attrs(span)[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 80
    assert attrs(span)[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 12
    assert attrs(span)[semconv.GEN_AI_USAGE_CACHE_READ_TOKENS] == 16
    assert attrs(span)[semconv.GEN_AI_RESPONSE_MODEL] == "gpt-4o-2024-08-06"
    assert attrs(span)[semconv.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert context_errors() == []


def test_returned_anthropic_event_objects_are_read_across_events(
    agentwatch_spans: CapturedSpans,
) -> None:
    events = as_object(anthropic_events(input_tokens=60, output_tokens=25, cache_read=40))

    @aw.llm(provider="anthropic")
    def ask(prompt: str) -> Iterator[Any]:
        return iter(events)

    for _ in ask("hi"):
        pass

    span = agentwatch_spans.one("chat claude-3-5-haiku-20241022")
    # message_start carries the input side, message_delta the cumulative output count.
    assert attrs(span)[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 100
    assert attrs(span)[semconv.GEN_AI_USAGE_CACHE_READ_TOKENS] == 40
    assert attrs(span)[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 25
    assert attrs(span)[semconv.GEN_AI_RESPONSE_ID] == "msg_stream1"
    assert attrs(span)[semconv.GEN_AI_RESPONSE_FINISH_REASONS] == ("end_turn",)


def test_returned_openai_responses_stream_takes_usage_from_response_completed(
    agentwatch_spans: CapturedSpans,
) -> None:
    @aw.llm(provider="openai")
    def ask(prompt: str) -> Iterator[dict[str, Any]]:
        return iter(openai_response_events(input_tokens=90, output_tokens=20))

    list(ask("hi"))

    span = agentwatch_spans.one("chat gpt-4o-mini")
    assert attrs(span)[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 90
    assert attrs(span)[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 20


def test_async_llm_returning_an_async_stream_ends_when_consumed(
    agentwatch_spans: CapturedSpans, context_errors: ContextErrors
) -> None:
    @aw.llm(provider="openai")
    async def ask(model: str) -> AsyncStream:
        return AsyncStream(openai_chunks(prompt_tokens=33, completion_tokens=7))

    async def main() -> int:
        stream = await ask(model="gpt-4o")
        assert agentwatch_spans.spans == []
        return len([chunk async for chunk in stream])

    assert asyncio.run(main()) == 5
    span = agentwatch_spans.one("chat gpt-4o")
    assert attrs(span)[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 33
    assert attrs(span)[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 7
    assert context_errors() == []


def test_stream_used_as_context_manager_ends_the_span_on_exit(
    agentwatch_spans: CapturedSpans,
) -> None:
    source = SyncStream(openai_chunks())

    @aw.llm
    def ask(model: str) -> SyncStream:
        return source

    with ask(model="gpt-4o") as stream:
        next(stream)
        assert agentwatch_spans.spans == []

    assert source.closed
    assert len(agentwatch_spans.named("chat gpt-4o")) == 1


def test_stream_closed_early_ends_the_span_with_the_usage_seen_so_far(
    agentwatch_spans: CapturedSpans, context_errors: ContextErrors
) -> None:
    source = SyncStream(anthropic_events(input_tokens=60))

    @aw.llm(provider="anthropic")
    def ask(prompt: str) -> SyncStream:
        return source

    stream = ask("hi")
    next(stream)  # message_start only
    stream.close()

    assert source.closed
    span = agentwatch_spans.one("chat claude-3-5-haiku-20241022")
    assert attrs(span)[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 60
    assert span.status.status_code is StatusCode.UNSET
    assert context_errors() == []


def test_abandoned_stream_ends_its_span_when_collected(
    agentwatch_spans: CapturedSpans, context_errors: ContextErrors
) -> None:
    @aw.llm
    def ask(model: str) -> Iterator[dict[str, Any]]:
        return iter(openai_chunks())

    stream = ask(model="gpt-4o")
    next(stream)
    del stream
    gc.collect()

    assert len(agentwatch_spans.named("chat gpt-4o")) == 1
    assert context_errors() == []


def test_error_inside_a_stream_marks_the_span_failed(agentwatch_spans: CapturedSpans) -> None:
    class StreamBroke(Exception):
        pass

    def broken() -> Iterator[dict[str, Any]]:
        yield openai_chunks()[0]
        raise StreamBroke("connection reset")

    @aw.llm
    def ask(model: str) -> Iterator[dict[str, Any]]:
        return broken()

    stream = ask(model="gpt-4o")
    next(stream)
    try:
        next(stream)
    except StreamBroke:
        pass

    span = agentwatch_spans.one("chat gpt-4o")
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)[semconv.ERROR_TYPE].endswith("StreamBroke")


def test_stream_consumed_in_another_task_than_the_one_that_created_it(
    agentwatch_spans: CapturedSpans, context_errors: ContextErrors
) -> None:
    @aw.llm
    async def ask(model: str) -> AsyncStream:
        return AsyncStream(openai_chunks(prompt_tokens=5, completion_tokens=3))

    async def consume(stream: AsyncStream) -> int:
        return len([chunk async for chunk in stream])

    async def main() -> int:
        stream = await ask(model="gpt-4o")
        return await asyncio.create_task(consume(stream))

    assert asyncio.run(main()) == 5
    assert attrs(agentwatch_spans.one("chat gpt-4o"))[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 3
    assert context_errors() == []


# --- @llm generators: the function itself streams ---------------------------------------------


def test_llm_generator_function_reads_usage_from_the_chunks_it_yields(
    agentwatch_spans: CapturedSpans, context_errors: ContextErrors
) -> None:
    @aw.llm(provider="openai")
    def ask(model: str) -> Iterator[dict[str, Any]]:
        yield from openai_chunks(prompt_tokens=41, completion_tokens=9)

    assert len(list(ask(model="gpt-4o"))) == 5

    span = agentwatch_spans.one("chat gpt-4o")
    assert attrs(span)[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 41
    assert attrs(span)[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 9
    assert attrs(span)[semconv.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert context_errors() == []


def test_llm_async_generator_function_reads_usage_from_anthropic_events(
    agentwatch_spans: CapturedSpans, context_errors: ContextErrors
) -> None:
    events = anthropic_events(input_tokens=70, output_tokens=30)

    @aw.llm(provider="anthropic")
    async def ask(prompt: str) -> AsyncIterator[dict[str, Any]]:
        async for event in agen_of(events):
            yield event

    async def main() -> list[dict[str, Any]]:
        return [event async for event in ask("hi")]

    assert asyncio.run(main()) == events
    span = agentwatch_spans.one("chat claude-3-5-haiku-20241022")
    assert attrs(span)[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 70
    assert attrs(span)[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 30
    assert context_errors() == []


# --- generators consumed in awkward ways never break the context ------------------------------


def test_generator_closed_early_ends_span_without_context_errors(
    agentwatch_spans: CapturedSpans, context_errors: ContextErrors
) -> None:
    closed: list[bool] = []

    @aw.agent
    def handle() -> Generator[int, None, None]:
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    gen = handle()
    assert next(gen) == 1
    gen.close()

    assert closed == [True]
    span = agentwatch_spans.one("invoke_agent handle")
    assert span.status.status_code is StatusCode.UNSET
    assert no_current_span()
    assert context_errors() == []


def test_generator_abandoned_partway_ends_span_without_context_errors(
    agentwatch_spans: CapturedSpans, context_errors: ContextErrors
) -> None:
    @aw.tool
    def pages() -> Iterator[int]:
        yield from range(10)

    gen = pages()
    next(gen)
    next(gen)
    del gen
    gc.collect()

    assert len(agentwatch_spans.named("execute_tool pages")) == 1
    assert no_current_span()
    assert context_errors() == []


def test_generator_resumed_from_different_contexts_keeps_its_parent(
    agentwatch_spans: CapturedSpans, context_errors: ContextErrors
) -> None:
    @aw.tool
    def step() -> None:
        return None

    @aw.agent
    def handle() -> Iterator[int]:
        for i in range(3):
            step()
            yield i

    gen = handle()
    # Each step runs in a fresh copy of the context, as a callback scheduler would run it.
    results = [contextvars.copy_context().run(next, gen) for _ in range(3)]

    assert results == [0, 1, 2]
    assert list(gen) == []
    agent_span = agentwatch_spans.one("invoke_agent handle")
    steps = agentwatch_spans.named("execute_tool step")
    assert [parent_id(s) for s in steps] == [span_id(agent_span)] * 3
    assert context_errors() == []


def test_async_generator_closed_early_ends_span_without_context_errors(
    agentwatch_spans: CapturedSpans, context_errors: ContextErrors
) -> None:
    @aw.agent
    async def handle() -> AsyncGenerator[int, None]:
        for i in range(10):
            yield i

    async def main() -> int:
        agen = handle()
        first = await agen.__anext__()
        await agen.aclose()
        return first

    assert asyncio.run(main()) == 0
    assert len(agentwatch_spans.named("invoke_agent handle")) == 1
    assert context_errors() == []


def test_async_generator_stepped_from_different_tasks_keeps_its_parent(
    agentwatch_spans: CapturedSpans, context_errors: ContextErrors
) -> None:
    @aw.tool
    async def step() -> None:
        return None

    @aw.agent
    async def handle() -> AsyncGenerator[int, None]:
        for i in range(3):
            await step()
            yield i

    async def main() -> list[int]:
        agen = handle()
        out: list[int] = []
        for _ in range(3):
            # Every item is pulled by a new task, i.e. from a different context.
            out.append(await asyncio.create_task(anext_of(agen)))
        await agen.aclose()
        return out

    assert asyncio.run(main()) == [0, 1, 2]
    agent_span = agentwatch_spans.one("invoke_agent handle")
    steps = agentwatch_spans.named("execute_tool step")
    assert [parent_id(s) for s in steps] == [span_id(agent_span)] * 3
    assert context_errors() == []


def test_async_generator_left_open_is_finalized_by_the_loop_without_context_errors(
    agentwatch_spans: CapturedSpans, context_errors: ContextErrors
) -> None:
    @aw.tool
    async def pages() -> AsyncIterator[int]:
        for i in range(10):
            yield i

    async def main() -> AsyncIterator[int]:
        agen = pages()
        await agen.__anext__()
        return agen  # still open when the loop shuts down

    kept = asyncio.run(main())  # asyncio.run finalizes open async generators

    assert len(agentwatch_spans.named("execute_tool pages")) == 1
    assert context_errors() == []
    del kept


def test_context_errors_fixture_sees_a_real_detach_error(context_errors: ContextErrors) -> None:
    """The guard the other tests rely on: a token detached in the wrong context is seen."""
    token = contextvars.copy_context().run(otel_context.attach, otel_context.get_current())
    otel_context.detach(token)

    assert [r.getMessage() for r in context_errors()] == ["Failed to detach context"]

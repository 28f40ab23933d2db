"""Token usage read from provider responses, as JSON dicts and as SDK-style objects.

Input tokens follow the GenAI convention: they include cache reads and writes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import agentwatch as aw
from agentwatch import _semconv as semconv
from agentwatch._testing import CapturedSpans
from agentwatch._usage import (
    Usage,
    extract_stream_event,
    extract_usage,
    response_text,
    stream_text,
)
from tests.sdk.support import (
    anthropic_events,
    anthropic_message,
    as_object,
    attrs,
    openai_chat,
    openai_chunks,
    openai_response,
    openai_response_events,
)


def as_dict(value: Any) -> Any:
    return value


SHAPES: list[Callable[[Any], Any]] = [as_dict, as_object]
shape = pytest.mark.parametrize("shape", SHAPES, ids=["dict", "object"])


@shape
def test_openai_chat_prompt_tokens_already_include_cached_tokens(
    shape: Callable[[Any], Any],
) -> None:
    response = shape(openai_chat(prompt_tokens=1000, completion_tokens=200, cached_tokens=600))

    usage = extract_usage(response)

    assert usage == Usage(
        input_tokens=1000,
        output_tokens=200,
        cache_read_tokens=600,
        model="gpt-4o-2024-08-06",
        response_id="chatcmpl-abc123",
        finish_reasons=["stop"],
    )


@shape
def test_openai_chat_reasoning_tokens(shape: Callable[[Any], Any]) -> None:
    response = shape(openai_chat(model="o3-mini", completion_tokens=500, reasoning_tokens=320))

    usage = extract_usage(response)

    assert usage is not None
    assert usage.reasoning_tokens == 320
    assert usage.output_tokens == 500


@shape
def test_openai_responses_api_input_tokens_and_cached_details(
    shape: Callable[[Any], Any],
) -> None:
    response = shape(
        openai_response(input_tokens=900, output_tokens=80, cached_tokens=512, reasoning_tokens=64)
    )

    usage = extract_usage(response)

    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens) == (900, 80)
    assert usage.cache_read_tokens == 512
    assert usage.reasoning_tokens == 64
    assert usage.response_id == "resp_abc123"


@shape
def test_anthropic_input_tokens_get_cache_reads_and_writes_added_back(
    shape: Callable[[Any], Any],
) -> None:
    response = shape(
        anthropic_message(input_tokens=100, output_tokens=40, cache_read=2000, cache_write=300)
    )

    usage = extract_usage(response)

    assert usage == Usage(
        input_tokens=2400,
        output_tokens=40,
        cache_read_tokens=2000,
        cache_write_tokens=300,
        model="claude-3-5-sonnet-20241022",
        response_id="msg_abc123",
        finish_reasons=["end_turn"],
    )


@shape
def test_anthropic_without_cache_fields_is_read_as_plain_input(
    shape: Callable[[Any], Any],
) -> None:
    usage = extract_usage(shape(anthropic_message(input_tokens=100, output_tokens=40)))

    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens) == (100, 40)
    assert usage.cache_read_tokens is None


@pytest.mark.parametrize("response", [None, "text", 42, {"choices": []}, {"usage": None}])
def test_responses_without_usage_or_model_give_none(response: Any) -> None:
    assert extract_usage(response) is None


def test_non_numeric_counts_are_ignored_not_crashed_on() -> None:
    usage = extract_usage({"model": "m", "usage": {"prompt_tokens": True, "input_tokens": "12"}})

    assert usage is not None
    assert usage.input_tokens is None
    assert usage.total_tokens == 0


def test_usage_merge_keeps_later_values_and_unique_finish_reasons() -> None:
    usage = Usage(input_tokens=10, output_tokens=1, model="m", finish_reasons=["stop"])
    usage.merge(Usage(output_tokens=25, finish_reasons=["stop", "length"]))

    assert (usage.input_tokens, usage.output_tokens, usage.model) == (10, 25, "m")
    assert usage.finish_reasons == ["stop", "length"]
    assert usage.total_tokens == 35


@shape
def test_openai_chunk_usage_comes_from_the_final_chunk(shape: Callable[[Any], Any]) -> None:
    chunks = [shape(c) for c in openai_chunks(prompt_tokens=80, completion_tokens=12)]

    usages = [extract_stream_event(c) for c in chunks]

    assert all(u is not None and u.input_tokens is None for u in usages[:-1])
    final = usages[-1]
    assert final is not None
    assert (final.input_tokens, final.output_tokens) == (80, 12)


@shape
def test_anthropic_stream_events_carry_input_then_output(shape: Callable[[Any], Any]) -> None:
    events = anthropic_events(input_tokens=60, output_tokens=25, cache_write=8)

    usages = {event["type"]: extract_stream_event(shape(event)) for event in events}

    start, delta = usages["message_start"], usages["message_delta"]
    assert start is not None
    assert delta is not None
    assert (start.input_tokens, start.cache_write_tokens, start.output_tokens) == (68, 8, 1)
    assert (delta.input_tokens, delta.output_tokens) == (None, 25)
    assert delta.finish_reasons == ["end_turn"]
    assert usages["content_block_delta"] is None
    assert usages["ping"] is None


def test_openai_responses_stream_usage_is_in_response_completed() -> None:
    usages = [extract_stream_event(e) for e in openai_response_events(input_tokens=90)]

    assert usages[:-1] == [None, None, None]
    assert usages[-1] is not None
    assert usages[-1].input_tokens == 90


@shape
def test_response_text_reads_each_provider_shape(shape: Callable[[Any], Any]) -> None:
    assert response_text(shape(openai_chat(text="from chat"))) == "from chat"
    assert response_text(shape(openai_response(text="from responses"))) == "from responses"
    assert response_text(shape(anthropic_message(text="from claude"))) == "from claude"
    assert response_text(shape({"unrelated": 1})) is None


@shape
def test_stream_text_reads_chunk_and_event_deltas(shape: Callable[[Any], Any]) -> None:
    openai_text = [stream_text(shape(c)) for c in openai_chunks(pieces=("a", "b"))]
    anthropic_text = [stream_text(shape(e)) for e in anthropic_events(pieces=("c", "d"))]
    responses_text = [stream_text(shape(e)) for e in openai_response_events()]

    assert "".join(t for t in openai_text if t) == "ab"
    assert "".join(t for t in anthropic_text if t) == "cd"
    assert "".join(t for t in responses_text if t) == "Refund approved."


# --- through @llm: usage lands on the chat span as gen_ai.usage.* ----------------------------


@shape
def test_llm_span_records_openai_cached_and_reasoning_tokens(
    agentwatch_spans: CapturedSpans, shape: Callable[[Any], Any]
) -> None:
    @aw.llm(provider="openai")
    def ask(model: str) -> Any:
        return shape(
            openai_chat(
                model="o3-mini",
                prompt_tokens=1000,
                completion_tokens=500,
                cached_tokens=600,
                reasoning_tokens=320,
            )
        )

    ask(model="o3-mini")

    span_attrs = attrs(agentwatch_spans.one("chat o3-mini"))
    assert span_attrs[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 1000
    assert span_attrs[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 500
    assert span_attrs[semconv.GEN_AI_USAGE_CACHE_READ_TOKENS] == 600
    assert span_attrs[semconv.GEN_AI_USAGE_REASONING_TOKENS] == 320
    assert semconv.GEN_AI_USAGE_CACHE_WRITE_TOKENS not in span_attrs


@shape
def test_llm_span_records_anthropic_cache_tokens(
    agentwatch_spans: CapturedSpans, shape: Callable[[Any], Any]
) -> None:
    @aw.llm(provider="anthropic")
    def ask(prompt: str) -> Any:
        return shape(anthropic_message(input_tokens=100, cache_read=2000, cache_write=300))

    ask("hi")

    span_attrs = attrs(agentwatch_spans.one("chat claude-3-5-sonnet-20241022"))
    assert span_attrs[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 2400
    assert span_attrs[semconv.GEN_AI_USAGE_CACHE_READ_TOKENS] == 2000
    assert span_attrs[semconv.GEN_AI_USAGE_CACHE_WRITE_TOKENS] == 300
    assert span_attrs[semconv.GEN_AI_PROVIDER_NAME] == "anthropic"


def test_record_usage_puts_manual_counts_on_the_current_span(
    agentwatch_spans: CapturedSpans,
) -> None:
    @aw.llm(provider="custom")
    def ask(prompt: str) -> str:
        aw.record_usage(
            model="my-finetune",
            provider="custom",
            input_tokens=70,
            output_tokens=11,
            cache_read_tokens=5,
            reasoning_tokens=3,
        )
        return "text the decorator cannot read usage from"

    ask("hi")

    span_attrs = attrs(agentwatch_spans.one("chat"))
    assert span_attrs[semconv.GEN_AI_RESPONSE_MODEL] == "my-finetune"
    assert span_attrs[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 70
    assert span_attrs[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 11
    assert span_attrs[semconv.GEN_AI_USAGE_CACHE_READ_TOKENS] == 5
    assert span_attrs[semconv.GEN_AI_USAGE_REASONING_TOKENS] == 3

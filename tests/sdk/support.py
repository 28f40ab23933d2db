"""Provider-shaped responses for the SDK tests, and small helpers to read captured spans.

The openai and anthropic SDKs are not installed: their responses are built here as the JSON
the APIs return (dicts) and, through ``as_object``, as attribute objects like the SDKs' models.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan


def attrs(span: ReadableSpan) -> Mapping[str, Any]:
    """A span's attributes, never None."""
    return span.attributes or {}


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def as_object(value: Any) -> Any:
    """Dicts (recursively) as attribute objects, the way the provider SDKs' models read."""
    if isinstance(value, Mapping):
        return SimpleNamespace(**{k: as_object(v) for k, v in value.items()})
    if isinstance(value, list):
        return [as_object(v) for v in value]
    return value


def openai_chat(
    *,
    model: str = "gpt-4o-2024-08-06",
    prompt_tokens: int = 120,
    completion_tokens: int = 30,
    cached_tokens: int | None = None,
    reasoning_tokens: int | None = None,
    text: str = "Your order has shipped.",
) -> dict[str, Any]:
    """An OpenAI chat completion: ``prompt_tokens`` already includes ``cached_tokens``."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens, "audio_tokens": 0}
    if reasoning_tokens is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }


def openai_response(
    *,
    model: str = "gpt-4o-2024-08-06",
    input_tokens: int = 200,
    output_tokens: int = 50,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
    text: str = "Refund approved.",
) -> dict[str, Any]:
    """An OpenAI Responses API response: ``input_tokens`` includes the cached ones."""
    return {
        "id": "resp_abc123",
        "object": "response",
        "model": model,
        "output_text": text,
        "output": [{"type": "message", "content": [{"type": "output_text", "text": text}]}],
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": cached_tokens},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "total_tokens": input_tokens + output_tokens,
        },
    }


def anthropic_message(
    *,
    model: str = "claude-3-5-sonnet-20241022",
    input_tokens: int = 100,
    output_tokens: int = 40,
    cache_read: int | None = None,
    cache_write: int | None = None,
    text: str = "I can help with that.",
) -> dict[str, Any]:
    """An Anthropic message: ``input_tokens`` EXCLUDES cache reads and writes."""
    usage: dict[str, Any] = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    if cache_read is not None:
        usage["cache_read_input_tokens"] = cache_read
    if cache_write is not None:
        usage["cache_creation_input_tokens"] = cache_write
    return {
        "id": "msg_abc123",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "usage": usage,
    }


def openai_chunks(
    *,
    model: str = "gpt-4o-2024-08-06",
    pieces: Sequence[str] = ("Your ", "order ", "shipped."),
    prompt_tokens: int = 80,
    completion_tokens: int = 12,
    cached_tokens: int = 0,
) -> list[dict[str, Any]]:
    """A streamed chat completion with ``stream_options={"include_usage": True}``: the usage
    arrives in a final chunk with no choices."""
    chunks: list[dict[str, Any]] = [
        {
            "id": "chatcmpl-stream1",
            "object": "chat.completion.chunk",
            "model": model,
            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            "usage": None,
        }
        for piece in pieces
    ]
    chunks.append(
        {
            "id": "chatcmpl-stream1",
            "object": "chat.completion.chunk",
            "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": None,
        }
    )
    chunks.append(
        {
            "id": "chatcmpl-stream1",
            "object": "chat.completion.chunk",
            "model": model,
            "choices": [],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": cached_tokens},
            },
        }
    )
    return chunks


def anthropic_events(
    *,
    model: str = "claude-3-5-haiku-20241022",
    pieces: Sequence[str] = ("Happy ", "to help."),
    input_tokens: int = 60,
    output_tokens: int = 25,
    cache_read: int = 0,
    cache_write: int = 0,
) -> list[dict[str, Any]]:
    """A streamed Anthropic message: input usage in message_start, cumulative output usage and
    the stop reason in message_delta."""
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_stream1",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "usage": {
                    "input_tokens": input_tokens,
                    "output_tokens": 1,
                    "cache_read_input_tokens": cache_read,
                    "cache_creation_input_tokens": cache_write,
                },
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
    ]
    events.extend(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
        for p in pieces
    )
    events.extend(
        [
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
            {"type": "message_stop"},
        ]
    )
    return events


def openai_response_events(
    *, model: str = "gpt-4o-mini", input_tokens: int = 90, output_tokens: int = 20
) -> list[dict[str, Any]]:
    """A streamed Responses API answer: usage only in the final ``response.completed``."""
    final = openai_response(model=model, input_tokens=input_tokens, output_tokens=output_tokens)
    return [
        {"type": "response.created", "response": {**final, "usage": None}},
        {"type": "response.output_text.delta", "delta": "Refund "},
        {"type": "response.output_text.delta", "delta": "approved."},
        {"type": "response.completed", "response": final},
    ]


class AsyncStream:
    """An async iterator over events, like the provider SDKs' ``AsyncStream``."""

    def __init__(self, events: Sequence[Any]) -> None:
        self._events = iter(events)
        self.closed = False

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return next(self._events)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self.closed = True


class SyncStream:
    """An iterator over events with ``close()`` and a context manager, like ``openai.Stream``."""

    def __init__(self, events: Sequence[Any]) -> None:
        self._events = iter(events)
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return next(self._events)

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> SyncStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


async def agen_of(events: Sequence[Any]) -> AsyncIterator[Any]:
    for event in events:
        yield event


def framework_tracer() -> Any:
    """A tracer of another instrumentation (a framework tracing its own calls) on agentwatch's
    provider, as ``aw.instrument`` wires them: agentwatch must be configured."""
    from agentwatch._config import STATE

    assert STATE.settings is not None
    provider = STATE.settings.provider
    assert provider is not None
    return provider.get_tracer("some.framework")

"""Token usage from provider responses: OpenAI chat completions and responses, Anthropic messages.

Works on the SDK objects and on their JSON dicts alike, and on streamed chunks. Input tokens
follow the GenAI convention: they include cache reads and writes (Anthropic reports those
apart, so they are added back).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def _get(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


@dataclass(slots=True)
class Usage:
    """Token counts for one model call; ``None`` means the provider did not say."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    model: str | None = None
    response_id: str | None = None
    finish_reasons: list[str] = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return (self.input_tokens or 0) + (self.output_tokens or 0)

    def merge(self, other: Usage) -> None:
        """Take every value ``other`` knows (later stream events carry the final counts)."""
        for name in (
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "model",
            "response_id",
        ):
            value = getattr(other, name)
            if value is not None:
                setattr(self, name, value)
        self.finish_reasons.extend(r for r in other.finish_reasons if r not in self.finish_reasons)


def _usage_block(usage: Any) -> Usage:
    result = Usage()
    prompt = _int(_get(usage, "prompt_tokens"))
    if prompt is not None:  # OpenAI chat completions: prompt includes cached tokens
        result.input_tokens = prompt
        result.output_tokens = _int(_get(usage, "completion_tokens"))
        result.cache_read_tokens = _int(_get(_get(usage, "prompt_tokens_details"), "cached_tokens"))
        result.reasoning_tokens = _int(
            _get(_get(usage, "completion_tokens_details"), "reasoning_tokens")
        )
        return result
    input_tokens = _int(_get(usage, "input_tokens"))
    output_tokens = _int(_get(usage, "output_tokens"))
    cache_read = _int(_get(usage, "cache_read_input_tokens"))
    cache_write = _int(_get(usage, "cache_creation_input_tokens"))
    if cache_read is not None or cache_write is not None:
        # Anthropic: input_tokens excludes the cached parts.
        result.cache_read_tokens = cache_read
        result.cache_write_tokens = cache_write
        if input_tokens is not None:
            input_tokens += (cache_read or 0) + (cache_write or 0)
    else:  # OpenAI responses API
        result.cache_read_tokens = _int(_get(_get(usage, "input_tokens_details"), "cached_tokens"))
        result.reasoning_tokens = _int(
            _get(_get(usage, "output_tokens_details"), "reasoning_tokens")
        )
    result.input_tokens = input_tokens
    result.output_tokens = output_tokens
    return result


def _finish_reasons(response: Any) -> list[str]:
    reasons: list[str] = []
    choices = _get(response, "choices")
    if isinstance(choices, list | tuple):
        for choice in choices:
            reason = _get(choice, "finish_reason")
            if isinstance(reason, str):
                reasons.append(reason)
    stop_reason = _get(response, "stop_reason")
    if isinstance(stop_reason, str):
        reasons.append(stop_reason)
    return reasons


def extract_usage(response: Any) -> Usage | None:
    """Usage of a complete (non-streamed) response, or None when it carries none."""
    usage = _get(response, "usage")
    model = _get(response, "model")
    if usage is None and not isinstance(model, str):
        return None
    result = _usage_block(usage) if usage is not None else Usage()
    result.model = model if isinstance(model, str) else None
    response_id = _get(response, "id")
    result.response_id = response_id if isinstance(response_id, str) else None
    result.finish_reasons = _finish_reasons(response)
    return result


def extract_stream_event(event: Any) -> Usage | None:
    """Usage carried by one streamed chunk or event, if any."""
    kind = _get(event, "type")
    if kind == "message_start":  # Anthropic: input side and model
        return extract_usage(_get(event, "message"))
    if kind == "message_delta":  # Anthropic: cumulative output tokens, stop reason
        result = Usage()
        result.output_tokens = _int(_get(_get(event, "usage"), "output_tokens"))
        reason = _get(_get(event, "delta"), "stop_reason")
        if isinstance(reason, str):
            result.finish_reasons.append(reason)
        return result
    if kind in ("response.completed", "response.incomplete", "response.failed"):
        return extract_usage(_get(event, "response"))  # OpenAI responses API
    if kind is None:  # OpenAI chat completion chunk
        return extract_usage(event)
    return None


def _message_text(message: Any) -> str | None:
    content = _get(message, "content")
    if isinstance(content, str):
        return content
    if isinstance(content, list | tuple):
        parts = [_get(part, "text") for part in content]
        texts = [p for p in parts if isinstance(p, str)]
        return "".join(texts) if texts else None
    return None


def response_text(response: Any) -> str | None:
    """The model's text answer, for content capture (only ever called when it is opted in)."""
    output_text = _get(response, "output_text")
    if isinstance(output_text, str):
        return output_text
    choices = _get(response, "choices")
    if isinstance(choices, list | tuple) and choices:
        return _message_text(_get(choices[0], "message"))
    return _message_text(response)


def stream_text(event: Any) -> str | None:
    """Text carried by one streamed chunk or event."""
    choices = _get(event, "choices")
    if isinstance(choices, list | tuple) and choices:
        content = _get(_get(choices[0], "delta"), "content")
        return content if isinstance(content, str) else None
    kind = _get(event, "type")
    if kind == "content_block_delta":
        text = _get(_get(event, "delta"), "text")
        return text if isinstance(text, str) else None
    if kind == "response.output_text.delta":
        delta = _get(event, "delta")
        return delta if isinstance(delta, str) else None
    return None

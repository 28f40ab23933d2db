"""The collector's content policy: prompt and response text from any sender, before it is stored.

Other instrumentations record prompts, completions, messages and tool arguments by default,
under their own attribute keys. ``CONTENT_KEYS`` lists those keys for every convention the
collector maps (one table; the README's "What is mapped" lists the same keys), and
``apply_content_policy`` applies the operator's choice to a decoded span table:

- ``keep``: stored as sent.
- ``redact`` (the default): each content value goes through ``default_redactor`` (keys, tokens,
  passwords, e-mails, cards, ...: the SDK's patterns), the key stays.
- ``drop``: the content keys are removed from the span (and span event) attributes.

In ``redact`` and ``drop`` modes, exception text (``exception.message``,
``exception.stacktrace``, in span and event attributes) and the span status message are
redacted too: a foreign tool that raises ``ValueError(f"bad input {text}")`` ships the text
there. They are redacted, never dropped, since the error itself is what a trace is for.

This runs on every request (the throughput hot path), so it is columnar: content keys are
found with one vectorised pass over each map column's flattened keys, and only columns with a
match are rebuilt; a span table without content and without status messages or exception text
comes back as the same object.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from agentwatch import _semconv as semconv
from agentwatch._errors import ConfigurationError
from agentwatch._redact import default_redactor

KEEP: Final = "keep"
REDACT: Final = "redact"
DROP: Final = "drop"
POLICIES: Final = (KEEP, REDACT, DROP)
DEFAULT_POLICY: Final = REDACT

# Temporaries come from glibc malloc (tuned by collector/_malloc.py), not Arrow's default
# mimalloc pool, whose per-thread heaps kept more memory resident across the request threads.
_POOL: Final = pa.system_memory_pool()
_ZERO: Final = pa.array([0], type=pa.int32())


@dataclass(frozen=True, slots=True)
class ContentKeys:
    """The attribute keys one convention puts prompt/response text under: exact keys, and
    prefixes of flattened lists (``llm.input_messages.0.message.content``)."""

    convention: str
    keys: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()


# Where each convention puts content, in span attributes and span event attributes alike.
CONTENT_KEYS: Final[tuple[ContentKeys, ...]] = (
    ContentKeys(
        "agentwatch SDK",
        keys=(
            semconv.GEN_AI_INPUT_MESSAGES,
            semconv.GEN_AI_OUTPUT_MESSAGES,
            semconv.GEN_AI_TOOL_CALL_ARGUMENTS,
            semconv.GEN_AI_TOOL_CALL_RESULT,
            semconv.DECISION_REASONING,
            semconv.HEALTH_ANSWER,
            semconv.HEALTH_REASON,
            semconv.FEEDBACK_COMMENT,
            semconv.TASK_OUTCOME_REASON,
        ),
    ),
    ContentKeys(
        "OpenTelemetry GenAI",
        keys=(
            "gen_ai.input.messages",
            "gen_ai.output.messages",
            "gen_ai.system_instructions",
            "gen_ai.tool.call.arguments",
            "gen_ai.tool.call.result",
            # The deprecated gen_ai.content.prompt / gen_ai.content.completion events.
            "gen_ai.prompt",
            "gen_ai.completion",
        ),
    ),
    ContentKeys(
        "OpenInference",
        keys=(
            "input.value",
            "output.value",
            "llm.prompt_template.template",
            "llm.prompt_template.variables",
            # JSON of the request's parameters: the OpenAI Agents SDK puts the instructions in it.
            "llm.invocation_parameters",
            "reranker.query",
        ),
        prefixes=(
            "llm.input_messages.",
            "llm.output_messages.",
            "llm.prompts.",
            "retrieval.documents.",
            "reranker.input_documents.",
            "reranker.output_documents.",
            "embedding.embeddings.",
        ),
    ),
    ContentKeys(
        "OpenLLMetry (Traceloop)",
        keys=("traceloop.entity.input", "traceloop.entity.output", "llm.prompts"),
        prefixes=("gen_ai.prompt.", "gen_ai.completion.", "llm.completions."),
    ),
    ContentKeys(
        "PydanticAI / Logfire",
        keys=(
            "pydantic_ai.all_messages",
            "all_messages_events",
            "final_result",
            "tool_arguments",
            "tool_response",
            "model_request_parameters",  # JSON of the request, instructions included
            "events",  # model request spans before gen_ai.input.messages (event_mode attributes)
        ),
    ),
)

# Span event attributes only: the body of the OTel GenAI message events (gen_ai.user.message,
# gen_ai.choice, ...) flattened into attributes by exporters that have no log body.
EVENT_CONTENT_KEYS: Final = ContentKeys(
    "OpenTelemetry GenAI events",
    keys=("content", "message.content"),
    prefixes=("tool_calls.", "message.tool_calls."),
)

# Error text: redacted in redact and drop modes, never dropped.
ERROR_TEXT_KEYS: Final = ("exception.message", "exception.stacktrace")

Redactor = Callable[[str], str]


def check_policy(policy: str) -> str:
    """``policy`` if it is one of keep, redact, drop; else ConfigurationError."""
    if policy not in POLICIES:
        raise ConfigurationError(
            f"content policy must be one of {', '.join(POLICIES)}, not {policy!r}"
        )
    return policy


class _Matcher:
    """Which of a flattened key array are content keys, and which are error text."""

    def __init__(self, tables: tuple[ContentKeys, ...]) -> None:
        keys = sorted({key for table in tables for key in table.keys})
        prefixes = sorted({prefix for table in tables for prefix in table.prefixes})
        self.content = pa.array(keys, type=pa.string())
        self.regex = "^(?:" + "|".join(re.escape(p) for p in prefixes) + ")" if prefixes else ""
        self.every = pa.array(keys + list(ERROR_TEXT_KEYS), type=pa.string())
        self.error_text = pa.array(ERROR_TEXT_KEYS, type=pa.string())

    def masks(self, keys: pa.Array) -> tuple[pa.Array | None, pa.Array | None]:
        """(content mask, error text mask) over ``keys``; None where nothing matches.

        Keys repeat a lot (a few dozen distinct per request), so the distinct keys are
        matched and the result taken back to every position."""
        encoded = pc.dictionary_encode(keys, memory_pool=_POOL)
        distinct = encoded.dictionary
        hit = pc.is_in(distinct, value_set=self.every, memory_pool=_POOL)
        if self.regex:
            hit = pc.or_(
                hit,
                pc.match_substring_regex(distinct, self.regex, memory_pool=_POOL),
                memory_pool=_POOL,
            )
        if not pc.any(hit, memory_pool=_POOL).as_py():
            return None, None
        error = pc.is_in(distinct, value_set=self.error_text, memory_pool=_POOL)
        content = pc.and_not(hit, error, memory_pool=_POOL)
        indices = encoded.indices
        content_mask = (
            pc.take(content, indices, memory_pool=_POOL)
            if pc.any(content, memory_pool=_POOL).as_py()
            else None
        )
        error_mask = (
            pc.take(error, indices, memory_pool=_POOL)
            if pc.any(error, memory_pool=_POOL).as_py()
            else None
        )
        return content_mask, error_mask


_SPAN_MATCHER: Final = _Matcher(CONTENT_KEYS)
_EVENT_MATCHER: Final = _Matcher((*CONTENT_KEYS, EVENT_CONTENT_KEYS))


def _redacted(values: pa.Array, redact: Redactor) -> pa.Array | None:
    """``values`` (strings) redacted, each distinct value once; None if nothing changed."""
    encoded = pc.dictionary_encode(values, memory_pool=_POOL)
    distinct = encoded.dictionary.to_pylist()
    changed = False
    out: list[str | None] = []
    for value in distinct:
        if value:
            new = redact(value)
            changed = changed or new != value
            out.append(new)
        else:
            out.append(value)
    if not changed:
        return None
    return pc.take(
        pa.array(out, type=pa.string(), memory_pool=_POOL), encoded.indices, memory_pool=_POOL
    )


def _apply_map(
    maps: pa.MapArray, matcher: _Matcher, policy: str, redact: Redactor
) -> pa.MapArray | None:
    """One map array with the policy applied; None when it is unchanged."""
    keys = maps.keys  # the whole children, which ``maps.offsets`` index into
    if len(keys) == 0:
        return None
    content, error = matcher.masks(keys)
    if content is None and error is None:
        return None
    items = maps.items
    offsets = maps.offsets
    new_items = items
    to_redact = error
    if policy == REDACT and content is not None:
        to_redact = content if error is None else pc.or_(content, error, memory_pool=_POOL)
    if to_redact is not None:
        replaced = _redacted(pc.filter(items, to_redact, memory_pool=_POOL), redact)
        if replaced is not None:
            new_items = pc.replace_with_mask(items, to_redact, replaced, memory_pool=_POOL)
    new_keys = keys
    if policy == DROP and content is not None:
        keep = pc.invert(content, memory_pool=_POOL)
        kept_before = pc.cumulative_sum(
            pc.cast(keep, pa.int32(), memory_pool=_POOL), memory_pool=_POOL
        )
        positions = pa.concat_arrays([_ZERO, kept_before], memory_pool=_POOL)
        offsets = pc.take(positions, offsets, memory_pool=_POOL)
        new_keys = pc.filter(keys, keep, memory_pool=_POOL)
        new_items = pc.filter(new_items, keep, memory_pool=_POOL)
    elif new_items is items:
        return None
    mask = maps.is_null() if maps.null_count else None
    return pa.MapArray.from_arrays(
        offsets, new_keys, new_items, type=maps.type, pool=_POOL, mask=mask
    )


def _rebuild(
    column: pa.ChunkedArray, change: Callable[[Any], pa.Array | None]
) -> pa.ChunkedArray | None:
    """``column`` with each chunk ``change`` rebuilt (None: that chunk as it is), or None when
    no chunk changed."""
    changed = [change(chunk) for chunk in column.chunks]
    if all(new is None for new in changed):
        return None
    chunks = [old if new is None else new for old, new in zip(column.chunks, changed, strict=True)]
    return pa.chunked_array(chunks, type=column.type)


def _apply_map_column(
    column: pa.ChunkedArray, matcher: _Matcher, policy: str, redact: Redactor
) -> pa.ChunkedArray | None:
    return _rebuild(column, lambda chunk: _apply_map(chunk, matcher, policy, redact))


def _apply_map_list_column(
    column: pa.ChunkedArray, matcher: _Matcher, policy: str, redact: Redactor
) -> pa.ChunkedArray | None:
    def change(chunk: Any) -> pa.Array | None:
        new_maps = _apply_map(chunk.values, matcher, policy, redact)
        if new_maps is None:
            return None
        mask = chunk.is_null() if chunk.null_count else None
        return pa.ListArray.from_arrays(chunk.offsets, new_maps, pool=_POOL, mask=mask)

    return _rebuild(column, change)


def _apply_status(column: pa.ChunkedArray, redact: Redactor) -> pa.ChunkedArray | None:
    def change(chunk: Any) -> pa.Array | None:
        if (
            chunk.null_count == len(chunk)
            or not pc.any(pc.not_equal(chunk, "", memory_pool=_POOL), memory_pool=_POOL).as_py()
        ):
            return None
        return _redacted(chunk, redact)

    return _rebuild(column, change)


def apply_content_policy(
    table: pa.Table, policy: str = DEFAULT_POLICY, redact: Redactor = default_redactor
) -> pa.Table:
    """``table`` (span rows as ``spans_to_arrow`` builds them) with ``policy`` applied to its
    ``SpanAttributes``, ``Events.Attributes`` and ``StatusMessage``; the same object when
    nothing changes."""
    if policy == KEEP or table.num_rows == 0:
        return table
    check_policy(policy)
    updates: list[tuple[str, pa.ChunkedArray | None]] = [
        (
            "SpanAttributes",
            _apply_map_column(table.column("SpanAttributes"), _SPAN_MATCHER, policy, redact),
        ),
        (
            "Events.Attributes",
            _apply_map_list_column(
                table.column("Events.Attributes"), _EVENT_MATCHER, policy, redact
            ),
        ),
        ("StatusMessage", _apply_status(table.column("StatusMessage"), redact)),
    ]
    for name, column in updates:
        if column is not None:
            table = table.set_column(table.schema.get_field_index(name), name, column)
    return table

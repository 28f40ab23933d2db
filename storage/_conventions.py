"""Which span attributes fill which typed analytics column, for every convention we understand.

One table drives both executors of the mapping: the ClickHouse DEFAULT expressions in the
schema (so any OTLP-to-ClickHouse writer, the stock OTel Collector exporter included, fills
the typed columns) and the collector's Python lookups that feed pricing. Keys are listed in
priority order; the first non-empty one wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

ColumnKind = Literal["string", "uint", "float", "bool"]


@dataclass(frozen=True, slots=True)
class Column:
    """A typed column derived from span attributes."""

    name: str
    kind: ColumnKind
    keys: tuple[str, ...]
    doc: str
    # OpenLLMetry names agents and tools in traceloop.entity.name, for these span kinds.
    traceloop_kinds: tuple[str, ...] = ()
    # A root chain span (a LangGraph graph) is named only by its span name.
    root_chain_span_name: bool = False


# OpenInference and OpenLLMetry span kinds, mapped to gen_ai.operation.name values.
OPENINFERENCE_KINDS: Final[Mapping[str, str]] = {
    "LLM": "chat",
    "TOOL": "execute_tool",
    "AGENT": "invoke_agent",
    "EMBEDDING": "embeddings",
    "RETRIEVER": "retrieval",
    "CHAIN": "chain",
}
TRACELOOP_KINDS: Final[Mapping[str, str]] = {
    "agent": "invoke_agent",
    "tool": "execute_tool",
    "workflow": "invoke_agent",
    "task": "task",
}

COLUMNS: Final[tuple[Column, ...]] = (
    Column(
        "AgentName",
        "string",
        ("gen_ai.agent.name", "agent.name"),
        "agent name",
        traceloop_kinds=("agent", "workflow"),
        root_chain_span_name=True,
    ),
    Column("TaskType", "string", ("agentwatch.task.type",), "task type"),
    Column("Outcome", "string", ("agentwatch.task.outcome",), "task outcome"),
    Column("Confidence", "float", ("agentwatch.decision.confidence",), "decision confidence"),
    Column("DecisionName", "string", ("agentwatch.decision.name",), "decision name"),
    Column("Route", "string", ("agentwatch.decision.route",), "decision route"),
    Column(
        "ToolName",
        "string",
        ("gen_ai.tool.name", "tool.name"),
        "tool name",
        traceloop_kinds=("tool",),
    ),
    Column("ToolTier", "string", ("agentwatch.tool.tier",), "tool risk tier"),
    Column(
        "Provider",
        "string",
        ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system"),
        "model provider",
    ),
    Column(
        "RequestModel",
        "string",
        ("gen_ai.request.model", "llm.request.model", "llm.model_name"),
        "requested model",
    ),
    Column(
        "ResponseModel",
        "string",
        ("gen_ai.response.model", "llm.response.model", "llm.model_name"),
        "model that answered",
    ),
    Column(
        "InputTokens",
        "uint",
        (
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.prompt_tokens",
            "llm.token_count.prompt",
            "llm.usage.prompt_tokens",
        ),
        "input tokens, cache included",
    ),
    Column(
        "OutputTokens",
        "uint",
        (
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
            "llm.token_count.completion",
            "llm.usage.completion_tokens",
        ),
        "output tokens",
    ),
    Column(
        "CacheReadTokens",
        "uint",
        (
            "gen_ai.usage.cache_read.input_tokens",
            "gen_ai.usage.cache_read_input_tokens",
            "llm.token_count.prompt_details.cache_read",
            "llm.usage.cache_read_input_tokens",
        ),
        "input tokens read from cache",
    ),
    Column(
        "CacheWriteTokens",
        "uint",
        (
            "gen_ai.usage.cache_creation.input_tokens",
            "gen_ai.usage.cache_creation_input_tokens",
            "llm.token_count.prompt_details.cache_write",
            "llm.usage.cache_creation_input_tokens",
        ),
        "input tokens written to cache",
    ),
    Column(
        "ReasoningTokens",
        "uint",
        (
            "gen_ai.usage.reasoning.output_tokens",
            "llm.token_count.completion_details.reasoning",
            "gen_ai.usage.reasoning_tokens",  # OpenLLMetry
            "gen_ai.usage.details.reasoning_tokens",  # PydanticAI
        ),
        "reasoning tokens",
    ),
    Column(
        "ConversationId",
        "string",
        ("gen_ai.conversation.id", "session.id", "traceloop.association.properties.session_id"),
        "conversation / session id",
    ),
    Column("LimitExceeded", "string", ("agentwatch.limit.exceeded",), "limit hit"),
    Column("HealthCheck", "string", ("agentwatch.health.check",), "health probe name"),
    Column("HealthPassed", "bool", ("agentwatch.health.passed",), "health probe result"),
    Column("FeedbackCorrect", "bool", ("agentwatch.feedback.correct",), "was the decision right"),
    Column("FeedbackScore", "float", ("agentwatch.feedback.score",), "feedback score"),
)

OPERATION_KEYS: Final = ("gen_ai.operation.name", "openinference.span.kind", "traceloop.span.kind")
ERROR_TYPE_KEY: Final = "error.type"
ENVIRONMENT_KEYS: Final = ("deployment.environment.name", "deployment.environment")


TRACELOOP_KIND_KEY: Final = "traceloop.span.kind"
OPENINFERENCE_KIND_KEY: Final = "openinference.span.kind"
TRACELOOP_ENTITY_KEY: Final = "traceloop.entity.name"


def first_value(attributes: Mapping[str, str], keys: tuple[str, ...]) -> str:
    """The first non-empty value among ``keys`` (Python twin of the SQL coalesce)."""
    for key in keys:
        value = attributes.get(key)
        if value:
            return value
    return ""


def is_root_chain(attributes: Mapping[str, str], *, root: bool) -> bool:
    """A root OpenInference CHAIN span: a framework's run as a whole (a LangGraph graph, a
    LangChain chain on its own), which is the task, as a root agent span is."""
    return root and attributes.get(OPENINFERENCE_KIND_KEY, "").upper() == "CHAIN"


def column_value(
    attributes: Mapping[str, str], column: Column, *, root: bool = False, span_name: str = ""
) -> str:
    """A string column's raw value, as its SQL DEFAULT computes it (``root``: the span has no
    parent; ``span_name``: its name)."""
    value = first_value(attributes, column.keys)
    if not value and attributes.get(TRACELOOP_KIND_KEY) in column.traceloop_kinds:
        return attributes.get(TRACELOOP_ENTITY_KEY, "")
    if not value and column.root_chain_span_name and is_root_chain(attributes, root=root):
        return span_name
    return value


def operation_of(attributes: Mapping[str, str], *, root: bool = False) -> str:
    """gen_ai.operation.name, or the equivalent from OpenInference / OpenLLMetry span kinds; a
    root OpenInference chain is an agent run (``root``: the span has no parent)."""
    operation = attributes.get("gen_ai.operation.name")
    if operation:
        return operation
    if is_root_chain(attributes, root=root):
        return "invoke_agent"
    oi_kind = attributes.get(OPENINFERENCE_KIND_KEY)
    if oi_kind:
        return OPENINFERENCE_KINDS.get(oi_kind.upper(), oi_kind.lower())
    tl_kind = attributes.get("traceloop.span.kind")
    if tl_kind:
        return TRACELOOP_KINDS.get(tl_kind, tl_kind)
    if attributes.get("llm.request.type") == "chat":
        return "chat"
    return ""


def token_count(attributes: Mapping[str, str], column: str) -> int:
    """A token column's value from attributes, as the SQL default computes it (0 if absent)."""
    raw = first_value(attributes, COLUMN_BY_NAME[column].keys)
    # Exactly what toUInt64OrZero accepts: an optional '+', ASCII digits, within UInt64.
    digits = raw[1:] if raw.startswith("+") else raw
    if not (digits.isascii() and digits.isdigit()):
        return 0
    value = int(digits)
    return value if value < _UINT64_LIMIT else 0


_UINT64_LIMIT: Final = 2**64


COLUMN_BY_NAME: Final[Mapping[str, Column]] = {c.name: c for c in COLUMNS}

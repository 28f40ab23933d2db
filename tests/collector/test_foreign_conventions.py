"""Spans from other instrumentations (OpenInference, OpenLLMetry, deprecated GenAI names) land in
the same typed columns as agentwatch's own, priced the same; and rows written by any writer
(the stock OpenTelemetry Collector ClickHouse exporter fills only its own columns) get the same
typed columns from ClickHouse's DEFAULT expressions as storage/_conventions.py computes."""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa
import pytest
from genai_prices import Usage, calc_price
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agentwatch.app._collector import Collector
from agentwatch.storage._conventions import (
    COLUMNS,
    ENVIRONMENT_KEYS,
    column_value,
    first_value,
    operation_of,
    token_count,
)
from agentwatch.storage._schema import SPANS_TABLE
from tests.collector.conftest import (
    http_url,
    make_request,
    make_span,
    new_span_id,
    new_trace_id,
    post_request,
    span_rows,
)

pytestmark = pytest.mark.slow


def cost(model: str, provider: str | None, **tokens: int) -> float:
    return float(calc_price(Usage(**tokens), model_ref=model, provider_id=provider).total_price)


def store_one(collector: Collector, attributes: dict[str, object], **span: Any) -> dict[str, Any]:
    """Send one span over OTLP/HTTP and return its stored row."""
    sent = make_span("foreign", attributes, **span)
    assert post_request(http_url(collector), make_request(sent)).status == 200
    (row,) = span_rows(collector.store, sent.trace_id)
    return row


# -- OpenInference ------------------------------------------------------------------------------
def test_an_openinference_llm_span_fills_model_provider_tokens_session_and_cost(
    collector: Collector,
):
    row = store_one(
        collector,
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4o-mini",
            "llm.provider": "openai",
            "llm.system": "openai",
            "llm.token_count.prompt": 3000,
            "llm.token_count.completion": 400,
            "llm.token_count.total": 3400,
            "llm.token_count.prompt_details.cache_read": 1000,
            "session.id": "sess-42",
        },
        kind=Span.SPAN_KIND_INTERNAL,
    )
    assert row["Operation"] == "chat"
    assert (row["RequestModel"], row["ResponseModel"]) == ("gpt-4o-mini", "gpt-4o-mini")
    assert row["Provider"] == "openai"
    assert (row["InputTokens"], row["OutputTokens"], row["CacheReadTokens"]) == (3000, 400, 1000)
    assert row["ConversationId"] == "sess-42"
    assert row["Priced"] == 1
    assert row["CostUsd"] == pytest.approx(
        cost(
            "gpt-4o-mini",
            "openai",
            input_tokens=3000,
            output_tokens=400,
            cache_read_tokens=1000,
        ),
        rel=1e-9,
    )


def test_an_openinference_tool_span_fills_the_tool_name(collector: Collector):
    row = store_one(collector, {"openinference.span.kind": "TOOL", "tool.name": "search_orders"})
    assert (row["Operation"], row["ToolName"]) == ("execute_tool", "search_orders")
    assert (row["Priced"], row["CostUsd"]) == (0, 0.0)


def test_an_openinference_agent_span_fills_the_agent_name(collector: Collector):
    row = store_one(collector, {"openinference.span.kind": "AGENT", "agent.name": "planner"})
    assert (row["Operation"], row["AgentName"]) == ("invoke_agent", "planner")


def test_a_root_openinference_chain_is_an_agent_run_named_by_its_span(collector: Collector):
    """LangGraph's graph span (OpenInference CHAIN, the trace's root) is the task; a chain
    under another span stays a chain."""
    root = make_span("weather_graph", {"openinference.span.kind": "CHAIN"})
    inner = make_span(
        "tools",
        {"openinference.span.kind": "CHAIN"},
        trace_id=root.trace_id,
        parent_span_id=root.span_id,
    )
    named = make_span("LangGraph", {"openinference.span.kind": "CHAIN", "agent.name": "planner"})
    assert post_request(http_url(collector), make_request(root, inner, named)).status == 200
    rows = {row["SpanName"]: row for row in span_rows(collector.store, root.trace_id)}
    assert (rows["weather_graph"]["Operation"], rows["weather_graph"]["AgentName"]) == (
        "invoke_agent",
        "weather_graph",
    )
    assert (rows["tools"]["Operation"], rows["tools"]["AgentName"]) == ("chain", "")
    (named_row,) = span_rows(collector.store, named.trace_id)
    assert (named_row["Operation"], named_row["AgentName"]) == ("invoke_agent", "planner")


# -- OpenLLMetry --------------------------------------------------------------------------------
def test_an_openllmetry_workflow_span_is_an_agent_run_named_by_its_entity(collector: Collector):
    row = store_one(
        collector,
        {
            "traceloop.span.kind": "workflow",
            "traceloop.entity.name": "support_flow",
            "traceloop.association.properties.session_id": "chat-7",
        },
    )
    assert (row["Operation"], row["AgentName"]) == ("invoke_agent", "support_flow")
    assert row["ConversationId"] == "chat-7"


def test_an_openllmetry_tool_span_is_a_tool_call_named_by_its_entity(collector: Collector):
    row = store_one(
        collector, {"traceloop.span.kind": "tool", "traceloop.entity.name": "lookup_order"}
    )
    assert (row["Operation"], row["ToolName"], row["AgentName"]) == (
        "execute_tool",
        "lookup_order",
        "",
    )


def test_an_openllmetry_llm_span_with_deprecated_names_is_a_priced_chat(collector: Collector):
    row = store_one(
        collector,
        {
            "llm.request.type": "chat",
            "gen_ai.system": "OpenAI",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "llm.usage.prompt_tokens": 1500,
            "llm.usage.completion_tokens": 120,
            "llm.usage.total_tokens": 1620,
        },
        kind=Span.SPAN_KIND_CLIENT,
    )
    assert row["Operation"] == "chat"
    assert row["Provider"] == "OpenAI"
    assert (row["RequestModel"], row["ResponseModel"]) == ("gpt-4o", "gpt-4o-2024-08-06")
    assert (row["InputTokens"], row["OutputTokens"]) == (1500, 120)
    assert row["Priced"] == 1
    assert row["CostUsd"] == pytest.approx(
        cost("gpt-4o-2024-08-06", "openai", input_tokens=1500, output_tokens=120), rel=1e-9
    )


# -- deprecated GenAI names ---------------------------------------------------------------------
def test_deprecated_genai_usage_names_fill_the_token_columns_and_are_priced(
    collector: Collector,
):
    row = store_one(
        collector,
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "anthropic",
            "gen_ai.request.model": "claude-3-5-haiku-latest",
            "gen_ai.usage.prompt_tokens": 800,
            "gen_ai.usage.completion_tokens": 90,
            "gen_ai.usage.cache_read_input_tokens": 100,
            "gen_ai.usage.cache_creation_input_tokens": 200,
        },
    )
    assert row["Provider"] == "anthropic"
    assert (row["InputTokens"], row["OutputTokens"]) == (800, 90)
    assert (row["CacheReadTokens"], row["CacheWriteTokens"]) == (100, 200)
    assert row["Priced"] == 1
    assert row["CostUsd"] == pytest.approx(
        cost(
            "claude-3-5-haiku-latest",
            "anthropic",
            input_tokens=800,
            output_tokens=90,
            cache_read_tokens=100,
            cache_write_tokens=200,
        ),
        rel=1e-9,
    )


def test_current_genai_names_win_over_deprecated_and_foreign_ones(collector: Collector):
    row = store_one(
        collector,
        {
            "gen_ai.provider.name": "openai",
            "gen_ai.system": "azure.ai.openai",
            "llm.provider": "other",
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.prompt_tokens": 20,
            "llm.token_count.prompt": 30,
            "gen_ai.tool.name": "current",
            "tool.name": "foreign",
        },
    )
    assert (row["Provider"], row["InputTokens"], row["ToolName"]) == ("openai", 10, "current")


@pytest.mark.parametrize(
    ("key", "sender"),
    [
        ("gen_ai.usage.reasoning.output_tokens", "OTel GenAI"),
        ("gen_ai.usage.reasoning_tokens", "OpenLLMetry"),
        ("gen_ai.usage.details.reasoning_tokens", "PydanticAI"),
        ("llm.token_count.completion_details.reasoning", "OpenInference"),
    ],
)
def test_reasoning_tokens_are_read_in_every_senders_spelling(
    collector: Collector, key: str, sender: str
):
    row = store_one(collector, {"gen_ai.operation.name": "chat", key: 6})
    assert row["ReasoningTokens"] == 6, sender


def test_declared_tools_come_from_gen_ai_tool_definitions_in_either_shape(collector: Collector):
    """PydanticAI and OpenLLMetry declare the request's tools in gen_ai.tool.definitions, named
    at the top level (the convention) or under "function" (OpenAI's request shape); our own
    agentwatch.agent.tools wins where both are set."""
    convention = '[{"type": "function", "name": "get_weather", "parameters": {}}]'
    openai_shape = '[{"type": "function", "function": {"name": "lookup", "parameters": {}}}]'
    for definitions, tools in ((convention, ["get_weather"]), (openai_shape, ["lookup"])):
        row = store_one(
            collector, {"gen_ai.operation.name": "chat", "gen_ai.tool.definitions": definitions}
        )
        assert row["AgentTools"] == tools
    ours = store_one(
        collector,
        {"agentwatch.agent.tools": '["refund"]', "gen_ai.tool.definitions": convention},
    )
    assert ours["AgentTools"] == ["refund"]
    broken = store_one(collector, {"gen_ai.tool.definitions": "not json"})
    assert broken["AgentTools"] == []


# -- any writer: ClickHouse derives the typed columns as _conventions.py does -------------------
ATTRIBUTE_CASES: list[dict[str, str]] = [
    {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "support-bot",
        "agentwatch.task.type": "refund",
        "agentwatch.task.outcome": "escalated",
        "gen_ai.conversation.id": "c-1",
    },
    {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.usage.input_tokens": "1200",
        "gen_ai.usage.output_tokens": "300",
        "gen_ai.usage.cache_read.input_tokens": "200",
        "gen_ai.usage.cache_creation.input_tokens": "+7",
        "gen_ai.usage.reasoning.output_tokens": "64",
    },
    {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "refund_order",
        "agentwatch.tool.tier": "destructive",
        "error.type": "PermissionError",
    },
    {
        "gen_ai.operation.name": "decision",
        "agentwatch.decision.name": "approve",
        "agentwatch.decision.confidence": "0.875",
        "agentwatch.decision.route": "review",
    },
    {
        "agentwatch.health.check": "llm_reachable",
        "agentwatch.health.passed": "false",
        "agentwatch.feedback.correct": "true",
        "agentwatch.feedback.score": "4",
        "agentwatch.limit.exceeded": "tokens",
    },
    {
        "openinference.span.kind": "LLM",
        "llm.model_name": "claude-3-5-haiku-latest",
        "llm.provider": "anthropic",
        "llm.token_count.prompt": "900",
        "llm.token_count.completion": "80",
        "llm.token_count.prompt_details.cache_read": "100",
        "llm.token_count.prompt_details.cache_write": "50",
        "llm.token_count.completion_details.reasoning": "10",
        "session.id": "s-9",
    },
    {
        # OpenLLMetry's openai instrumentation.
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": "120",
        "gen_ai.usage.output_tokens": "18",
        "gen_ai.usage.reasoning_tokens": "6",
    },
    {
        # PydanticAI's model request spans.
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": "120",
        "gen_ai.usage.output_tokens": "18",
        "gen_ai.usage.details.reasoning_tokens": "5",
    },
    # A root chain (LangGraph's graph span): an agent run named by its span.
    {"openinference.span.kind": "CHAIN", "input.value": "{}"},
    {"openinference.span.kind": "tool", "tool.name": "search"},
    {"openinference.span.kind": "AGENT", "agent.name": "planner"},
    {"openinference.span.kind": "RETRIEVER"},
    {"openinference.span.kind": "GUARDRAIL"},
    {"traceloop.span.kind": "workflow", "traceloop.entity.name": "flow"},
    {"traceloop.span.kind": "agent", "traceloop.entity.name": "agent-x"},
    {"traceloop.span.kind": "tool", "traceloop.entity.name": "tool-y"},
    {"traceloop.span.kind": "task", "traceloop.entity.name": "step"},
    {"traceloop.span.kind": "agent", "traceloop.entity.name": "e", "gen_ai.agent.name": "real"},
    {
        "llm.request.type": "chat",
        "gen_ai.system": "OpenAI",
        "llm.request.model": "gpt-4o",
        "llm.response.model": "gpt-4o-mini",
        "llm.usage.prompt_tokens": "15",
        "llm.usage.completion_tokens": "5",
        "llm.usage.cache_read_input_tokens": "3",
        "llm.usage.cache_creation_input_tokens": "2",
        "traceloop.association.properties.session_id": "tl-1",
    },
    {"llm.request.type": "completion", "llm.system": "cohere"},
    {
        "gen_ai.usage.prompt_tokens": "40",
        "gen_ai.usage.completion_tokens": "4",
        "gen_ai.usage.cache_read_input_tokens": "1",
        "gen_ai.usage.cache_creation_input_tokens": "2",
    },
    {"gen_ai.usage.input_tokens": "", "gen_ai.usage.prompt_tokens": "5"},
    {"gen_ai.usage.input_tokens": "1200.0", "gen_ai.usage.output_tokens": "12.7"},
    {"gen_ai.usage.input_tokens": "-5", "gen_ai.usage.output_tokens": "1e3"},
    {"gen_ai.usage.input_tokens": "abc", "gen_ai.usage.output_tokens": " 12"},
    {"gen_ai.usage.input_tokens": "18446744073709551615"},
    {"gen_ai.usage.input_tokens": "18446744073709551616"},
    {"gen_ai.provider.name": "", "gen_ai.system": "", "llm.provider": "fallback"},
    {"gen_ai.agent.name": "quote's \\ back"},
    {},
]
RESOURCES: list[dict[str, str]] = [
    {"service.name": "a", "deployment.environment.name": "prod"},
    {"service.name": "b", "deployment.environment": "staging"},
    {"service.name": "c", "deployment.environment.name": "", "deployment.environment": "dev"},
    {"service.name": "d"},
]


def exporter_rows(trace_id: str, status_codes: list[str]) -> pa.Table:
    """Rows shaped as the stock exporter inserts them: its otel_traces columns only."""
    n = len(ATTRIBUTE_CASES)
    text = pa.string()
    attr_map = pa.map_(text, text)
    now = time.time_ns()

    def column(values: list[Any], kind: pa.DataType) -> pa.Array:
        return pa.array(values, type=kind)

    return pa.table(
        {
            "Timestamp": column([now + i for i in range(n)], pa.timestamp("ns", tz="UTC")),
            "TraceId": column([trace_id] * n, text),
            "SpanId": column([new_span_id().hex() for _ in range(n)], text),
            "ParentSpanId": column([""] * n, text),
            "TraceState": column([""] * n, text),
            "SpanName": column([f"span {i}" for i in range(n)], text),
            "SpanKind": column(["Internal"] * n, text),
            "ServiceName": column(
                [RESOURCES[i % len(RESOURCES)]["service.name"] for i in range(n)], text
            ),
            "ResourceAttributes": column(
                [list(RESOURCES[i % len(RESOURCES)].items()) for i in range(n)], attr_map
            ),
            "ScopeName": column(["exporter-test"] * n, text),
            "ScopeVersion": column([""] * n, text),
            "SpanAttributes": column([list(a.items()) for a in ATTRIBUTE_CASES], attr_map),
            "Duration": column([1000] * n, pa.uint64()),
            "StatusCode": column(status_codes, text),
            "StatusMessage": column([""] * n, text),
            "Events.Timestamp": column([[]] * n, pa.list_(pa.timestamp("ns", tz="UTC"))),
            "Events.Name": column([[]] * n, pa.list_(text)),
            "Events.Attributes": column([[]] * n, pa.list_(attr_map)),
            "Links.TraceId": column([[]] * n, pa.list_(text)),
            "Links.SpanId": column([[]] * n, pa.list_(text)),
            "Links.TraceState": column([[]] * n, pa.list_(text)),
            "Links.Attributes": column([[]] * n, pa.list_(attr_map)),
        }
    )


def python_twin(
    attributes: dict[str, str], resource: dict[str, str], status: str, span_name: str
) -> dict[str, Any]:
    """What storage/_conventions.py says each derived column should hold (for a root span,
    as ``exporter_rows`` writes them)."""
    expected: dict[str, Any] = {"Operation": operation_of(attributes, root=True)}
    for column in COLUMNS:
        if column.kind == "string":
            expected[column.name] = column_value(attributes, column, root=True, span_name=span_name)
        elif column.kind == "uint":
            expected[column.name] = token_count(attributes, column.name)
    expected["Environment"] = first_value(resource, ENVIRONMENT_KEYS)
    error = attributes.get("error.type", "")
    expected["ErrorType"] = error or ("_OTHER" if status == "Error" else "")
    return expected


@pytest.fixture
def exporter_written(collector: Collector) -> list[dict[str, Any]]:
    """ATTRIBUTE_CASES inserted as the stock exporter would, read back in order."""
    trace_id = new_trace_id().hex()
    statuses = ["Error" if i % 3 == 0 else "Unset" for i in range(len(ATTRIBUTE_CASES))]
    collector.store.insert_arrow(SPANS_TABLE, exporter_rows(trace_id, statuses))
    rows = span_rows(collector.store, trace_id)
    assert len(rows) == len(ATTRIBUTE_CASES)
    return rows


def test_clickhouse_derives_every_typed_column_exactly_as_the_python_conventions_do(
    exporter_written: list[dict[str, Any]],
):
    mismatches = []
    for i, row in enumerate(exporter_written):
        resource = RESOURCES[i % len(RESOURCES)]
        twin = python_twin(ATTRIBUTE_CASES[i], resource, row["StatusCode"], row["SpanName"])
        for name, value in twin.items():
            if row[name] != value:
                mismatches.append((i, name, row[name], value))
    assert mismatches == []


def test_numeric_and_bool_columns_are_parsed_from_the_exporters_strings(
    exporter_written: list[dict[str, Any]],
):
    decision, flags = exporter_written[3], exporter_written[4]
    assert decision["Confidence"] == pytest.approx(0.875)
    assert (flags["HealthPassed"], flags["FeedbackCorrect"]) == (0, 1)
    assert flags["FeedbackScore"] == pytest.approx(4.0)
    assert exporter_written[0]["Confidence"] is None
    assert exporter_written[0]["HealthPassed"] is None


def test_rows_from_other_writers_are_unpriced(exporter_written: list[dict[str, Any]]):
    """Cost is computed by our collector only; another writer's rows read as unpriced."""
    assert {(row["CostUsd"], row["Priced"]) for row in exporter_written} == {(0.0, 0)}


def test_the_collector_and_the_exporter_fill_the_typed_columns_identically(
    collector: Collector, exporter_written: list[dict[str, Any]]
):
    derived = ["Operation", *(c.name for c in COLUMNS), "Environment", "ErrorType"]
    for i, attributes in enumerate(ATTRIBUTE_CASES):
        exporter_row = exporter_written[i]
        span = make_span(
            exporter_row["SpanName"],  # the same name: a root chain is named by it
            attributes,
            status_code=2 if exporter_row["StatusCode"] == "Error" else 0,
        )
        resource = RESOURCES[i % len(RESOURCES)]
        assert (
            post_request(http_url(collector), make_request(span, resource=resource)).status == 200
        )
        (ours,) = span_rows(collector.store, span.trace_id)
        assert {k: ours[k] for k in derived} == {k: exporter_row[k] for k in derived}, i

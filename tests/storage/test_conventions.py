"""The attribute-to-column table and its Python twins of the SQL defaults (pure logic).

Whether ClickHouse computes the same values from the same attributes is checked against a real
store in tests/collector/test_foreign_conventions.py."""

from __future__ import annotations

import pytest

from agentwatch.storage._conventions import (
    COLUMN_BY_NAME,
    COLUMNS,
    column_value,
    first_value,
    operation_of,
    token_count,
)


def test_column_names_are_unique_and_indexed():
    names = [c.name for c in COLUMNS]
    assert len(names) == len(set(names))
    assert set(COLUMN_BY_NAME) == set(names)


def test_every_column_has_keys_and_a_known_kind():
    for column in COLUMNS:
        assert column.keys, column.name
        assert column.kind in ("string", "uint", "float", "bool"), column.name


def test_the_agentwatch_contract_keys_fill_their_columns():
    """DESIGN.md's agentwatch.* keys are a public contract: each one lands in its column."""
    expected = {
        "TaskType": "agentwatch.task.type",
        "Outcome": "agentwatch.task.outcome",
        "Confidence": "agentwatch.decision.confidence",
        "DecisionName": "agentwatch.decision.name",
        "Route": "agentwatch.decision.route",
        "ToolTier": "agentwatch.tool.tier",
        "LimitExceeded": "agentwatch.limit.exceeded",
        "HealthCheck": "agentwatch.health.check",
        "HealthPassed": "agentwatch.health.passed",
        "FeedbackScore": "agentwatch.feedback.score",
        "FeedbackCorrect": "agentwatch.feedback.correct",
    }
    for column, key in expected.items():
        assert COLUMN_BY_NAME[column].keys[0] == key


def test_genai_semconv_keys_come_first_and_deprecated_or_foreign_ones_after():
    assert COLUMN_BY_NAME["Provider"].keys[:2] == ("gen_ai.provider.name", "gen_ai.system")
    assert COLUMN_BY_NAME["InputTokens"].keys[0] == "gen_ai.usage.input_tokens"
    assert COLUMN_BY_NAME["OutputTokens"].keys[0] == "gen_ai.usage.output_tokens"
    assert "llm.token_count.prompt" in COLUMN_BY_NAME["InputTokens"].keys
    assert "llm.usage.completion_tokens" in COLUMN_BY_NAME["OutputTokens"].keys


# -- first_value / column_value -----------------------------------------------------------------
def test_first_value_takes_the_first_non_empty_key_in_priority_order():
    keys = ("a", "b", "c")
    assert first_value({"b": "2", "c": "3"}, keys) == "2"
    assert first_value({"a": "", "b": "", "c": "3"}, keys) == "3"
    assert first_value({"a": "1", "c": "3"}, keys) == "1"


def test_first_value_is_empty_when_no_key_is_present():
    assert first_value({"x": "1"}, ("a", "b")) == ""


def test_openllmetry_entity_names_an_agent_for_agent_and_workflow_spans():
    agent = COLUMN_BY_NAME["AgentName"]
    for kind in ("agent", "workflow"):
        attrs = {"traceloop.span.kind": kind, "traceloop.entity.name": "support"}
        assert column_value(attrs, agent) == "support"


def test_openllmetry_entity_names_a_tool_for_tool_spans_only():
    tool = COLUMN_BY_NAME["ToolName"]
    assert column_value({"traceloop.span.kind": "tool", "traceloop.entity.name": "s"}, tool) == "s"
    assert column_value({"traceloop.span.kind": "task", "traceloop.entity.name": "s"}, tool) == ""


def test_an_explicit_name_wins_over_the_openllmetry_entity():
    attrs = {
        "gen_ai.agent.name": "explicit",
        "traceloop.span.kind": "agent",
        "traceloop.entity.name": "entity",
    }
    assert column_value(attrs, COLUMN_BY_NAME["AgentName"]) == "explicit"


# -- operation_of -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("attributes", "operation"),
    [
        ({"gen_ai.operation.name": "chat"}, "chat"),
        (
            {"gen_ai.operation.name": "invoke_agent", "openinference.span.kind": "LLM"},
            "invoke_agent",
        ),
        ({"openinference.span.kind": "LLM"}, "chat"),
        ({"openinference.span.kind": "llm"}, "chat"),
        ({"openinference.span.kind": "TOOL"}, "execute_tool"),
        ({"openinference.span.kind": "AGENT"}, "invoke_agent"),
        ({"openinference.span.kind": "EMBEDDING"}, "embeddings"),
        ({"openinference.span.kind": "RERANKER"}, "reranker"),
        ({"traceloop.span.kind": "workflow"}, "invoke_agent"),
        ({"traceloop.span.kind": "agent"}, "invoke_agent"),
        ({"traceloop.span.kind": "tool"}, "execute_tool"),
        ({"traceloop.span.kind": "task"}, "task"),
        ({"traceloop.span.kind": "other"}, "other"),
        ({"llm.request.type": "chat"}, "chat"),
        ({"llm.request.type": "completion"}, ""),
        ({}, ""),
    ],
)
def test_operation_is_read_from_any_convention(attributes: dict[str, str], operation: str):
    assert operation_of(attributes) == operation


# -- token_count --------------------------------------------------------------------------------
def test_token_count_prefers_current_genai_keys_over_deprecated_and_foreign_ones():
    attrs = {
        "gen_ai.usage.input_tokens": "10",
        "gen_ai.usage.prompt_tokens": "20",
        "llm.token_count.prompt": "30",
    }
    assert token_count(attrs, "InputTokens") == 10
    del attrs["gen_ai.usage.input_tokens"]
    assert token_count(attrs, "InputTokens") == 20
    del attrs["gen_ai.usage.prompt_tokens"]
    assert token_count(attrs, "InputTokens") == 30


def test_token_count_is_zero_when_absent():
    assert token_count({}, "CacheReadTokens") == 0


@pytest.mark.parametrize(
    ("raw", "count"),
    [
        ("1200", 1200),
        ("007", 7),
        ("+12", 12),
        ("18446744073709551615", 18446744073709551615),
        ("18446744073709551616", 0),
        ("-5", 0),
        ("-0", 0),
        ("1200.0", 0),
        ("12.7", 0),
        ("1e3", 0),
        (" 12", 0),
        ("12 ", 0),
        ("0x10", 0),
        ("abc", 0),
        ("١٢", 0),
    ],
)
def test_token_count_parses_exactly_what_clickhouse_to_uint64_or_zero_parses(raw: str, count: int):
    """The collector prices the tokens this returns; the InputTokens column holds what
    toUInt64OrZero returns. If they disagreed, a row's cost would not match its tokens."""
    assert token_count({"gen_ai.usage.input_tokens": raw}, "InputTokens") == count

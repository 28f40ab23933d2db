"""The collector's content policy (collector/_content.py): prompt and response text under every
convention's keys is redacted by default, kept with ``--content keep``, removed with ``drop``;
exception text and status messages are redacted unless ``keep``; spans without content pass
through untouched. First on Arrow tables built by the real decoders, then end to end through
a real collector on loopback."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agentwatch import _semconv as semconv
from agentwatch._errors import ConfigurationError
from agentwatch.app._collector import Collector, CollectorConfig
from agentwatch.collector._content import (
    CONTENT_KEYS,
    ERROR_TEXT_KEYS,
    EVENT_CONTENT_KEYS,
    apply_content_policy,
    check_policy,
)
from agentwatch.collector._decode import DecodeLimits, request_to_columns
from agentwatch.collector._ingest import IngestSettings
from agentwatch.collector._native_rows import NATIVE_DECODER_AVAILABLE, native_spans_to_arrow
from agentwatch.collector._pricing import PriceTable
from agentwatch.collector._rows import spans_to_arrow
from tests.collector.conftest import (
    JSON,
    StartCollector,
    add_attributes,
    http_url,
    make_request,
    make_span,
    new_trace_id,
    post,
    post_request,
    span_rows,
)

README = Path(__file__).resolve().parents[2] / "README.md"

OPENAI_KEY = "sk-proj-AbCdEf1234567890AbCdEf1234567890XyZ"
CARD = "4111 1111 1111 1111"
EMAIL = "jane.doe@example.com"
SECRETS = (OPENAI_KEY, CARD, EMAIL)
SECRET_TEXT = f"please refund card {CARD}, mail {EMAIL}, key {OPENAI_KEY} thanks"

# One key per convention entry and prefix, as senders set them.
CONTENT_EXAMPLES: dict[str, tuple[str, ...]] = {
    "agentwatch SDK": (
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
    "OpenTelemetry GenAI": (
        "gen_ai.system_instructions",
        "gen_ai.prompt",
        "gen_ai.completion",
    ),
    "OpenInference": (
        "input.value",
        "output.value",
        "llm.input_messages.0.message.content",
        "llm.output_messages.0.message.content",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments",
        "llm.prompts.0",
        "llm.prompt_template.template",
        "llm.prompt_template.variables",
        "llm.invocation_parameters",
        "retrieval.documents.0.document.content",
        "reranker.query",
        "reranker.input_documents.1.document.content",
        "reranker.output_documents.0.document.content",
        "embedding.embeddings.0.embedding.text",
    ),
    "OpenLLMetry (Traceloop)": (
        "gen_ai.prompt.0.content",
        "gen_ai.completion.0.content",
        "gen_ai.completion.0.tool_calls.0.arguments",
        "traceloop.entity.input",
        "traceloop.entity.output",
        "llm.prompts",
        "llm.completions.0.content",
    ),
    "PydanticAI / Logfire": (
        "pydantic_ai.all_messages",
        "all_messages_events",
        "final_result",
        "tool_arguments",
        "tool_response",
        "model_request_parameters",
        "events",
    ),
}
EVERY_EXAMPLE = tuple(key for keys in CONTENT_EXAMPLES.values() for key in keys)
# Attributes that are not content, and must come through as sent in every mode.
PLAIN = {
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.usage.input_tokens": "120",
    "llm.token_count.prompt": "120",
    "openinference.span.kind": "LLM",
    "gen_ai.tool.name": "refund",
    "input.mime_type": "application/json",
    "session.id": "sess-2024-05-01-0001",
}

PRICES = PriceTable([])


def decode(request: ExportTraceServiceRequest, native: bool = False) -> pa.Table:
    """Rows exactly as the collector builds them: the native decoder, or the Python one."""
    if native:
        table = native_spans_to_arrow(request.SerializeToString(), DecodeLimits(), PRICES)
        assert table is not None
        return table
    return spans_to_arrow(request_to_columns(request, DecodeLimits()), PRICES)


def attrs(table: pa.Table, row: int = 0) -> dict[str, str]:
    return dict(table.column("SpanAttributes")[row].as_py())


def event_attrs(table: pa.Table, row: int = 0) -> list[dict[str, str]]:
    return [dict(m) for m in table.column("Events.Attributes")[row].as_py()]


def add_event(span: Span, name: str, attributes: dict[str, object]) -> None:
    event = span.events.add()
    event.name = name
    event.time_unix_nano = span.start_time_unix_nano + 1
    add_attributes(event.attributes, attributes)


def content_span(keys: tuple[str, ...] = EVERY_EXAMPLE, **kwargs: Any) -> Span:
    return make_span("llm call", {**PLAIN, **dict.fromkeys(keys, SECRET_TEXT)}, **kwargs)


def assert_redacted(value: str) -> None:
    assert "[REDACTED" in value
    for secret in SECRETS:
        assert secret not in value


DECODERS = [pytest.param(False, id="python")]
if NATIVE_DECODER_AVAILABLE:
    DECODERS.append(pytest.param(True, id="native"))


# -- the table of keys ----------------------------------------------------------------------------
def test_every_convention_has_keys_and_examples_cover_every_key_and_prefix():
    tables = {table.convention: table for table in CONTENT_KEYS}
    assert set(tables) == set(CONTENT_EXAMPLES)
    for convention, table in tables.items():
        examples = CONTENT_EXAMPLES[convention]
        for key in table.keys:
            # gen_ai.* message keys are listed by both our SDK and OTel GenAI: either covers it.
            assert key in EVERY_EXAMPLE, key
        for prefix in table.prefixes:
            assert any(example.startswith(prefix) for example in examples), prefix


def test_readme_mapping_section_lists_every_content_key_and_the_flag():
    text = README.read_text(encoding="utf-8")
    start = text.index("### What is mapped")
    section = text[start : text.index("\n## ", start)]
    listed = set(re.findall(r"`([^`]+)`", section))
    for table in (*CONTENT_KEYS, EVENT_CONTENT_KEYS):
        for key in table.keys:
            assert key in listed, key
        for prefix in table.prefixes:
            assert f"{prefix}*" in listed, prefix
    for key in ERROR_TEXT_KEYS:
        assert key in listed, key
    assert "--content" in section


def test_policy_is_validated():
    for policy in ("keep", "redact", "drop"):
        assert check_policy(policy) == policy
        assert IngestSettings(content=policy).content == policy
    assert IngestSettings().content == "redact"
    with pytest.raises(ConfigurationError, match="keep, redact, drop"):
        IngestSettings(content="scrub")
    with pytest.raises(ConfigurationError):
        apply_content_policy(decode(make_request(content_span())), "Redact")


def test_cli_flag_reaches_the_collector_config():
    from agentwatch.app._cli import _collector_config
    from agentwatch.app._cli import build_parser as parser

    default = parser().parse_args(["collector"])
    assert _collector_config(default).content == "redact" == CollectorConfig().content
    dropping = parser().parse_args(["collector", "--content", "drop"])
    assert _collector_config(dropping).content == "drop"
    with pytest.raises(SystemExit):
        parser().parse_args(["collector", "--content", "scrub"])


# -- the policy on Arrow tables -----------------------------------------------------------------
@pytest.mark.parametrize("native", DECODERS)
def test_redact_replaces_every_conventions_content_and_keeps_the_rest(native: bool):
    table = decode(make_request(content_span(), make_span("plain", PLAIN)), native)
    out = apply_content_policy(table, "redact")
    got = attrs(out)
    assert set(got) == set(attrs(table))
    for key in EVERY_EXAMPLE:
        assert_redacted(got[key])
        assert got[key].startswith("please refund card [REDACTED:card]")
    for key, value in PLAIN.items():
        assert got[key] == value
    assert attrs(out, 1) == PLAIN
    untouched = [n for n in out.column_names if n not in ("SpanAttributes",)]
    assert out.select(untouched).equals(table.select(untouched))


@pytest.mark.parametrize("native", DECODERS)
def test_drop_removes_content_keys_only(native: bool):
    table = decode(make_request(content_span(), make_span("plain", PLAIN)), native)
    out = apply_content_policy(table, "drop")
    assert attrs(out) == PLAIN
    assert attrs(out, 1) == PLAIN
    assert out.schema == table.schema


def test_keep_is_the_same_table():
    table = decode(make_request(content_span(status_message=f"failed: {CARD}")))
    assert apply_content_policy(table, "keep") is table
    assert attrs(table)["input.value"] == SECRET_TEXT


@pytest.mark.parametrize("native", DECODERS)
@pytest.mark.parametrize("policy", ["redact", "drop"])
def test_spans_without_content_come_back_as_the_same_table(native: bool, policy: str):
    spans = [make_span(f"op {i}", PLAIN) for i in range(50)]
    add_event(spans[3], "exception", {"exception.type": "ValueError", "exception.message": "bad"})
    spans[4].status.code = Status.STATUS_CODE_ERROR
    spans[4].status.message = "upstream call failed after 3 attempts"
    table = decode(make_request(*spans), native)
    assert apply_content_policy(table, policy) is table


def test_content_without_secrets_is_unchanged():
    text = "order 12345 shipped 2024-05-01T10:00:00Z by build v1.2.3, trace 4bf92f3577b34da6"
    table = decode(make_request(make_span("chat", dict.fromkeys(EVERY_EXAMPLE, text))))
    assert apply_content_policy(table, "redact") is table


@pytest.mark.parametrize("native", DECODERS)
def test_events_content_and_exception_text(native: bool):
    span = make_span("chat", PLAIN)
    add_event(span, "gen_ai.content.prompt", {"gen_ai.prompt": SECRET_TEXT})
    add_event(span, "gen_ai.content.completion", {"gen_ai.completion": SECRET_TEXT})
    add_event(span, "gen_ai.user.message", {"gen_ai.system": "openai", "content": SECRET_TEXT})
    add_event(
        span,
        "exception",
        {
            "exception.type": "ValueError",
            "exception.message": f"could not process {SECRET_TEXT}",
            "exception.stacktrace": f'Traceback ...\nValueError: could not process "{CARD}"',
            "exception.escaped": True,
        },
    )
    add_event(span, "rpc.message", {"message.type": "SENT", "message.id": "1"})
    table = decode(make_request(span, make_span("plain", PLAIN)), native)

    redacted = event_attrs(apply_content_policy(table, "redact"))
    assert_redacted(redacted[0]["gen_ai.prompt"])
    assert_redacted(redacted[1]["gen_ai.completion"])
    assert_redacted(redacted[2]["content"])
    assert redacted[2]["gen_ai.system"] == "openai"
    assert_redacted(redacted[3]["exception.message"])
    assert "[REDACTED:card]" in redacted[3]["exception.stacktrace"]
    assert CARD not in redacted[3]["exception.stacktrace"]
    assert redacted[3]["exception.type"] == "ValueError"
    assert redacted[4] == {"message.type": "SENT", "message.id": "1"}

    dropped_table = apply_content_policy(table, "drop")
    dropped = event_attrs(dropped_table)
    assert dropped[0] == {}
    assert dropped[1] == {}
    assert dropped[2] == {"gen_ai.system": "openai"}
    # Error text is never dropped, only redacted.
    assert_redacted(dropped[3]["exception.message"])
    assert dropped[3]["exception.type"] == "ValueError"
    assert dropped[4] == {"message.type": "SENT", "message.id": "1"}
    assert dropped_table.column("Events.Name").equals(table.column("Events.Name"))
    assert event_attrs(dropped_table, 1) == []


@pytest.mark.parametrize("policy", ["redact", "drop"])
def test_status_message_is_redacted(policy: str):
    failed = make_span(
        "tool", PLAIN, status_code=Status.STATUS_CODE_ERROR, status_message=SECRET_TEXT
    )
    fine = make_span("tool", PLAIN, status_code=Status.STATUS_CODE_ERROR, status_message="timeout")
    table = decode(make_request(failed, fine, make_span("ok", PLAIN)))
    out = apply_content_policy(table, policy)
    status = out.column("StatusMessage").to_pylist()
    assert_redacted(status[0])
    assert status[1:] == ["timeout", ""]
    kept = apply_content_policy(table, "keep").column("StatusMessage").to_pylist()
    assert kept[0] == SECRET_TEXT


@pytest.mark.parametrize("policy", ["redact", "drop"])
def test_sliced_and_chunked_tables(policy: str):
    """Tables made of several chunks, sliced, come out row for row as their parts would."""
    parts = []
    for i in range(3):
        spans = [make_span(f"plain {i}.{j}", PLAIN) for j in range(4)]
        spans[i] = content_span(status_message=f"failed for {EMAIL}")
        add_event(spans[i + 1], "exception", {"exception.message": f"bad {CARD}"})
        parts.append(decode(make_request(*spans)))
    table = pa.concat_tables(parts).slice(2, 9)
    assert table.column("SpanAttributes").num_chunks > 1
    out = apply_content_policy(table, policy)
    expected = pa.concat_tables(apply_content_policy(part, policy) for part in parts).slice(2, 9)
    assert out.to_pylist() == expected.to_pylist()


# -- end to end ---------------------------------------------------------------------------------
def foreign_request(trace_id: bytes) -> ExportTraceServiceRequest:
    """Spans as other instrumentations send them: content in each convention's keys, a failed
    tool with its exception event, and GenAI prompt events."""
    spans = [
        content_span(CONTENT_EXAMPLES[convention], trace_id=trace_id)
        for convention in CONTENT_EXAMPLES
    ]
    for span, convention in zip(spans, CONTENT_EXAMPLES, strict=True):
        span.name = convention
    failed = make_span(
        "tool",
        PLAIN,
        trace_id=trace_id,
        status_code=Status.STATUS_CODE_ERROR,
        status_message=f"ValueError: could not process {SECRET_TEXT}",
    )
    add_event(failed, "exception", {"exception.message": f"could not process {SECRET_TEXT}"})
    add_event(failed, "gen_ai.content.prompt", {"gen_ai.prompt": SECRET_TEXT})
    return make_request(*spans, failed)


def stored(collector: Collector, trace_id: bytes) -> dict[str, dict[str, Any]]:
    rows = span_rows(collector.store, trace_id)
    assert len(rows) == len(CONTENT_EXAMPLES) + 1
    return {row["SpanName"]: row for row in rows}


def check_redacted(rows: dict[str, dict[str, Any]]) -> None:
    for convention, keys in CONTENT_EXAMPLES.items():
        attributes = dict(rows[convention]["SpanAttributes"])
        for key in keys:
            assert_redacted(attributes[key])
        assert {k: attributes[k] for k in PLAIN} == PLAIN
    failed = rows["tool"]
    assert_redacted(failed["StatusMessage"])
    exception, prompt = (dict(m) for m in failed["Events.Attributes"])
    assert_redacted(exception["exception.message"])
    assert_redacted(prompt["gen_ai.prompt"])


@pytest.mark.slow
def test_default_collector_redacts_foreign_content(collector: Collector):
    trace_id = new_trace_id()
    assert post_request(http_url(collector), foreign_request(trace_id)).status == 200
    check_redacted(stored(collector, trace_id))

    json_trace = new_trace_id()  # OTLP/JSON: the Python decoder's path
    document = MessageToDict(foreign_request(json_trace))
    for span in document["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        for key in ("traceId", "spanId"):  # OTLP/JSON ids are hex, not proto3 JSON's base64
            span[key] = base64.b64decode(span[key]).hex()
    body = json.dumps(document).encode()
    assert post(http_url(collector), body, content_type=JSON).status == 200
    check_redacted(stored(collector, json_trace))


@pytest.mark.slow
def test_keep_stores_content_verbatim(start_collector: StartCollector):
    collector = start_collector(content="keep")
    trace_id = new_trace_id()
    assert post_request(http_url(collector), foreign_request(trace_id)).status == 200
    rows = stored(collector, trace_id)
    for convention, keys in CONTENT_EXAMPLES.items():
        attributes = dict(rows[convention]["SpanAttributes"])
        assert {key: attributes[key] for key in keys} == dict.fromkeys(keys, SECRET_TEXT)
    assert rows["tool"]["StatusMessage"] == f"ValueError: could not process {SECRET_TEXT}"
    exception, prompt = (dict(m) for m in rows["tool"]["Events.Attributes"])
    assert exception["exception.message"] == f"could not process {SECRET_TEXT}"
    assert prompt["gen_ai.prompt"] == SECRET_TEXT


@pytest.mark.slow
def test_drop_stores_no_content_keys(start_collector: StartCollector):
    collector = start_collector(content="drop")
    trace_id = new_trace_id()
    assert post_request(http_url(collector), foreign_request(trace_id)).status == 200
    rows = stored(collector, trace_id)
    for convention in CONTENT_EXAMPLES:
        assert dict(rows[convention]["SpanAttributes"]) == PLAIN
    failed = rows["tool"]
    assert_redacted(failed["StatusMessage"])
    exception, prompt = (dict(m) for m in failed["Events.Attributes"])
    assert_redacted(exception["exception.message"])
    assert prompt == {}

"""The OTLP/HTTP receiver, end to end over loopback: every body format lands as rows with the
right typed columns and cost; every bad input gets its 4xx, names the problem, is counted, and
leaves the collector serving; overload is answered with 503 + Retry-After, never a drop."""

from __future__ import annotations

import gzip
import http.client
import json
import threading
from pathlib import Path

import pytest
from genai_prices import Usage, calc_price
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agentwatch.app._collector import Collector
from agentwatch.collector._decode import DecodeLimits
from agentwatch.collector._writer import WriterSettings
from tests.collector.conftest import (
    JSON,
    PROTOBUF,
    ConfigureSdk,
    Reply,
    StartCollector,
    StartPipeline,
    check_sdk_rows,
    get,
    http_call,
    http_url,
    make_request,
    make_span,
    new_span_id,
    new_trace_id,
    post,
    post_request,
    rejected,
    run_sdk_agent,
    span_counts,
    span_rows,
    total_spans,
    trace_batch,
    wait_until,
)

pytestmark = pytest.mark.slow

RICH_ATTRIBUTES: dict[str, object] = {
    "gen_ai.operation.name": "chat",
    "gen_ai.agent.name": "triage",
    "agentwatch.task.type": "billing",
    "agentwatch.task.outcome": "completed",
    "agentwatch.decision.confidence": 0.62,
    "gen_ai.tool.name": "n/a",
    "agentwatch.tool.tier": "write_safe",
    "gen_ai.provider.name": "anthropic",
    "gen_ai.request.model": "claude-3-5-haiku-latest",
    "gen_ai.response.model": "claude-3-5-haiku-20241022",
    "gen_ai.usage.input_tokens": 4000,
    "gen_ai.usage.output_tokens": 250,
    "gen_ai.usage.cache_read.input_tokens": 1000,
    "gen_ai.usage.cache_creation.input_tokens": 500,
    "gen_ai.conversation.id": "conv-9",
    "error.type": "TimeoutError",
}


def expected_cost(model: str, provider: str | None, **tokens: int) -> float:
    return float(calc_price(Usage(**tokens), model_ref=model, provider_id=provider).total_price)


def rich_request(trace_id: bytes, parent: bytes) -> ExportTraceServiceRequest:
    root = make_span(
        "invoke_agent triage",
        {"gen_ai.operation.name": "invoke_agent"},
        trace_id=trace_id,
        span_id=parent,
    )
    child = make_span(
        "chat claude",
        RICH_ATTRIBUTES,
        trace_id=trace_id,
        parent_span_id=parent,
        kind=Span.SPAN_KIND_CLIENT,
        status_code=Status.STATUS_CODE_ERROR,
        status_message="timed out",
    )
    request = make_request(
        root, child, resource={"service.name": "billing-agent", "deployment.environment": "prod"}
    )
    return request


def check_rich_rows(collector: Collector, trace_id: bytes, parent: bytes) -> None:
    rows = span_rows(collector.store, trace_id)
    assert [r["SpanName"] for r in rows] == ["invoke_agent triage", "chat claude"]
    root, chat = rows
    assert root["ParentSpanId"] == ""
    assert root["SpanId"] == parent.hex()
    assert chat["ParentSpanId"] == parent.hex()
    assert (root["SpanKind"], chat["SpanKind"]) == ("Internal", "Client")
    assert (chat["StatusCode"], chat["StatusMessage"]) == ("Error", "timed out")
    assert chat["ServiceName"] == "billing-agent"
    assert chat["Environment"] == "prod"
    assert chat["Operation"] == "chat"
    assert chat["AgentName"] == "triage"
    assert chat["TaskType"] == "billing"
    assert chat["Outcome"] == "completed"
    assert chat["Confidence"] == pytest.approx(0.62)
    assert chat["ToolTier"] == "write_safe"
    assert chat["Provider"] == "anthropic"
    assert chat["RequestModel"] == "claude-3-5-haiku-latest"
    assert chat["ResponseModel"] == "claude-3-5-haiku-20241022"
    assert (chat["InputTokens"], chat["OutputTokens"]) == (4000, 250)
    assert (chat["CacheReadTokens"], chat["CacheWriteTokens"]) == (1000, 500)
    assert chat["ConversationId"] == "conv-9"
    assert chat["ErrorType"] == "TimeoutError"
    assert dict(chat["SpanAttributes"])["agentwatch.decision.confidence"] == "0.62"
    assert chat["Priced"] == 1
    assert chat["CostUsd"] == pytest.approx(
        expected_cost(
            "claude-3-5-haiku-20241022",
            "anthropic",
            input_tokens=4000,
            output_tokens=250,
            cache_read_tokens=1000,
            cache_write_tokens=500,
        ),
        rel=1e-9,
    )
    assert (root["Priced"], root["CostUsd"]) == (0, 0.0)


# -- round trips --------------------------------------------------------------------------------
def test_the_sdk_over_http_protobuf_lands_every_typed_column_and_cost(
    collector: Collector, sdk: ConfigureSdk
):
    import agentwatch as aw

    sdk(endpoint=http_url(collector), service_name="support-service", environment="staging")
    trace_id = run_sdk_agent()
    assert aw.force_flush(10)
    check_sdk_rows(collector.store, trace_id)


@pytest.mark.parametrize("compress", [False, True], ids=["identity", "gzip"])
def test_a_hand_built_protobuf_request_round_trips(collector: Collector, compress: bool):
    trace_id, parent = new_trace_id(), new_span_id()
    body = rich_request(trace_id, parent).SerializeToString()
    headers = {"Content-Encoding": "gzip"} if compress else {}
    reply = post(http_url(collector), gzip.compress(body) if compress else body, headers=headers)
    assert reply.status == 200
    assert reply.headers["content-type"] == PROTOBUF
    response = ExportTraceServiceResponse()
    response.ParseFromString(reply.body)
    assert not response.HasField("partial_success")
    check_rich_rows(collector, trace_id, parent)


def otlp_json_body(trace_id: bytes, parent: bytes) -> bytes:
    """OTLP/JSON as exporters send it: camelCase, hex ids, int64 as strings, enum numbers."""
    start = (
        rich_request(trace_id, parent)
        .resource_spans[0]
        .scope_spans[0]
        .spans[0]
        .start_time_unix_nano
    )

    def attribute(key: str, value: object) -> dict[str, object]:
        if isinstance(value, float):
            return {"key": key, "value": {"doubleValue": value}}
        if isinstance(value, int):
            return {"key": key, "value": {"intValue": str(value)}}
        return {"key": key, "value": {"stringValue": value}}

    document = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        attribute("service.name", "billing-agent"),
                        attribute("deployment.environment", "prod"),
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "json-client", "version": "1"},
                        "spans": [
                            {
                                "traceId": trace_id.hex(),
                                "spanId": parent.hex(),
                                "name": "invoke_agent triage",
                                "kind": 1,
                                "startTimeUnixNano": str(start),
                                "endTimeUnixNano": str(start + 2_000_000),
                                "attributes": [attribute("gen_ai.operation.name", "invoke_agent")],
                            },
                            {
                                "traceId": trace_id.hex(),
                                "spanId": new_span_id().hex(),
                                "parentSpanId": parent.hex(),
                                "name": "chat claude",
                                "kind": "SPAN_KIND_CLIENT",
                                "startTimeUnixNano": str(start + 1),
                                "endTimeUnixNano": str(start + 1_000_000),
                                "attributes": [attribute(k, v) for k, v in RICH_ATTRIBUTES.items()],
                                "status": {"code": 2, "message": "timed out"},
                            },
                        ],
                    }
                ],
            }
        ]
    }
    return json.dumps(document).encode()


@pytest.mark.parametrize("compress", [False, True], ids=["identity", "gzip"])
def test_an_otlp_json_request_round_trips_with_a_json_reply(collector: Collector, compress: bool):
    trace_id, parent = new_trace_id(), new_span_id()
    body = otlp_json_body(trace_id, parent)
    headers = {"Content-Encoding": "gzip"} if compress else {}
    reply = post(
        http_url(collector),
        gzip.compress(body) if compress else body,
        content_type="application/json; charset=utf-8",
        headers=headers,
    )
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == JSON
    assert reply.json() == {}
    check_rich_rows(collector, trace_id, parent)


@pytest.mark.parametrize(
    ("model", "provider", "ref_model", "ref_provider"),
    [
        ("openai/gpt-4o", "", "gpt-4o", "openai"),
        ("gpt-4o-2024-08-06", "openai", "gpt-4o-2024-08-06", "openai"),
        ("gpt-4o-mini", "openai", "gpt-4o-mini", "openai"),
    ],
)
def test_provider_prefixed_and_dated_models_are_priced(
    collector: Collector, model: str, provider: str, ref_model: str, ref_provider: str
):
    attributes: dict[str, object] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": 2000,
        "gen_ai.usage.output_tokens": 100,
    }
    if provider:
        attributes["gen_ai.provider.name"] = provider
    span = make_span("chat", attributes)
    assert post_request(http_url(collector), make_request(span)).status == 200
    (row,) = span_rows(collector.store, span.trace_id)
    assert row["Priced"] == 1
    assert row["CostUsd"] == pytest.approx(
        expected_cost(ref_model, ref_provider, input_tokens=2000, output_tokens=100), rel=1e-9
    )


def test_an_unknown_model_is_stored_unpriced_and_flagged(collector: Collector):
    span = make_span(
        "chat",
        {
            "gen_ai.request.model": "in-house-model-7",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 10,
        },
    )
    assert post_request(http_url(collector), make_request(span)).status == 200
    (row,) = span_rows(collector.store, span.trace_id)
    assert (row["Priced"], row["CostUsd"]) == (0, 0.0)
    assert (row["InputTokens"], row["RequestModel"]) == (100, "in-house-model-7")


def test_a_price_override_file_prices_a_custom_model(
    start_collector: StartCollector, tmp_path: Path
):
    prices = tmp_path / "prices.toml"
    prices.write_text(
        '[[price]]\nmodel = "in-house-model-7"\ninput_per_mtok = 4\noutput_per_mtok = 20\n',
        encoding="utf-8",
    )
    collector = start_collector(prices_file=prices)
    span = make_span(
        "chat",
        {
            "gen_ai.request.model": "in-house-model-7",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 100,
        },
    )
    assert post_request(http_url(collector), make_request(span)).status == 200
    (row,) = span_rows(collector.store, span.trace_id)
    assert row["Priced"] == 1
    assert row["CostUsd"] == pytest.approx(1000 * 4e-6 + 100 * 20e-6)


def test_acknowledged_spans_are_already_stored_when_the_200_arrives(collector: Collector):
    """Ack after commit: no polling here, the rows must be there the moment the reply is."""
    url = http_url(collector)
    for _ in range(5):
        request = trace_batch(20)
        trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id
        assert post_request(url, request).status == 200
        assert span_counts(collector.store, [trace_id]) == {trace_id.hex(): 20}


def test_several_requests_on_one_keep_alive_connection_are_all_stored(collector: Collector):
    requests = [trace_batch(3) for _ in range(4)]
    port = collector.http.port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for request in requests:
            conn.request(
                "POST",
                "/v1/traces",
                body=request.SerializeToString(),
                headers={"Content-Type": PROTOBUF},
            )
            response = conn.getresponse()
            response.read()
            assert response.status == 200
    finally:
        conn.close()
    ids = [r.resource_spans[0].scope_spans[0].spans[0].trace_id for r in requests]
    assert set(span_counts(collector.store, ids).values()) == {3}


def test_an_empty_request_is_accepted_and_stores_nothing(collector: Collector):
    before = total_spans(collector.store)
    reply = post(http_url(collector), b"")
    assert reply.status == 200
    assert total_spans(collector.store) == before


# -- bad input ----------------------------------------------------------------------------------
def assert_rejected(
    collector: Collector, reply: Reply, status: int, reason: str, words: str
) -> None:
    """The reply is ``status`` with a JSON body naming the problem, the rejection is counted
    under ``reason``, and the collector still stores the very next good request."""
    assert reply.status == status, reply.body
    body = reply.json()
    assert body["error"] == reason
    assert words in body["message"], body["message"]
    url = http_url(collector)
    assert rejected(url).get(reason, 0) >= 1
    good = trace_batch(2)
    assert post_request(url, good).status == 200
    trace_id = good.resource_spans[0].scope_spans[0].spans[0].trace_id
    assert span_counts(collector.store, [trace_id]) == {trace_id.hex(): 2}


def test_a_body_that_is_not_protobuf_gets_400(collector: Collector):
    reply = post(http_url(collector), b"\x0a\xff\xff\xff\xff\x0f")
    assert_rejected(collector, reply, 400, "malformed_protobuf", "not a valid OTLP protobuf")


def test_a_body_that_is_not_json_gets_400(collector: Collector):
    reply = post(http_url(collector), b'{"resourceSpans": [', content_type=JSON)
    assert_rejected(collector, reply, 400, "malformed_json", "not valid JSON")


def test_json_that_is_not_an_otlp_request_gets_400(collector: Collector):
    reply = post(http_url(collector), b'{"resourceSpans": [{"scopeSpans": 3}]}', content_type=JSON)
    assert_rejected(collector, reply, 400, "malformed_json", "not a valid OTLP/JSON")


@pytest.mark.parametrize("content_type", ["text/plain", "application/grpc", ""])
def test_a_wrong_content_type_gets_415(collector: Collector, content_type: str):
    body = trace_batch(1).SerializeToString()
    reply = post(http_url(collector), body, content_type=content_type)
    assert_rejected(collector, reply, 415, "unsupported_content_type", "Content-Type must be")


def test_an_unknown_content_encoding_gets_415(collector: Collector):
    body = trace_batch(1).SerializeToString()
    reply = post(http_url(collector), body, headers={"Content-Encoding": "br"})
    assert_rejected(collector, reply, 415, "unsupported_encoding", "'br'")


def test_a_body_over_the_size_limit_gets_413(start_collector: StartCollector):
    collector = start_collector(max_body_bytes=2048)
    reply = post(http_url(collector), trace_batch(60).SerializeToString())
    assert reply.headers["connection"] == "close"  # the body was not read
    assert_rejected(collector, reply, 413, "body_too_large", "exceeds the limit of 2048")


def test_a_gzip_bomb_is_rejected_without_inflating_it(start_collector: StartCollector):
    """2 MB of zeros gzip to ~2 KB: under the body limit, far over the decompressed limit."""
    collector = start_collector(max_body_bytes=4096)
    bomb = gzip.compress(bytes(2_000_000))
    assert len(bomb) < 4096
    reply = post(http_url(collector), bomb, headers={"Content-Encoding": "gzip"})
    assert_rejected(collector, reply, 400, "decompressed_too_large", "decompressed body exceeds")


def test_a_corrupt_gzip_body_gets_400(collector: Collector):
    reply = post(
        http_url(collector),
        b"\x1f\x8b\x08\x00garbage-garbage",
        headers={"Content-Encoding": "gzip"},
    )
    assert_rejected(collector, reply, 400, "bad_gzip", "not valid gzip")


def test_a_truncated_gzip_body_gets_400(collector: Collector):
    whole = gzip.compress(trace_batch(5).SerializeToString())
    reply = post(http_url(collector), whole[:-12], headers={"Content-Encoding": "gzip"})
    assert_rejected(collector, reply, 400, "bad_gzip", "truncated")


def test_a_multi_member_gzip_body_is_decoded_whole(collector: Collector):
    """gzip allows concatenated members (Go's reader, as in the OTel Collector, reads them all);
    stopping after the first would acknowledge spans that were never stored."""
    first, second = trace_batch(2), trace_batch(3)
    body = gzip.compress(first.SerializeToString()) + gzip.compress(second.SerializeToString())
    reply = post(http_url(collector), body, headers={"Content-Encoding": "gzip"})
    assert reply.status == 200
    ids = [r.resource_spans[0].scope_spans[0].spans[0].trace_id for r in (first, second)]
    assert span_counts(collector.store, ids) == {ids[0].hex(): 2, ids[1].hex(): 3}


def test_garbage_after_a_gzip_member_gets_400(collector: Collector):
    body = gzip.compress(trace_batch(1).SerializeToString()) + b"trailing junk"
    reply = post(http_url(collector), body, headers={"Content-Encoding": "gzip"})
    assert_rejected(collector, reply, 400, "bad_gzip", "not valid gzip")


def test_multi_member_gzip_counts_every_member_against_the_limit(
    start_collector: StartCollector,
):
    collector = start_collector(max_body_bytes=4096)
    member = gzip.compress(bytes(10_000))  # each member alone is under 4 * 4096
    reply = post(http_url(collector), member * 3, headers={"Content-Encoding": "gzip"})
    assert_rejected(collector, reply, 400, "decompressed_too_large", "decompressed body exceeds")


def test_invalid_utf8_in_a_protobuf_string_field_gets_400(collector: Collector):
    body = make_request(make_span("ABCDEFGH")).SerializeToString()
    reply = post(http_url(collector), body.replace(b"ABCDEFGH", b"AB\xff\xfeEFGH"))
    assert_rejected(collector, reply, 400, "malformed_protobuf", "UTF-8")


def test_invalid_utf8_in_a_json_body_gets_400(collector: Collector):
    body = b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "\xc3\x28"}]}]}]}'
    reply = post(http_url(collector), body, content_type=JSON)
    assert_rejected(collector, reply, 400, "invalid_utf8", "not valid UTF-8")


def test_too_many_attributes_get_400(start_collector: StartCollector):
    collector = start_collector(limits=DecodeLimits(max_attributes_per_span=8))
    span = make_span(attributes={f"key.{i}": i for i in range(9)})
    reply = post_request(http_url(collector), make_request(span))
    assert_rejected(collector, reply, 400, "too_many_attributes", "9 attributes")


def test_an_attribute_value_too_large_gets_400(start_collector: StartCollector):
    collector = start_collector(limits=DecodeLimits(max_attribute_value_bytes=1000))
    span = make_span(attributes={"gen_ai.input.messages": "x" * 1001})
    reply = post_request(http_url(collector), make_request(span))
    assert_rejected(collector, reply, 400, "attribute_too_large", "'gen_ai.input.messages'")


@pytest.mark.parametrize(
    ("span", "reason", "words"),
    [
        (make_span(trace_id=b""), "missing_id", "trace_id is missing"),
        (make_span(span_id=b""), "missing_id", "span_id is missing"),
        (make_span(trace_id=b"\x01" * 15), "invalid_id", "trace_id must be 16 bytes, got 15"),
        (make_span(span_id=b"\x01" * 9), "invalid_id", "span_id must be 8 bytes, got 9"),
        (make_span(parent_span_id=b"\x01" * 4), "invalid_id", "parent_span_id must be 8 bytes"),
        (make_span(start_ns=0, duration_ns=0), "missing_time", "start_time_unix_nano is missing"),
        (make_span(start_ns=2**63, duration_ns=0), "invalid_time", "beyond the latest storable"),
    ],
    ids=[
        "no-trace-id",
        "no-span-id",
        "short-trace-id",
        "long-span-id",
        "bad-parent",
        "no-start",
        "start-beyond-2262",
    ],
)
def test_spans_with_missing_or_wrong_ids_or_times_get_400(
    collector: Collector, span: Span, reason: str, words: str
):
    reply = post_request(http_url(collector), make_request(span))
    assert_rejected(collector, reply, 400, reason, words)


def test_a_rejected_request_stores_none_of_its_spans(collector: Collector):
    good = [make_span("ok") for _ in range(3)]
    request = make_request(*good, make_span("bad", span_id=b""))
    assert post_request(http_url(collector), request).status == 400
    assert set(span_counts(collector.store, [s.trace_id for s in good]).values()) == {0}


def test_metrics_are_answered_honestly_as_rejected_not_stored(collector: Collector):
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add()
    metric.name = "requests"
    for value in (1, 2, 3):
        metric.sum.data_points.add(as_int=value, time_unix_nano=1)
    url = http_url(collector)
    before = rejected(url).get("metrics_not_stored", 0)
    reply = post(url, request.SerializeToString(), path="/v1/metrics")
    assert reply.status == 200
    response = ExportMetricsServiceResponse()
    response.ParseFromString(reply.body)
    assert response.partial_success.rejected_data_points == 3
    assert "not stored" in response.partial_success.error_message
    assert rejected(url)["metrics_not_stored"] == before + 1


def test_logs_are_answered_honestly_as_rejected_not_stored_in_json_too(collector: Collector):
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    for text in ("a", "b"):
        records.add().body.string_value = text
    body = json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [{}, {}]}]}]}).encode()
    url = http_url(collector)
    before = rejected(url).get("logs_not_stored", 0)
    reply = post(url, request.SerializeToString(), path="/v1/logs")
    response = ExportLogsServiceResponse()
    response.ParseFromString(reply.body)
    assert response.partial_success.rejected_log_records == 2
    json_reply = post(url, body, path="/v1/logs", content_type=JSON)
    assert json_reply.status == 200
    assert json_reply.json()["partialSuccess"]["rejectedLogRecords"] == "2"
    assert "not stored" in json_reply.json()["partialSuccess"]["errorMessage"]
    assert rejected(url)["logs_not_stored"] == before + 2


def test_a_malformed_metrics_body_gets_400(collector: Collector):
    reply = post(http_url(collector), b"\xff\xff\xff", path="/v1/metrics")
    assert_rejected(collector, reply, 400, "malformed", "not a valid OTLP request")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_unknown_path_gets_404(collector: Collector, method: str):
    reply = http_call(http_url(collector), method, "/v2/spans", b"{}" if method == "POST" else None)
    assert_rejected(collector, reply, 404, "not_found", "/v2/spans")


def test_a_post_to_an_unknown_path_does_not_corrupt_the_keep_alive_connection(
    collector: Collector,
):
    """The 404 is sent without reading the body: the server must not then parse that body as
    the connection's next request, and must say ``Connection: close`` so the client reconnects."""
    conn = http.client.HTTPConnection("127.0.0.1", collector.http.port, timeout=30)
    try:
        conn.request("POST", "/nowhere", body=b"X" * 100, headers={"Content-Type": PROTOBUF})
        first = conn.getresponse()
        first.read()
        assert first.status == 404
        good = trace_batch(1)
        conn.request(
            "POST", "/v1/traces", body=good.SerializeToString(), headers={"Content-Type": PROTOBUF}
        )
        second = conn.getresponse()
        second.read()
        assert second.status == 200
    finally:
        conn.close()


def test_get_on_the_traces_endpoint_gets_405(collector: Collector):
    reply = get(http_url(collector), "/v1/traces")
    assert_rejected(collector, reply, 405, "method_not_allowed", "use POST")


# -- ingest token -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong", "s3cret", "Basic s3cret", "Bearer s3cret "]
)
def test_without_the_right_ingest_token_a_request_gets_401(
    start_collector: StartCollector, authorization: str | None
):
    collector = start_collector(ingest_token="s3cret")
    headers = {"Authorization": authorization} if authorization is not None else {}
    request = trace_batch(2)
    reply = post_request(http_url(collector), request, headers=headers)
    assert reply.status == 401
    assert reply.headers["www-authenticate"] == "Bearer"
    assert reply.headers["connection"] == "close"  # the body was not read
    assert "ingest token" in reply.json()["message"]
    assert rejected(http_url(collector))["unauthorized"] == 1
    assert total_spans(collector.store) == 0


def test_with_the_ingest_token_a_request_is_stored(start_collector: StartCollector):
    collector = start_collector(ingest_token="s3cret")
    request = trace_batch(2)
    reply = post_request(http_url(collector), request, {"Authorization": "Bearer s3cret"})
    assert reply.status == 200
    assert total_spans(collector.store) == 2


def test_the_sdk_sends_the_ingest_token(start_collector: StartCollector, sdk: ConfigureSdk):
    import agentwatch as aw

    collector = start_collector(ingest_token="s3cret")
    sdk(
        endpoint=http_url(collector),
        service_name="support-service",
        environment="staging",
        ingest_token="s3cret",
    )
    trace_id = run_sdk_agent()
    assert aw.force_flush(10)
    check_sdk_rows(collector.store, trace_id)


# -- health and the collector's own metrics -----------------------------------------------------
def test_healthz_reports_ok_and_the_queue_depth(collector: Collector):
    reply = get(http_url(collector), "/healthz")
    assert reply.status == 200
    assert reply.json() == {"status": "ok", "queue_depth_spans": 0}


def test_stats_count_requests_spans_and_rejections(start_collector: StartCollector):
    collector = start_collector()
    url = http_url(collector)
    post_request(url, trace_batch(3))
    post_request(url, trace_batch(2))
    post(url, b"junk!", content_type="text/plain")
    stats = get(url, "/stats").json()
    assert stats["requests"] == 2
    assert stats["spans_received"] == 5
    assert stats["spans_stored"] == 5
    assert stats["rejected"] == {"unsupported_content_type": 1}
    assert stats["queue_depth_spans"] == 0
    assert stats["inserts"] >= 1
    assert stats["insert_failures"] == 0


def test_metrics_endpoint_serves_prometheus_text(start_collector: StartCollector):
    collector = start_collector()
    url = http_url(collector)
    post_request(url, trace_batch(4))
    post(url, b"\x0a\xff", content_type=PROTOBUF)
    reply = get(url, "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = reply.body.decode().splitlines()
    assert "agentwatch_spans_stored_total 4" in lines
    assert "agentwatch_spans_received_total 4" in lines
    assert 'agentwatch_rejected_total{reason="malformed_protobuf"} 1' in lines
    assert "agentwatch_queue_depth_spans 0" in lines
    assert "# TYPE agentwatch_rejected_total counter" in lines


# -- overload -----------------------------------------------------------------------------------
def test_an_overloaded_collector_answers_503_with_retry_after_and_loses_no_acked_span(
    start_pipeline: StartPipeline,
):
    pipeline = start_pipeline(writer=WriterSettings(max_delay_s=0.0, max_queued_rows=10))
    url = pipeline.http_url
    pipeline.store.gate.clear()
    replies: dict[str, Reply] = {}

    def send(request_name: str, spans: int, trace_id: bytes) -> None:
        replies[request_name] = post_request(url, trace_batch(spans, trace_id))

    first, second = new_trace_id(), new_trace_id()
    threads = [threading.Thread(target=send, args=("first", 5, first))]
    threads[0].start()
    wait_until(pipeline.store.insert_waiting.is_set, what="the first insert to start")
    threads.append(threading.Thread(target=send, args=("second", 5, second)))
    threads[1].start()
    wait_until(lambda: pipeline.writer.queued_rows == 10, what="10 spans queued")

    refused_id = new_trace_id()
    refused = post_request(url, trace_batch(5, refused_id))
    assert refused.status == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"] == "overloaded"
    assert "10 spans queued (limit 10)" in refused.json()["message"]
    assert pipeline.writer.queued_rows == 10
    assert get(url, "/healthz").json()["queue_depth_spans"] == 10
    assert rejected(url)["overloaded"] == 1
    assert "first" not in replies, "acknowledged before the insert committed"

    pipeline.store.gate.set()
    for thread in threads:
        thread.join(30)
    assert (replies["first"].status, replies["second"].status) == (200, 200)
    assert span_counts(pipeline.store, [first, second, refused_id]) == {
        first.hex(): 5,
        second.hex(): 5,
        refused_id.hex(): 0,
    }
    retried = post_request(url, trace_batch(5, refused_id))
    assert retried.status == 200
    assert span_counts(pipeline.store, [refused_id]) == {refused_id.hex(): 5}


def test_a_store_too_slow_to_commit_in_time_gets_503_not_a_false_ack(
    start_pipeline: StartPipeline,
):
    pipeline = start_pipeline(ack_timeout_s=0.2)
    pipeline.store.gate.clear()
    reply = post_request(pipeline.http_url, trace_batch(3))
    assert reply.status == 503
    assert reply.headers["retry-after"] == "2"
    assert reply.json()["error"] == "store_unavailable"
    assert "not committed within 0.2s" in reply.json()["message"]
    pipeline.store.gate.set()

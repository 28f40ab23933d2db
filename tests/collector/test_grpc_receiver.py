"""The OTLP/gRPC receiver, end to end over loopback: the SDK and hand-built requests land as rows;
bad requests get INVALID_ARGUMENT (counted, collector still serving); the ingest token is
enforced; overload is UNAVAILABLE (retryable) and nothing acknowledged is lost."""

from __future__ import annotations

import threading

import grpc
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agentwatch.app._collector import Collector
from agentwatch.collector._writer import WriterSettings
from tests.collector.conftest import (
    ConfigureSdk,
    StartCollector,
    StartPipeline,
    check_sdk_rows,
    get,
    grpc_export,
    grpc_port,
    http_url,
    make_request,
    make_span,
    new_trace_id,
    rejected,
    run_sdk_agent,
    span_counts,
    span_rows,
    trace_batch,
    wait_until,
)

pytestmark = pytest.mark.slow

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def rpc_error(port: int, request: object, **kwargs: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        grpc_export(port, request, **kwargs)  # type: ignore[arg-type]
    return caught.value


def export_raw(port: int, body: bytes, compression: grpc.Compression | None = None) -> bytes:
    """Export an already-serialized (possibly invalid) message, bypassing client-side encoding."""
    with grpc.insecure_channel(f"127.0.0.1:{port}", compression=compression) as channel:
        call = channel.unary_unary(
            EXPORT, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        result: bytes = call(body, timeout=30)
        return result


def assert_still_serving(collector: Collector) -> None:
    request = trace_batch(2)
    grpc_export(grpc_port(collector), request)
    trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id
    assert span_counts(collector.store, [trace_id]) == {trace_id.hex(): 2}


# -- round trips --------------------------------------------------------------------------------
def test_the_sdk_over_grpc_lands_every_typed_column_and_cost(
    collector: Collector, sdk: ConfigureSdk
):
    import agentwatch as aw

    sdk(
        endpoint=f"http://127.0.0.1:{grpc_port(collector)}",
        protocol="grpc",
        service_name="support-service",
        environment="staging",
    )
    trace_id = run_sdk_agent()
    assert aw.force_flush(10)
    check_sdk_rows(collector.store, trace_id)
    # The gRPC receiver hands the raw bytes to the same native decoder as HTTP protobuf.
    assert get(http_url(collector), "/stats").json()["requests_decoded_natively"] >= 1


@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip], ids=["identity", "gzip"])
def test_a_hand_built_request_round_trips(
    collector: Collector, compression: grpc.Compression | None
):
    trace_id = new_trace_id()
    parent = make_span("invoke_agent a", {"gen_ai.agent.name": "a"}, trace_id=trace_id)
    child = make_span(
        "chat",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "openai/gpt-4o",
            "gen_ai.usage.input_tokens": 500,
            "gen_ai.usage.output_tokens": 50,
        },
        trace_id=trace_id,
        parent_span_id=parent.span_id,
        kind=Span.SPAN_KIND_CLIENT,
    )
    body = make_request(parent, child).SerializeToString()
    assert export_raw(grpc_port(collector), body, compression) == b""
    root, chat = span_rows(collector.store, trace_id)
    assert (root["AgentName"], root["SpanKind"]) == ("a", "Internal")
    assert chat["ParentSpanId"] == parent.span_id.hex()
    assert (chat["SpanKind"], chat["Operation"], chat["RequestModel"]) == (
        "Client",
        "chat",
        "openai/gpt-4o",
    )
    assert (chat["InputTokens"], chat["OutputTokens"], chat["Priced"]) == (500, 50, 1)
    assert chat["CostUsd"] > 0


def test_acknowledged_spans_are_stored_when_export_returns(collector: Collector):
    for _ in range(3):
        request = trace_batch(25)
        grpc_export(grpc_port(collector), request)
        trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id
        assert span_counts(collector.store, [trace_id]) == {trace_id.hex(): 25}


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("span", "reason", "words"),
    [
        (make_span(trace_id=b""), "missing_id", "trace_id is missing"),
        (make_span(span_id=b"\x01\x02"), "invalid_id", "span_id must be 8 bytes, got 2"),
        (make_span(start_ns=0, duration_ns=0), "missing_time", "start_time_unix_nano"),
    ],
    ids=["no-trace-id", "short-span-id", "no-start"],
)
def test_an_invalid_span_gets_invalid_argument_naming_the_problem(
    collector: Collector, span: Span, reason: str, words: str
):
    before = rejected(http_url(collector)).get(reason, 0)
    error = rpc_error(grpc_port(collector), make_request(span))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in (error.details() or "")
    assert rejected(http_url(collector))[reason] == before + 1
    assert_still_serving(collector)


def test_a_message_that_is_not_protobuf_gets_invalid_argument(collector: Collector):
    """Not gRPC's INTERNAL "Exception deserializing request!": the client sent bad data."""
    before = rejected(http_url(collector)).get("malformed_protobuf", 0)
    with pytest.raises(grpc.RpcError) as caught:
        export_raw(grpc_port(collector), b"\x0a\xff\xff\xff\xff\x0f")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid OTLP protobuf" in (caught.value.details() or "")
    assert rejected(http_url(collector))["malformed_protobuf"] == before + 1
    assert_still_serving(collector)


def test_invalid_utf8_in_a_string_field_gets_invalid_argument(collector: Collector):
    body = make_request(make_span("ABCDEFGH")).SerializeToString()
    with pytest.raises(grpc.RpcError) as caught:
        export_raw(grpc_port(collector), body.replace(b"ABCDEFGH", b"AB\xff\xfeEFGH"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "UTF-8" in (caught.value.details() or "")
    assert_still_serving(collector)


def test_a_message_over_the_size_limit_gets_resource_exhausted(start_collector: StartCollector):
    collector = start_collector(max_body_bytes=4096)
    error = rpc_error(grpc_port(collector), trace_batch(100))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_still_serving(collector)


# -- ingest token -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "metadata", [(), (("authorization", "Bearer wrong"),)], ids=["none", "wrong"]
)
def test_without_the_right_token_export_gets_unauthenticated(
    start_collector: StartCollector, metadata: tuple[tuple[str, str], ...]
):
    collector = start_collector(ingest_token="s3cret")
    request = trace_batch(2)
    error = rpc_error(grpc_port(collector), request, metadata=metadata)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "ingest token" in (error.details() or "")
    assert rejected(http_url(collector))["unauthorized"] == 1
    trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id
    assert span_counts(collector.store, [trace_id]) == {trace_id.hex(): 0}


def test_with_the_token_export_is_stored(start_collector: StartCollector):
    collector = start_collector(ingest_token="s3cret")
    request = trace_batch(2)
    grpc_export(grpc_port(collector), request, metadata=[("authorization", "Bearer s3cret")])
    trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id
    assert span_counts(collector.store, [trace_id]) == {trace_id.hex(): 2}


def test_the_sdk_sends_the_ingest_token_over_grpc(
    start_collector: StartCollector, sdk: ConfigureSdk
):
    import agentwatch as aw

    collector = start_collector(ingest_token="s3cret")
    sdk(
        endpoint=f"http://127.0.0.1:{grpc_port(collector)}",
        protocol="grpc",
        service_name="support-service",
        environment="staging",
        ingest_token="s3cret",
    )
    trace_id = run_sdk_agent()
    assert aw.force_flush(10)
    check_sdk_rows(collector.store, trace_id)


# -- overload -----------------------------------------------------------------------------------
def test_an_overloaded_collector_answers_unavailable_and_loses_no_acked_span(
    start_pipeline: StartPipeline,
):
    pipeline = start_pipeline(writer=WriterSettings(max_delay_s=0.0, max_queued_rows=8))
    port = pipeline.grpc.port
    pipeline.store.gate.clear()
    acked: list[bytes] = []

    def send(trace_id: bytes) -> None:
        grpc_export(port, trace_batch(8, trace_id))
        acked.append(trace_id)

    accepted = new_trace_id()
    thread = threading.Thread(target=send, args=(accepted,))
    thread.start()
    wait_until(pipeline.store.insert_waiting.is_set, what="the first insert to start")

    refused = new_trace_id()
    error = rpc_error(port, trace_batch(1, refused))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "overloaded" in (error.details() or "")
    assert pipeline.writer.queued_rows == 8
    assert get(pipeline.http_url, "/stats").json()["rejected"] == {"overloaded": 1}
    assert acked == []

    pipeline.store.gate.set()
    thread.join(30)
    assert acked == [accepted]
    assert span_counts(pipeline.store, [accepted, refused]) == {accepted.hex(): 8, refused.hex(): 0}


def test_a_store_too_slow_to_commit_in_time_gets_unavailable(start_pipeline: StartPipeline):
    pipeline = start_pipeline(ack_timeout_s=0.2)
    pipeline.store.gate.clear()
    error = rpc_error(pipeline.grpc.port, trace_batch(2))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "not committed within 0.2s" in (error.details() or "")
    pipeline.store.gate.set()

"""Export over real OTLP: an HTTP server and a gRPC server on loopback receive what the SDK sends,
decoded with the OTLP protobuf definitions; a collector that is down never stalls the agent."""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

import agentwatch as aw
from tests.sdk.support import openai_chat

pytestmark = pytest.mark.slow


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(0.01)


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind is not None else None


def as_dict(attributes: Any) -> dict[str, Any]:
    return {kv.key: value_of(kv.value) for kv in attributes}


@dataclass
class Received:
    """What the receiver got: one entry per export request."""

    requests: list[trace_service_pb2.ExportTraceServiceRequest] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spans(self) -> list[Span]:
        with self.lock:
            return [
                span
                for request in self.requests
                for resource_spans in request.resource_spans
                for scope_spans in resource_spans.scope_spans
                for span in scope_spans.spans
            ]

    def resources(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                as_dict(rs.resource.attributes) for r in self.requests for rs in r.resource_spans
            ]

    def by_name(self) -> dict[str, Span]:
        return {span.name: span for span in self.spans()}


@pytest.fixture
def http_receiver() -> Iterator[tuple[str, Received]]:
    """A real OTLP/HTTP trace receiver on a free loopback port: (endpoint, what it received)."""
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
            with received.lock:
                received.requests.append(request)
                received.headers.append({k.lower(): v for k, v in self.headers.items()})
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        aw.shutdown()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@aw.llm(provider="openai")
def ask(model: str) -> dict[str, Any]:
    return openai_chat(prompt_tokens=120, completion_tokens=30, cached_tokens=20)


@aw.tool(tier="read")
def lookup_order(order_id: str) -> str:
    ask(model="gpt-4o")
    return "shipped"


@aw.agent(name="support", task_type="order_status")
def support_agent(order_id: str) -> str:
    status = lookup_order(order_id)
    aw.record_decision("reply", 0.91, thresholds=aw.Thresholds())
    return status


def check_nested_agent(received: Received) -> None:
    spans = received.by_name()
    agent_span = spans["invoke_agent support"]
    tool_span = spans["execute_tool lookup_order"]
    llm_span = spans["chat gpt-4o"]
    decision_span = spans["decision reply"]

    assert agent_span.parent_span_id == b""
    assert tool_span.parent_span_id == agent_span.span_id
    assert llm_span.parent_span_id == tool_span.span_id
    assert decision_span.parent_span_id == agent_span.span_id
    assert {s.trace_id for s in (agent_span, tool_span, llm_span, decision_span)} == {
        agent_span.trace_id
    }
    assert llm_span.kind == Span.SPAN_KIND_CLIENT

    assert as_dict(agent_span.attributes) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "support",
        "agentwatch.task.type": "order_status",
        "agentwatch.task.outcome": "completed",
    }
    assert as_dict(tool_span.attributes)["agentwatch.tool.tier"] == "read"
    llm_attrs = as_dict(llm_span.attributes)
    assert llm_attrs["gen_ai.provider.name"] == "openai"
    assert llm_attrs["gen_ai.usage.input_tokens"] == 120
    assert llm_attrs["gen_ai.usage.output_tokens"] == 30
    assert llm_attrs["gen_ai.usage.cache_read.input_tokens"] == 20
    assert as_dict(decision_span.attributes)["agentwatch.decision.confidence"] == 0.91
    assert as_dict(decision_span.attributes)["agentwatch.decision.route"] == "auto"

    (resource,) = {tuple(sorted(r.items())) for r in received.resources()}
    assert dict(resource)["service.name"] == "otlp-test-agent"


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_nested_agent_arrives_over_otlp_http(
    http_receiver: tuple[str, Received],
    monkeypatch: pytest.MonkeyPatch,
    compression: str | None,
) -> None:
    endpoint, received = http_receiver
    if compression:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", compression)
    aw.configure(service_name="otlp-test-agent", endpoint=endpoint)

    assert support_agent("o-1") == "shipped"
    aw.shutdown()  # flushes the batch

    wait_for(lambda: len(received.spans()) == 4)
    check_nested_agent(received)
    encodings = {h.get("content-encoding") for h in received.headers}
    assert encodings == ({"gzip"} if compression else {None})
    assert {h["content-type"] for h in received.headers} == {"application/x-protobuf"}


def test_force_flush_delivers_without_shutting_down(http_receiver: tuple[str, Received]) -> None:
    endpoint, received = http_receiver
    aw.configure(service_name="otlp-test-agent", endpoint=endpoint)

    support_agent("o-2")

    assert aw.force_flush(timeout_s=10) is True
    wait_for(lambda: len(received.spans()) == 4)
    assert aw.is_configured()


def test_ingest_token_and_headers_are_sent(http_receiver: tuple[str, Received]) -> None:
    endpoint, received = http_receiver
    aw.configure(
        service_name="otlp-test-agent",
        endpoint=endpoint,
        ingest_token="tok-123",
        headers={"X-Team": "support"},
    )

    aw.record_decision("ping", 0.5)
    aw.shutdown()

    wait_for(lambda: len(received.headers) == 1)
    assert received.headers[0]["authorization"] == "Bearer tok-123"
    assert received.headers[0]["x-team"] == "support"


class TraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.received = Received()

    def Export(  # noqa: N802 - the generated service's method name
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self.received.lock:
            self.received.requests.append(request)
            self.received.headers.append(dict(context.invocation_metadata()))
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def grpc_receiver() -> Iterator[tuple[str, Received]]:
    """A real OTLP/gRPC TraceService on a free loopback port: (endpoint, what it received)."""
    receiver = TraceReceiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", receiver.received
    finally:
        aw.shutdown()
        server.stop(grace=None).wait(timeout=5)


def test_nested_agent_arrives_over_otlp_grpc(grpc_receiver: tuple[str, Received]) -> None:
    endpoint, received = grpc_receiver
    aw.configure(
        service_name="otlp-test-agent", endpoint=endpoint, protocol="grpc", ingest_token="tok-9"
    )

    support_agent("o-3")
    aw.shutdown()

    wait_for(lambda: len(received.spans()) == 4)
    check_nested_agent(received)
    assert received.headers[0]["authorization"] == "Bearer tok-9"


def closed_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_collector_down_never_stalls_the_agent() -> None:
    export_timeout_s = 1.0
    aw.configure(
        service_name="otlp-test-agent",
        endpoint=f"http://127.0.0.1:{closed_loopback_port()}",
        export_timeout_s=export_timeout_s,
    )
    try:
        started = time.monotonic()
        results = [support_agent(f"o-{i}") for i in range(50)]
        calls_s = time.monotonic() - started
    finally:
        started = time.monotonic()
        aw.shutdown()
        shutdown_s = time.monotonic() - started

    assert results == ["shipped"] * 50
    assert calls_s < 2.0, f"50 agent runs took {calls_s:.2f} s with the collector down"
    assert shutdown_s < export_timeout_s + 2.0, f"shutdown took {shutdown_s:.2f} s"
    assert not aw.is_configured()


def test_force_flush_with_the_collector_down_returns_within_its_timeout() -> None:
    aw.configure(
        service_name="otlp-test-agent",
        endpoint=f"http://127.0.0.1:{closed_loopback_port()}",
        export_timeout_s=0.5,
    )
    try:
        support_agent("o-1")
        started = time.monotonic()
        aw.force_flush(timeout_s=1.0)
        flush_s = time.monotonic() - started
    finally:
        aw.shutdown()

    assert flush_s < 1.0 + 2.0, f"force_flush took {flush_s:.2f} s"


def test_grpc_collector_down_never_stalls_the_agent() -> None:
    aw.configure(
        service_name="otlp-test-agent",
        endpoint=f"http://127.0.0.1:{closed_loopback_port()}",
        protocol="grpc",
        export_timeout_s=1.0,
    )
    try:
        started = time.monotonic()
        assert support_agent("o-1") == "shipped"
        calls_s = time.monotonic() - started
    finally:
        started = time.monotonic()
        aw.shutdown()
        shutdown_s = time.monotonic() - started

    assert calls_s < 1.0
    assert shutdown_s < 1.0 + 2.0, f"shutdown took {shutdown_s:.2f} s"


def test_key_value_decoding_helper_reads_each_type() -> None:
    """The helper the checks above rely on must not turn every value into None."""
    kvs = [
        KeyValue(key="s", value=AnyValue(string_value="x")),
        KeyValue(key="i", value=AnyValue(int_value=3)),
        KeyValue(key="d", value=AnyValue(double_value=0.5)),
        KeyValue(key="b", value=AnyValue(bool_value=True)),
    ]

    assert as_dict(kvs) == {"s": "x", "i": 3, "d": 0.5, "b": True}

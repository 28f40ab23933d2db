"""Real collectors on loopback ports, OTLP request builders, and polling instead of sleeping.

Everything here drives the production code: the ``collector`` fixture is the same ``Collector``
the ``agentwatch collector`` command runs (ports 0, so tests never collide), requests go over
real sockets, and rows are read back from the real embedded ClickHouse.

chDB allows one open data directory per process, so at most one collector (or store) is open at
a time; every fixture closes what it opened.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import grpc
import pyarrow as pa
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agentwatch.app._collector import Collector, CollectorConfig
from agentwatch.collector._grpc import GrpcReceiver
from agentwatch.collector._http import HttpReceiver
from agentwatch.collector._ingest import Ingestor, IngestSettings
from agentwatch.collector._pricing import PriceTable
from agentwatch.collector._stats import Stats
from agentwatch.collector._writer import BatchWriter, WriterSettings
from agentwatch.storage._schema import SPANS_TABLE
from agentwatch.storage._store import EmbeddedStore, StorageError, Store, apply_migrations
from tests import polling

T = TypeVar("T")

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

# The production default waits up to 0.25 s to fill a batch; tests want their rows now.
FAST_WRITER = WriterSettings(max_delay_s=0.005)


# -- polling ------------------------------------------------------------------------------------
def wait_until(predicate: Callable[[], T], timeout: float = 15.0, what: str = "") -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; fail after
    ``timeout`` seconds. The only way these tests wait for servers, threads or data."""
    return polling.wait_until(predicate, timeout, what)


# -- OTLP builders ------------------------------------------------------------------------------
def new_trace_id() -> bytes:
    return os.urandom(16)


def new_span_id() -> bytes:
    return os.urandom(8)


class Unset:
    """An AnyValue that is present but has no value set (as opposed to a missing value)."""


UNSET: Final = Unset()


def set_any(target: AnyValue, value: object) -> None:
    """Fill an OTLP AnyValue from a Python value (lists -> arrays, dicts -> kvlists); None
    leaves it unset, UNSET marks it present but empty."""
    if value is None:
        return
    if isinstance(value, Unset):
        target.SetInParent()
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif isinstance(value, list | tuple):
        target.array_value.SetInParent()
        for item in value:
            set_any(target.array_value.values.add(), item)
    elif isinstance(value, dict):
        target.kvlist_value.SetInParent()
        for key, item in value.items():
            kv = target.kvlist_value.values.add()
            kv.key = key
            set_any(kv.value, item)
    else:
        raise TypeError(f"no OTLP value for {value!r}")


def any_value(value: object) -> AnyValue:
    result = AnyValue()
    set_any(result, value)
    return result


def add_attributes(container: Any, attributes: Mapping[str, object]) -> None:
    for key, value in attributes.items():
        kv = container.add()
        kv.key = key
        set_any(kv.value, value)


def make_span(
    name: str = "span",
    attributes: Mapping[str, object] | None = None,
    *,
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
    parent_span_id: bytes = b"",
    kind: int = Span.SPAN_KIND_INTERNAL,
    status_code: int = Status.STATUS_CODE_UNSET,
    status_message: str = "",
    start_ns: int | None = None,
    duration_ns: int = 1_000_000,
) -> Span:
    """One span starting now (the span table's TTL drops old rows)."""
    span = Span()
    span.trace_id = new_trace_id() if trace_id is None else trace_id
    span.span_id = new_span_id() if span_id is None else span_id
    span.parent_span_id = parent_span_id
    span.name = name
    span.kind = kind  # type: ignore[assignment]
    start = time.time_ns() if start_ns is None else start_ns
    span.start_time_unix_nano = start
    span.end_time_unix_nano = start + duration_ns
    span.status.code = status_code  # type: ignore[assignment]
    span.status.message = status_message
    add_attributes(span.attributes, attributes or {})
    return span


def make_request(
    *spans: Span,
    resource: Mapping[str, object] | None = None,
    scope: str = "tests.collector",
) -> ExportTraceServiceRequest:
    """One ResourceSpans / ScopeSpans holding ``spans``."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    add_attributes(
        resource_spans.resource.attributes,
        {"service.name": "test-service"} if resource is None else resource,
    )
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = scope
    scope_spans.scope.version = "1.0"
    scope_spans.spans.extend(spans)
    return request


def trace_batch(spans: int, trace_id: bytes | None = None) -> ExportTraceServiceRequest:
    """A request of ``spans`` plain spans, all in one trace."""
    tid = new_trace_id() if trace_id is None else trace_id
    return make_request(*(make_span(f"op {i}", trace_id=tid) for i in range(spans)))


# -- HTTP ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_call(
    base_url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Reply:
    """One request on a fresh connection; any status comes back as a ``Reply``."""
    parsed = urlsplit(base_url)
    assert parsed.hostname is not None
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        return Reply(
            response.status,
            {name.lower(): value for name, value in response.getheaders()},
            response.read(),
        )
    finally:
        conn.close()


def post(
    base_url: str,
    body: bytes,
    *,
    content_type: str = PROTOBUF,
    path: str = "/v1/traces",
    headers: Mapping[str, str] | None = None,
) -> Reply:
    all_headers = {"Content-Type": content_type, **(headers or {})}
    return http_call(base_url, "POST", path, body, all_headers)


def post_request(
    base_url: str, request: ExportTraceServiceRequest, headers: Mapping[str, str] | None = None
) -> Reply:
    return post(base_url, request.SerializeToString(), headers=headers)


def get(base_url: str, path: str) -> Reply:
    return http_call(base_url, "GET", path)


def rejected(base_url: str) -> dict[str, int]:
    """The collector's rejection counters by reason, from its /stats endpoint."""
    counts: dict[str, int] = get(base_url, "/stats").json()["rejected"]
    return counts


# -- gRPC ---------------------------------------------------------------------------------------
def grpc_export(
    port: int,
    request: ExportTraceServiceRequest,
    metadata: Iterable[tuple[str, str]] = (),
    timeout: float = 30.0,
) -> ExportTraceServiceResponse:
    """TraceService/Export over a fresh insecure channel; errors raise ``grpc.RpcError``."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]
        response: ExportTraceServiceResponse = stub.Export(
            request, metadata=tuple(metadata), timeout=timeout
        )
        return response


# -- reading rows back --------------------------------------------------------------------------
def span_rows(store: Store, trace_id: bytes | str) -> list[dict[str, Any]]:
    """Every stored column of a trace's spans, ordered by start time."""
    tid = trace_id.hex() if isinstance(trace_id, bytes) else trace_id
    return store.query(
        f"SELECT * FROM {store.database}.{SPANS_TABLE} WHERE TraceId = {{trace:String}} "
        "ORDER BY Timestamp, SpanId",
        {"trace": tid},
    ).dicts()


def span_counts(store: Store, trace_ids: Iterable[bytes | str]) -> dict[str, int]:
    """How many spans are stored per trace id, for the given ids (absent ids count 0)."""
    ids = [t.hex() if isinstance(t, bytes) else t for t in trace_ids]
    found = store.query(
        f"SELECT TraceId, count() FROM {store.database}.{SPANS_TABLE} "
        "WHERE has(splitByChar(',', {ids:String}), TraceId) GROUP BY TraceId",
        {"ids": ",".join(ids)},  # chDB cannot bind a Python list to an Array parameter
    ).rows
    counts = dict.fromkeys(ids, 0)
    counts.update({str(tid): int(n) for tid, n in found})
    return counts


def total_spans(store: Store) -> int:
    return int(store.query(f"SELECT count() FROM {store.database}.{SPANS_TABLE}").scalar())


# -- collectors ---------------------------------------------------------------------------------
StartCollector = Callable[..., Collector]


def _start(data_dir: Path, **overrides: Any) -> Collector:
    settings: dict[str, Any] = {
        "data_dir": data_dir,
        "http_port": 0,
        "grpc_port": 0,
        "query_port": None,
        "writer": FAST_WRITER,
        **overrides,
    }
    collector = Collector(CollectorConfig(**settings))
    collector.start()
    return collector


class SharedCollector:
    """One default-config collector for a test module, started on first use.

    Starting and stopping a collector costs about a second (chDB start-up, migrations, the HTTP
    server's shutdown poll), so tests that need nothing special share one; they use fresh trace
    ids and compare counters before and after, never absolute totals. chDB opens one data
    directory per process, so ``close`` makes way for any other collector or store.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._collector: Collector | None = None
        self._started = 0

    def get(self) -> Collector:
        if self._collector is None:
            self._started += 1
            self._collector = _start(self._directory / f"shared-{self._started}")
        return self._collector

    def close(self) -> None:
        collector, self._collector = self._collector, None
        if collector is not None:
            collector.stop()


@pytest.fixture(scope="module")
def shared_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedCollector]:
    holder = SharedCollector(tmp_path_factory.mktemp("shared"))
    yield holder
    holder.close()


@pytest.fixture
def collector(shared_collector: SharedCollector) -> Collector:
    """The module's shared default-config collector (see ``SharedCollector``)."""
    return shared_collector.get()


@pytest.fixture
def start_collector(tmp_path: Path, shared_collector: SharedCollector) -> Iterator[StartCollector]:
    """Start a real collector of its own on free loopback ports; keyword arguments override the
    config. Stopped (draining its writer, closing its store) when the test ends."""
    shared_collector.close()
    started: list[Collector] = []

    def start(**overrides: Any) -> Collector:
        collector = _start(tmp_path / f"collector-{len(started)}", **overrides)
        started.append(collector)
        return collector

    yield start
    for collector in reversed(started):
        collector.stop()


def http_url(collector: Collector) -> str:
    return collector.urls()["otlp_http"]


def grpc_port(collector: Collector) -> int:
    assert collector.grpc is not None
    return int(collector.grpc.port)


# -- a store whose inserts wait for the test ----------------------------------------------------
class GatedStore(EmbeddedStore):
    """The real embedded store, except that each insert first waits for ``gate`` to be open.

    Overload means inserts slower than arrivals. Producing that by brute force (huge batches, a
    busy machine) is neither deterministic nor quick, so this subclass controls only *when* the
    real insert runs, never what it does: the writer, the receivers and ClickHouse all run their
    production code, and the test decides when the store catches up.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.gate.set()
        self.insert_waiting = threading.Event()

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        self.insert_waiting.set()
        if not self.gate.wait(timeout=60):
            raise StorageError("the test never opened the gate")
        super().insert_arrow(table, data)


@dataclass
class Pipeline:
    """A collector's receive path wired by hand around a ``GatedStore`` (as ``Collector`` does)."""

    store: GatedStore
    stats: Stats
    writer: BatchWriter
    ingestor: Ingestor
    http: HttpReceiver
    grpc: GrpcReceiver

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http.port}"


StartPipeline = Callable[..., Pipeline]


@pytest.fixture
def start_pipeline(tmp_path: Path, shared_collector: SharedCollector) -> Iterator[StartPipeline]:
    """Build and start receivers + writer over a ``GatedStore``; torn down with the gate open."""
    shared_collector.close()
    built: list[Pipeline] = []

    def start(
        writer: WriterSettings | None = None, ack_timeout_s: float = 60.0, **ingest: Any
    ) -> Pipeline:
        store = GatedStore(tmp_path / "gated")
        apply_migrations(store)
        stats = Stats()
        batch_writer = BatchWriter(store, stats, writer or FAST_WRITER)
        ingestor = Ingestor(
            batch_writer,
            PriceTable(),
            stats,
            IngestSettings(ack_timeout_s=ack_timeout_s, **ingest),
        )
        pipeline = Pipeline(
            store,
            stats,
            batch_writer,
            ingestor,
            HttpReceiver(ingestor, port=0),
            GrpcReceiver(ingestor, port=0),
        )
        built.append(pipeline)
        batch_writer.start()
        pipeline.http.start()
        pipeline.grpc.start()
        return pipeline

    yield start
    for pipeline in built:
        pipeline.store.gate.set()
        pipeline.http.stop()
        pipeline.grpc.stop(grace_s=1)
        pipeline.writer.stop()
        pipeline.store.close()


# -- the agentwatch SDK as a client -------------------------------------------------------------
ConfigureSdk = Callable[..., None]


@pytest.fixture
def sdk() -> Iterator[ConfigureSdk]:
    """``aw.configure`` for this test (keyword arguments passed on); shut down afterwards."""
    import agentwatch as aw

    def configure(**kwargs: Any) -> None:
        kwargs.setdefault("propagate_to_threads", False)
        aw.configure(**kwargs)

    yield configure
    aw.shutdown()


SDK_USAGE = {"input_tokens": 1200, "output_tokens": 300, "cache_read_tokens": 200}


def run_sdk_agent(ticket: str = "T-1") -> str:
    """Run a small support agent through the real SDK decorators; returns its trace id (hex).

    One run: an ``invoke_agent`` span with a tool that reads, a tool that fails, an OpenAI-style
    LLM call whose response reports a dated model snapshot and cached tokens, and a decision.
    """
    from opentelemetry import trace

    import agentwatch as aw

    @aw.tool(tier="read")
    def lookup_order(order_id: str) -> dict[str, str]:
        return {"order": order_id, "status": "shipped"}

    @aw.tool(tier="destructive")
    def issue_refund(order_id: str) -> None:
        raise PermissionError(f"refund of {order_id} needs review")

    @aw.llm(provider="openai", model="gpt-4o")
    def call_model(prompt: str) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "model": "gpt-4o-2024-08-06",
            "choices": [{"finish_reason": "stop", "message": {"content": "refund it"}}],
            "usage": {
                "prompt_tokens": SDK_USAGE["input_tokens"],
                "completion_tokens": SDK_USAGE["output_tokens"],
                "prompt_tokens_details": {"cached_tokens": SDK_USAGE["cache_read_tokens"]},
            },
        }

    @aw.agent(name="support-bot", task_type="refund")
    def handle(ticket_id: str) -> str:
        trace.get_current_span().set_attribute("gen_ai.conversation.id", f"conv-{ticket_id}")
        lookup_order("o-1")
        call_model(f"refund for {ticket_id}?")
        aw.record_decision("approve_refund", 0.875, route="review")
        try:
            issue_refund("o-1")
        except PermissionError:
            aw.set_outcome("escalated")
        ref = aw.current_trace_ref()
        assert ref is not None
        return f"{ref.trace_id:032x}"

    return handle(ticket)


def check_sdk_rows(store: Store, trace_id: str, environment: str = "staging") -> None:
    """The rows of one ``run_sdk_agent`` run carry every typed column, cost and link."""
    from genai_prices import Usage, calc_price

    rows = span_rows(store, trace_id)
    assert len(rows) == 5, [r["SpanName"] for r in rows]
    by_name = {row["SpanName"]: row for row in rows}
    agent = by_name["invoke_agent support-bot"]
    read = by_name["execute_tool lookup_order"]
    refund = by_name["execute_tool issue_refund"]
    chat = by_name["chat gpt-4o"]
    decision = by_name["decision approve_refund"]

    assert agent["ParentSpanId"] == ""
    for child in (read, refund, chat, decision):
        assert child["ParentSpanId"] == agent["SpanId"]
    for row in rows:
        assert row["ServiceName"] == "support-service"
        assert row["Environment"] == environment

    assert agent["Operation"] == "invoke_agent"
    assert agent["AgentName"] == "support-bot"
    assert agent["TaskType"] == "refund"
    assert agent["Outcome"] == "escalated"
    assert agent["ConversationId"] == "conv-T-1"
    assert agent["SpanKind"] == "Internal"
    assert agent["StatusCode"] == "Unset"
    assert agent["ErrorType"] == ""

    assert read["Operation"] == "execute_tool"
    assert (read["ToolName"], read["ToolTier"]) == ("lookup_order", "read")
    assert (refund["ToolName"], refund["ToolTier"]) == ("issue_refund", "destructive")
    assert refund["StatusCode"] == "Error"
    assert refund["ErrorType"] == "PermissionError"
    # Content capture is off: an exception ships its type, never its message.
    assert refund["StatusMessage"] == "PermissionError"
    assert refund["Events.Name"] == ["exception"]

    assert chat["Operation"] == "chat"
    assert chat["SpanKind"] == "Client"
    assert chat["Provider"] == "openai"
    assert chat["RequestModel"] == "gpt-4o"
    assert chat["ResponseModel"] == "gpt-4o-2024-08-06"
    assert chat["InputTokens"] == SDK_USAGE["input_tokens"]
    assert chat["OutputTokens"] == SDK_USAGE["output_tokens"]
    assert chat["CacheReadTokens"] == SDK_USAGE["cache_read_tokens"]
    assert chat["CacheWriteTokens"] == 0
    expected = calc_price(Usage(**SDK_USAGE), model_ref="gpt-4o-2024-08-06", provider_id="openai")
    assert chat["Priced"] == 1
    assert chat["CostUsd"] == pytest.approx(float(expected.total_price), rel=1e-9)

    assert decision["DecisionName"] == "approve_refund"
    assert decision["Confidence"] == pytest.approx(0.875)
    assert decision["Route"] == "review"
    for row in (agent, read, refund, decision):
        assert (row["Priced"], row["CostUsd"]) == (0, 0.0)

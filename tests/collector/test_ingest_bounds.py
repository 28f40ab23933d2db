"""What one request may cost, and that what is acknowledged is what is stored.

Against a real collector on loopback (real sockets, real chDB): requests that decode into far
more than they weigh are refused before the work, spans the store would drop are refused and
reported (OTLP partial success), JSON nested past protobuf's limit is a 400. The memory bound
is read off a collector process's own high-water mark.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agentwatch.app._collector import Collector
from agentwatch.collector._stats import Stats
from agentwatch.collector._storable import LAST_DATETIME_S, MAX_DAYS_PER_REQUEST, NS_PER_DAY
from tests.collector.conftest import (
    JSON,
    Reply,
    StartCollector,
    get,
    grpc_export,
    http_url,
    make_request,
    make_span,
    new_trace_id,
    post,
    post_request,
    span_counts,
    total_spans,
)
from tests.collector.test_sigkill import CollectorProcess
from tests.polling import wait_until

PROTOBUF = "application/x-protobuf"


def amplifying_request(spans: int = 30_000, resource_bytes: int = 64_000) -> bytes:
    """Tiny spans under a big resource: each span's row carries a copy of the resource."""
    spans_list = [make_span("s") for _ in range(spans)]
    return make_request(
        *spans_list, resource={"service.name": "amp", "blob": "x" * resource_bytes}
    ).SerializeToString()


def empty_objects_json(megabytes: int = 32) -> bytes:
    """``{"resourceSpans":[{},{},...]}``: a few KB gzipped, millions of objects once parsed."""
    count = megabytes * 1024 * 1024 // 3
    return b'{"resourceSpans":[' + b"{}," * (count - 1) + b"{}]}"


def gzip_post(url: str, body: bytes, content_type: str = PROTOBUF) -> Reply:
    return post(
        url, gzip.compress(body, 6), content_type=content_type, headers={"Content-Encoding": "gzip"}
    )


def at(ns: int, trace_id: bytes) -> Span:
    return make_span("dated", trace_id=trace_id, start_ns=ns)


def stats(collector: Collector) -> dict[str, object]:
    snapshot: dict[str, object] = get(http_url(collector), "/stats").json()
    return snapshot


# -- decoded size -------------------------------------------------------------------------------
def test_a_request_whose_rows_would_dwarf_it_is_refused_before_decoding(
    collector: Collector,
) -> None:
    """64 KB of resource attributes over 30,000 spans: under 100 KB gzipped, ~2 GB of rows."""
    body = amplifying_request()
    started = time.monotonic()
    reply = gzip_post(http_url(collector), body)
    assert reply.status == 413
    assert reply.json()["error"] == "decoded_too_large"
    assert "max_request_decoded_bytes" in reply.json()["message"]
    assert time.monotonic() - started < 5  # refused from the parse, not after the decode


def test_the_same_request_over_grpc_is_resource_exhausted(collector: Collector) -> None:
    request = ExportTraceServiceRequest.FromString(amplifying_request(spans=5_000))
    with pytest.raises(grpc.RpcError) as failed:
        grpc_export(collector.grpc.port if collector.grpc else 0, request)
    assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "decoded" in str(failed.value.details())


def test_json_of_millions_of_empty_objects_is_refused_before_parsing(collector: Collector) -> None:
    started = time.monotonic()
    reply = gzip_post(http_url(collector), empty_objects_json(), JSON)
    assert reply.status == 413, reply.body[:300]
    assert "JSON parsing" in reply.json()["message"]
    assert time.monotonic() - started < 5


def test_json_nested_past_protobufs_limit_is_a_400_that_says_so(collector: Collector) -> None:
    depth = 10_000
    body = (
        b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"k","value":'
        + b'{"arrayValue":{"values":[' * depth
        + b"{}"
        + b"]}}" * depth
        + b"}]}]}]}]}"
    )
    reply = post(http_url(collector), body, content_type=JSON)
    assert reply.status == 400
    assert reply.json()["error"] == "too_deep"
    assert "nests deeper" in reply.json()["message"]


def test_a_request_within_the_budget_is_stored(collector: Collector) -> None:
    """The bound refuses amplification, not ordinary batches (here 2,000 spans, 2 KB resource)."""
    body = amplifying_request(spans=2_000, resource_bytes=2_000)
    reply = gzip_post(http_url(collector), body)
    assert reply.status == 200, reply.body[:300]


def test_a_small_decode_budget_refuses_with_its_own_limit_named(
    start_collector: StartCollector,
) -> None:
    collector = start_collector(
        max_request_decoded_bytes=1 << 20, max_decoded_bytes_in_flight=2 << 20
    )
    reply = post_request(http_url(collector), make_request(*(make_span("s") for _ in range(5_000))))
    assert reply.status == 413
    assert "limit of 1 MiB" in reply.json()["message"]
    assert post_request(http_url(collector), make_request(make_span("ok"))).status == 200


# -- acknowledged means stored ------------------------------------------------------------------
def test_spans_the_store_would_drop_are_refused_and_reported(collector: Collector) -> None:
    """Of one request: a span from before the retention and one past 2106 are not stored, the
    rest are; the answer is an OTLP partial success naming both, and /stats agrees with the
    store."""
    before = stats(collector)
    stored_before = total_spans(collector.store)
    trace = new_trace_id()
    now = time.time_ns()
    request = make_request(
        at(now, trace),
        at(now - 1_000_000, trace),
        at(now - 31 * NS_PER_DAY, trace),  # retention is 30 days
        at((LAST_DATETIME_S + 10) * 1_000_000_000, trace),  # DateTime wraps after 2106
    )
    reply = post_request(http_url(collector), request)
    assert reply.status == 200
    answer = ExportTraceServiceResponse.FromString(reply.body)
    assert answer.partial_success.rejected_spans == 2
    message = answer.partial_success.error_message
    assert "2 of 4 spans not stored" in message
    assert "30-day retention" in message
    assert "latest time the store keeps" in message
    assert span_counts(collector.store, [trace]) == {trace.hex(): 2}
    after = stats(collector)
    assert after["spans_rejected"] == {
        reason: dict(before["spans_rejected"]).get(reason, 0) + 1  # type: ignore[call-overload]
        for reason in ("older_than_retention", "after_storable_time")
    }
    stored = int(after["spans_stored"]) - int(before["spans_stored"])  # type: ignore[call-overload]
    assert stored == total_spans(collector.store) - stored_before == 2


def test_partial_success_over_json_and_grpc(collector: Collector) -> None:
    trace = new_trace_id()
    now = time.time_ns()
    request = make_request(at(now, trace), at(now - 400 * NS_PER_DAY, trace))
    document = json_format.MessageToDict(request)
    for span in document["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        for key in ("traceId", "spanId"):  # OTLP/JSON ids are hex, not proto3 JSON's base64
            span[key] = base64.b64decode(span[key]).hex()
    reply = post(http_url(collector), json.dumps(document).encode(), content_type=JSON)
    assert reply.status == 200, reply.body[:300]
    assert reply.json()["partialSuccess"]["rejectedSpans"] == "1"
    assert collector.grpc is not None
    answer = grpc_export(collector.grpc.port, request)
    assert answer.partial_success.rejected_spans == 1
    assert span_counts(collector.store, [trace]) == {trace.hex(): 2}


def test_a_request_of_only_unstorable_spans_is_a_400(collector: Collector) -> None:
    trace = new_trace_id()
    old = time.time_ns() - 60 * NS_PER_DAY
    reply = post_request(http_url(collector), make_request(at(old, trace), at(old + 1, trace)))
    assert reply.status == 400
    assert reply.json()["error"] == "older_than_retention"
    assert "2 of 2 spans not stored" in reply.json()["message"]
    assert span_counts(collector.store, [trace]) == {trace.hex(): 0}


def test_spans_over_more_days_than_one_insert_takes_are_a_400(
    collector: Collector,
) -> None:
    """The span table is partitioned by day and an insert may touch 100 partitions: a request
    spanning 150 future days would fail its whole batch, so it is refused at the door."""
    trace = new_trace_id()
    start = time.time_ns() + NS_PER_DAY
    days = MAX_DAYS_PER_REQUEST + 50
    request = make_request(*(at(start + d * NS_PER_DAY, trace) for d in range(days)))
    reply = post_request(http_url(collector), request)
    assert reply.status == 400
    assert reply.json()["error"] == "too_many_days"
    assert f"{days} different days" in reply.json()["message"]
    assert post_request(http_url(collector), make_request(make_span("next"))).status == 200


def test_prometheus_counts_refused_spans_by_reason() -> None:
    counters = Stats()
    counters.spans_rejected("older_than_retention", 3)
    counters.spans_rejected("older_than_retention", 2)
    text = counters.prometheus()
    assert 'agentwatch_spans_rejected_total{reason="older_than_retention"} 5' in text


# -- memory, read off the collector process ----------------------------------------------------
def high_water_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.mark.slow
def test_hostile_requests_at_once_keep_the_collector_under_800_mb(tmp_path: Path) -> None:
    """Three amplifying protobuf requests and three JSON object bombs, all at once, then an
    ordinary request: the bombs are refused, the ordinary one stored, and the process's peak
    resident memory stays under 800 MB."""
    child = CollectorProcess(tmp_path / "agentwatch", tmp_path / "collector.log")
    try:
        wait_until(child.healthy, timeout=60, what="the collector's /healthz")
        bombs = [(amplifying_request(), PROTOBUF)] * 3 + [(empty_objects_json(), JSON)] * 3
        statuses: list[int] = []
        lock = threading.Lock()

        def send(body: bytes, content_type: str) -> None:
            status = gzip_post(child.url, body, content_type).status
            with lock:
                statuses.append(status)

        senders = [threading.Thread(target=send, args=bomb) for bomb in bombs]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(120)
        assert sorted(statuses) == [413] * 6
        assert post_request(child.url, make_request(make_span("after"))).status == 200
        assert high_water_mb(child.process.pid) < 800
    finally:
        child.kill()

"""The OTLP/HTTP receiver bounds what slow or many clients can hold: threads and memory."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentwatch.collector._http import HttpReceiver
from agentwatch.collector._ingest import Ingestor, IngestSettings
from agentwatch.collector._pricing import PriceTable
from agentwatch.collector._stats import Stats
from agentwatch.collector._writer import BatchWriter
from agentwatch.storage._store import EmbeddedStore, apply_migrations
from tests.collector.conftest import (
    Reply,
    StartPipeline,
    post_request,
    trace_batch,
    wait_until,
)


@dataclass
class Receiver:
    port: int
    stats: Stats


@pytest.fixture(params=[0.5], ids=["read_timeout=0.5s"])
def receiver(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Receiver]:
    """A real receiver and store that takes one request at a time and waits ``param`` s for
    request bodies."""
    store = EmbeddedStore(tmp_path / "data")
    apply_migrations(store)
    stats = Stats()
    writer = BatchWriter(store, stats)
    settings = IngestSettings(
        max_concurrent_requests=1, read_timeout_s=request.param, in_flight_wait_s=0.05
    )
    http = HttpReceiver(Ingestor(writer, PriceTable(), stats, settings), "127.0.0.1", 0)
    writer.start()
    http.start()
    try:
        yield Receiver(http.port, stats)
    finally:
        http.stop()
        writer.stop()
        store.close()


def stalled_request(port: int) -> socket.socket:
    """A client that announces a 100-byte body, sends 10 bytes and stalls."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        b"Content-Length: 100\r\n\r\n" + b"\x00" * 10
    )
    return sock


def status_of(port: int) -> tuple[int, str | None]:
    """POST an empty (valid) request; the status and the Retry-After header."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", "/v1/traces", b"", {"Content-Type": "application/x-protobuf"})
        reply = conn.getresponse()
        reply.read()
        return reply.status, reply.getheader("Retry-After")
    finally:
        conn.close()


def test_requests_beyond_the_in_flight_limit_get_503_with_retry_after(
    start_pipeline: StartPipeline,
) -> None:
    """While the one allowed request is being ingested, another waits briefly, then is refused.

    The slot bounds decoding and ingesting, so it is held by a request whose body has arrived
    (here: one waiting for its insert to commit), never by a client still sending its body."""
    pipeline = start_pipeline(max_concurrent_requests=1, in_flight_wait_s=0.05)
    pipeline.store.gate.clear()
    replies: list[Reply] = []
    holder = threading.Thread(
        target=lambda: replies.append(post_request(pipeline.http_url, trace_batch(1)))
    )
    holder.start()
    try:
        wait_until(pipeline.store.insert_waiting.is_set, what="the first request's insert")
        assert status_of(pipeline.http.port) == (503, "1")
        assert pipeline.stats.snapshot()["rejected"]["overloaded"] >= 1
    finally:
        pipeline.store.gate.set()
        holder.join(30)
    assert [reply.status for reply in replies] == [200]


def test_a_stalled_client_is_dropped_and_frees_its_slot(receiver: Receiver) -> None:
    """After the read timeout the stalled request is dropped, counted, and others get through."""
    stalled = stalled_request(receiver.port)
    try:
        wait_until(
            lambda: receiver.stats.snapshot()["rejected"].get("client_timeout", 0) == 1,
            timeout=10,
            what="the stalled request to time out",
        )
        assert status_of(receiver.port) == (200, None)
    finally:
        stalled.close()

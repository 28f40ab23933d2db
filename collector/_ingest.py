"""The receive path shared by the HTTP and gRPC receivers: decode, price, queue, wait for commit."""

from __future__ import annotations

import hmac
import zlib
from concurrent.futures import Future
from dataclasses import dataclass, field

import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agentwatch.collector._decode import (
    DecodeLimits,
    InvalidRequest,
    parse_protobuf,
    request_to_columns,
)
from agentwatch.collector._native_rows import native_spans_to_arrow
from agentwatch.collector._pricing import PriceTable
from agentwatch.collector._rows import spans_to_arrow
from agentwatch.collector._stats import Stats
from agentwatch.collector._writer import BatchWriter


@dataclass(frozen=True, slots=True)
class IngestSettings:
    max_body_bytes: int = 16 * 1024 * 1024
    max_decompressed_bytes: int = 64 * 1024 * 1024
    ack_timeout_s: float = 60.0
    max_concurrent_requests: int = 16
    in_flight_wait_s: float = 2.0
    read_timeout_s: float = 30.0
    ingest_token: str | None = None
    limits: DecodeLimits = field(default_factory=DecodeLimits)
    # Decode protobuf with the native decoder when it is built (the Python one is the fallback).
    native_decoder: bool = True


class StoreTimeout(Exception):
    """Rows were queued but not committed in time; the client should retry."""


def token_ok(settings: IngestSettings, presented: str | None) -> bool:
    """Constant-time check of ``Authorization: Bearer <token>`` when a token is required."""
    if settings.ingest_token is None:
        return True
    if not presented or not presented.startswith("Bearer "):
        return False
    return hmac.compare_digest(presented[7:].encode(), settings.ingest_token.encode())


def gunzip(body: bytes, limit: int) -> bytes:
    """Decompress gzip without ever holding more than ``limit`` bytes (gzip bombs).

    Every member of a multi-member body is read, as Go's gzip reader does; stopping after the
    first would acknowledge spans that were never stored.
    """
    parts: list[bytes] = []
    size = 0
    rest = body
    while True:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            part = decompressor.decompress(rest, limit + 1 - size)
        except zlib.error as exc:
            raise InvalidRequest(f"body is not valid gzip: {exc}", "bad_gzip") from exc
        size += len(part)
        if size > limit or decompressor.unconsumed_tail:
            raise InvalidRequest(
                f"decompressed body exceeds the limit of {limit} bytes", "decompressed_too_large"
            )
        if not decompressor.eof:
            raise InvalidRequest("gzip body is truncated", "bad_gzip")
        parts.append(part)
        rest = decompressor.unused_data
        if not rest:
            return parts[0] if len(parts) == 1 else b"".join(parts)


class Ingestor:
    """Turns a decoded request into committed rows; shared by every receiver."""

    def __init__(
        self, writer: BatchWriter, prices: PriceTable, stats: Stats, settings: IngestSettings
    ) -> None:
        self.writer = writer
        self.prices = prices
        self.stats = stats
        self.settings = settings

    def ingest_protobuf(self, body: bytes) -> int:
        """``ingest`` for an OTLP protobuf body, decoded natively when possible.

        protobuf parses it first either way, so what is rejected as malformed (and the
        message saying why) does not depend on the decoder."""
        request = parse_protobuf(body)
        table = None
        if self.settings.native_decoder:
            table = native_spans_to_arrow(body, self.settings.limits, self.prices)
        if table is None:
            table = self._decode(request)
        else:
            self.stats.request(table.num_rows, native=True)
        del request  # not kept in memory while waiting for the commit
        return self._wait(self._submit(table), table.num_rows)

    def ingest(self, request: ExportTraceServiceRequest) -> int:
        """Store every span of ``request``; returns once they are committed. Raises
        ``InvalidRequest``, ``Overloaded``, ``WriterStopped``, ``StoreTimeout`` or the store's
        error, in which case nothing of this request is acknowledged."""
        table = self._decode(request)
        return self._wait(self._submit(table), table.num_rows)

    def _decode(self, request: ExportTraceServiceRequest) -> pa.Table:
        columns = request_to_columns(request, self.settings.limits)
        self.stats.request(len(columns))
        return spans_to_arrow(columns, self.prices)

    def _submit(self, table: pa.Table) -> Future[None] | None:
        return self.writer.submit(table) if table.num_rows else None

    def _wait(self, future: Future[None] | None, count: int) -> int:
        if future is None:
            return 0
        try:
            future.result(timeout=self.settings.ack_timeout_s)
        except TimeoutError as exc:
            raise StoreTimeout(
                f"spans were not committed within {self.settings.ack_timeout_s:g}s"
            ) from exc
        return count

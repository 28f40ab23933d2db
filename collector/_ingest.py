"""The receive path shared by the HTTP and gRPC receivers: decode, price, queue, wait for commit."""

from __future__ import annotations

import hmac
import time
import zlib
from concurrent.futures import Future
from dataclasses import dataclass, field

import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from agentwatch._errors import AgentwatchError, ConfigurationError
from agentwatch.collector._budget import MIB, MemoryBudget
from agentwatch.collector._content import DEFAULT_POLICY, apply_content_policy, check_policy
from agentwatch.collector._decode import (
    DecodeLimits,
    InvalidRequest,
    decoded_size,
    json_parse_size,
    parse_json,
    parse_protobuf,
    request_to_columns,
)
from agentwatch.collector._native_rows import native_spans_to_arrow
from agentwatch.collector._pricing import PriceTable
from agentwatch.collector._rows import spans_to_arrow
from agentwatch.collector._stats import Stats
from agentwatch.collector._storable import StorableWindow, rejection_message, split_storable
from agentwatch.collector._writer import BatchWriter
from agentwatch.storage._store import DEFAULT_RETENTION_DAYS


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
    # What one request may take once decoded (rows, resource copies, JSON parsing), and what
    # all requests in progress may take together (beyond it: 503, Retry-After).
    max_request_decoded_bytes: int = 64 * MIB
    max_decoded_bytes_in_flight: int = 256 * MIB
    # Spans older than the store's retention would be dropped at insert: refused instead.
    retention_days: int = DEFAULT_RETENTION_DAYS
    # Decode protobuf with the native decoder when it is built (the Python one is the fallback).
    native_decoder: bool = True
    # Prompt/response text from any sender: keep, redact (default) or drop (collector/_content.py).
    content: str = DEFAULT_POLICY

    def __post_init__(self) -> None:
        check_policy(self.content)


class StoreTimeout(AgentwatchError):
    """Rows were queued but not committed in time; the client should retry."""


@dataclass(frozen=True, slots=True)
class Ingested:
    """What became of a request's spans: stored, or refused (with the reason, for the sender)."""

    stored: int
    rejected: int = 0
    message: str = ""


def trace_reply(ingested: Ingested) -> ExportTraceServiceResponse:
    """The OTLP answer: success, or partial success naming the spans that were not stored."""
    reply = ExportTraceServiceResponse()
    if ingested.rejected:
        reply.partial_success.rejected_spans = ingested.rejected
        reply.partial_success.error_message = ingested.message
    return reply


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
    """Turns a request body into committed rows; shared by every receiver."""

    def __init__(
        self, writer: BatchWriter, prices: PriceTable, stats: Stats, settings: IngestSettings
    ) -> None:
        if settings.max_request_decoded_bytes > settings.max_decoded_bytes_in_flight:
            raise ConfigurationError(
                "max_request_decoded_bytes cannot exceed max_decoded_bytes_in_flight"
            )
        self.writer = writer
        self.prices = prices
        self.stats = stats
        self.settings = settings
        self.budget = MemoryBudget(settings.max_decoded_bytes_in_flight)
        self.window = StorableWindow(settings.retention_days)

    def ingest_protobuf(self, body: bytes) -> Ingested:
        """Store a protobuf request's spans, decoded natively when possible; returns once they
        are committed. Raises ``InvalidRequest``, ``MemoryBusy``, ``Overloaded``,
        ``WriterStopped``, ``RowsRefused``, ``StoreTimeout`` or the store's error, and then
        nothing of this request is acknowledged.

        protobuf parses it first either way, so what is rejected as malformed (and the
        message saying why) does not depend on the decoder; the parse also bounds the rows."""
        request = parse_protobuf(body)
        cost = len(body) + self._check_size(decoded_size(request, len(body)), "decoded rows")
        with self.budget.hold(cost, self.settings.in_flight_wait_s):
            table = None
            if self.settings.native_decoder:
                table = native_spans_to_arrow(body, self.settings.limits, self.prices)
            if table is None:
                table = self._decode(request)
            else:
                self.stats.request(table.num_rows, native=True)
            del request  # not kept in memory while waiting for the commit
            return self._store(table)

    def ingest_json(self, body: bytes) -> Ingested:
        """``ingest_protobuf`` for an OTLP/JSON body; its parsing is bounded before it starts."""
        parsing = len(body) + self._check_size(json_parse_size(body), "JSON parsing")
        with self.budget.hold(parsing, self.settings.in_flight_wait_s):
            request = parse_json(body)
            rows = self._check_size(decoded_size(request, request.ByteSize()), "decoded rows")
            with self.budget.hold(rows, self.settings.in_flight_wait_s):
                table = self._decode(request)
                del request
                return self._store(table)

    def _check_size(self, size: int, what: str) -> int:
        limit = self.settings.max_request_decoded_bytes
        if size > limit:
            raise InvalidRequest(
                f"request too large once decoded: its {what} would take about {size >> 20} MiB, "
                f"more than the limit of {limit >> 20} MiB (max_request_decoded_bytes); "
                "send fewer spans per request, or a smaller resource",
                "decoded_too_large",
                413,
            )
        return size

    def _decode(self, request: ExportTraceServiceRequest) -> pa.Table:
        columns = request_to_columns(request, self.settings.limits)
        self.stats.request(len(columns))
        return spans_to_arrow(columns, self.prices)

    def _store(self, table: pa.Table) -> Ingested:
        table = apply_content_policy(table, self.settings.content)
        split = split_storable(table, self.window, time.time_ns())
        if not split.rejected:
            return Ingested(self._wait(self._submit(table), table.num_rows))
        for reason, count in split.rejected.items():
            self.stats.spans_rejected(reason, count)
        message = rejection_message(split, table.num_rows, self.window)
        if split.kept.num_rows == 0:
            raise InvalidRequest(message, next(iter(split.rejected)))
        del table
        stored = self._wait(self._submit(split.kept), split.kept.num_rows)
        return Ingested(stored, split.rejected_count, message)

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

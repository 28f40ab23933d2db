"""OTLP/HTTP receiver (protobuf and JSON, gzip) plus /healthz and the collector's own metrics."""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from agentwatch.collector._decode import InvalidRequest, parse_json
from agentwatch.collector._ingest import Ingestor, StoreTimeout, gunzip, token_ok
from agentwatch.collector._writer import Overloaded, WriterStopped
from agentwatch.storage._store import StorageError

logger = logging.getLogger("agentwatch.collector")

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def _count_metric_points(request: ExportMetricsServiceRequest) -> int:
    total = 0
    for resource in request.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    total += len(getattr(metric, kind).data_points)
    return total


def _count_log_records(request: ExportLogsServiceRequest) -> int:
    return sum(
        len(scope.log_records)
        for resource in request.resource_logs
        for scope in resource.scope_logs
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "agentwatch"
    sys_version = ""
    ingestor: ClassVar[Ingestor]
    # Bounds the requests being read and decoded at once, so their memory is bounded too.
    in_flight: ClassVar[threading.BoundedSemaphore]

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http %s", format % args)

    # -- responses -----------------------------------------------------------------------------
    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        if self.close_connection:  # tell the client not to reuse this connection
            self.send_header("Connection", "close")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(
        self, status: int, reason: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        self.ingestor.stats.reject(reason)
        self._send(
            status,
            json.dumps({"error": reason, "message": message}).encode(),
            JSON,
            headers,
        )

    def _reply(self, message: Message, as_json: bool) -> None:
        if as_json:
            self._send(HTTPStatus.OK, json_format.MessageToJson(message).encode(), JSON)
        else:
            self._send(HTTPStatus.OK, message.SerializeToString(), PROTOBUF)

    # -- GET -----------------------------------------------------------------------------------
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        stats = self.ingestor.stats
        if path == "/healthz":
            body = {"status": "ok", "queue_depth_spans": self.ingestor.writer.queued_rows}
            self._send(HTTPStatus.OK, json.dumps(body).encode(), JSON)
        elif path == "/stats":
            self._send(HTTPStatus.OK, json.dumps(stats.snapshot()).encode(), JSON)
        elif path == "/metrics":
            self._send(HTTPStatus.OK, stats.prometheus().encode(), "text/plain; version=0.0.4")
        elif path in ("/v1/traces", "/v1/metrics", "/v1/logs"):
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, "method_not_allowed", "use POST")
        else:
            self._error(HTTPStatus.NOT_FOUND, "not_found", f"no such endpoint: {path}")

    # -- POST ----------------------------------------------------------------------------------
    def _read_body(self) -> tuple[bytes, bool] | None:
        """The decompressed body and whether it is JSON, or None after an error was sent."""
        settings = self.ingestor.settings
        if not token_ok(settings, self.headers.get("Authorization")):
            self.close_connection = True
            self._error(
                HTTPStatus.UNAUTHORIZED,
                "unauthorized",
                "missing or wrong ingest token (send Authorization: Bearer <token>)",
                {"WWW-Authenticate": "Bearer"},
            )
            return None
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self.close_connection = True
            self._error(HTTPStatus.LENGTH_REQUIRED, "length_required", "Content-Length is required")
            return None
        try:
            length = int(length_header)
        except ValueError:
            self.close_connection = True
            self._error(HTTPStatus.BAD_REQUEST, "bad_length", "Content-Length is not a number")
            return None
        if length < 0 or length > settings.max_body_bytes:
            self.close_connection = True  # the unread body would corrupt the next request
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "body_too_large",
                f"body of {length} bytes exceeds the limit of {settings.max_body_bytes}",
            )
            return None
        body = self.rfile.read(length)
        content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type not in (PROTOBUF, JSON):
            self._error(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                "unsupported_content_type",
                f"Content-Type must be {PROTOBUF} or {JSON}, not {content_type or 'missing'!r}",
            )
            return None
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding == "gzip":
            body = gunzip(body, settings.max_decompressed_bytes)
        elif encoding != "identity":
            self._error(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                f"Content-Encoding must be gzip or identity, not {encoding!r}",
            )
            return None
        return body, content_type == JSON

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in ("/v1/traces", "/v1/metrics", "/v1/logs"):
            self.close_connection = True  # the unread body would corrupt the next request
            self._error(HTTPStatus.NOT_FOUND, "not_found", f"no such endpoint: {path}")
            return
        # Waiting briefly for a slot is back-pressure through latency; only a collector that
        # stays saturated answers 503, so exporters are not sent into a 1 s back-off needlessly.
        if not self.in_flight.acquire(timeout=self.ingestor.settings.in_flight_wait_s):
            self.close_connection = True  # the unread body would corrupt the next request
            self._error(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "overloaded",
                "collector is overloaded: too many requests in progress",
                {"Retry-After": "1"},
            )
            return
        try:
            read = self._read_body()
            if read is None:
                return
            body, as_json = read
            if path == "/v1/traces":
                self._traces(body, as_json)
            else:
                self._not_stored(path, body, as_json)
        except TimeoutError:
            self.close_connection = True
            self.ingestor.stats.reject("client_timeout")
        except InvalidRequest as exc:
            self._error(HTTPStatus.BAD_REQUEST, exc.reason, str(exc))
        except (Overloaded, WriterStopped) as exc:
            retry = str(getattr(exc, "retry_after_s", 1))
            self._error(
                HTTPStatus.SERVICE_UNAVAILABLE, "overloaded", str(exc), {"Retry-After": retry}
            )
        except (StoreTimeout, StorageError) as exc:
            self._error(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "store_unavailable",
                f"spans were not stored: {exc}",
                {"Retry-After": "2"},
            )
        except Exception as exc:
            # A bug of ours: say so (nothing was stored) rather than drop the connection.
            logger.exception("request to %s failed", path)
            self._error(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "internal_error",
                f"spans were not stored: internal error ({type(exc).__name__}: {exc})",
            )
        finally:
            self.in_flight.release()

    def _traces(self, body: bytes, as_json: bool) -> None:
        if as_json:
            self.ingestor.ingest(parse_json(body))
        else:
            self.ingestor.ingest_protobuf(body)
        self._reply(ExportTraceServiceResponse(), as_json)

    def _not_stored(self, path: str, body: bytes, as_json: bool) -> None:
        """Metrics and logs: decoded and counted, answered honestly as rejected, not stored."""
        if path == "/v1/metrics":
            metrics = ExportMetricsServiceRequest()
            self._parse_other(metrics, body, as_json)
            metrics_reply = ExportMetricsServiceResponse()
            metrics_reply.partial_success.rejected_data_points = _count_metric_points(metrics)
            metrics_reply.partial_success.error_message = (
                "agentwatch stores traces only; metric data points are not stored"
            )
            self.ingestor.stats.reject("metrics_not_stored")
            self._reply(metrics_reply, as_json)
        else:
            logs = ExportLogsServiceRequest()
            self._parse_other(logs, body, as_json)
            logs_reply = ExportLogsServiceResponse()
            logs_reply.partial_success.rejected_log_records = _count_log_records(logs)
            logs_reply.partial_success.error_message = (
                "agentwatch stores traces only; log records are not stored"
            )
            self.ingestor.stats.reject("logs_not_stored")
            self._reply(logs_reply, as_json)

    @staticmethod
    def _parse_other(message: Message, body: bytes, as_json: bool) -> None:
        try:
            if as_json:
                json_format.Parse(body.decode("utf-8"), message, ignore_unknown_fields=True)
            else:
                message.ParseFromString(body)
        except (DecodeError, json_format.ParseError, UnicodeDecodeError, ValueError) as exc:
            raise InvalidRequest(f"body is not a valid OTLP request: {exc}", "malformed") from exc


class HttpReceiver:
    """The OTLP/HTTP server in a background thread."""

    def __init__(self, ingestor: Ingestor, host: str = "127.0.0.1", port: int = 4318) -> None:
        handler = type(
            "Handler",
            (_Handler,),
            {
                "ingestor": ingestor,
                # A client that stalls mid-request gives up its thread after this long.
                "timeout": ingestor.settings.read_timeout_s,
                "in_flight": threading.BoundedSemaphore(ingestor.settings.max_concurrent_requests),
            },
        )
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="agentwatch-otlp-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

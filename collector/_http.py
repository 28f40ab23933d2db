"""OTLP/HTTP receiver (protobuf and JSON, gzip) plus /healthz and the collector's own metrics."""

from __future__ import annotations

import io
import json
import logging
import selectors
import socket
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, ClassVar

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

from agentwatch.collector._budget import MemoryBusy
from agentwatch.collector._decode import InvalidRequest
from agentwatch.collector._ingest import Ingestor, StoreTimeout, gunzip, token_ok, trace_reply
from agentwatch.collector._writer import Overloaded, RowsRefused, WriterStopped
from agentwatch.storage._store import StorageError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from agentwatch.collector._stats import Stats

logger = logging.getLogger("agentwatch.collector")

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one connection to the OTLP/HTTP receiver may hold, and for how long.

    A slow or idle client holds its own connection (and thread) only: each phase of a request has
    a total deadline, not just a per-read timeout, and the in-flight slots that bound decoding
    are taken once a body has fully arrived. ``IngestSettings.read_timeout_s`` still caps each
    single read (a client that stops sending altogether is dropped sooner).
    """

    header_timeout_s: float = 10.0  # the request line and headers, in total, from their first byte
    body_timeout_s: float = 30.0  # a request's whole body, in total
    idle_timeout_s: float = 30.0  # a connection's wait for its next request (keep-alive)
    # Requests whose bodies are still arriving (or, once arrived, wait for an in-flight slot);
    # more get 503 at once. A small body that came with its headers needs no slot.
    max_receiving: int = 64
    max_connections: int = 1024  # open connections, a thread each; more get 503 at once
    backlog: int = 1024  # connections not yet accepted; the kernel caps it at somaxconn


# A body up to this size that arrives with its headers, or within a short grace after them, is
# taken without a receiving slot: most exports come in one or two segments, and a connection's
# slot-less memory stays small. The grace lets a sender whose body trails its headers by a
# segment (or a loaded machine's scheduling) through while trickling senders hold every slot.
_SMALL_BODY_BYTES = 64 * 1024
_SMALL_BODY_GRACE_S = 0.5


class _Gauge:
    """A count with a ceiling, entered without waiting."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._value = 0
        self._lock = threading.Lock()

    @property
    def value(self) -> int:
        return self._value

    def try_enter(self) -> bool:
        with self._lock:
            if self._value >= self.limit:
                return False
            self._value += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self._value -= 1


class _ConnectionReader(io.RawIOBase):
    """A connection's reads: each within the per-read timeout and the phase's total
    ``deadline`` (``time.monotonic``), so a client trickling a byte at a time cannot stretch a
    phase; with ``nonblocking`` set, a read that would wait returns None at once instead."""

    def __init__(self, connection: socket.socket, read_timeout_s: float | None) -> None:
        super().__init__()
        self._connection = connection
        self._read_timeout_s = read_timeout_s
        self.deadline: float | None = None
        self.nonblocking = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int | None:
        if self.nonblocking:
            timeout: float | None = 0.0
        else:
            timeout = self._read_timeout_s
            if self.deadline is not None:
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("the deadline passed")
                timeout = remaining if timeout is None else min(timeout, remaining)
        self._connection.settimeout(timeout)
        try:
            return self._connection.recv_into(buffer)
        except BlockingIOError:
            return None
        finally:
            # Writes (answers) get the per-read timeout, whatever deadline the reads had left.
            self._connection.settimeout(self._read_timeout_s)


def _canned_503(reason: str, message: str) -> bytes:
    body = json.dumps({"error": reason, "message": message}).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nServer: agentwatch\r\nConnection: close\r\n"
        f"Content-Type: {JSON}\r\nContent-Length: {len(body)}\r\nRetry-After: 1\r\n\r\n"
    )
    return head.encode() + body


_TOO_MANY_CONNECTIONS = _canned_503(
    "too_many_connections", "collector is overloaded: too many open connections"
)


class _Refuser:
    """Answers connections beyond ``max_connections`` from one thread rather than a thread
    each: a canned 503, a half-close, then what the client still sends is read and dropped until
    it hangs up or ``LINGER_S`` pass (closing with its request unread would reset the connection,
    and the client might never read the answer)."""

    LINGER_S = 2.0

    def __init__(self, answer: bytes, max_lingering: int) -> None:
        self._answer = answer
        self._max_lingering = max_lingering
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._new: list[socket.socket] = []
        self._count = 0
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name="agentwatch-otlp-http-refuser", daemon=True
        )
        self._thread.start()

    def refuse(self, connection: socket.socket) -> None:
        try:
            connection.setblocking(False)
            connection.send(self._answer)  # a fresh connection's send buffer takes it whole
            connection.shutdown(socket.SHUT_WR)
        except OSError:
            connection.close()
            return
        with self._lock:
            keep = not self._closed and self._count < self._max_lingering
            if keep:
                self._count += 1
                self._new.append(connection)
        if not keep:
            connection.close()
            return
        self._wake()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._wake()
        self._thread.join(timeout=5)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # the wake-up pipe is full: a wake-up is pending anyway
            pass

    def _drop(self, connection: socket.socket, lingering: dict[socket.socket, float]) -> None:
        del lingering[connection]
        self._selector.unregister(connection)
        connection.close()
        with self._lock:
            self._count -= 1

    def _run(self) -> None:
        lingering: dict[socket.socket, float] = {}
        while True:
            timeout = None
            if lingering:
                timeout = max(0.0, min(lingering.values()) - time.monotonic())
            for key, _ in self._selector.select(timeout):
                connection: socket.socket | None = key.data
                if connection is None:
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except OSError:
                        pass
                    with self._lock:
                        new, self._new = self._new, []
                        closed = self._closed
                    for added in new:
                        lingering[added] = time.monotonic() + self.LINGER_S
                        self._selector.register(added, selectors.EVENT_READ, added)
                    if closed:
                        for left in list(lingering):
                            self._drop(left, lingering)
                        self._selector.close()
                        self._wake_r.close()
                        self._wake_w.close()
                        return
                elif connection in lingering:
                    try:
                        data = connection.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        self._drop(connection, lingering)
            now = time.monotonic()
            for expired, deadline in list(lingering.items()):
                if deadline <= now:
                    self._drop(expired, lingering)


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
    # Headers and body leave in two writes: without this, Nagle holds the body for the client's
    # delayed ACK.
    disable_nagle_algorithm = True
    ingestor: ClassVar[Ingestor]
    # Bounds the requests being decoded at once, so their memory is bounded too. Taken once the
    # body has arrived: a slow sender holds a receiving slot (bounded apart), never this.
    in_flight: ClassVar[threading.BoundedSemaphore]
    limits: ClassVar[HttpLimits]
    receiving: ClassVar[_Gauge]

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http %s", format % args)

    # -- the connection ------------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # replaced by reads that keep to each phase's deadline
        self._reader = _ConnectionReader(self.connection, self.timeout)
        self._buffered = io.BufferedReader(self._reader)
        self.rfile = self._buffered
        self._receiving = False

    def _done_receiving(self) -> None:
        if self._receiving:
            self._receiving = False
            self.receiving.leave()

    def handle_one_request(self) -> None:
        """One request, each phase within a total deadline: the wait for it (an idle keep-alive
        connection), its request line and headers, its body (``_receive``)."""
        limits = self.limits
        self.requestline, self.request_version, self.command = "", "HTTP/1.1", ""
        try:
            self._reader.deadline = time.monotonic() + limits.idle_timeout_s
            try:
                arrived = self._buffered.peek(1)
            except (TimeoutError, ConnectionError):
                arrived = b""  # idle for too long (nothing to answer), or reset
            if not arrived:
                self.close_connection = True
                return
            self._reader.deadline = time.monotonic() + limits.header_timeout_s
            try:
                if not self._read_head():
                    return
            except TimeoutError:
                self.close_connection = True
                self._error(
                    HTTPStatus.REQUEST_TIMEOUT,
                    "header_timeout",
                    f"the request line and headers did not arrive within "
                    f"{limits.header_timeout_s:g} s",
                )
                return
            self._reader.deadline = None
            method = getattr(self, f"do_{self.command}", None)
            if method is None:
                self.send_error(
                    HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({self.command!r})"
                )
                return
            method()
            self.wfile.flush()
        except (TimeoutError, ConnectionError) as exc:
            # An answer could not be written in time, or the client went away: hang up.
            logger.debug("http connection dropped: %r", exc)
            self.close_connection = True
        finally:
            self._reader.deadline = None
            self._done_receiving()

    def _read_head(self) -> bool:
        """The request line and headers, as ``BaseHTTPRequestHandler`` reads them; False after
        an error was answered."""
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            return False
        if not self.raw_requestline:
            self.close_connection = True
            return False
        return self.parse_request()

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
    def _receive_body(self) -> bytes | None:
        """The body as sent, or None after an error was sent or the client hung up."""
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
        return self._receive(length)

    def _small_body_arrived(self, length: int) -> bytes | None:
        """What of a small body is here, waiting at most ``_SMALL_BODY_GRACE_S`` for the rest;
        None if the client hung up. Reads never block, so nothing read is lost when the grace
        runs out."""
        deadline = time.monotonic() + _SMALL_BODY_GRACE_S
        parts: list[bytes] = []
        missing = length
        with selectors.DefaultSelector() as selector:
            selector.register(self.connection, selectors.EVENT_READ)
            while missing:
                self._reader.nonblocking = True
                try:
                    part = self._buffered.read(missing)
                finally:
                    self._reader.nonblocking = False
                if part == b"":
                    return None
                if part:
                    parts.append(part)
                    missing -= len(part)
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    break
        return b"".join(parts)

    def _receive(self, length: int) -> bytes | None:
        """The body, read within its total deadline; None after an error was sent or the
        client hung up. A small body that arrived with its headers (most exports) is taken as it
        is; any other holds one of ``max_receiving`` slots until an in-flight slot is taken, so a
        trickling sender holds nothing that requests which arrived whole need."""
        arrived = self._small_body_arrived(length) if length <= _SMALL_BODY_BYTES else b""
        if arrived is None:
            self.close_connection = True  # the client hung up mid-body: nobody to answer
            self.ingestor.stats.reject("client_closed")
            return None
        if len(arrived) == length:
            return arrived
        if not self.receiving.try_enter():
            self.close_connection = True  # the unread body would corrupt the next request
            self._error(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "too_many_receiving",
                f"collector is overloaded: {self.receiving.limit} requests are still sending "
                "their bodies",
                {"Retry-After": "1"},
            )
            return None
        self._receiving = True
        self._reader.deadline = time.monotonic() + self.limits.body_timeout_s
        try:
            rest = self._buffered.read(length - len(arrived))
        except TimeoutError:
            self.close_connection = True
            self._error(
                HTTPStatus.REQUEST_TIMEOUT,
                "client_timeout",
                f"the body of {length} bytes did not arrive in time (within "
                f"{self.limits.body_timeout_s:g} s, with at most "
                f"{self.ingestor.settings.read_timeout_s:g} s between reads)",
            )
            return None
        finally:
            self._reader.deadline = None
        if len(arrived) + len(rest) < length:
            self.close_connection = True  # the client hung up mid-body: nobody to answer
            self.ingestor.stats.reject("client_closed")
            return None
        return arrived + rest if arrived else rest

    def _read_body(self, body: bytes) -> tuple[bytes, bool] | None:
        """The decompressed body and whether it is JSON, or None after an error was sent."""
        settings = self.ingestor.settings
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
        received = self._receive_body()
        if received is None:
            return
        # Waiting briefly for a slot is back-pressure through latency; only a collector that
        # stays saturated answers 503, so exporters are not sent into a 1 s back-off needlessly.
        # The slot is taken only now the body is here: it bounds decoding, not slow senders.
        admitted = self.in_flight.acquire(timeout=self.ingestor.settings.in_flight_wait_s)
        self._done_receiving()
        if not admitted:
            self._error(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "overloaded",
                "collector is overloaded: too many requests in progress",
                {"Retry-After": "1"},
            )
            return
        try:
            read = self._read_body(received)
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
            self._error(exc.status, exc.reason, str(exc))
        except (Overloaded, MemoryBusy, WriterStopped) as exc:
            retry = str(getattr(exc, "retry_after_s", 1))
            self._error(
                HTTPStatus.SERVICE_UNAVAILABLE, "overloaded", str(exc), {"Retry-After": retry}
            )
        except RowsRefused as exc:
            self._error(HTTPStatus.BAD_REQUEST, "rows_refused", f"spans were not stored: {exc}")
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
        ingest = self.ingestor.ingest_json if as_json else self.ingestor.ingest_protobuf
        self._reply(trace_reply(ingest(body)), as_json)

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


class _Server(ThreadingHTTPServer):
    """Counts its connections: beyond ``max_connections`` a connection is answered 503 by the
    refuser thread rather than given a thread of its own."""

    daemon_threads = True
    block_on_close = False

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], limits: HttpLimits, stats: Stats
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.request_queue_size = limits.backlog  # the listen backlog (5 by default)
        self.limits = limits
        self._stats = stats
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)
        self._refuser = _Refuser(_TOO_MANY_CONNECTIONS, limits.max_connections)

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        assert isinstance(request, socket.socket)  # a stream server's request is its socket
        with self._connections_lock:
            admitted = len(self._connections) < self.limits.max_connections
            if admitted:
                self._connections.add(request)
        if not admitted:
            self._stats.reject("too_many_connections")
            self._refuser.refuse(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        self._refuser.close()
        # End open (keep-alive) connections, whose threads would otherwise outlive the server.
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class HttpReceiver:
    """The OTLP/HTTP server in a background thread."""

    def __init__(
        self,
        ingestor: Ingestor,
        host: str = "127.0.0.1",
        port: int = 4318,
        limits: HttpLimits | None = None,
    ) -> None:
        self.limits = HttpLimits() if limits is None else limits
        self._receiving = _Gauge(self.limits.max_receiving)
        handler = type(
            "Handler",
            (_Handler,),
            {
                "ingestor": ingestor,
                # A client that stalls mid-request gives up its thread after this long.
                "timeout": ingestor.settings.read_timeout_s,
                "in_flight": threading.BoundedSemaphore(ingestor.settings.max_concurrent_requests),
                "limits": self.limits,
                "receiving": self._receiving,
            },
        )
        self._server = _Server((host, port), handler, self.limits, ingestor.stats)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="agentwatch-otlp-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def open_connections(self) -> int:
        """Connections with a handler thread (refused ones are not counted)."""
        return self._server.open_connections

    @property
    def receiving(self) -> int:
        """Requests holding a receiving slot: their bodies trickle in, or wait for a slot."""
        return self._receiving.value

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

"""OTLP/gRPC receiver (TraceService/Export) on the shared ingest path."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from agentwatch.collector._budget import MemoryBusy
from agentwatch.collector._decode import InvalidRequest
from agentwatch.collector._ingest import Ingestor, StoreTimeout, token_ok, trace_reply
from agentwatch.collector._writer import Overloaded, RowsRefused, WriterStopped
from agentwatch.storage._store import StorageError

logger = logging.getLogger("agentwatch.collector")
_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


class _TraceService:
    def __init__(self, ingestor: Ingestor) -> None:
        self.ingestor = ingestor

    def _abort(self, context: Any, code: grpc.StatusCode, reason: str, message: str) -> None:
        self.ingestor.stats.reject(reason)
        context.abort(code, message)

    def Export(  # noqa: N802 - the service's method name
        self, body: bytes, context: Any
    ) -> ExportTraceServiceResponse:
        metadata = dict(context.invocation_metadata() or ())
        if not token_ok(self.ingestor.settings, metadata.get("authorization")):
            self._abort(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                "unauthorized",
                "missing or wrong ingest token (send authorization: Bearer <token>)",
            )
        try:
            return trace_reply(self.ingestor.ingest_protobuf(body))
        except InvalidRequest as exc:
            code = grpc.StatusCode.INVALID_ARGUMENT
            if exc.status == 413:
                code = grpc.StatusCode.RESOURCE_EXHAUSTED
            self._abort(context, code, exc.reason, str(exc))
        except (Overloaded, MemoryBusy, WriterStopped) as exc:
            # UNAVAILABLE is retryable for OTLP exporters; they back off before retrying.
            self._abort(context, grpc.StatusCode.UNAVAILABLE, "overloaded", str(exc))
        except RowsRefused as exc:
            self._abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "rows_refused",
                f"spans were not stored: {exc}",
            )
        except (StoreTimeout, StorageError) as exc:
            self._abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                "store_unavailable",
                f"spans were not stored: {exc}",
            )
        return ExportTraceServiceResponse()


class GrpcReceiver:
    """The OTLP/gRPC server; messages larger than the HTTP body limit are refused by gRPC."""

    def __init__(
        self, ingestor: Ingestor, host: str = "127.0.0.1", port: int = 4317, workers: int = 8
    ) -> None:
        limit = ingestor.settings.max_body_bytes
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="agentwatch-grpc"),
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.so_reuseport", 0),
            ],
        )
        export = grpc.unary_unary_rpc_method_handler(
            _TraceService(ingestor).Export,
            # Parsed in Export: a malformed message is then INVALID_ARGUMENT and counted, where
            # gRPC's own deserializer would answer INTERNAL ("Exception deserializing request!").
            request_deserializer=bytes,
            response_serializer=ExportTraceServiceResponse.SerializeToString,
        )
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(_SERVICE, {"Export": export}),)
        )
        bound = self._server.add_insecure_port(f"{host}:{port}")
        if bound == 0:
            raise OSError(f"cannot bind the OTLP/gRPC receiver to {host}:{port}")
        self.port = bound

    def start(self) -> None:
        self._server.start()

    def stop(self, grace_s: float = 5.0) -> None:
        self._server.stop(grace_s).wait()

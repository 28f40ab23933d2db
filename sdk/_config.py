"""``configure()`` and ``shutdown()``: the one place agentwatch's process-wide state lives."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from agentwatch import _semconv as semconv
from agentwatch._errors import ConfigurationError
from agentwatch._redact import Redactor, default_redactor

logger = logging.getLogger("agentwatch")

DEFAULT_ENDPOINT = "http://localhost:4318"
Protocol = Literal["http/protobuf", "grpc"]
INSTRUMENTATION_NAME = "agentwatch"


@dataclass(frozen=True, slots=True)
class Settings:
    """What ``configure()`` decided; read on every decorated call, so kept flat."""

    service_name: str
    endpoint: str
    capture_content: bool = False
    redact: Redactor = default_redactor
    max_content_chars: int = 4000
    tracer: trace.Tracer | None = None
    provider: TracerProvider | None = None
    resource_attributes: Mapping[str, str] = field(default_factory=dict)


class _State:
    """Mutable holder so the decorators' hot path is one attribute read."""

    __slots__ = ("settings", "tracer")

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.tracer: trace.Tracer | None = None


STATE = _State()


def _resolve_endpoint(endpoint: str | None, protocol: Protocol) -> str:
    """The traces URL: the argument or OTEL_EXPORTER_OTLP_ENDPOINT get ``/v1/traces`` appended
    (HTTP only); OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used exactly as given, per the spec."""
    if endpoint is None:
        traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        if traces:
            return traces
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", DEFAULT_ENDPOINT)
    return _traces_url(endpoint, protocol)


def _traces_url(endpoint: str, protocol: Protocol) -> str:
    if protocol == "grpc" or endpoint.rstrip("/").endswith("/v1/traces"):
        return endpoint
    return endpoint.rstrip("/") + "/v1/traces"


def _make_exporter(
    endpoint: str, protocol: Protocol, headers: Mapping[str, str], timeout_s: float
) -> SpanExporter:
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError as exc:
            raise ConfigurationError(
                "protocol='grpc' needs the grpc extra: pip install 'agentwatch[grpc]'"
            ) from exc
        insecure = endpoint.startswith("http://")
        # gRPC metadata keys must be lowercase: "Authorization" fails every export.
        metadata = {key.lower(): value for key, value in headers.items()}
        return GrpcExporter(
            endpoint=endpoint, headers=metadata, timeout=timeout_s, insecure=insecure
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter(endpoint=endpoint, headers=dict(headers), timeout=timeout_s)


def configure(
    *,
    service_name: str | None = None,
    endpoint: str | None = None,
    protocol: Protocol = "http/protobuf",
    headers: Mapping[str, str] | None = None,
    ingest_token: str | None = None,
    environment: str | None = None,
    resource_attributes: Mapping[str, str] | None = None,
    capture_content: bool = False,
    redact: Redactor | None = None,
    max_content_chars: int = 4000,
    export_timeout_s: float = 5.0,
    exporter: SpanExporter | None = None,
    span_processors: Sequence[SpanProcessor] = (),
    propagate_to_threads: bool = True,
) -> None:
    """Start sending agent telemetry. Call once at start-up; calling again replaces the setup.

    Spans are batched and exported from a background thread over OTLP (HTTP protobuf by default,
    ``protocol="grpc"`` for gRPC). ``endpoint`` defaults to ``OTEL_EXPORTER_OTLP_ENDPOINT`` and
    then to ``http://localhost:4318``. ``exporter`` replaces the OTLP exporter (tests use an
    in-memory one); ``span_processors`` are added as they are, with no batching of ours.
    Prompt and response text is recorded only with ``capture_content=True`` and then passes
    through ``redact`` (``default_redactor``: keys, tokens, passwords, e-mails, cards, IBANs,
    SSNs, phone numbers) and is cut to ``max_content_chars``. Exception messages follow the same
    policy: with capture off only the exception's type and its frames are recorded.
    """
    if protocol not in ("http/protobuf", "grpc"):
        raise ConfigurationError(f"protocol must be 'http/protobuf' or 'grpc', not {protocol!r}")
    if max_content_chars < 0:
        raise ConfigurationError("max_content_chars must be >= 0")
    if export_timeout_s <= 0:
        raise ConfigurationError("export_timeout_s must be > 0")
    name = service_name or os.environ.get("OTEL_SERVICE_NAME") or "unknown_agent"
    resolved_endpoint = _resolve_endpoint(endpoint or None, protocol)
    if not resolved_endpoint.startswith(("http://", "https://")):
        raise ConfigurationError(f"endpoint must be an http(s) URL, not {resolved_endpoint!r}")

    shutdown()
    attrs: dict[str, str] = {"service.name": name, **(resource_attributes or {})}
    env = environment or os.environ.get("AGENTWATCH_ENVIRONMENT")
    if env:
        attrs[semconv.ENVIRONMENT] = env
    # Our own provider, not the global one: configuring agentwatch must not take over the
    # application's tracing setup. Context is shared, so foreign spans still nest correctly.
    provider = TracerProvider(resource=Resource.create(attrs))
    all_headers = dict(headers or {})
    if ingest_token:
        all_headers["Authorization"] = f"Bearer {ingest_token}"
    if exporter is None and not span_processors:
        exporter = _make_exporter(resolved_endpoint, protocol, all_headers, export_timeout_s)
    if exporter is not None:
        provider.add_span_processor(
            BatchSpanProcessor(exporter, export_timeout_millis=int(export_timeout_s * 1000))
        )
    for processor in span_processors:
        provider.add_span_processor(processor)
    from agentwatch._decorators import FrameworkBudget  # (it imports this module)

    provider.add_span_processor(FrameworkBudget())
    if propagate_to_threads:
        from agentwatch._threads import install_thread_propagation

        install_thread_propagation()

    tracer = provider.get_tracer(INSTRUMENTATION_NAME)
    STATE.settings = Settings(
        service_name=name,
        endpoint=resolved_endpoint,
        capture_content=capture_content,
        redact=redact or default_redactor,
        max_content_chars=max_content_chars,
        tracer=tracer,
        provider=provider,
        resource_attributes=attrs,
    )
    STATE.tracer = tracer


def is_configured() -> bool:
    """Whether ``configure()`` has been called (and ``shutdown()`` has not)."""
    return STATE.tracer is not None


def force_flush(timeout_s: float = 10.0) -> bool:
    """Export every finished span now; True when all were exported within ``timeout_s``."""
    settings = STATE.settings
    if settings is None or settings.provider is None:
        return True
    return settings.provider.force_flush(int(timeout_s * 1000))


def shutdown() -> None:
    """Flush pending spans and stop exporting; decorators become no-ops again."""
    settings = STATE.settings
    STATE.tracer = None
    STATE.settings = None
    if settings is not None and settings.provider is not None:
        settings.provider.shutdown()

"""configure(): validation, endpoint and service-name resolution, resource attributes, and the
process-wide state it owns (and does not take over)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentwatch as aw
from agentwatch._config import STATE


@pytest.fixture
def clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SERVICE_NAME",
        "AGENTWATCH_ENVIRONMENT",
    ):
        monkeypatch.delenv(name, raising=False)
    yield
    aw.shutdown()


def configured_endpoint() -> str:
    assert STATE.settings is not None
    return STATE.settings.endpoint


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocol": "http/json"}, "protocol"),
        ({"max_content_chars": -1}, "max_content_chars"),
        ({"export_timeout_s": 0}, "export_timeout_s"),
        ({"endpoint": "localhost:4318"}, "http"),
        ({"endpoint": "ftp://collector:4318"}, "http"),
    ],
)
def test_bad_configuration_raises_and_leaves_agentwatch_unconfigured(
    clean_otel_env: None, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(aw.ConfigurationError, match=message):
        aw.configure(**kwargs)  # type: ignore[arg-type]

    assert not aw.is_configured()


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://collector.example/v1/traces", "https://collector.example/v1/traces"),
    ],
)
def test_http_endpoint_gets_the_traces_path(
    clean_otel_env: None, endpoint: str, expected: str
) -> None:
    aw.configure(endpoint=endpoint)

    assert configured_endpoint() == expected


def test_endpoint_defaults_to_local_collector(clean_otel_env: None) -> None:
    aw.configure()

    assert configured_endpoint() == "http://localhost:4318/v1/traces"


def test_endpoint_comes_from_the_standard_otel_variables(
    clean_otel_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://from-env:4318")
    aw.configure()
    assert configured_endpoint() == "http://from-env:4318/v1/traces"

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces-env:4318/v1/traces")
    aw.configure()
    assert configured_endpoint() == "http://traces-env:4318/v1/traces"

    aw.configure(endpoint="http://explicit:4318")
    assert configured_endpoint() == "http://explicit:4318/v1/traces"


def test_grpc_endpoint_is_used_as_given(clean_otel_env: None) -> None:
    aw.configure(endpoint="http://collector:4317", protocol="grpc")

    assert configured_endpoint() == "http://collector:4317"


def test_service_name_and_resource_attributes_are_on_every_span(clean_otel_env: None) -> None:
    @aw.agent
    def handle() -> None:
        return None

    with aw.capture_spans(
        service_name="billing-bot",
        environment="staging",
        resource_attributes={"service.version": "1.2.3"},
    ) as captured:
        handle()

    resource = dict(captured.one("invoke_agent handle").resource.attributes)
    assert resource["service.name"] == "billing-bot"
    assert resource["service.version"] == "1.2.3"
    assert resource["deployment.environment.name"] == "staging"


def test_service_name_and_environment_come_from_env(
    clean_otel_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "env-bot")
    monkeypatch.setenv("AGENTWATCH_ENVIRONMENT", "prod")
    exporter = InMemorySpanExporter()
    aw.configure(span_processors=[SimpleSpanProcessor(exporter)])

    aw.record_decision("x", 0.5)

    (span,) = exporter.get_finished_spans()
    assert span.resource.attributes["service.name"] == "env-bot"
    assert span.resource.attributes["deployment.environment.name"] == "prod"


def test_service_name_defaults_to_unknown_agent(clean_otel_env: None) -> None:
    exporter = InMemorySpanExporter()
    aw.configure(exporter=exporter)

    assert STATE.settings is not None
    assert STATE.settings.service_name == "unknown_agent"


def test_configuring_again_replaces_the_previous_setup(clean_otel_env: None) -> None:
    @aw.tool
    def lookup() -> None:
        return None

    first, second = InMemorySpanExporter(), InMemorySpanExporter()
    aw.configure(span_processors=[SimpleSpanProcessor(first)])
    lookup()
    aw.configure(span_processors=[SimpleSpanProcessor(second)])
    lookup()
    aw.shutdown()

    assert len(first.get_finished_spans()) == 1
    assert len(second.get_finished_spans()) == 1


def test_shutdown_makes_decorators_inert_again(clean_otel_env: None) -> None:
    exporter = InMemorySpanExporter()
    aw.configure(span_processors=[SimpleSpanProcessor(exporter)])
    assert aw.is_configured()

    aw.shutdown()
    aw.shutdown()  # idempotent

    assert not aw.is_configured()
    aw.record_decision("after", 0.5)
    assert exporter.get_finished_spans() == ()


def test_configure_does_not_take_over_the_global_tracer_provider(clean_otel_env: None) -> None:
    before = trace.get_tracer_provider()

    aw.configure(exporter=InMemorySpanExporter())

    assert trace.get_tracer_provider() is before
    assert STATE.settings is not None
    assert STATE.settings.provider is not before


def test_force_flush_exports_batched_spans(clean_otel_env: None) -> None:
    exporter = InMemorySpanExporter()
    aw.configure(exporter=exporter)  # batched: exported from a background thread
    aw.record_decision("batched", 0.5)

    assert aw.force_flush(timeout_s=5) is True
    assert [s.name for s in exporter.get_finished_spans()] == ["decision batched"]


def test_traces_endpoint_variable_is_used_exactly_as_given(
    clean_otel_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is a full URL: nothing is appended to it (OTel spec)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces-env:4318/custom/path")
    aw.configure()
    assert configured_endpoint() == "http://traces-env:4318/custom/path"

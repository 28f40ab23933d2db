"""One real collector, fed by the demo fleet through the real SDK: the data the dashboard
query tests (``tests/storage/test_queries.py``) and the dashboard tests (``tests/dashboards``)
read.

``seeded_fleet`` starts ``agentwatch.app._collector.Collector`` in-process (OTLP/HTTP and the
read-only ClickHouse HTTP endpoint on free loopback ports, chDB under ``data_dir``), runs the
demo fleet and a few hand-made edge cases at it over OTLP, and waits (polling, never sleeping a
fixed time) until every span the SDK exported is stored. Each package's ``conftest.py`` makes a
``fleet`` fixture of it.

chDB opens one data directory per process, so each fixture closes its fleet before tests
elsewhere open their own stores: the dashboards' is package-scoped, the storage one
module-scoped (the other storage tests open stores of their own).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentwatch as aw
from agentwatch.app._collector import Collector, CollectorConfig
from agentwatch.app._demo import DemoFleet, FakeModelClient
from agentwatch.collector._writer import WriterSettings
from agentwatch.query._endpoint import QueryEndpoint
from agentwatch.storage._schema import migrations
from agentwatch.storage._scope import Filters
from agentwatch.storage._store import EmbeddedStore
from tests import polling

from .reference import Span, load_spans

T = TypeVar("T")
EMPTY_DB = "agentwatch_empty"
# Databases some tests build beside the seeded one, in the same store. The collector's endpoint
# reads only its own; a second endpoint over the same store reads these (Fleet.url_for).
SIDE_DATABASES = frozenset(
    {EMPTY_DB, "agentwatch_hours", "agentwatch_facts_only", "agentwatch_health_page"}
)
# A task type that needs escaping on the way to ClickHouse, whichever backend binds it.
ODD_TASK_TYPE = "it's a \\ back\tslash"


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, what: str = "") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    return polling.wait_until(predicate, timeout, what, interval=0.01)


@dataclass(frozen=True)
class Fleet:
    """The seeded collector and what the tests know about the data independently of it."""

    collector: Collector
    store: EmbeddedStore
    query_url: str  # the collector's ClickHouse HTTP endpoint, with the database
    side: QueryEndpoint  # the same store's SIDE_DATABASES
    empty_url: str  # a database whose span table has no rows
    spans: list[Span]  # every stored row, read back with a plain SELECT
    exported: int  # spans the SDK exported (counted in memory on the SDK side)
    outcomes: Counter[str]  # what the demo fleet itself counted: handled / failed / limit_...
    started: datetime  # before the first span
    middle: datetime  # between batch A (before) and batches B, C (after)
    finished: datetime  # after the last span

    def url_for(self, database: str) -> str:
        """The URL to read one of the SIDE_DATABASES through the ClickHouse HTTP interface."""
        assert database in SIDE_DATABASES, database
        return self.side.client_url(database)


def _configure(endpoint: str, memories: list[InMemorySpanExporter], service: str, env: str) -> None:
    """Export over OTLP to the collector, and count in memory what was exported (a new memory
    exporter each time: shutting a provider down stops its exporters)."""
    memory = InMemorySpanExporter()
    memories.append(memory)
    aw.configure(
        service_name=service,
        environment=env,
        exporter=OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"),
        span_processors=[SimpleSpanProcessor(memory)],
    )


def _edge_cases() -> None:
    """Traces the demo never makes: nested agents, a foreign parent span, a model that fails,
    an agent that fails on its own, an unpriced model, a task type with a quote, a backslash
    and a tab in it, and a model call outside any agent."""
    client = FakeModelClient(random.Random(3))

    @aw.llm(provider="openai")
    def ask(model: str, prompt: str) -> dict[str, Any]:
        return client.complete("openai", model, len(prompt))

    @aw.llm(provider="openai")
    def broken(model: str, prompt: str) -> dict[str, Any]:
        raise ConnectionError("model endpoint unreachable")

    @aw.agent(name="worker", task_type="refund")
    def worker() -> str:
        ask("gpt-4o", "refund this order " * 40)
        return "ok"

    @aw.agent(name="router", task_type="triage")
    def router() -> str:
        ask("gpt-4o-mini", "route this ticket " * 20)
        return worker()

    @aw.agent(name="edge", task_type="model_error")
    def model_error() -> None:
        broken("gpt-4o", "hello")

    @aw.agent(name="edge", task_type="validation")
    def validation() -> None:
        raise ValueError("the answer did not validate")

    @aw.agent(name="edge", task_type=ODD_TASK_TYPE)
    def odd_name() -> str:
        return "ok"

    @aw.agent(name="edge", task_type="custom_model")
    def custom_model() -> str:
        ask("my-finetune-x", "use the fine-tune " * 30)
        return "ok"

    router()  # nested: one task, the router's
    # An agent under a web framework's span that is exported elsewhere (not to us).
    foreign = TracerProvider().get_tracer("web-framework")
    with foreign.start_as_current_span("GET /tickets"):
        worker()
    for fn in (model_error, validation):
        with pytest.raises((ConnectionError, ValueError)):
            fn()
    custom_model()
    odd_name()
    ask("gpt-4o-mini", "no agent around this call")


@contextmanager
def seeded_fleet(data_dir: Path) -> Iterator[Fleet]:
    """The collector under ``data_dir``, seeded, until the ``with`` block ends."""
    collector = Collector(
        CollectorConfig(
            data_dir=data_dir,
            http_port=0,
            grpc_port=None,
            query_port=0,
            writer=WriterSettings(max_delay_s=0.005),
        )
    )
    collector.start()
    try:
        urls = collector.urls()
        memories: list[InMemorySpanExporter] = []
        demo = DemoFleet(seed=11)
        started = datetime.now(UTC)
        # Batch A: the earlier period.
        _configure(urls["otlp_http"], memories, "support-fleet", "prod")
        demo.run(100)
        middle = datetime.now(UTC)
        # Batch B: later, refunds cost five times as much and fail ten times as often.
        demo.cost_boost["refund"] = 5.0
        demo.error_boost["refund"] = 10.0
        demo.run(100)
        # Batch C: another service in another environment, plus the edge cases.
        demo.cost_boost.clear()
        demo.error_boost.clear()
        _configure(urls["otlp_http"], memories, "billing-fleet", "staging")
        demo.run(40)
        _configure(urls["otlp_http"], memories, "edge-cases", "staging")
        _edge_cases()
        aw.shutdown()  # flushes: the collector acks a batch only once it is committed
        finished = datetime.now(UTC) + timedelta(milliseconds=1)
        exported = sum(len(m.get_finished_spans()) for m in memories)
        store = collector.store
        assert isinstance(store, EmbeddedStore)
        wait_until(
            lambda: store.query("SELECT count() FROM agentwatch.otel_traces").scalar() == exported,
            what=f"{exported} spans to be stored",
        )
        # An empty schema next to the seeded one, for the dashboard's "no data yet" state.
        store.command(f"CREATE DATABASE IF NOT EXISTS {EMPTY_DB}")
        for migration in migrations(EMPTY_DB, 30):
            for statement in migration.statements:
                store.command(statement)
        with QueryEndpoint(store, port=0, readable_databases=SIDE_DATABASES) as side:
            yield Fleet(
                collector=collector,
                store=store,
                query_url=collector.query_client_url("agentwatch") or "",
                side=side,
                empty_url=side.client_url(EMPTY_DB),
                spans=load_spans(store),
                exported=exported,
                outcomes=Counter(demo.outcomes),
                started=started,
                middle=middle,
                finished=finished,
            )
    finally:
        aw.shutdown()
        collector.stop()


def periods(fleet: Fleet) -> tuple[Filters, Filters]:
    """(current, previous): batch A lies wholly in the previous period, B and C in the current."""
    length = max(fleet.middle - fleet.started, fleet.finished - fleet.middle) + timedelta(seconds=1)
    current = Filters(start=fleet.middle, end=fleet.middle + length)
    return current, current.previous()

"""Capture agentwatch spans in memory, so users can assert on their own agents' telemetry."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentwatch import _semconv as semconv
from agentwatch._config import configure, shutdown


class CapturedSpans:
    """The spans finished while capturing, with helpers to find the ones a test cares about."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self._exporter = exporter

    @property
    def spans(self) -> list[ReadableSpan]:
        """Every finished span, in the order they ended."""
        return list(self._exporter.get_finished_spans())

    def clear(self) -> None:
        self._exporter.clear()

    def named(self, name: str) -> list[ReadableSpan]:
        """Spans whose name is exactly ``name`` (e.g. ``"execute_tool search_orders"``)."""
        return [s for s in self.spans if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        """The single span called ``name``; fails the test if there are none or several."""
        found = self.named(name)
        if len(found) != 1:
            names = sorted({s.name for s in self.spans})
            raise AssertionError(f"expected one span {name!r}, found {len(found)}; spans: {names}")
        return found[0]

    def by_operation(self, operation: str) -> list[ReadableSpan]:
        """Spans whose ``gen_ai.operation.name`` is ``operation`` (invoke_agent, chat, ...)."""
        return [
            s for s in self.spans if attributes(s).get(semconv.GEN_AI_OPERATION_NAME) == operation
        ]

    def agents(self) -> list[ReadableSpan]:
        return self.by_operation(semconv.OPERATION_INVOKE_AGENT)

    def tools(self) -> list[ReadableSpan]:
        return self.by_operation(semconv.OPERATION_EXECUTE_TOOL)

    def llm_calls(self) -> list[ReadableSpan]:
        return self.by_operation(semconv.OPERATION_CHAT)

    def decisions(self) -> list[ReadableSpan]:
        return self.by_operation(semconv.OPERATION_DECISION)

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        """Direct children of ``parent``."""
        parent_id = parent.context.span_id if parent.context is not None else None
        return [s for s in self.spans if s.parent is not None and s.parent.span_id == parent_id]


def attributes(span: ReadableSpan) -> Mapping[str, Any]:
    """A span's attributes as a plain mapping (never None)."""
    return span.attributes or {}


@contextmanager
def capture_spans(**configure_kwargs: Any) -> Iterator[CapturedSpans]:
    """Configure agentwatch to keep spans in memory for the duration of the ``with`` block.

    Spans are exported synchronously, so they are visible as soon as they end.
    """
    exporter = InMemorySpanExporter()
    configure_kwargs.setdefault("service_name", "test-agent")
    configure(span_processors=[SimpleSpanProcessor(exporter)], **configure_kwargs)
    try:
        yield CapturedSpans(exporter)
    finally:
        shutdown()

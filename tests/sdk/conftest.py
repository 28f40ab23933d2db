"""Fixtures shared by the SDK tests. Spans are captured with the plugin's ``agentwatch_spans``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

from agentwatch import _health

ContextErrors = Callable[[], list[logging.LogRecord]]


@pytest.fixture
def context_errors(caplog: pytest.LogCaptureFixture) -> ContextErrors:
    """Returns the ERROR records OpenTelemetry logged about its context so far.

    A context token detached in a different context than it was attached in ("Failed to detach
    context") is logged there, not raised, so this is how a test sees it.
    """
    caplog.set_level(logging.ERROR, logger="opentelemetry.context")

    def errors() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.name == "opentelemetry.context" and r.levelno >= logging.ERROR
        ]

    return errors


@pytest.fixture
def isolated_registry() -> Iterator[None]:
    """An empty probe registry for the test, and no scheduler left running after it (the health
    and expectation tests use it: ``pytestmark``)."""
    saved = dict(_health._REGISTRY)
    _health._REGISTRY.clear()
    try:
        yield
    finally:
        assert _health.stop_health_checks(timeout_s=5.0)
        _health._REGISTRY.clear()
        _health._REGISTRY.update(saved)

"""Fixtures shared by the SDK tests. Spans are captured with the plugin's ``agentwatch_spans``."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

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

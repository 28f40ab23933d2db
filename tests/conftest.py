"""Shared fixtures. Our own suite opts in to re-raising agentwatch's internal errors, so that our
bugs fail tests instead of hiding in a log (agentwatch._safety); users' suites do not.

Set at import, before any test runs: subprocesses the tests start inherit it too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from agentwatch import _health

os.environ.setdefault("AGENTWATCH_RAISE_INTERNAL_ERRORS", "1")


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

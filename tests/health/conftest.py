"""Each health test starts with an empty probe registry and leaves no scheduler running."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentwatch import _health


@pytest.fixture(autouse=True)
def isolated_registry() -> Iterator[None]:
    saved = dict(_health._REGISTRY)
    _health._REGISTRY.clear()
    try:
        yield
    finally:
        assert _health.stop_health_checks(timeout_s=5.0)
        _health._REGISTRY.clear()
        _health._REGISTRY.update(saved)

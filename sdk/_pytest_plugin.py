"""pytest plugin (registered on install): the ``agentwatch_spans`` fixture.

Kept import-light, since pytest loads it in every test session of every project that has
agentwatch installed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentwatch._testing import CapturedSpans, capture_spans


@pytest.fixture
def agentwatch_spans() -> Iterator[CapturedSpans]:
    """agentwatch configured to capture spans in memory for this test; they are in ``.spans``."""
    with capture_spans() as captured:
        yield captured

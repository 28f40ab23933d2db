"""Fixtures of the command's tests: an embedded store of its own, and a clean probe registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentwatch.storage._store import EmbeddedStore, apply_migrations


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    """A migrated embedded store under ``tmp_path/data`` (so ``--data-dir tmp_path`` finds it),
    closed after the test: chDB allows one open data directory per process."""
    opened = EmbeddedStore(tmp_path / "data")
    apply_migrations(opened)
    try:
        yield opened
    finally:
        opened.close()

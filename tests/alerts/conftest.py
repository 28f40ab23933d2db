"""Stores for the alert tests: one chDB engine for the package, a fresh database per use.

chDB runs one engine per process, on one data directory; several connections may share it. So
the package keeps one directory open, and every ``store`` is a new connection to a new
database on it, with the migrations applied. The engine is closed when the package's tests
are done, before other packages open their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentwatch.storage._store import EmbeddedStore, apply_migrations


@pytest.fixture(scope="package")
def engine_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("alerts") / "data"
    anchor = EmbeddedStore(path)
    try:
        yield path
    finally:
        anchor.close()


def new_store(engine_dir: Path) -> EmbeddedStore:
    """A connection to a new, migrated database on the package's engine."""
    store = EmbeddedStore(engine_dir, database=f"t_{uuid.uuid4().hex[:12]}")
    apply_migrations(store)
    return store


@pytest.fixture
def store(engine_dir: Path) -> Iterator[EmbeddedStore]:
    opened = new_store(engine_dir)
    try:
        yield opened
    finally:
        opened.close()

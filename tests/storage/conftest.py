"""The seeded collector that ``test_queries.py`` reads (``tests.storage.fleet``).

Module-scoped: chDB opens one data directory per process, and the other storage tests open
stores of their own, so the fleet is closed as soon as the query tests are done.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fleet import Fleet, seeded_fleet


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with seeded_fleet(tmp_path_factory.mktemp("queries")) as seeded:
        yield seeded

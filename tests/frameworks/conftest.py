"""Fixtures of the framework tests: a fake OpenAI-compatible model server and a real collector,
one of each per test module (chDB opens one data directory per process at a time)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.frameworks.collector import FrameworkCollector
from tests.frameworks.fake_openai import FakeOpenAI

# Each agent run asks for one tool call, then answers.
TOOL_CALLS = 1


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(tool_calls=TOOL_CALLS) as server:
        yield server


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FrameworkCollector]:
    started = FrameworkCollector(tmp_path_factory.mktemp("frameworks"))
    yield started
    started.close()

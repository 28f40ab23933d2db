"""pytest plugin (registered on install): the ``agentwatch_spans`` and ``agentwatch_replay``
fixtures.

Kept import-light, since pytest loads it in every test session of every project that has
agentwatch installed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import pytest

from agentwatch._replay import ModelAnswer, Replay
from agentwatch._testing import CapturedSpans, capture_spans

ReplayFactory = Callable[..., Replay]


@pytest.fixture
def agentwatch_spans() -> Iterator[CapturedSpans]:
    """agentwatch configured to capture spans in memory for this test; they are in ``.spans``."""
    with capture_spans() as captured:
        yield captured


@pytest.fixture
def agentwatch_replay() -> Iterator[ReplayFactory]:
    """A factory: ``agentwatch_replay("incident.jsonl", models=False, ordered=False,
    redact=None)`` starts replaying that exported trace for the rest of the test (see
    ``aw.replay``) and returns the ``Replay``.

    At teardown each replay is stopped and checked with ``assert_complete()``: recorded calls
    the test never made, or a mismatch the agent caught, error the test at teardown.
    """
    started: list[Replay] = []

    def start(
        source: str | os.PathLike[str] | Iterable[str | Mapping[str, Any]],
        *,
        models: bool | ModelAnswer = False,
        ordered: bool = False,
        redact: Callable[[str], str] | None = None,
    ) -> Replay:
        replay = Replay(source, models=models, ordered=ordered, redact=redact).start()
        started.append(replay)
        return replay

    yield start
    for replay in reversed(started):  # detach in the reverse order of attaching
        replay.stop()
    for replay in started:
        replay.assert_complete()

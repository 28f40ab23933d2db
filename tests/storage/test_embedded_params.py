"""Bound string parameters reach chDB unchanged, whatever characters they hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentwatch.storage._store import EmbeddedStore


@pytest.mark.parametrize(
    "value",
    ["plain", "new\nline", "back\\slash", "tab\there", "carriage\rreturn", "quote'd", "\\n"],
)
def test_string_parameter_round_trips(tmp_path: Path, value: str) -> None:
    """A value with newlines, tabs or backslashes is bound as-is (chDB reads escaped text)."""
    store = EmbeddedStore(tmp_path)
    try:
        assert store.query("SELECT {v:String} AS v", {"v": value}).scalar() == value
    finally:
        store.close()

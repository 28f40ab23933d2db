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


ODD_STRINGS = ["plain", "new\nline", "back\\slash", "tab\there", "quote'd", "\\'", "[x]", ""]


def test_array_parameters_round_trip(tmp_path: Path) -> None:
    """Arrays of odd strings and of numbers are bound element for element."""
    store = EmbeddedStore(tmp_path)
    try:
        strings = store.query("SELECT {v:Array(String)} AS v", {"v": ODD_STRINGS}).scalar()
        numbers = store.query("SELECT {v:Array(Float64)} AS v", {"v": (0.5, 1, -2e-3)}).scalar()
        empty = store.query("SELECT length({v:Array(String)}) AS n", {"v": []}).scalar()
    finally:
        store.close()
    assert (strings, numbers, empty) == (ODD_STRINGS, [0.5, 1.0, -0.002], 0)


def test_an_array_of_anything_else_is_refused(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    try:
        with pytest.raises(TypeError, match="strings or numbers"):
            store.query("SELECT {v:Array(String)} AS v", {"v": [None]})
    finally:
        store.close()


def test_a_bad_server_url_error_does_not_echo_the_password() -> None:
    """Configuration errors name the URL but never its password."""
    from agentwatch._errors import ConfigurationError
    from agentwatch.storage._store import ServerStore

    with pytest.raises(ConfigurationError) as caught:
        ServerStore("ftp://user:s3cret@host:8123/db")
    assert "s3cret" not in str(caught.value)
    assert "user:***@host" in str(caught.value)

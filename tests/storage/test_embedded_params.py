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


def test_a_bad_server_url_error_does_not_echo_the_password() -> None:
    """Configuration errors name the URL but never its password."""
    from agentwatch._errors import ConfigurationError
    from agentwatch.storage._store import ServerStore

    with pytest.raises(ConfigurationError) as caught:
        ServerStore("ftp://user:s3cret@host:8123/db")
    assert "s3cret" not in str(caught.value)
    assert "user:***@host" in str(caught.value)

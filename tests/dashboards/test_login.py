"""The dashboard's sign-in, rendered with AppTest against the seeded collector: with a password
set, nothing of the store shows until it is given; ``up`` refuses a non-loopback dashboard
without one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from agentwatch._errors import ConfigurationError
from agentwatch.app._up import check_dashboard_host
from agentwatch.dashboards import _data, _login
from tests.storage.fleet import Fleet

PASSWORD = "correct horse battery"


@pytest.fixture
def guarded(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(_data.ENV_URL, fleet.query_url)
    monkeypatch.setenv(_login.ENV_PASSWORD, PASSWORD)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def sign_in(at: AppTest, password: str) -> AppTest:
    at.text_input[0].input(password)
    at.button[0].click()
    return at.run()


def test_nothing_shows_before_the_password(entry: Path, guarded: None) -> None:
    at = AppTest.from_file(entry, default_timeout=60).run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["agentwatch"]
    assert not at.metric  # no tile, so no query ran for this session
    assert at.text_input[0].label == "Password"


def test_a_wrong_password_is_refused(entry: Path, guarded: None) -> None:
    at = sign_in(AppTest.from_file(entry, default_timeout=60).run(), "wrong")
    assert [e.value for e in at.error] == ["Wrong password."]
    assert not at.metric


def test_the_right_password_opens_the_overview(entry: Path, guarded: None) -> None:
    at = sign_in(AppTest.from_file(entry, default_timeout=60).run(), PASSWORD)
    assert not at.exception, at.exception
    assert at.title[0].value == "Overview"
    assert at.metric


def test_a_dashboard_beyond_loopback_needs_a_password() -> None:
    with pytest.raises(ConfigurationError, match="dashboard-password"):
        check_dashboard_host("0.0.0.0", None)
    check_dashboard_host("0.0.0.0", PASSWORD)
    check_dashboard_host("127.0.0.1", None)
    check_dashboard_host("::1", None)

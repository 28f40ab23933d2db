"""The pytest plugin: ``agentwatch_spans`` is available to any project that installs agentwatch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import agentwatch as aw
from agentwatch._testing import CapturedSpans


def test_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}

    assert plugins.get("agentwatch") == "agentwatch._pytest_plugin"


def test_fixture_configures_agentwatch_for_the_test(agentwatch_spans: CapturedSpans) -> None:
    assert aw.is_configured()
    assert agentwatch_spans.spans == []


def test_fixture_collects_spans_and_helpers_find_them(agentwatch_spans: CapturedSpans) -> None:
    @aw.tool
    def lookup() -> None:
        aw.record_decision("found", 0.9)

    @aw.llm
    def ask(model: str) -> str:
        return "hi"

    @aw.agent
    def handle() -> None:
        lookup()
        lookup()
        ask(model="m")

    handle()

    agent_span = agentwatch_spans.one("invoke_agent handle")
    assert [s.name for s in agentwatch_spans.agents()] == ["invoke_agent handle"]
    assert len(agentwatch_spans.tools()) == 2
    assert [s.name for s in agentwatch_spans.llm_calls()] == ["chat m"]
    assert len(agentwatch_spans.decisions()) == 2
    assert sorted(s.name for s in agentwatch_spans.children(agent_span)) == [
        "chat m",
        "execute_tool lookup",
        "execute_tool lookup",
    ]
    agentwatch_spans.clear()
    assert agentwatch_spans.spans == []


def test_one_fails_with_the_names_it_did_find(agentwatch_spans: CapturedSpans) -> None:
    aw.record_decision("a", 0.5)
    aw.record_decision("a", 0.5)

    with pytest.raises(AssertionError, match=r"found 2; spans: \['decision a'\]"):
        agentwatch_spans.one("decision a")
    with pytest.raises(AssertionError, match="found 0"):
        agentwatch_spans.one("decision b")


def test_fixture_works_in_a_fresh_project_through_the_entry_point(tmp_path: Path) -> None:
    """A separate pytest run in an empty directory: the fixture comes from the installed
    plugin alone, and agentwatch is unconfigured again after the test that used it."""
    (tmp_path / "test_user_agent.py").write_text(
        textwrap.dedent(
            """
            import agentwatch as aw

            @aw.agent(task_type="refund")
            def handle():
                return "ok"

            def test_uses_fixture(agentwatch_spans):
                assert handle() == "ok"
                (span,) = agentwatch_spans.agents()
                assert span.attributes["agentwatch.task.outcome"] == "completed"

            def test_after_fixture_is_unconfigured():
                assert not aw.is_configured()
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout

"""``aw.instrument()``'s rules, without a model server: what it needs, what it refuses, what it
reports. "Not installed" is real absence to Python's import system: the module is blocked in
``sys.modules`` (``None`` there makes every import of it fail), nothing of ours is replaced.
The frameworks' runs through it are tests/frameworks/test_instrument.py."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

import agentwatch as aw

LANGCHAIN_INSTRUMENTATION = "openinference.instrumentation.langchain"


@pytest.fixture(autouse=True)
def instrumentation_off_afterwards() -> Iterator[None]:
    yield
    aw.uninstrument()


def forget(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Unload ``module`` and its submodules for the test: the next import runs it afresh."""
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)


def block(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Make ``module`` absent for the test, as if it were not installed."""
    forget(monkeypatch, module)
    monkeypatch.setitem(sys.modules, module, None)


def test_instrument_needs_configure_first() -> None:
    assert not aw.is_configured()

    with pytest.raises(aw.ConfigurationError, match=r"configure\(\) before"):
        aw.instrument()


def test_an_unknown_name_is_refused_with_the_known_ones() -> None:
    with aw.capture_spans(), pytest.raises(aw.ConfigurationError, match="known: pydantic-ai"):
        aw.instrument("langgraph", "crewai-typo")


def test_asking_for_one_that_is_not_installed_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    block(monkeypatch, LANGCHAIN_INSTRUMENTATION)

    with (
        aw.capture_spans(),
        pytest.raises(aw.ConfigurationError, match=r"pip install 'agentwatch\[langgraph\]'"),
    ):
        aw.instrument("langgraph")


def test_without_names_a_missing_one_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    block(monkeypatch, LANGCHAIN_INSTRUMENTATION)
    caplog.set_level(logging.INFO, logger="agentwatch")

    with aw.capture_spans():
        results = {r.name: r for r in aw.instrument()}

    assert results["langgraph"].status == "not installed"
    assert "pip install 'agentwatch[langgraph]'" in results["langgraph"].detail
    assert results["pydantic-ai"].status == "enabled"
    assert any("langgraph not installed" in r.getMessage() for r in caplog.records)


@pytest.mark.filterwarnings("ignore:Support for class-based `config` is deprecated")
def test_without_openai_v2_the_openai_client_gets_openllmetry() -> None:
    """In a process of its own: OpenLLMetry's ``uninstrument`` leaves the openai client
    patched, so once on it would stay on for every later test of this process."""
    pytest.importorskip("opentelemetry.instrumentation.openai")  # no extra of ours installs it
    script = (
        "import os, sys, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "sys.modules['opentelemetry.instrumentation.openai_v2'] = None  # not installed\n"
        "import agentwatch as aw\n"
        "with aw.capture_spans():\n"
        "    (result,) = aw.instrument('openai')\n"
        "    print(result.status, '|', result.detail, '|', os.environ['TRACELOOP_TRACE_CONTENT'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )

    assert done.stdout.strip() == "enabled | OpenLLMetry OpenAIInstrumentor | false"


def test_the_openai_client_needs_one_of_its_two_instrumentations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    block(monkeypatch, "opentelemetry.instrumentation.openai_v2")
    block(monkeypatch, "opentelemetry.instrumentation.openai")

    with (
        aw.capture_spans(),
        pytest.raises(aw.ConfigurationError, match="openai_v2 or opentelemetry"),
    ):
        aw.instrument("openai")


def test_a_broken_instrumentation_is_an_internal_error_not_a_missing_one(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """openai-v2 installed over an opentelemetry-util-genai it cannot import (the report's
    pitfall): our suite re-raises internal errors; users' code gets a logged ``failed``."""
    forget(monkeypatch, "opentelemetry.instrumentation.openai_v2")
    block(monkeypatch, "opentelemetry.util.genai.handler")

    with aw.capture_spans(), pytest.raises(ModuleNotFoundError, match=r"genai\.handler"):
        aw.instrument("openai")

    monkeypatch.setenv("AGENTWATCH_RAISE_INTERNAL_ERRORS", "0")
    with aw.capture_spans():
        (result,) = aw.instrument("openai")
    assert result.status == "failed"
    assert any("instrumenting openai" in r.getMessage() for r in caplog.records)


def test_a_second_call_changes_nothing() -> None:
    with aw.capture_spans():
        first = aw.instrument("pydantic-ai")
        again = aw.instrument("pydantic-ai")

    assert [r.status for r in first] == ["enabled"]
    assert [r.status for r in again] == ["already enabled"]


def test_uninstrument_restores_the_content_switches_it_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    variable = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
    monkeypatch.setenv(variable, "SPAN_AND_EVENT")

    with aw.capture_spans():
        aw.instrument("openai")
        # agentwatch's capture_content=False wins over the variable while instrumented.
        assert os.environ[variable] == "NO_CONTENT"
        aw.uninstrument()

    assert os.environ[variable] == "SPAN_AND_EVENT"

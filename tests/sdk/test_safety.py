"""Telemetry never breaks the agent: user exceptions pass through untouched, our own failures
are logged and swallowed (re-raised only when ``AGENTWATCH_RAISE_INTERNAL_ERRORS`` is set, as
tests/conftest.py does for our suite; never in users' suites), and unconfigured decorators are
inert."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

import agentwatch as aw
from agentwatch import _semconv as semconv
from agentwatch._testing import CapturedSpans
from tests.sdk.support import attrs, openai_chat


class PaymentDeclined(Exception):
    """A user's own exception type."""


ERROR = PaymentDeclined("card declined")


@aw.tool
def raise_sync() -> None:
    raise ERROR


@aw.tool
async def raise_async() -> None:
    await asyncio.sleep(0)
    raise ERROR


@aw.tool
def raise_generator() -> Iterator[int]:
    yield 1
    raise ERROR


@aw.tool
async def raise_async_generator() -> AsyncIterator[int]:
    yield 1
    raise ERROR


def call_sync() -> None:
    raise_sync()


def call_async() -> None:
    asyncio.run(raise_async())


def call_generator() -> None:
    list(raise_generator())


def call_async_generator() -> None:
    async def consume() -> None:
        async for _ in raise_async_generator():
            pass

    asyncio.run(consume())


@pytest.mark.parametrize(
    ("call", "span_name"),
    [
        (call_sync, "execute_tool raise_sync"),
        (call_async, "execute_tool raise_async"),
        (call_generator, "execute_tool raise_generator"),
        (call_async_generator, "execute_tool raise_async_generator"),
    ],
    ids=["sync", "async", "generator", "async_generator"],
)
def test_user_exception_propagates_unchanged_and_marks_the_span_error(
    agentwatch_spans: CapturedSpans, call: Callable[[], None], span_name: str
) -> None:
    with pytest.raises(PaymentDeclined) as raised:
        call()

    assert raised.value is ERROR
    span = agentwatch_spans.one(span_name)
    assert span.status.status_code is StatusCode.ERROR
    # Content capture is off: the message (which may quote user data) stays in the process.
    assert span.status.description == f"{__name__}.PaymentDeclined"
    assert attrs(span)[semconv.ERROR_TYPE] == f"{__name__}.PaymentDeclined"
    assert [e.name for e in span.events] == ["exception"]


def test_builtin_exception_error_type_is_the_bare_class_name(
    agentwatch_spans: CapturedSpans,
) -> None:
    @aw.agent
    def handle() -> None:
        raise TimeoutError("order service timed out")

    with pytest.raises(TimeoutError):
        handle()

    assert attrs(agentwatch_spans.one("invoke_agent handle"))[semconv.ERROR_TYPE] == "TimeoutError"


def test_exception_keeps_its_traceback_through_the_decorator(
    agentwatch_spans: CapturedSpans,
) -> None:
    with pytest.raises(PaymentDeclined) as raised:
        raise_sync()

    assert raised.traceback[-1].name == "raise_sync"


# --- internal errors --------------------------------------------------------------------------


class RedactorBug(Exception):
    pass


def broken_redactor(text: str) -> str:
    raise RedactorBug("bug in the redactor")


def redactor_broken_on(marker: str) -> Callable[[str], str]:
    def redact(text: str) -> str:
        if marker in text:
            raise RedactorBug(f"cannot redact {marker}")
        return text

    return redact


def test_internal_error_is_reraised_in_our_own_suite() -> None:
    """Our own bugs must fail our tests instead of hiding in a log: tests/conftest.py opts in."""
    assert os.environ["AGENTWATCH_RAISE_INTERNAL_ERRORS"] == "1"

    @aw.tool
    def lookup(order_id: str) -> str:
        return order_id

    with (
        aw.capture_spans(capture_content=True, redact=broken_redactor),
        pytest.raises(RedactorBug),
    ):
        lookup("o-1")


def test_internal_error_is_logged_and_swallowed_when_raising_is_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AGENTWATCH_RAISE_INTERNAL_ERRORS", "0")
    caplog.set_level(logging.ERROR, logger="agentwatch")
    calls: list[str] = []

    @aw.tool
    def lookup(order_id: str) -> str:
        calls.append(order_id)
        return f"found {order_id}"

    with aw.capture_spans(capture_content=True, redact=broken_redactor):
        result = lookup("o-1")

    assert result == "found o-1"
    assert calls == ["o-1"], "the user's function must run exactly once"
    (record,) = [r for r in caplog.records if r.name == "agentwatch"]
    assert record.levelno == logging.ERROR
    assert "agentwatch internal error" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is RedactorBug


def test_internal_error_while_recording_a_result_still_ends_the_span(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AGENTWATCH_RAISE_INTERNAL_ERRORS", "0")
    caplog.set_level(logging.ERROR, logger="agentwatch")
    response = openai_chat(text="UNREDACTABLE answer")

    @aw.llm
    def ask(model: str) -> dict[str, Any]:
        return response

    with aw.capture_spans(
        capture_content=True, redact=redactor_broken_on("UNREDACTABLE")
    ) as captured:
        result = ask(model="gpt-4o")

    assert result is response
    span = captured.one("chat gpt-4o")
    assert attrs(span)[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 120
    assert semconv.GEN_AI_OUTPUT_MESSAGES not in attrs(span)
    assert [r.levelno for r in caplog.records if r.name == "agentwatch"] == [logging.ERROR]


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_raise_internal_errors_env_turns_raising_on(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("AGENTWATCH_RAISE_INTERNAL_ERRORS", value)

    @aw.tool
    def lookup(order_id: str) -> str:
        return order_id

    with (
        aw.capture_spans(capture_content=True, redact=broken_redactor),
        pytest.raises(RedactorBug),
    ):
        lookup("o-1")


@pytest.mark.parametrize("value", [None, "", "0", "false", "no"])
def test_internal_error_under_pytest_is_logged_not_raised_unless_opted_in(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str | None
) -> None:
    """Running under pytest is not an opt-in: only the variable is."""
    if value is None:
        monkeypatch.delenv("AGENTWATCH_RAISE_INTERNAL_ERRORS", raising=False)
    else:
        monkeypatch.setenv("AGENTWATCH_RAISE_INTERNAL_ERRORS", value)
    assert "PYTEST_CURRENT_TEST" in os.environ
    caplog.set_level(logging.ERROR, logger="agentwatch")

    @aw.tool
    def lookup(order_id: str) -> str:
        return order_id

    with aw.capture_spans(capture_content=True, redact=broken_redactor):
        assert lookup("o-1") == "o-1"
    assert len([r for r in caplog.records if r.name == "agentwatch"]) == 1


USER_TEST = """
import logging

import agentwatch as aw


def redact(text):
    raise RuntimeError("bug in the redactor")


@aw.tool
def lookup(order_id):
    return "found " + order_id


def test_lookup(caplog):
    with aw.capture_spans(capture_content=True, redact=redact) as captured:
        assert lookup("o-1") == "found o-1"
    assert [span.name for span in captured.spans] == ["execute_tool lookup"]
    assert [r.levelno for r in caplog.records if r.name == "agentwatch"] == [logging.ERROR]
"""


def run_user_suite(project: Path, extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "AGENTWATCH_RAISE_INTERNAL_ERRORS" and not k.startswith("PYTEST_")
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env={**env, **extra_env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_internal_error_never_fails_a_users_test_suite(tmp_path: Path) -> None:
    """A user's own pytest run (the plugin loaded from the entry point, as installed): an
    agentwatch internal error inside their test is logged, and their test passes."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_user_agent.py").write_text(textwrap.dedent(USER_TEST))

    result = run_user_suite(tmp_path, {})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout

    # The same suite with the opt-in fails: the test above did hit an internal error.
    opted_in = run_user_suite(tmp_path, {"AGENTWATCH_RAISE_INTERNAL_ERRORS": "1"})
    assert opted_in.returncode == 1, opted_in.stdout + opted_in.stderr
    assert "RuntimeError: bug in the redactor" in opted_in.stdout


# --- not configured ---------------------------------------------------------------------------


def test_unconfigured_decorators_call_straight_through_and_emit_nothing() -> None:
    sentinel = object()
    seen_spans: list[bool] = []

    @aw.agent
    def handle() -> object:
        seen_spans.append(trace.get_current_span().get_span_context().is_valid)
        return sentinel

    with aw.capture_spans() as captured:
        aw.shutdown()  # the capture's exporter stays readable: nothing may reach it now
        assert not aw.is_configured()
        result = handle()

    assert result is sentinel
    assert seen_spans == [False]
    assert captured.spans == []


def test_unconfigured_async_and_generator_decorators_call_straight_through() -> None:
    assert not aw.is_configured()

    @aw.tool
    async def fetch() -> str:
        return "async result"

    @aw.tool
    def pages() -> Generator[int, int, None]:
        sent = yield 1
        yield sent

    @aw.llm
    async def stream() -> AsyncIterator[int]:
        yield 1
        yield 2

    async def consume() -> list[int]:
        return [item async for item in stream()]

    gen = pages()
    assert next(gen) == 1
    assert gen.send(5) == 5
    assert asyncio.run(fetch()) == "async result"
    assert asyncio.run(consume()) == [1, 2]


def test_unconfigured_llm_returns_the_exact_response_object() -> None:
    response = openai_chat()

    @aw.llm
    def ask(model: str) -> dict[str, Any]:
        return response

    assert ask(model="gpt-4o") is response


def test_record_functions_are_silent_when_not_configured() -> None:
    assert not aw.is_configured()

    aw.set_outcome("escalated")
    aw.record_feedback("0af7651916cd43dd8448eb211c80319c", correct=True)
    aw.record_usage(model="gpt-4o", input_tokens=1, output_tokens=1)

    assert aw.current_trace_ref() is None
    assert aw.force_flush() is True

"""Telemetry never breaks the agent: user exceptions pass through untouched, our own failures
are logged and swallowed (re-raised under pytest), and unconfigured decorators are inert."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

import agentwatch as aw
from agentwatch import _semconv as sc
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
    assert attrs(span)[sc.ERROR_TYPE] == f"{__name__}.PaymentDeclined"
    assert [e.name for e in span.events] == ["exception"]


def test_builtin_exception_error_type_is_the_bare_class_name(
    agentwatch_spans: CapturedSpans,
) -> None:
    @aw.agent
    def handle() -> None:
        raise TimeoutError("order service timed out")

    with pytest.raises(TimeoutError):
        handle()

    assert attrs(agentwatch_spans.one("invoke_agent handle"))[sc.ERROR_TYPE] == "TimeoutError"


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


def test_internal_error_is_reraised_under_pytest() -> None:
    """Our own bugs must fail our tests instead of hiding in a log."""

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
    assert attrs(span)[sc.GEN_AI_USAGE_INPUT_TOKENS] == 120
    assert sc.GEN_AI_OUTPUT_MESSAGES not in attrs(span)
    assert [r.levelno for r in caplog.records if r.name == "agentwatch"] == [logging.ERROR]


@pytest.mark.parametrize("value", ["1", "true"])
def test_raise_internal_errors_env_turns_raising_on(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("AGENTWATCH_RAISE_INTERNAL_ERRORS", value)
    monkeypatch.delenv("PYTEST_CURRENT_TEST")

    @aw.tool
    def lookup(order_id: str) -> str:
        return order_id

    with (
        aw.capture_spans(capture_content=True, redact=broken_redactor),
        pytest.raises(RedactorBug),
    ):
        lookup("o-1")


def test_internal_errors_are_swallowed_outside_pytest_by_default(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("AGENTWATCH_RAISE_INTERNAL_ERRORS", raising=False)
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    caplog.set_level(logging.ERROR, logger="agentwatch")

    @aw.tool
    def lookup(order_id: str) -> str:
        return order_id

    with aw.capture_spans(capture_content=True, redact=broken_redactor):
        assert lookup("o-1") == "o-1"
    assert len([r for r in caplog.records if r.name == "agentwatch"]) == 1


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

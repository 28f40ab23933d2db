"""Content capture: off by default; when on, every recorded text is redacted and truncated."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

import agentwatch as aw
from agentwatch import _semconv as semconv
from agentwatch._redact import truncate
from agentwatch._testing import CapturedSpans
from tests.sdk.support import anthropic_message, attrs, openai_chat, openai_chunks

CONTENT_KEYS = (
    semconv.GEN_AI_INPUT_MESSAGES,
    semconv.GEN_AI_OUTPUT_MESSAGES,
    semconv.GEN_AI_TOOL_CALL_ARGUMENTS,
    semconv.GEN_AI_TOOL_CALL_RESULT,
)


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("mail jane.doe+vip@example.co.uk now", "mail [REDACTED:email] now"),
        ("call +1 (415) 555-0100 today", "call [REDACTED:phone] today"),
        ("call 020 7946 0958", "call [REDACTED:phone]"),
        ("card 4111 1111 1111 1111 exp", "card [REDACTED:card] exp"),
        ("card 4111-1111-1111-1111", "card [REDACTED:card]"),
        ("key sk-proj-abcDEF1234567890xyz ok", "key [REDACTED:api_key] ok"),
        ("aws AKIAIOSFODNN7EXAMPLE", "aws [REDACTED:api_key]"),
        (
            "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
            "Authorization: [REDACTED:bearer]",
        ),
    ],
)
def test_default_redactor_replaces_each_kind(text: str, redacted: str) -> None:
    assert aw.default_redactor(text) == redacted


def test_default_redactor_leaves_ordinary_text_alone() -> None:
    text = "Order 12345 shipped on 2024-05-01; refund of $19.99 approved for ticket T-88."

    assert aw.default_redactor(text) == text


def test_make_redactor_adds_patterns_to_the_defaults() -> None:
    redact = aw.make_redactor([r"ACCT-\d{6}", re.compile(r"(?i)secret \w+")])

    assert redact("ACCT-123456 and Secret sauce, mail a@b.io") == (
        "[REDACTED] and [REDACTED], mail [REDACTED:email]"
    )


def test_truncate_says_how_much_was_dropped() -> None:
    assert truncate("abcdefghij", 4) == "abcd...[truncated 6 chars]"
    assert truncate("abcd", 4) == "abcd"


# --- capture through the decorators -----------------------------------------------------------


@aw.tool(tier="read")
def find_customer(email: str, note: str = "") -> dict[str, str]:
    return {"email": email, "phone": "+44 20 7946 0958"}


@aw.llm(provider="openai")
def ask_openai(messages: list[dict[str, str]], model: str = "gpt-4o") -> dict[str, Any]:
    return openai_chat(text="Sure, I emailed jane@example.com")


@aw.llm(provider="anthropic")
def ask_anthropic(prompt: str) -> dict[str, Any]:
    return anthropic_message(text="Card 4111 1111 1111 1111 refunded")


@aw.llm(provider="openai")
def stream_openai(messages: list[dict[str, str]], model: str = "gpt-4o") -> Iterator[Any]:
    return iter(openai_chunks(pieces=("reach me at ", "bob@example.org")))


def run_everything() -> None:
    find_customer("jane@example.com", note="VIP")
    ask_openai([{"role": "user", "content": "my key is sk-abcdefghijklmnop1234"}], model="gpt-4o")
    ask_anthropic("Bearer abcdefghijklmnopqrstuvwxyz")
    list(stream_openai([{"role": "user", "content": "hi"}]))


def test_content_is_not_captured_by_default(agentwatch_spans: CapturedSpans) -> None:
    run_everything()

    assert len(agentwatch_spans.spans) == 4
    for span in agentwatch_spans.spans:
        assert not set(CONTENT_KEYS) & set(attrs(span)), span.name


def test_captured_tool_arguments_and_result_are_redacted() -> None:
    with aw.capture_spans(capture_content=True) as captured:
        run_everything()

    span_attrs = attrs(captured.one("execute_tool find_customer"))
    assert span_attrs[semconv.GEN_AI_TOOL_CALL_ARGUMENTS] == (
        '{"email": "[REDACTED:email]", "note": "VIP"}'
    )
    assert span_attrs[semconv.GEN_AI_TOOL_CALL_RESULT] == (
        '{"email": "[REDACTED:email]", "phone": "[REDACTED:phone]"}'
    )


def test_captured_llm_input_and_output_are_redacted() -> None:
    with aw.capture_spans(capture_content=True) as captured:
        run_everything()

    openai_attrs = attrs(captured.one("chat gpt-4o"))
    assert openai_attrs[semconv.GEN_AI_INPUT_MESSAGES] == (
        '[{"role": "user", "content": "my key is [REDACTED:api_key]"}]'
    )
    assert openai_attrs[semconv.GEN_AI_OUTPUT_MESSAGES] == "Sure, I emailed [REDACTED:email]"

    anthropic_attrs = attrs(captured.one("chat claude-3-5-sonnet-20241022"))
    assert anthropic_attrs[semconv.GEN_AI_INPUT_MESSAGES] == "[REDACTED:bearer]"
    assert anthropic_attrs[semconv.GEN_AI_OUTPUT_MESSAGES] == "Card [REDACTED:card] refunded"


def test_captured_stream_text_is_joined_then_redacted() -> None:
    with aw.capture_spans(capture_content=True) as captured:
        list(stream_openai([{"role": "user", "content": "hi"}], model="gpt-4o-mini"))

    assert attrs(captured.one("chat gpt-4o-mini"))[semconv.GEN_AI_OUTPUT_MESSAGES] == (
        "reach me at [REDACTED:email]"
    )


def test_llm_generator_stream_text_is_captured() -> None:
    @aw.llm
    def ask(model: str) -> Iterator[dict[str, Any]]:
        yield from openai_chunks(pieces=("one ", "two"))

    with aw.capture_spans(capture_content=True) as captured:
        list(ask(model="gpt-4o"))

    assert attrs(captured.one("chat gpt-4o"))[semconv.GEN_AI_OUTPUT_MESSAGES] == "one two"


def test_captured_content_is_truncated_to_max_content_chars() -> None:
    with aw.capture_spans(capture_content=True, max_content_chars=20) as captured:
        find_customer("x" * 200)

    arguments = attrs(captured.one("execute_tool find_customer"))[
        semconv.GEN_AI_TOOL_CALL_ARGUMENTS
    ]
    full = '{"email": "' + "x" * 200 + '"}'
    assert arguments == f"{full[:20]}...[truncated {len(full) - 20} chars]"


def test_truncation_happens_after_redaction() -> None:
    """A secret cut in half by truncation would slip past the patterns: redact first."""
    with aw.capture_spans(capture_content=True, max_content_chars=15) as captured:
        ask_anthropic("sk-abcdefghijklmnopqrstuvwxyz0123")

    text = attrs(captured.one("chat claude-3-5-sonnet-20241022"))[semconv.GEN_AI_INPUT_MESSAGES]
    assert text.startswith("[REDACTED:api_k...[truncated")
    assert "abcdefgh" not in text


def test_custom_redactor_replaces_the_default() -> None:
    def shout(text: str) -> str:
        return text.upper()

    with aw.capture_spans(capture_content=True, redact=shout) as captured:
        ask_anthropic("jane@example.com")

    assert attrs(captured.one("chat claude-3-5-sonnet-20241022"))[
        semconv.GEN_AI_INPUT_MESSAGES
    ] == ("JANE@EXAMPLE.COM")


def test_make_redactor_configured_redacts_extra_patterns() -> None:
    redact = aw.make_redactor([r"ORD-\d+"])

    with aw.capture_spans(capture_content=True, redact=redact) as captured:
        find_customer("jane@example.com", note="about ORD-99812")

    assert attrs(captured.one("execute_tool find_customer"))[
        semconv.GEN_AI_TOOL_CALL_ARGUMENTS
    ] == ('{"email": "[REDACTED:email]", "note": "about [REDACTED]"}')


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ticket T-4111 1111 1111 1111?", "ticket T-[REDACTED:card]?"),
        ("ref card-4111111111111111.", "ref card-[REDACTED:card]."),
        # A digit before the dash makes it one longer number (a phone, an id): not a card.
        ("call 555-4111111111111111", "call 555-4111111111111111"),
    ],
)
def test_a_card_number_glued_to_a_word_by_a_dash_is_still_a_card(text: str, expected: str) -> None:
    assert aw.default_redactor(text) == expected

"""Expectations on a probe's answer: each says which part failed and why."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from pydantic import BaseModel

from agentwatch import expect
from agentwatch._expectations import Failure

# Each test starts with an empty probe registry and leaves no scheduler running.
pytestmark = pytest.mark.usefixtures("isolated_registry")


class Refund(BaseModel):
    days: int
    currency: str


def test_contains_passes_when_the_text_is_there() -> None:
    assert expect.contains("30 days").evaluate("Returns within 30 days.").passed


def test_contains_names_itself_and_the_missing_text_on_failure() -> None:
    verdict = expect.contains("30 days").evaluate("Returns within a month.")
    assert verdict.failures == (
        Failure("contains('30 days')", "the answer does not contain '30 days'"),
    )


def test_contains_can_ignore_case() -> None:
    assert expect.contains("REFUND", case_sensitive=False).evaluate("a refund").passed


def test_not_contains_fails_with_the_position_of_the_forbidden_text() -> None:
    verdict = expect.not_contains("sorry").evaluate("I'm sorry, I can't.")
    assert verdict.failed_expectation == "not_contains('sorry')"
    assert verdict.reason == "the answer contains 'sorry' at position 4"


def test_matches_searches_anywhere_in_the_answer() -> None:
    assert expect.matches(r"\b\d+ days\b").evaluate("within 30 days, as usual").passed


def test_matches_accepts_compiled_patterns_and_reports_the_pattern() -> None:
    verdict = expect.matches(re.compile(r"^ok$")).evaluate("not ok")
    assert verdict.reason == "no match for the pattern '^ok$'"


def test_max_length_reports_the_actual_length() -> None:
    verdict = expect.max_length(5).evaluate("123456")
    assert verdict.reason == "the answer is 6 characters long, more than 5"


def test_valid_json_rejects_text_that_is_not_json_with_the_position() -> None:
    verdict = expect.valid_json().evaluate('{"days": 30')
    assert verdict.failed_expectation == "valid_json()"
    assert verdict.reason is not None
    assert verdict.reason.startswith("the answer is not valid JSON: ")
    assert "position 11" in verdict.reason


def test_valid_json_against_a_model_passes_a_matching_document() -> None:
    assert expect.valid_json(Refund).evaluate('{"days": 30, "currency": "EUR"}').passed


def test_valid_json_against_a_model_names_the_bad_field() -> None:
    verdict = expect.valid_json(Refund).evaluate('{"days": "many", "currency": "EUR"}')
    assert verdict.failed_expectation == "valid_json(Refund)"
    assert verdict.reason is not None
    assert verdict.reason.startswith("does not match Refund: days: Input should be a valid integer")


def test_valid_json_reasons_never_quote_the_answer() -> None:
    """pydantic quotes the input by default; an answer may hold customer data."""
    verdict = expect.valid_json(Refund).evaluate('{"days": "jane@example.com", "currency": 1}')
    assert verdict.reason is not None
    assert "jane@example.com" not in verdict.reason


def test_valid_json_checks_an_already_parsed_answer() -> None:
    assert expect.valid_json(Refund).evaluate({"days": 30, "currency": "EUR"}).passed


def test_max_latency_passes_within_the_limit() -> None:
    assert expect.max_latency(2).evaluate("x", latency_s=1.5).passed


def test_max_latency_reports_the_measured_latency_over_the_limit() -> None:
    verdict = expect.max_latency(2).evaluate("x", latency_s=2.5)
    assert verdict.reason == "the answer took 2.500s, more than 2s"


def test_max_latency_fails_when_latency_was_not_measured() -> None:
    assert expect.max_latency(2).evaluate("x").reason == "the latency was not measured"


def test_predicate_uses_its_description_in_failures() -> None:
    verdict = expect.predicate(lambda a: a.isupper(), "shouting").evaluate("calm")
    assert verdict.failures == (Failure("shouting", "the predicate returned false"),)


def test_a_predicate_that_raises_fails_instead_of_raising() -> None:
    verdict = expect.predicate(lambda a: 1 / 0, "divides").evaluate("x")
    assert verdict.reason == "the predicate raised ZeroDivisionError: division by zero"


def test_and_reports_every_failing_part_and_names_the_first() -> None:
    check = expect.contains("a") & expect.contains("b") & expect.max_length(1)
    verdict = check.evaluate("xyz")
    assert [f.expectation for f in verdict.failures] == [
        "contains('a')",
        "contains('b')",
        "max_length(1)",
    ]
    assert verdict.failed_expectation == "contains('a')"
    assert verdict.reason == (
        "the answer does not contain 'a' (and 2 more failed: contains('b'), max_length(1))"
    )


def test_or_passes_when_any_part_holds() -> None:
    assert (expect.contains("yes") | expect.contains("ok")).evaluate("ok then").passed


def test_or_fails_as_a_whole_listing_why_each_part_failed() -> None:
    verdict = (expect.contains("yes") | expect.contains("ok")).evaluate("no")
    assert verdict.failed_expectation == "contains('yes') | contains('ok')"
    assert verdict.reason == (
        "none held: contains('yes'): the answer does not contain 'yes'; "
        "contains('ok'): the answer does not contain 'ok'"
    )


def test_invert_fails_when_the_inner_expectation_holds() -> None:
    verdict = (~expect.contains("sorry")).evaluate("sorry!")
    assert verdict.failures == (
        Failure("~contains('sorry')", "contains('sorry') held, and must not"),
    )


def test_composite_descriptions_keep_their_grouping() -> None:
    check = expect.contains("a") & ~(expect.contains("b") | expect.max_length(3))
    assert str(check) == "contains('a') & ~(contains('b') | max_length(3))"


def test_non_text_answers_are_read_as_json() -> None:
    assert expect.contains('"status": "ok"').evaluate({"status": "ok"}).passed


def test_max_length_rejects_a_negative_length() -> None:
    with pytest.raises(ValueError, match="max_length"):
        expect.max_length(-1)


def test_max_latency_rejects_a_zero_limit() -> None:
    with pytest.raises(ValueError, match="max_latency"):
        expect.max_latency(0)


@pytest.mark.parametrize("heavy", ["pydantic", "asyncio"])
def test_importing_agentwatch_does_not_import(heavy: str) -> None:
    """valid_json(model) and async probes import these only when used."""
    code = f"import sys, agentwatch; print({heavy!r} in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"

"""The Review page's answers on the wire: one OTLP/JSON feedback span per answer, posted to a
real collector that requires an ingest token, stored before the dashboard hears 200.

(The page itself is tested in ``tests/dashboards/test_review_page.py``; these tests need a
collector of their own, with a token, which the dashboards' shared store rules out.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentwatch.app._collector import Collector
from agentwatch.dashboards._review import (
    MAX_TEXT_CHARS,
    Answer,
    ReviewNotSent,
    feedback_request,
    send_answer,
)
from tests.collector.conftest import _start, span_rows

TOKEN = "review-token-0123456789"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def answer(**changes: Any) -> Answer:
    fields: dict[str, Any] = {
        "trace_id": TRACE,
        "span_id": SPAN,
        "kind": "decision",
        "correct": False,
        "reviewer": "Ada",
        "service": "support",
        "environment": "prod",
        **changes,
    }
    return Answer(**fields)


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    started: Collector = _start(tmp_path, grpc_port=None, ingest_token=TOKEN)
    try:
        yield started
    finally:
        started.stop()


def endpoint(collector: Collector) -> str:
    return f"http://127.0.0.1:{collector.http.port}"


def test_an_answer_is_stored_as_a_feedback_span_under_the_item(collector: Collector) -> None:
    send_answer(
        answer(comment="wrong refund, card 4111 1111 1111 1111", label="escalate"),
        endpoint(collector),
        TOKEN,
    )

    (row,) = span_rows(collector.store, TRACE)  # stored before send_answer returned
    attributes = dict(row["SpanAttributes"])
    assert (row["Operation"], row["ParentSpanId"], row["FeedbackCorrect"]) == (
        "feedback",
        SPAN,
        False,
    )
    assert (row["ServiceName"], row["Environment"]) == ("support", "prod")
    assert attributes["agentwatch.feedback.reviewer"] == "Ada"
    assert attributes["agentwatch.feedback.about"] == "decision"
    assert attributes["agentwatch.feedback.label"] == "escalate"
    assert "4111" not in attributes["agentwatch.feedback.comment"]


def test_without_the_ingest_token_the_answer_is_refused_and_the_error_says_so(
    collector: Collector,
) -> None:
    with pytest.raises(ReviewNotSent, match=r"refused the answer \(401\)") as caught:
        send_answer(answer(), endpoint(collector), "")
    with pytest.raises(ReviewNotSent, match=r"\(401\)"):
        send_answer(answer(), endpoint(collector), "not-the-token")

    assert not span_rows(collector.store, TRACE)
    assert "not-the-token" not in str(caught.value)


def test_answering_twice_keeps_both_spans(collector: Collector) -> None:
    send_answer(answer(correct=False, reviewer="First"), endpoint(collector), TOKEN)
    send_answer(answer(correct=True, reviewer="Second"), endpoint(collector), TOKEN)

    rows = span_rows(collector.store, TRACE)
    assert [dict(r["SpanAttributes"])["agentwatch.feedback.reviewer"] for r in rows] == [
        "First",
        "Second",
    ]
    assert len({r["SpanId"] for r in rows}) == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"trace_id": "0" * 32}, "not a trace id"),
        ({"trace_id": "4bf92f35' OR 1=1 --"}, "not a trace id"),
        ({"span_id": "xyz"}, "not a span id"),
        ({"span_id": "0" * 16}, "not a span id"),
        ({"kind": "everything"}, "kind must be one of"),
        ({"reviewer": " \t "}, "needs the reviewer's name"),
    ],
)
def test_a_malformed_answer_is_refused_before_anything_is_sent(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        feedback_request(answer(**changes))


def test_free_text_is_bounded_and_the_reviewer_name_is_one_line() -> None:
    body = feedback_request(answer(comment="x" * 50_000, reviewer="Ada\nLovelace\t "))

    (span,) = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    attributes = {a["key"]: a["value"] for a in span["attributes"]}
    assert len(attributes["agentwatch.feedback.comment"]["stringValue"]) <= MAX_TEXT_CHARS + 100
    assert attributes["agentwatch.feedback.reviewer"] == {"stringValue": "Ada Lovelace"}
    assert attributes["agentwatch.feedback.correct"] == {"boolValue": False}
    assert len(json.dumps(body)) < 10_000


def test_an_endpoint_that_is_no_http_url_is_refused() -> None:
    with pytest.raises(ValueError, match="must be an http"):
        send_answer(answer(), "file:///etc/passwd", TOKEN)

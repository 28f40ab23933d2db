"""The Review page under AppTest, on the seeded collector: it lists the queue, and its Correct
and Wrong buttons send a feedback span over OTLP to that collector, which stores it.

Answers here are about tool calls (``action`` items), which calibration leaves out, so the
other dashboard tests' feedback counts stay those of the seeded spans.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from agentwatch.dashboards import _data, _review, _review_view
from agentwatch.storage._review_queries import review_answers, review_queue
from agentwatch.storage._scope import Filters
from tests.storage.fleet import Fleet

from .conftest import PAGE_DIR

EVERYTHING = Filters()


@pytest.fixture
def url(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv(_data.ENV_URL, fleet.query_url)
    monkeypatch.setenv(_review.ENV_OTLP_ENDPOINT, fleet.collector.urls()["otlp_http"])
    monkeypatch.delenv(_review.ENV_INGEST_TOKEN, raising=False)
    monkeypatch.delenv(_review.ENV_RULES_FILE, raising=False)
    monkeypatch.delenv(_review.ENV_DEMO_RULES, raising=False)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield fleet.query_url
    st.cache_resource.clear()


def open_review(entry: Path) -> AppTest:
    at = AppTest.from_file(entry, default_timeout=60).run()
    at.switch_page(str(PAGE_DIR / "review.py")).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Review"
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def click(at: AppTest, label: str) -> None:
    next(b for b in at.button if b.label == label).click().run()
    assert not at.exception, at.exception


def choose_pending_action(at: AppTest, fleet: Fleet) -> dict[str, Any]:
    """Show tool calls only and pick the newest pending one; returns its queue row."""
    at.selectbox(key=_review_view.K_KIND).set_value("action").run()
    pending = review_queue(fleet.store, EVERYTHING, status="pending", kind="action").dicts()
    item = pending[0]
    at.selectbox(key=_review_view.K_ITEM).set_value(item["span_id"]).run()
    return item


def test_the_page_lists_the_pending_queue_with_its_counts(
    entry: Path, fleet: Fleet, url: str
) -> None:
    at = open_review(entry)

    queue = review_queue(fleet.store, EVERYTHING).dicts()  # the fleet ran minutes ago
    pending = [r for r in queue if not r["reviews"]]

    assert pending
    assert not at.error, [e.value for e in at.error]
    assert metrics(at)["Pending"] == str(len(pending))
    assert metrics(at)["Reviewed"] == str(len(queue) - len(pending))
    assert at.radio(key=_review_view.K_STATUS).value == "Pending"
    assert at.selectbox(key=_review_view.K_ITEM).options == [
        _review_view.item_label(r) for r in pending
    ]
    assert [b.label for b in at.button][-2:] == ["Correct", "Wrong"]


def test_an_item_shows_its_context_on_one_screen(entry: Path, fleet: Fleet, url: str) -> None:
    at = open_review(entry)
    at.selectbox(key=_review_view.K_KIND).set_value("decision").run()
    item = review_queue(fleet.store, EVERYTHING, status="pending", kind="decision").dicts()[0]

    shown = metrics(at)
    markdown = " ".join(m.value for m in at.markdown)

    assert shown["Task type"] == item["task_type"]
    assert shown["Agent"] == item["agent"]
    assert shown["Confidence"] == f"{item['confidence']:.2f}"
    assert shown["Route"] == (item["route"] or "—")
    assert "Why it is here:** " + "; ".join(item["reasons"]) in markdown
    assert f"traces?trace_id={item['trace_id']}" in markdown


def test_without_a_name_an_answer_is_refused_and_nothing_is_sent(
    entry: Path, fleet: Fleet, url: str
) -> None:
    at = open_review(entry)
    item = choose_pending_action(at, fleet)

    click(at, "Correct")

    assert [e.value for e in at.error] == [
        "Enter your name above: every answer records who gave it."
    ]
    assert not review_answers(fleet.store, EVERYTHING, item["trace_id"], item["span_id"]).rows


def test_correct_records_feedback_through_the_collector_and_the_item_is_reviewed(
    entry: Path, fleet: Fleet, url: str
) -> None:
    at = open_review(entry)
    item = choose_pending_action(at, fleet)
    at.text_input(key=_review_view.K_REVIEWER).set_value("Ada Reviewer").run()
    at.text_area[0].set_value("refund ok; card 4111 1111 1111 1111 on file")
    at.text_input[-1].set_value("refund approved")

    click(at, "Correct")

    assert not at.error, [e.value for e in at.error]
    assert at.success[0].value.startswith("Recorded “Correct” by Ada Reviewer")
    (answer,) = review_answers(fleet.store, EVERYTHING, item["trace_id"], item["span_id"]).dicts()
    assert (answer["correct"], answer["reviewer"], answer["label"]) == (
        True,
        "Ada Reviewer",
        "refund approved",
    )
    assert "4111" not in answer["comment"]
    assert answer["comment"].startswith("refund ok; card ")
    about = fleet.store.query(
        "SELECT SpanAttributes['agentwatch.feedback.about'] FROM agentwatch.otel_traces "
        "WHERE SpanId = {id:String}",
        {"id": answer["feedback_span_id"]},
    ).scalar()
    assert about == "action"
    # Pending no longer lists it; Reviewed does, with the answer.
    short_id = f"{item['trace_id'][:8]}/{item['span_id'][:4]}"
    assert not [o for o in at.selectbox(key=_review_view.K_ITEM).options if short_id in o]
    at.radio(key=_review_view.K_STATUS).set_value("Reviewed").run()
    at.selectbox(key=_review_view.K_ITEM).set_value(item["span_id"]).run()
    (history,) = at.dataframe
    assert list(history.value["reviewer"]) == ["Ada Reviewer"]


def test_a_second_answer_wins_and_both_are_kept(entry: Path, fleet: Fleet, url: str) -> None:
    at = open_review(entry)
    item = choose_pending_action(at, fleet)
    at.text_input(key=_review_view.K_REVIEWER).set_value("First").run()
    click(at, "Wrong")
    at.radio(key=_review_view.K_STATUS).set_value("All").run()
    at.selectbox(key=_review_view.K_ITEM).set_value(item["span_id"]).run()
    at.text_input(key=_review_view.K_REVIEWER).set_value("Second").run()

    click(at, "Correct")

    answers = review_answers(fleet.store, EVERYTHING, item["trace_id"], item["span_id"]).dicts()
    assert [(a["reviewer"], a["correct"]) for a in answers] == [("Second", True), ("First", False)]
    row = next(
        r for r in review_queue(fleet.store, EVERYTHING).dicts() if r["span_id"] == item["span_id"]
    )
    assert (row["reviews"], row["correct"], row["reviewer"]) == (2, True, "Second")


def test_an_unreachable_collector_is_an_error_and_the_item_stays_pending(
    entry: Path, fleet: Fleet, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    monkeypatch.setenv(_review.ENV_OTLP_ENDPOINT, f"http://127.0.0.1:{closed}")
    at = open_review(entry)
    item = choose_pending_action(at, fleet)
    at.text_input(key=_review_view.K_REVIEWER).set_value("Ada").run()

    click(at, "Correct")

    (error,) = at.error
    assert error.value.startswith("The answer was not recorded: cannot reach the collector")
    assert not review_answers(fleet.store, EVERYTHING, item["trace_id"], item["span_id"]).rows


def test_review_rules_from_the_rules_file_flag_decisions(
    entry: Path, fleet: Fleet, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[review]]\nname = "unsure refunds"\nconfidence_below = 0.95\n'
        'where = { task_type = "refund" }\n',
        encoding="utf-8",
    )
    monkeypatch.setenv(_review.ENV_RULES_FILE, str(rules))

    at = open_review(entry)

    assert metrics(at)["Review rules"] == "1"
    labels = at.selectbox(key=_review_view.K_ITEM).options
    assert any("rule: unsure refunds" in label for label in labels)


def test_a_bad_rules_file_is_a_warning_not_a_crash(
    entry: Path, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[review]]\nname = "x"\nconfidence_below = 7\n', encoding="utf-8")
    monkeypatch.setenv(_review.ENV_RULES_FILE, str(rules))

    at = open_review(entry)

    (warning,) = at.warning
    assert "Review rules not applied" in warning.value
    assert "confidence_below" in warning.value
    assert metrics(at)["Review rules"] == "0"


def test_the_demo_flags_unsure_auto_refunds_without_a_rules_file(
    entry: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(_review.ENV_DEMO_RULES, "1")

    at = open_review(entry)

    assert metrics(at)["Review rules"] == "1"
    labels = at.selectbox(key=_review_view.K_ITEM).options
    assert any("rule: unsure auto refunds" in label for label in labels)

"""The Review page: the queue of what a person should look at, one item on one screen, and the
Correct / Wrong answers (``storage._review_queries`` picks the items; ``_review`` sends answers).

Review rules come from the alert rules file (``[[review]]`` tables) at
``AGENTWATCH_RULES_FILE``, which ``agentwatch up --rules`` passes on (``up --demo`` without a
file: ``demo_review_rules``). The reviewer is the
dashboard's signed-in user when Streamlit authentication is configured, else the name typed in
the page; every answer records it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

import streamlit as st

from agentwatch._errors import AgentwatchError
from agentwatch.alerts._rules import demo_review_rules, load_review_rules
from agentwatch.dashboards._data import Unavailable, forget_cached_reads, query
from agentwatch.dashboards._format import NONE, when
from agentwatch.dashboards._review import ENV_DEMO_RULES, ENV_RULES_FILE, Answer, send_answer
from agentwatch.storage._review_queries import (
    ITEM_KINDS,
    ReviewRule,
    ReviewStatus,
    review_answers,
    review_counts,
    review_queue,
)
from agentwatch.storage._scope import Filters

QUEUE_LIMIT: Final = 500
K_STATUS: Final = "review_status"
K_KIND: Final = "review_kind"
K_ITEM: Final = "review_item"
K_REVIEWER: Final = "review_reviewer"
K_NOTICE: Final = "review_notice"
STATUSES: Final[dict[str, ReviewStatus]] = {"Pending": "pending", "Reviewed": "reviewed", "All": ""}
NOT_CAPTURED: Final = "not captured (content capture is off for this agent)"


def review_rules() -> tuple[ReviewRule, ...]:
    """The ``[[review]]`` rules of the configured rules file; without one, the demo's under
    ``agentwatch up --demo``, else none."""
    path = os.environ.get(ENV_RULES_FILE, "").strip() or None
    if path is None and os.environ.get(ENV_DEMO_RULES) == "1":
        return tuple(demo_review_rules())
    try:
        return tuple(load_review_rules(path))
    except AgentwatchError as exc:
        st.warning(f"Review rules not applied: {exc}")
        return ()


def signed_in_user() -> str:
    """The signed-in user's name or e-mail under Streamlit authentication, else ''."""
    try:
        user = st.user
        if user.is_logged_in:
            return str(user.get("name") or user.get("email") or "")
    except (AttributeError, KeyError):
        return ""
    return ""


def item_label(row: Mapping[str, Any]) -> str:
    what = row["decision"] if row["kind"] == "decision" else row["tool"] or row["agent"]
    state = "reviewed" if row["reviews"] else "pending"
    return (
        f"{when(row['time_ms']):%H:%M:%S} · {row['kind']} {what or NONE} · "
        f"{row['task_type'] or NONE} · {', '.join(row['reasons'])} · {state} · "
        f"{row['trace_id'][:8]}/{row['span_id'][:4]}"  # tells apart items alike in every other way
    )


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def _context(row: Mapping[str, Any]) -> None:
    """Everything about one item a reviewer needs, on one screen."""
    cols = st.columns(5)
    confidence = row["confidence"]
    cols[0].metric("Task type", row["task_type"] or NONE)
    cols[1].metric("Agent", row["agent"] or NONE)
    cols[2].metric("Confidence", NONE if confidence is None else f"{confidence:.2f}")
    cols[3].metric("Route", row["route"] or NONE)
    cols[4].metric("Task outcome", row["task_outcome"] or NONE)
    st.markdown("**Why it is here:** " + "; ".join(row["reasons"]))
    if row["kind"] == "decision":
        st.markdown(f"**Decision** `{row['decision']}`. **Reasoning:**")
        st.text(row["reasoning"] or NOT_CAPTURED)
    elif row["kind"] == "action":
        st.markdown(f"**Tool call** `{row['tool']}` (tier {row['tier']}). **Arguments:**")
        st.code(_pretty(row["arguments"]) if row["arguments"] else NOT_CAPTURED, language="json")
    if row["span_status"] == "error":
        st.markdown(f"**Error** `{row['error_type'] or 'error'}`: {row['error_message'] or NONE}")
    st.markdown(
        f"[Open the trace](traces?trace_id={quote(row['trace_id'])}) · "
        f"`{row['trace_id']}` · span `{row['span_id']}` · {row['service']}"
    )


def _answers(filters: Filters, row: Mapping[str, Any]) -> None:
    if not row["reviews"]:
        st.caption("No answer yet.")
        return
    try:
        answers = query(review_answers, filters, row["trace_id"], row["span_id"]).dicts()
    except Unavailable as exc:
        st.error(str(exc))
        return
    st.markdown(f"**Answers** ({len(answers)}; the latest is the item's answer):")
    st.dataframe(
        [
            {
                "when": when(a["time_ms"]),
                "answer": "Correct" if a["correct"] else "Wrong",
                "reviewer": a["reviewer"],
                "label": a["label"],
                "comment": a["comment"],
            }
            for a in answers
        ],
        hide_index=True,
    )


def _answer_form(row: Mapping[str, Any], reviewer: str) -> None:
    with st.form(f"answer-{row['span_id']}", clear_on_submit=True):
        comment = st.text_area("Comment (optional)", max_chars=2000)
        label = st.text_input(
            "Corrected label (optional)",
            max_chars=200,
            help="What the right decision, route or action would have been.",
        )
        left, right = st.columns(2)
        correct = left.form_submit_button("Correct", type="primary", width="stretch")
        wrong = right.form_submit_button("Wrong", width="stretch")
    if not (correct or wrong):
        return
    if not reviewer:
        st.error("Enter your name above: every answer records who gave it.")
        return
    answer = Answer(
        trace_id=row["trace_id"],
        span_id=row["span_id"],
        kind=row["kind"],
        correct=bool(correct),
        reviewer=reviewer,
        service=row["service"],
        environment=row["environment"],
        comment=comment,
        label=label,
    )
    try:
        send_answer(answer)
    except AgentwatchError as exc:
        st.error(f"The answer was not recorded: {exc}")
        return
    forget_cached_reads()  # the queue, calibration and the threshold explorer read it at once
    st.session_state[K_NOTICE] = (
        f"Recorded “{'Correct' if correct else 'Wrong'}” by {answer.reviewer} on {item_label(row)}."
    )
    st.rerun()


def review_page(filters: Filters) -> None:
    notice = st.session_state.pop(K_NOTICE, None)
    if notice:
        st.success(notice)
    user = signed_in_user()
    if user:
        st.caption(f"Reviewing as {user}.")
        reviewer = user
    else:
        reviewer = st.text_input(
            "Your name", key=K_REVIEWER, max_chars=200, help="Recorded with every answer."
        ).strip()
    rules = review_rules()
    left, right = st.columns(2)
    status = left.radio("Show", list(STATUSES), key=K_STATUS, horizontal=True)
    kind = right.selectbox("Kind", ["", *ITEM_KINDS], key=K_KIND, format_func=lambda k: k or "all")
    try:
        counts = query(review_counts, filters, rules)
        rows = query(
            review_queue, filters, rules, status=STATUSES[status], kind=kind, limit=QUEUE_LIMIT
        ).dicts()
    except Unavailable as exc:
        st.error(str(exc))
        return
    tiles = st.columns(3)
    tiles[0].metric("Pending", f"{counts.pending:,}")
    tiles[1].metric("Reviewed", f"{counts.reviewed:,}")
    tiles[2].metric("Review rules", len(rules))
    if not rows:
        empty = counts.pending + counts.reviewed == 0
        st.info("The queue is empty in this range." if empty else "Nothing to review here.")
        return
    if len(rows) == QUEUE_LIMIT:
        st.caption(f"The newest {QUEUE_LIMIT} items; narrow the range or filters for older ones.")
    by_span = {r["span_id"]: r for r in rows}
    chosen = st.selectbox(
        "Item", list(by_span), format_func=lambda s: item_label(by_span[s]), key=K_ITEM
    )
    row = by_span.get(chosen) if chosen else None
    if row is None:
        return
    _context(row)
    _answers(filters, row)
    _answer_form(row, reviewer)

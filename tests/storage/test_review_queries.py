"""The review queue, checked against the seeded demo fleet read back span by span: which spans
are items and why, the review rules, and answers (every one kept, the latest one winning)."""

from __future__ import annotations

import pytest

import agentwatch as aw
from agentwatch._records import TraceRef
from agentwatch.storage._review_queries import (
    ReviewRule,
    review_answers,
    review_counts,
    review_queue,
)
from agentwatch.storage._scope import Filters

from . import reference as ref
from .fleet import Fleet, wait_until

EVERYTHING = Filters()


def expected_items(fleet: Fleet, rules: tuple[ReviewRule, ...] = ()) -> dict[str, set[str]]:
    """span id -> reasons, computed from the stored rows without the queue's SQL."""
    tasks = ref.tasks(fleet.spans, EVERYTHING)
    items: dict[str, set[str]] = {}
    for span in fleet.spans:
        task = tasks.get(span.trace_id)
        task_type = task.task_type if task else span.attrs.get("agentwatch.task.type", "")
        reasons: set[str] = set()
        if span.operation == "decision":
            route = span.attrs.get("agentwatch.decision.route", "")
            if route in ("review", "escalate"):
                reasons.add(f"routed {route}")
            confidence = float(span.attrs["agentwatch.decision.confidence"])
            for rule in rules:
                if (
                    confidence < rule.confidence_below
                    and rule.task_type in ("", task_type)
                    and rule.route in ("", route)
                ):
                    reasons.add(f"rule: {rule.name}")
        elif span.operation == "execute_tool":
            tier = span.attrs.get("agentwatch.tool.tier", "")
            if tier in ("write_risky", "destructive"):
                reasons.add(f"{tier} tool")
        if reasons:
            items[span.span_id] = reasons
    queued_traces = {
        s.trace_id for s in fleet.spans if s.span_id in items and s.operation == "decision"
    }
    for task in tasks.values():
        if task.outcome in ("escalated", "failed") and task.trace_id not in queued_traces:
            root = min(
                (
                    s
                    for s in fleet.spans
                    if s.trace_id == task.trace_id and s.operation == "invoke_agent"
                ),
                key=lambda s: (s.parent_id != "", s.ts),
            )
            items[root.span_id] = {f"task {task.outcome}"}
    return items


@pytest.fixture(scope="module")
def answered(fleet: Fleet) -> dict[str, str]:
    """Two answers about one queued decision (Wrong, then Correct) and one about a tool call,
    sent through the SDK as any feedback sender would; yields the spans answered."""
    queue = review_queue(fleet.store, EVERYTHING, status="pending").dicts()
    decision = next(r for r in queue if r["kind"] == "decision")
    action = next(r for r in queue if r["kind"] == "action")
    aw.configure(service_name="reviewers", endpoint=fleet.collector.urls()["otlp_http"])
    try:
        target = TraceRef(int(decision["trace_id"], 16), int(decision["span_id"], 16))
        aw.record_feedback(target, correct=False, comment="first look")
        aw.force_flush()
        aw.record_feedback(target, correct=True, comment="on second thought")
        action_ref = TraceRef(int(action["trace_id"], 16), int(action["span_id"], 16))
        aw.record_feedback(action_ref, correct=True)
        aw.force_flush()
    finally:
        aw.shutdown()
    wait_until(
        lambda: (
            len(
                review_answers(
                    fleet.store, EVERYTHING, decision["trace_id"], decision["span_id"]
                ).rows
            )
            == 2
        ),
        what="both answers to be stored",
    )
    return {"decision": decision["span_id"], "action": action["span_id"]}


def test_the_queue_holds_every_span_a_person_should_look_at_and_says_why(fleet: Fleet) -> None:
    want = expected_items(fleet)
    assert {r for reasons in want.values() for r in reasons} >= {
        "routed review",
        "routed escalate",
        "write_risky tool",
    }, "the demo fleet routes decisions to people and calls a risky tool"

    rows = review_queue(fleet.store, EVERYTHING, limit=10_000).dicts()

    assert {r["span_id"]: set(r["reasons"]) for r in rows} == want
    assert [r["time_ms"] for r in rows] == sorted((r["time_ms"] for r in rows), reverse=True)


def test_an_item_carries_its_tasks_agent_type_and_outcome(fleet: Fleet) -> None:
    tasks = ref.tasks(fleet.spans, EVERYTHING)
    rows = review_queue(fleet.store, EVERYTHING, limit=10_000).dicts()
    for row in rows:
        task = tasks[row["trace_id"]]
        assert (row["agent"], row["task_type"], row["task_outcome"]) == (
            task.agent,
            task.task_type,
            task.outcome,
        )


def test_a_review_rule_flags_low_confidence_decisions_of_its_task_type(fleet: Fleet) -> None:
    rules = (
        ReviewRule(name="unsure refunds", confidence_below=0.9, task_type="refund"),
        ReviewRule(name="it's \\ odd", confidence_below=0.3),
        ReviewRule(name="unsure auto approvals", confidence_below=0.95, route="auto"),
    )
    want = expected_items(fleet, rules)
    flagged = {span for span, reasons in want.items() if "rule: unsure refunds" in reasons}
    assert flagged, "some refund decisions are below 0.9"

    rows = review_queue(fleet.store, EVERYTHING, rules, limit=10_000).dicts()

    assert {r["span_id"]: set(r["reasons"]) for r in rows} == want
    assert {r["span_id"] for r in rows if "unsure refunds" in r["flagged_by"]} == flagged
    auto = [r for r in rows if "unsure auto approvals" in r["flagged_by"]]
    assert auto
    assert {r["route"] for r in auto} == {"auto"}


def test_filters_narrow_by_kind_task_type_and_service(fleet: Fleet) -> None:
    everything = review_queue(fleet.store, EVERYTHING, limit=10_000).dicts()

    actions = review_queue(fleet.store, EVERYTHING, kind="action", limit=10_000).dicts()
    refunds = review_queue(fleet.store, Filters(task_type="refund"), limit=10_000).dicts()
    billing = review_queue(fleet.store, Filters(service="billing-fleet"), limit=10_000).dicts()

    assert actions == [r for r in everything if r["kind"] == "action"]
    assert refunds == [r for r in everything if r["task_type"] == "refund"]
    assert billing == [r for r in everything if r["service"] == "billing-fleet"]
    assert actions
    assert refunds
    assert billing


def test_the_latest_answer_wins_and_every_answer_is_kept(
    fleet: Fleet, answered: dict[str, str]
) -> None:
    rows = {r["span_id"]: r for r in review_queue(fleet.store, EVERYTHING, limit=10_000).dicts()}
    decision = rows[answered["decision"]]

    answers = review_answers(fleet.store, EVERYTHING, decision["trace_id"], decision["span_id"])

    assert (decision["reviews"], decision["correct"], decision["comment"]) == (
        2,
        True,
        "on second thought",
    )
    assert [(a["correct"], a["comment"]) for a in answers.dicts()] == [
        (True, "on second thought"),
        (False, "first look"),
    ]
    assert rows[answered["action"]]["reviews"] == 1


def test_pending_and_reviewed_split_the_queue(fleet: Fleet, answered: dict[str, str]) -> None:
    everything = review_queue(fleet.store, EVERYTHING, limit=10_000).dicts()

    pending = review_queue(fleet.store, EVERYTHING, status="pending", limit=10_000).dicts()
    reviewed = review_queue(fleet.store, EVERYTHING, status="reviewed", limit=10_000).dicts()

    assert {r["span_id"] for r in reviewed} == set(answered.values())
    assert len(pending) + len(reviewed) == len(everything)
    assert not {r["span_id"] for r in pending} & set(answered.values())


def test_a_status_or_kind_outside_the_list_is_refused(fleet: Fleet) -> None:
    with pytest.raises(ValueError, match="status must be one of"):
        review_queue(fleet.store, EVERYTHING, status="done' OR 1=1 --")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind must be one of"):
        review_queue(fleet.store, EVERYTHING, kind="everything")


def test_a_server_store_reads_the_same_queue_through_the_query_endpoint(fleet: Fleet) -> None:
    """The rules reach the engine as array parameters on either backend."""
    from agentwatch.storage._store import ServerStore

    rules = (ReviewRule(name="it's \\ odd\tone", confidence_below=0.8, task_type="refund"),)
    server = ServerStore(fleet.query_url)
    try:
        remote = review_queue(server, EVERYTHING, rules, limit=10_000).dicts()
    finally:
        server.close()
    local = review_queue(fleet.store, EVERYTHING, rules, limit=10_000).dicts()
    assert [r["span_id"] for r in remote] == [r["span_id"] for r in local]
    assert any(r["flagged_by"] == ["it's \\ odd\tone"] for r in remote)


def test_the_counts_cover_the_whole_queue_not_one_page_of_it(
    fleet: Fleet, answered: dict[str, str]
) -> None:
    everything = review_queue(fleet.store, EVERYTHING, limit=10_000).dicts()
    one_page = review_queue(fleet.store, EVERYTHING, limit=3).dicts()

    counts = review_counts(fleet.store, EVERYTHING)
    actions = review_counts(fleet.store, EVERYTHING, kind="action")

    assert len(one_page) == 3
    assert (counts.pending, counts.reviewed) == (
        sum(1 for r in everything if not r["reviews"]),
        sum(1 for r in everything if r["reviews"]),
    )
    assert counts.reviewed == len(answered)
    assert actions.pending + actions.reviewed == sum(1 for r in everything if r["kind"] == "action")

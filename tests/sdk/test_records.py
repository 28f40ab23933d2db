"""What an agent records inside its run: outcomes, decisions and their routes, human feedback,
and references to traces."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.trace import StatusCode

import agentwatch as aw
from agentwatch import _semconv as semconv
from agentwatch._testing import CapturedSpans
from tests.sdk.support import attrs, parent_id, span_id, trace_id

# --- outcomes ---------------------------------------------------------------------------------


def test_outcome_defaults_to_completed(agentwatch_spans: CapturedSpans) -> None:
    @aw.agent
    def handle() -> None:
        return None

    handle()

    span_attrs = attrs(agentwatch_spans.one("invoke_agent handle"))
    assert span_attrs["agentwatch.task.outcome"] == "completed"
    assert semconv.TASK_OUTCOME_REASON not in span_attrs


def test_outcome_is_failed_with_the_error_type_when_the_agent_raises(
    agentwatch_spans: CapturedSpans,
) -> None:
    @aw.agent
    def handle() -> None:
        raise LookupError("no such order")

    with pytest.raises(LookupError):
        handle()

    span_attrs = attrs(agentwatch_spans.one("invoke_agent handle"))
    assert span_attrs["agentwatch.task.outcome"] == "failed"
    assert span_attrs[semconv.TASK_OUTCOME_REASON] == "LookupError"


def test_set_outcome_escalated_with_reason(agentwatch_spans: CapturedSpans) -> None:
    @aw.agent
    def handle() -> str:
        aw.set_outcome("escalated", reason="customer asked for a human")
        return "handed over"

    assert handle() == "handed over"

    span = agentwatch_spans.one("invoke_agent handle")
    assert attrs(span)["agentwatch.task.outcome"] == "escalated"
    assert attrs(span)[semconv.TASK_OUTCOME_REASON] == "customer asked for a human"
    assert span.status.status_code is StatusCode.UNSET


def test_set_outcome_applies_to_the_innermost_agent(agentwatch_spans: CapturedSpans) -> None:
    @aw.agent(name="inner")
    def inner() -> None:
        aw.set_outcome("escalated")

    @aw.agent(name="outer")
    def outer() -> None:
        inner()

    outer()

    assert attrs(agentwatch_spans.one("invoke_agent inner"))["agentwatch.task.outcome"] == (
        "escalated"
    )
    assert attrs(agentwatch_spans.one("invoke_agent outer"))["agentwatch.task.outcome"] == (
        "completed"
    )


def test_set_outcome_inside_a_tool_sets_the_agent_outcome(
    agentwatch_spans: CapturedSpans,
) -> None:
    @aw.tool
    def check_policy() -> None:
        aw.set_outcome("escalated", reason="policy")

    @aw.agent
    def handle() -> None:
        check_policy()

    handle()

    assert attrs(agentwatch_spans.one("invoke_agent handle"))["agentwatch.task.outcome"] == (
        "escalated"
    )


def test_set_outcome_outside_an_agent_is_a_no_op(agentwatch_spans: CapturedSpans) -> None:
    aw.set_outcome("escalated")

    assert agentwatch_spans.spans == []


@pytest.mark.parametrize("outcome", ["done", "", "Completed"])
def test_set_outcome_rejects_unknown_outcomes(outcome: str) -> None:
    with pytest.raises(aw.ConfigurationError, match="outcome must be one of"):
        aw.set_outcome(outcome)


# --- routing by confidence --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidence", "route"),
    [
        (1.0, "auto"),
        (0.85, "auto"),
        (0.8499, "review"),
        (0.6, "review"),
        (0.5999, "escalate"),
        (0.0, "escalate"),
    ],
)
def test_route_by_confidence_default_bands(confidence: float, route: str) -> None:
    assert aw.route_by_confidence(confidence) == route


@pytest.mark.parametrize(
    ("confidence", "route"), [(0.95, "auto"), (0.9, "auto"), (0.7, "review"), (0.69, "escalate")]
)
def test_route_by_confidence_custom_bands(confidence: float, route: str) -> None:
    assert aw.route_by_confidence(confidence, aw.Thresholds(auto_at=0.9, review_at=0.7)) == route


def test_equal_thresholds_leave_no_review_band() -> None:
    bands = aw.Thresholds(auto_at=0.7, review_at=0.7)

    assert [aw.route_by_confidence(c, bands) for c in (0.69, 0.7)] == ["escalate", "auto"]


@pytest.mark.parametrize(
    ("auto_at", "review_at"),
    [(0.5, 0.6), (1.1, 0.5), (0.8, -0.1), (float("nan"), 0.5)],
)
def test_thresholds_must_be_ordered_within_zero_and_one(auto_at: float, review_at: float) -> None:
    with pytest.raises(aw.ConfigurationError, match="review_at <= auto_at"):
        aw.Thresholds(auto_at=auto_at, review_at=review_at)


# --- decisions --------------------------------------------------------------------------------


def test_record_decision_is_a_span_under_the_agent_with_its_task_type(
    agentwatch_spans: CapturedSpans,
) -> None:
    @aw.agent(name="support", task_type="refund")
    def handle() -> aw.Decision:
        return aw.record_decision(
            "approve_refund", 0.72, thresholds=aw.Thresholds(auto_at=0.85, review_at=0.6)
        )

    decision = handle()

    assert decision == aw.Decision("approve_refund", 0.72, "review")
    agent_span = agentwatch_spans.one("invoke_agent support")
    span = agentwatch_spans.one("decision approve_refund")
    assert parent_id(span) == span_id(agent_span)
    assert trace_id(span) == trace_id(agent_span)
    assert dict(attrs(span)) == {
        semconv.GEN_AI_OPERATION_NAME: "decision",
        "agentwatch.decision.name": "approve_refund",
        "agentwatch.decision.confidence": 0.72,
        "agentwatch.decision.route": "review",
        semconv.GEN_AI_AGENT_NAME: "support",
        "agentwatch.task.type": "refund",
    }


def test_decision_inherits_task_type_from_an_outer_agent(agentwatch_spans: CapturedSpans) -> None:
    @aw.agent(name="classifier")
    def classify() -> None:
        aw.record_decision("category", 0.9)

    @aw.agent(name="support", task_type="technical_issue")
    def handle() -> None:
        classify()

    handle()

    span_attrs = attrs(agentwatch_spans.one("decision category"))
    assert span_attrs["agentwatch.task.type"] == "technical_issue"
    assert span_attrs[semconv.GEN_AI_AGENT_NAME] == "classifier"


def test_decision_with_explicit_route_overrides_thresholds(
    agentwatch_spans: CapturedSpans,
) -> None:
    decision = aw.record_decision("refund", 0.99, route="escalate", thresholds=aw.Thresholds())

    assert decision.route == "escalate"
    assert attrs(agentwatch_spans.one("decision refund"))["agentwatch.decision.route"] == (
        "escalate"
    )


def test_decision_without_route_or_thresholds_records_no_route(
    agentwatch_spans: CapturedSpans,
) -> None:
    decision = aw.record_decision("classify", 0.5)

    assert decision.route is None
    span_attrs = attrs(agentwatch_spans.one("decision classify"))
    assert "agentwatch.decision.route" not in span_attrs
    assert "agentwatch.task.type" not in span_attrs  # no agent run around it


def test_decision_in_an_async_agent_is_its_child(agentwatch_spans: CapturedSpans) -> None:
    @aw.agent(task_type="order_status")
    async def handle() -> None:
        await asyncio.sleep(0)
        aw.record_decision("answer", 0.9)

    asyncio.run(handle())

    span = agentwatch_spans.one("decision answer")
    assert parent_id(span) == span_id(agentwatch_spans.one("invoke_agent handle"))
    assert attrs(span)["agentwatch.task.type"] == "order_status"


def test_decision_reasoning_is_not_recorded_by_default(agentwatch_spans: CapturedSpans) -> None:
    aw.record_decision("refund", 0.9, reasoning="customer jane@example.com was double charged")

    assert "agentwatch.decision.reasoning" not in attrs(agentwatch_spans.one("decision refund"))


def test_decision_reasoning_is_recorded_redacted_with_capture_content() -> None:
    with aw.capture_spans(capture_content=True) as captured:
        aw.record_decision("refund", 0.9, reasoning="customer jane@example.com double charged")

    assert attrs(captured.one("decision refund"))["agentwatch.decision.reasoning"] == (
        "customer [REDACTED:email] double charged"
    )


def test_record_decision_returns_the_decision_when_not_configured() -> None:
    assert not aw.is_configured()

    decision = aw.record_decision("refund", 0.7, thresholds=aw.Thresholds())

    assert decision == aw.Decision("refund", 0.7, "review")


@pytest.mark.parametrize("confidence", [-0.01, 1.01, float("nan"), float("inf"), True, "0.9"])
def test_record_decision_rejects_bad_confidence(confidence: object) -> None:
    with pytest.raises(aw.ConfigurationError, match="confidence"):
        aw.record_decision("refund", confidence)  # type: ignore[arg-type]


def test_record_decision_rejects_unknown_route() -> None:
    with pytest.raises(aw.ConfigurationError, match="route must be one of"):
        aw.record_decision("refund", 0.5, route="maybe")


def test_tool_rejects_unknown_tier_at_decoration() -> None:
    with pytest.raises(aw.ConfigurationError, match="tier must be one of"):
        aw.tool(tier="dangerous")


def test_configuration_error_is_a_value_error_and_an_agentwatch_error() -> None:
    with pytest.raises(ValueError, match="route") as raised:
        aw.record_decision("refund", 0.5, route="maybe")

    assert isinstance(raised.value, aw.AgentwatchError)
    assert issubclass(aw.ConfigurationError, ValueError)
    assert issubclass(aw.ConfigurationError, aw.AgentwatchError)


# --- trace references and feedback ------------------------------------------------------------


def test_trace_ref_string_is_a_w3c_traceparent_that_parses_back() -> None:
    ref = aw.TraceRef(trace_id=0x0AF7651916CD43DD8448EB211C80319C, span_id=0xB7AD6B7169203331)

    text = str(ref)

    assert text == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert aw.TraceRef.parse(text) == ref


def test_trace_ref_parses_a_bare_trace_id_without_span() -> None:
    ref = aw.TraceRef.parse("0af7651916cd43dd8448eb211c80319c")

    assert ref == aw.TraceRef(0x0AF7651916CD43DD8448EB211C80319C, 0)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not-a-trace",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01",
        "0af7651916cd43dd8448eb211c80319",
    ],
)
def test_trace_ref_parse_rejects_malformed_values(value: str) -> None:
    with pytest.raises(aw.ConfigurationError, match="not a trace reference"):
        aw.TraceRef.parse(value)


def test_current_trace_ref_points_at_the_current_span(agentwatch_spans: CapturedSpans) -> None:
    @aw.agent
    def handle() -> aw.TraceRef | None:
        return aw.current_trace_ref()

    ref = handle()

    span = agentwatch_spans.one("invoke_agent handle")
    assert ref == aw.TraceRef(trace_id(span), span_id(span))


def test_current_trace_ref_is_none_outside_any_span(agentwatch_spans: CapturedSpans) -> None:
    assert aw.current_trace_ref() is None


def test_feedback_lands_in_the_target_trace_under_the_target_span(
    agentwatch_spans: CapturedSpans,
) -> None:
    @aw.agent(task_type="refund")
    def handle() -> aw.TraceRef | None:
        return aw.current_trace_ref()

    ref = handle()
    assert ref is not None

    # Later, outside the run, a human reviews the ticket.
    aw.record_feedback(ref, thumbs_up=False, score=0.25, correct=False, comment="wrong amount")

    agent_span = agentwatch_spans.one("invoke_agent handle")
    feedback = agentwatch_spans.one("feedback")
    assert trace_id(feedback) == trace_id(agent_span)
    assert parent_id(feedback) == span_id(agent_span)
    assert dict(attrs(feedback)) == {
        semconv.GEN_AI_OPERATION_NAME: "feedback",
        "agentwatch.feedback.thumbs_up": False,
        "agentwatch.feedback.score": 0.25,
        "agentwatch.feedback.correct": False,
        "agentwatch.feedback.comment": "wrong amount",
        semconv.FEEDBACK_TARGET_SPAN_ID: f"{span_id(agent_span):016x}",
    }


def test_feedback_accepts_the_reference_as_a_string(agentwatch_spans: CapturedSpans) -> None:
    @aw.agent
    def handle() -> str:
        return str(aw.current_trace_ref())

    stored = handle()  # e.g. saved in the ticket system
    aw.record_feedback(stored, correct=True)

    feedback = agentwatch_spans.one("feedback")
    assert trace_id(feedback) == trace_id(agentwatch_spans.one("invoke_agent handle"))
    assert attrs(feedback)["agentwatch.feedback.correct"] is True


def test_feedback_on_a_bare_trace_id_names_no_span(agentwatch_spans: CapturedSpans) -> None:
    aw.record_feedback("0af7651916cd43dd8448eb211c80319c", score=1)

    feedback = agentwatch_spans.one("feedback")
    assert trace_id(feedback) == 0x0AF7651916CD43DD8448EB211C80319C
    assert semconv.FEEDBACK_TARGET_SPAN_ID not in attrs(feedback)
    assert attrs(feedback)["agentwatch.feedback.score"] == 1.0


def test_feedback_comment_is_redacted(agentwatch_spans: CapturedSpans) -> None:
    aw.record_feedback("0af7651916cd43dd8448eb211c80319c", comment="call me on +1 415 555 0100")

    assert attrs(agentwatch_spans.one("feedback"))["agentwatch.feedback.comment"] == (
        "call me on [REDACTED:phone]"
    )


def test_feedback_rejects_a_non_finite_score() -> None:
    with pytest.raises(aw.ConfigurationError, match="score"):
        aw.record_feedback("0af7651916cd43dd8448eb211c80319c", score=float("nan"))


def test_feedback_rejects_a_malformed_reference() -> None:
    with pytest.raises(aw.ConfigurationError, match="not a trace reference"):
        aw.record_feedback("ticket-42", correct=True)

"""What an agent records inside its spans: decisions, outcomes, usage, iterations, feedback."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from agentwatch import _semconv as semconv
from agentwatch._config import STATE
from agentwatch._decorators import capture_text, charge_budget, set_usage_attributes
from agentwatch._errors import ConfigurationError
from agentwatch._run import current_run
from agentwatch._safety import internal_error
from agentwatch._usage import Usage


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Confidence bands for routing a decision: ``auto`` at or above ``auto_at``, ``review``
    from ``review_at`` up to it, ``escalate`` below ``review_at``."""

    auto_at: float = 0.85
    review_at: float = 0.6

    def __post_init__(self) -> None:
        if not (0.0 <= self.review_at <= self.auto_at <= 1.0):
            raise ConfigurationError(
                f"Thresholds need 0 <= review_at <= auto_at <= 1; got review_at={self.review_at},"
                f" auto_at={self.auto_at}"
            )


@dataclass(frozen=True, slots=True)
class Decision:
    """A recorded decision; ``route`` says what the agent should do with it."""

    name: str
    confidence: float
    route: str | None


def route_by_confidence(confidence: float, thresholds: Thresholds | None = None) -> str:
    """``auto``, ``review`` or ``escalate`` for a confidence, the way production agents route."""
    bands = thresholds or Thresholds()
    if confidence >= bands.auto_at:
        return "auto"
    if confidence >= bands.review_at:
        return "review"
    return "escalate"


def _check_confidence(confidence: float) -> None:
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        raise ConfigurationError(f"confidence must be a number in [0, 1], not {confidence!r}")
    if not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0):
        raise ConfigurationError(f"confidence must be in [0, 1], not {confidence!r}")


def record_decision(
    name: str,
    confidence: float,
    *,
    reasoning: str | None = None,
    thresholds: Thresholds | None = None,
    route: str | None = None,
) -> Decision:
    """Record a decision with its confidence as a ``decision {name}`` span in the current trace.

    With ``thresholds`` the decision is routed by confidence (``route_by_confidence``) and the
    route recorded; or pass the ``route`` the agent chose itself. ``reasoning`` is a short
    summary, recorded only when content capture is on, and redacted.
    """
    _check_confidence(confidence)
    if route is not None and route not in semconv.ROUTES:
        raise ConfigurationError(f"route must be one of {', '.join(semconv.ROUTES)}; got {route!r}")
    chosen = (
        route
        if route is not None
        else (route_by_confidence(confidence, thresholds) if thresholds is not None else None)
    )
    decision = Decision(name, float(confidence), chosen)
    settings = STATE.settings
    if settings is None or settings.tracer is None:
        return decision
    try:
        attributes: dict[str, Any] = {
            semconv.GEN_AI_OPERATION_NAME: semconv.OPERATION_DECISION,
            semconv.DECISION_NAME: name,
            semconv.DECISION_CONFIDENCE: float(confidence),
        }
        if chosen is not None:
            attributes[semconv.DECISION_ROUTE] = chosen
        run = current_run()
        if run is not None:
            attributes[semconv.GEN_AI_AGENT_NAME] = run.agent_name
            if run.task_type:
                attributes[semconv.TASK_TYPE] = run.task_type
        if reasoning and settings.capture_content:
            attributes[semconv.DECISION_REASONING] = capture_text(settings, reasoning)
        settings.tracer.start_span(
            f"{semconv.OPERATION_DECISION} {name}",
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ).end()
    except Exception:
        internal_error("recording a decision")
    return decision


def set_outcome(outcome: str, *, reason: str | None = None) -> None:
    """Set the current agent run's outcome: completed, escalated, failed or limit_exceeded.

    ``reason`` is a short label (``low confidence``), recorded in every mode, always redacted
    and cut to 1000 characters."""
    if outcome not in semconv.OUTCOMES:
        raise ConfigurationError(
            f"outcome must be one of {', '.join(semconv.OUTCOMES)}; got {outcome!r}"
        )
    run = current_run()
    if run is None:
        return
    try:
        run.set_outcome(outcome, reason)
    except Exception:
        internal_error("setting the outcome")


def record_usage(
    *,
    model: str,
    input_tokens: int,
    output_tokens: int,
    provider: str | None = None,
    cache_read_tokens: int | None = None,
    cache_write_tokens: int | None = None,
    reasoning_tokens: int | None = None,
) -> None:
    """Record a model call's token usage by hand on the current span (for clients we cannot
    read), charging the agent run's token and cost budget. May raise ``AgentLimitExceeded``."""
    usage = Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
        reasoning_tokens=reasoning_tokens,
        model=model,
    )
    try:
        span = trace.get_current_span()
        if span.is_recording():
            attrs = {semconv.GEN_AI_RESPONSE_MODEL: model}
            if provider:
                attrs[semconv.GEN_AI_PROVIDER_NAME] = provider
            span.set_attributes(attrs)
            set_usage_attributes(span, usage)
        charge_budget(current_run(), usage, provider)
    except Exception:
        internal_error("recording usage")
    run = current_run()
    if run is not None:
        run.check_limits()


def iteration() -> int:
    """Count one iteration of the current agent run's loop; raises ``AgentLimitExceeded`` past
    ``max_iterations`` (or any other limit). Returns the iteration number, from 1."""
    run = current_run()
    if run is None or run.budget is None:
        return 0
    run.budget.iterations += 1
    run.check_limits()
    return run.budget.iterations


def check_limits() -> None:
    """Raise ``AgentLimitExceeded`` if the current run is over a limit (wall time, say)."""
    run = current_run()
    if run is not None:
        run.check_limits()


@dataclass(frozen=True, slots=True)
class TraceRef:
    """Where feedback should land: a trace and, optionally, the span it is about."""

    trace_id: int
    span_id: int

    def __str__(self) -> str:
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-01"

    @classmethod
    def parse(cls, value: str) -> TraceRef:
        """Read ``str(TraceRef)`` (a W3C traceparent) or a bare 32-hex-digit trace id."""
        match = re.fullmatch(r"(?:00-)?([0-9a-f]{32})(?:-([0-9a-f]{16})(?:-[0-9a-f]{2})?)?", value)
        if match is None or int(match.group(1), 16) == 0:
            raise ConfigurationError(f"not a trace reference: {value!r}")
        span_hex = match.group(2)
        return cls(int(match.group(1), 16), int(span_hex, 16) if span_hex else 0)


def current_trace_ref() -> TraceRef | None:
    """A reference to the current span, to store with a ticket and pass to ``record_feedback``."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return TraceRef(ctx.trace_id, ctx.span_id)


def record_feedback(
    ref: TraceRef | str,
    *,
    thumbs_up: bool | None = None,
    score: float | None = None,
    correct: bool | None = None,
    comment: str | None = None,
) -> None:
    """Record human feedback about a trace (and span) as a ``feedback`` span inside that trace.

    ``correct`` says whether the agent's decision was right; it feeds confidence calibration.
    ``comment`` is written to be recorded, so it is recorded whether or not content capture is
    on, always redacted and cut to ``max_content_chars``.
    """
    target = TraceRef.parse(ref) if isinstance(ref, str) else ref
    if score is not None and not math.isfinite(score):
        raise ConfigurationError(f"score must be a finite number, not {score!r}")
    settings = STATE.settings
    if settings is None or settings.tracer is None:
        return
    try:
        attributes: dict[str, Any] = {semconv.GEN_AI_OPERATION_NAME: semconv.OPERATION_FEEDBACK}
        if thumbs_up is not None:
            attributes[semconv.FEEDBACK_THUMBS_UP] = thumbs_up
        if score is not None:
            attributes[semconv.FEEDBACK_SCORE] = float(score)
        if correct is not None:
            attributes[semconv.FEEDBACK_CORRECT] = correct
        if comment:
            attributes[semconv.FEEDBACK_COMMENT] = capture_text(settings, comment)
        if target.span_id:
            attributes[semconv.FEEDBACK_TARGET_SPAN_ID] = f"{target.span_id:016x}"
        # Without a span id, the feedback hangs off a synthetic parent: same trace, no claim
        # about which span it concerns.
        parent_span_id = target.span_id or (target.trace_id & 0xFFFFFFFFFFFFFFFF) or 1
        parent = SpanContext(
            trace_id=target.trace_id,
            span_id=parent_span_id,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
        ctx = trace.set_span_in_context(NonRecordingSpan(parent))
        settings.tracer.start_span(
            semconv.OPERATION_FEEDBACK,
            context=ctx,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ).end()
    except Exception:
        internal_error("recording feedback")

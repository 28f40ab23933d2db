"""The state of one agent run, carried in the OpenTelemetry context.

Keeping it in the OTel context (not a separate ContextVar) means it follows the span into
generators, asyncio tasks and threads by the same mechanism, and is never out of step with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry.trace import Span

from agentwatch import _semconv as semconv
from agentwatch._errors import AgentLimitExceeded
from agentwatch._limits import Budget
from agentwatch._redact import bounded_redact, default_redactor

RUN_KEY = otel_context.create_key("agentwatch-run")
_REASON_CHARS = 1000


def _redacted_reason(reason: str) -> str:
    """Outcome reasons are labels, recorded in every mode: redacted, cut to 1000 characters."""
    from agentwatch._config import STATE  # not at import: _config is the heavier module

    settings = STATE.settings
    redact = settings.redact if settings is not None else default_redactor
    return bounded_redact(redact, reason, _REASON_CHARS)


@dataclass(slots=True)
class Run:
    """One invocation of an ``@agent`` function."""

    agent_name: str
    task_type: str | None
    span: Span | None
    budget: Budget | None
    outcome: str | None = None

    def set_outcome(self, outcome: str, reason: str | None = None) -> None:
        self.outcome = outcome
        if self.span is not None:
            self.span.set_attribute(semconv.TASK_OUTCOME, outcome)
            if reason:
                self.span.set_attribute(semconv.TASK_OUTCOME_REASON, _redacted_reason(reason))

    def check_limits(self) -> None:
        """Raise ``AgentLimitExceeded`` (recording it first) when the budget is overrun."""
        if self.budget is None:
            return
        exceeded = self.budget.first_exceeded()
        if exceeded is not None:
            self.record_limit(exceeded)
            raise exceeded

    def record_limit(self, exceeded: AgentLimitExceeded) -> None:
        self.set_outcome("limit_exceeded", str(exceeded))
        if self.span is not None:
            self.span.set_attributes(
                {
                    semconv.LIMIT_EXCEEDED: exceeded.limit,
                    semconv.LIMIT_VALUE: float(exceeded.value),
                    semconv.LIMIT_MAXIMUM: float(exceeded.maximum),
                }
            )


def current_run(ctx: otel_context.Context | None = None) -> Run | None:
    """The innermost agent run active in ``ctx`` (default: the current context)."""
    value = otel_context.get_value(RUN_KEY, ctx)
    return value if isinstance(value, Run) else None


def with_run(run: Run, ctx: otel_context.Context) -> otel_context.Context:
    return otel_context.set_value(RUN_KEY, run, ctx)

"""agentwatch: observability and cost monitoring for AI agents.

import agentwatch as aw
aw.configure(service_name="support-bot")

@aw.agent(task_type="refund")
def handle(ticket): ...
"""

from __future__ import annotations

from agentwatch import _expectations as expect
from agentwatch._config import configure, force_flush, is_configured, shutdown
from agentwatch._decorators import agent, llm, tool
from agentwatch._errors import (
    AgentLimitExceeded,
    AgentwatchError,
    ConfigurationError,
    ReplayedToolError,
    ReplayError,
    ReplayMismatch,
)
from agentwatch._expectations import Expectation, Verdict
from agentwatch._health import (
    HealthResult,
    Probe,
    health_check,
    run_health_checks,
    start_health_checks,
    stop_health_checks,
)
from agentwatch._instrument import InstrumentationResult, instrument, uninstrument
from agentwatch._limits import Limits
from agentwatch._records import (
    Decision,
    Thresholds,
    TraceRef,
    check_limits,
    current_trace_ref,
    iteration,
    record_decision,
    record_feedback,
    record_usage,
    route_by_confidence,
    set_outcome,
)
from agentwatch._redact import default_redactor, make_redactor
from agentwatch._replay import Replay, replay
from agentwatch._testing import CapturedSpans, capture_spans

__version__ = "0.1.0"

__all__ = [
    "AgentLimitExceeded",
    "AgentwatchError",
    "CapturedSpans",
    "ConfigurationError",
    "Decision",
    "Expectation",
    "HealthResult",
    "InstrumentationResult",
    "Limits",
    "Probe",
    "Replay",
    "ReplayError",
    "ReplayMismatch",
    "ReplayedToolError",
    "Thresholds",
    "TraceRef",
    "Verdict",
    "__version__",
    "agent",
    "capture_spans",
    "check_limits",
    "configure",
    "current_trace_ref",
    "default_redactor",
    "expect",
    "force_flush",
    "health_check",
    "instrument",
    "is_configured",
    "iteration",
    "llm",
    "make_redactor",
    "record_decision",
    "record_feedback",
    "record_usage",
    "replay",
    "route_by_confidence",
    "run_health_checks",
    "set_outcome",
    "shutdown",
    "start_health_checks",
    "stop_health_checks",
    "tool",
    "uninstrument",
]

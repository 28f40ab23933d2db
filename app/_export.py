"""``agentwatch export trace``: write one stored trace's action log as JSON lines."""

from __future__ import annotations

from typing import IO

from agentwatch.storage._action_log import json_lines, trace_action_log
from agentwatch.storage._store import Store


def export_trace(store: Store, trace_id: str, out: IO[str]) -> int:
    """Write the trace's action log to ``out``; the number of its steps (0: no such trace)."""
    steps = trace_action_log(store, trace_id)
    out.write(json_lines(steps))
    return max(len(steps) - 1, 0)  # the last line is the outcome, not a step

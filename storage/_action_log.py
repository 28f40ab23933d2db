"""One stored trace as a structured action log (``agentwatch export trace``, the trace page's
download): its steps in order, as JSON-ready dicts.

One line per step, in start order: the agent runs, model calls (model, tokens, cost, messages
when captured), tool calls (name, tier, arguments and result when captured, error), decisions
(confidence, route, reasoning), any other span; then one ``outcome`` line for the whole trace.
Content appears only where the sender captured it (and the collector's content policy kept it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from agentwatch.storage._store import Store
from agentwatch.storage._trace_queries import trace_for_export

MODEL_OPERATIONS: Final = frozenset({"chat", "text_completion", "generate_content"})
# Captured content, by the step field it fills: the first key a sender set wins.
_CONTENT: Final[Mapping[str, tuple[str, ...]]] = {
    "input_messages": ("gen_ai.input.messages", "input.value"),
    "output_messages": ("gen_ai.output.messages", "output.value"),
    "arguments": ("gen_ai.tool.call.arguments", "input.value"),
    "result": ("gen_ai.tool.call.result", "output.value"),
    "reasoning": ("agentwatch.decision.reasoning",),
}


def _content(attributes: Mapping[str, str], field: str) -> Any:
    for key in _CONTENT[field]:
        text = attributes.get(key)
        if text:
            try:
                return json.loads(text)
            except ValueError:
                return text
    return None


def _outcome(span: Mapping[str, Any]) -> str:
    if span["outcome"]:
        return str(span["outcome"])
    return "failed" if span["status"] == "Error" else "completed"


def _error(span: Mapping[str, Any]) -> dict[str, str] | None:
    if span["status"] != "Error" and not span["error_type"]:
        return None
    return {"type": span["error_type"], "message": span["status_message"]}


def _step(span: Mapping[str, Any]) -> dict[str, Any]:
    operation = span["operation"]
    # A map column: a dict from a server, (key, value) pairs from chDB's Python format.
    attributes: Mapping[str, str] = dict(span["attributes"] or {})
    common = {
        "span_id": span["span_id"],
        "parent_span_id": span["parent_span_id"] or None,
        "start_ns": int(span["start_ns"]),
        "duration_ms": int(span["duration_ns"]) / 1e6,
    }
    if operation == "invoke_agent":
        return {
            "step": "agent_run",
            **common,
            "agent": span["agent"],
            "task_type": span["task_type"],
            "outcome": _outcome(span),
            "limit_exceeded": span["limit_hit"] or None,
        }
    if operation in MODEL_OPERATIONS:
        return {
            "step": "model_call",
            **common,
            "model": span["model"],
            "input_tokens": int(span["input_tokens"]),
            "output_tokens": int(span["output_tokens"]),
            "cache_read_tokens": int(span["cache_read_tokens"]),
            "cost_usd": float(span["cost_usd"]) if span["priced"] else None,
            "input_messages": _content(attributes, "input_messages"),
            "output_messages": _content(attributes, "output_messages"),
            "error": _error(span),
        }
    if operation == "execute_tool":
        return {
            "step": "tool_call",
            **common,
            "tool": span["tool"],
            "tier": span["tier"] or None,
            "arguments": _content(attributes, "arguments"),
            "result": _content(attributes, "result"),
            "error": _error(span),
        }
    if operation == "decision":
        return {
            "step": "decision",
            **common,
            "decision": span["decision"],
            "confidence": span["confidence"],
            "route": span["route"] or None,
            "reasoning": _content(attributes, "reasoning"),
        }
    return {"step": "span", **common, "name": span["name"], "operation": operation or None}


def action_log(trace_id: str, spans: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """The steps of one trace (``spans`` in start order), then its ``outcome`` line."""
    steps = [_step(span) for span in spans]
    for number, step in enumerate(steps, start=1):
        yield {"trace_id": trace_id, "seq": number, **step}
    runs = [s for s in steps if s["step"] == "agent_run"]
    task = next((s for s in runs if s["parent_span_id"] is None), runs[0] if runs else None)
    models = [s for s in steps if s["step"] == "model_call"]
    costs = [s["cost_usd"] for s in models if s["cost_usd"] is not None]
    yield {
        "trace_id": trace_id,
        "seq": len(steps) + 1,
        "step": "outcome",
        "outcome": task["outcome"] if task else None,
        "agent": task["agent"] if task else None,
        "task_type": task["task_type"] if task else None,
        "duration_ms": task["duration_ms"] if task else None,
        "model_calls": len(models),
        "tool_calls": sum(1 for s in steps if s["step"] == "tool_call"),
        "input_tokens": sum(s["input_tokens"] for s in models),
        "output_tokens": sum(s["output_tokens"] for s in models),
        "cost_usd": sum(costs) if costs else None,
    }


def trace_action_log(store: Store, trace_id: str) -> list[dict[str, Any]]:
    """The action log of one stored trace; empty when no span of it is stored."""
    trace_id = trace_id.lower()
    spans = trace_for_export(store, trace_id).dicts()
    return list(action_log(trace_id, spans)) if spans else []


def json_lines(steps: Iterable[Mapping[str, Any]]) -> str:
    """The steps as JSON lines (the exported file's format)."""
    return "".join(json.dumps(step, ensure_ascii=False) + "\n" for step in steps)

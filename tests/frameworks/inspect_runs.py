"""Run every framework agent against a real collector and print what each emitted and stored.

    python -m tests.frameworks.inspect_runs [framework ...] > out.txt

For each run: the span tree as emitted (name, kind, parent, the attributes that matter for
agents, tools, tokens, models and content), the typed columns the collector stored for each
span, and what the dashboard's queries make of the service (tasks, agents, tools, cost).
A tool that reads, not a test: tests/frameworks/test_frameworks_emit.py asserts.
"""

from __future__ import annotations

import sys
import tempfile
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from opentelemetry.sdk.trace import ReadableSpan

from tests.frameworks.agents import RUNNERS, Run
from tests.frameworks.collector import FrameworkCollector
from tests.frameworks.fake_openai import FakeOpenAI

# Attribute keys (or prefixes ending in '.') worth showing; everything else is summarised.
INTERESTING: Final = (
    "gen_ai.",
    "openinference.",
    "llm.",
    "traceloop.",
    "agent.",
    "agent_name",
    "graph.",
    "tool.",
    "session.",
    "user.",
    "metadata",
    "model_name",
    "logfire.",
    "langgraph_",
    "input.mime_type",
    "output.mime_type",
    "final_result",
    "pydantic_ai.",
    "agentwatch.",
)
CONTENT_HINTS: Final = (
    "input.value",
    "output.value",
    "messages",
    "prompt",
    "completion",
    "content",
    "arguments",
    "result",
    "tool_response",
    "tool_arguments",
    "final_result",
    "all_messages",
    "instructions",
)
STORED: Final = (
    "SpanName, ParentSpanId, SpanKind, Operation, AgentName, TaskType, Outcome, ToolName, "
    "Provider, RequestModel, ResponseModel, InputTokens, OutputTokens, CacheReadTokens, "
    "ReasoningTokens, ConversationId, AgentTools, CostUsd, Priced, Duration, StatusCode, "
    "ScopeName"
)


def _short(value: object, limit: int = 160) -> str:
    text = repr(value) if not isinstance(value, str) else value
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def _is_content(key: str) -> bool:
    if "token" in key or key.endswith(("_tokens", ".role", ".id", ".type")):
        return False
    return any(hint in key for hint in CONTENT_HINTS)


def _tree(spans: Iterable[ReadableSpan]) -> list[str]:
    spans = list(spans)
    by_parent: dict[int | None, list[ReadableSpan]] = {}
    ids = {s.context.span_id for s in spans if s.context is not None}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        by_parent.setdefault(parent if parent in ids else None, []).append(span)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in sorted(by_parent.get(parent, []), key=lambda s: s.start_time or 0):
            assert span.context is not None
            duration = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
            foreign = " (parent outside this provider)" if depth == 0 and span.parent else ""
            scope = span.instrumentation_scope.name if span.instrumentation_scope else ""
            lines.append(
                f"{'  ' * depth}- {span.name!r} kind={span.kind.name} "
                f"{duration:.1f}ms scope={scope}{foreign}"
            )
            attributes = dict(span.attributes or {})
            content = sorted(k for k in attributes if _is_content(k))
            for key in sorted(attributes):
                if key in content:
                    continue
                if any(key.startswith(p) or key == p for p in INTERESTING):
                    lines.append(f"{'  ' * depth}    {key} = {_short(attributes[key])}")
            others = sorted(
                k
                for k in attributes
                if k not in content and not any(k.startswith(p) for p in INTERESTING)
            )
            if content:
                lines.append(f"{'  ' * depth}    [content keys] {', '.join(content)}")
            if others:
                lines.append(f"{'  ' * depth}    [other keys] {', '.join(others)}")
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return lines


def _stored(collector: FrameworkCollector, run: Run) -> list[str]:
    rows = collector.spans(run.service, STORED)
    lines = []
    for row in rows:
        shown = {k: v for k, v in row.items() if v not in ("", 0, None, [], 0.0)}
        shown["ParentSpanId"] = "root" if not row["ParentSpanId"] else "child"
        lines.append("  " + ", ".join(f"{k}={_short(v, 60)}" for k, v in shown.items()))
    return lines


# Text the agent's content contains: the question, the instructions, the tool's result, the answer.
CONTENT_MARKERS: Final = ("weather in Paris", "You answer questions", "Sunny, 21", "sunny and 21")


def _content_keys(collector: FrameworkCollector, run: Run) -> list[str]:
    """Stored attribute keys whose value holds the run's content, and whether the collector's
    content policy knows them as content keys."""
    from agentwatch.collector._content import CONTENT_KEYS

    exact = {key for table in CONTENT_KEYS for key in table.keys}
    prefixes = tuple(p for table in CONTENT_KEYS for p in table.prefixes)
    found: dict[str, set[str]] = {}
    for row in collector.spans(run.service, "SpanName, SpanAttributes"):
        attributes = row["SpanAttributes"]
        pairs = attributes.items() if isinstance(attributes, dict) else attributes
        for key, value in pairs:
            if any(marker in value for marker in CONTENT_MARKERS):
                found.setdefault(key, set()).add(row["SpanName"])
    lines = []
    for key in sorted(found):
        known = key in exact or key.startswith(prefixes)
        label = "content key" if known else "NOT A CONTENT KEY (kept as sent under any policy)"
        lines.append(f"  {key}: {label}; on {sorted(found[key])}")
    return lines


def _queries(collector: FrameworkCollector, run: Run) -> list[str]:
    facts = collector.facts(run.service)
    return [f"  {key}: {_short(value, 400)}" for key, value in facts.items()]


def main(names: list[str]) -> int:
    selected = names or list(RUNNERS)
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAI() as llm:
        collector = FrameworkCollector(Path(tmp))
        try:
            for name in selected:
                print(f"\n===== {name} =====")
                try:
                    run = RUNNERS[name](collector.url, llm.base_url)
                except Exception:
                    traceback.print_exc(file=sys.stdout)
                    continue
                print(f"output={run.output!r} tool ran {run.tool_calls}x, {len(run.spans)} spans")
                print("-- emitted span tree --")
                print("\n".join(_tree(run.spans)))
                collector.wait_for(run)
                print("-- stored (typed columns, non-empty) --")
                print("\n".join(_stored(collector, run)))
                print("-- stored attributes holding the run's text --")
                print("\n".join(_content_keys(collector, run)))
                print("-- dashboard queries (service filter) --")
                print("\n".join(_queries(collector, run)))
            print("\n===== fake server requests =====")
            print(", ".join(llm.paths()))
        finally:
            collector.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

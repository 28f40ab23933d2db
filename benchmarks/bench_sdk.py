"""SDK overhead: agentwatch's decorators against bare OpenTelemetry spans, side by side.

    python -m benchmarks.bench_sdk [--calls N] [--rounds R] [--json PATH] [--check]

Both sides export through a ``BatchSpanProcessor`` (same settings) into an exporter that
discards spans, so what is measured is the caller-thread cost of creating, filling and ending
spans, plus the background batching that competes with it for the GIL. Every round runs each
side once, rotating which goes first, so machine noise hits all of them; the reported figures are
medians over rounds. Results and their reading: benchmarks/BENCHMARKS.md, "SDK overhead".

Scenarios (agentwatch side vs bare side):

- sync tool:   ``@aw.tool(tier="read")`` function vs the same function wrapped in
  ``tracer.start_as_current_span("execute_tool lookup_order", attributes=<the same 5 attrs>)``.
- async tool:  the same, for an ``async def`` awaited in an event loop.
- nested:      ``@aw.agent`` -> ``@aw.tool`` -> ``@aw.llm`` (the LLM returns an OpenAI-shaped
  chat-completion dict with usage) vs three nested ``start_as_current_span`` blocks that set the
  same attributes by hand: agent (operation, agent name, task type, then outcome=completed at
  the end), tool (operation, tool name/type/description, tier, the run's task type), LLM
  (CLIENT kind; operation, provider, the run's task type, request model; then response model,
  id, finish reasons and the four token counts read from the response dict).
- no-op:       decorated functions with agentwatch NOT configured vs the undecorated functions.

A third, informational side ("minimal") makes the same spans with ``start_span`` and explicit
``context.attach``/``detach``: OTel's cheapest way to make a span current, for reference.

Before timing, one call of each side is exported and compared span by span (name, kind,
attributes, parent): the baseline does the same span work, so the ratio is the SDK's overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

import agentwatch as aw

RATIO_TARGET = 1.30  # agentwatch may add at most 30% over the bare OTel span
NOOP_TARGET_NS = 1000.0  # per decorated call, agentwatch not configured
WARMUP_CALLS = 200
NOOP_MULTIPLIER = 20  # the no-op path is ~100x cheaper, so time more calls per block

# -- the exporter both sides use -------------------------------------------------------------------


class DiscardExporter(SpanExporter):
    """Counts spans and drops them (optionally keeps them, for the fairness check)."""

    def __init__(self) -> None:
        self.exported = 0
        self.kept: list[ReadableSpan] | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        if self.kept is not None:
            self.kept.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


# -- the workload: trivial bodies, so only instrumentation is measured -----------------------------

MODEL = "gpt-4o"
MESSAGES = [{"role": "user", "content": "Where is my order 1234?"}]
RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "It ships tomorrow."},
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 412,
        "completion_tokens": 37,
        "total_tokens": 449,
        "prompt_tokens_details": {"cached_tokens": 128},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}


def plain_lookup(order_id: int) -> int:
    """Look up an order."""
    return order_id + 1


async def plain_fetch(order_id: int) -> int:
    """Fetch an order."""
    return order_id + 1


def plain_chat(messages: list[dict[str, str]], model: str) -> dict[str, Any]:
    return RESPONSE


def plain_search(order_id: int) -> dict[str, Any]:
    """Search orders."""
    return plain_chat(MESSAGES, model=MODEL)


def plain_support(order_id: int) -> dict[str, Any]:
    return plain_search(order_id)


# agentwatch side: the same bodies, decorated (decoration happens before configure()).
aw_lookup = aw.tool(name="lookup_order", tier="read")(plain_lookup)
aw_fetch = aw.tool(name="fetch_order", tier="read")(plain_fetch)


@aw.llm(provider="openai")
def aw_chat(messages: list[dict[str, str]], model: str) -> dict[str, Any]:
    return RESPONSE


@aw.tool(name="search_orders", tier="read")
def aw_search(order_id: int) -> dict[str, Any]:
    """Search orders."""
    return aw_chat(MESSAGES, model=MODEL)


@aw.agent(name="support", task_type="refund")
def aw_support(order_id: int) -> dict[str, Any]:
    return aw_search(order_id)


# bare OTel side: what a careful hand-instrumentation writes to get the same spans.
LOOKUP_ATTRS = {
    "gen_ai.operation.name": "execute_tool",
    "gen_ai.tool.name": "lookup_order",
    "gen_ai.tool.type": "function",
    "agentwatch.tool.tier": "read",
    "gen_ai.tool.description": "Look up an order.",
}
FETCH_ATTRS = {**LOOKUP_ATTRS, "gen_ai.tool.name": "fetch_order"}
FETCH_ATTRS["gen_ai.tool.description"] = "Fetch an order."
SEARCH_ATTRS = {**LOOKUP_ATTRS, "gen_ai.tool.name": "search_orders"}
SEARCH_ATTRS["gen_ai.tool.description"] = "Search orders."
# Inside an agent run, agentwatch puts the run's task type on every span.
SEARCH_ATTRS["agentwatch.task.type"] = "refund"
AGENT_ATTRS = {
    "gen_ai.operation.name": "invoke_agent",
    "gen_ai.agent.name": "support",
    "agentwatch.task.type": "refund",
}
CHAT_ATTRS = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "agentwatch.task.type": "refund",
}


class Bare:
    """The baseline functions, bound to the bare tracer."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    def lookup(self, order_id: int) -> int:
        with self.tracer.start_as_current_span(
            "execute_tool lookup_order", attributes=LOOKUP_ATTRS
        ):
            return plain_lookup(order_id)

    async def fetch(self, order_id: int) -> int:
        with self.tracer.start_as_current_span("execute_tool fetch_order", attributes=FETCH_ATTRS):
            return await plain_fetch(order_id)

    def chat(self, messages: list[dict[str, str]], model: str) -> dict[str, Any]:
        with self.tracer.start_as_current_span(
            f"chat {model}", kind=SpanKind.CLIENT, attributes=CHAT_ATTRS
        ) as span:
            span.set_attribute("gen_ai.request.model", model)
            response = plain_chat(messages, model=model)
            record_response(span, response)
            return response

    def search(self, order_id: int) -> dict[str, Any]:
        with self.tracer.start_as_current_span(
            "execute_tool search_orders", attributes=SEARCH_ATTRS
        ):
            return self.chat(MESSAGES, model=MODEL)

    def support(self, order_id: int) -> dict[str, Any]:
        with self.tracer.start_as_current_span(
            "invoke_agent support", attributes=AGENT_ATTRS
        ) as span:
            result = self.search(order_id)
            span.set_attribute("agentwatch.task.outcome", "completed")
            return result


def record_response(span: trace.Span, response: dict[str, Any]) -> None:
    """What the baselines set from an OpenAI chat completion: the attributes agentwatch sets."""
    usage = response["usage"]
    span.set_attribute("gen_ai.response.model", response["model"])
    span.set_attribute("gen_ai.response.id", response["id"])
    span.set_attribute(
        "gen_ai.response.finish_reasons", [c["finish_reason"] for c in response["choices"]]
    )
    span.set_attributes(
        {
            "gen_ai.usage.input_tokens": usage["prompt_tokens"],
            "gen_ai.usage.output_tokens": usage["completion_tokens"],
            "gen_ai.usage.cache_read.input_tokens": usage["prompt_tokens_details"]["cached_tokens"],
            "gen_ai.usage.reasoning.output_tokens": usage["completion_tokens_details"][
                "reasoning_tokens"
            ],
        }
    )


class Minimal:
    """Informational floor: ``start_span`` + ``context.attach``/``detach`` + ``end`` by hand.

    This is the cheapest correct way to make a span current with the OTel API (no context
    manager, no exception recording); it shows what agentwatch costs over OTel's own minimum.
    """

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    def lookup(self, order_id: int) -> int:
        span = self.tracer.start_span("execute_tool lookup_order", attributes=LOOKUP_ATTRS)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            return plain_lookup(order_id)
        finally:
            otel_context.detach(token)
            span.end()

    async def fetch(self, order_id: int) -> int:
        span = self.tracer.start_span("execute_tool fetch_order", attributes=FETCH_ATTRS)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            return await plain_fetch(order_id)
        finally:
            otel_context.detach(token)
            span.end()

    def chat(self, messages: list[dict[str, str]], model: str) -> dict[str, Any]:
        span = self.tracer.start_span(f"chat {model}", kind=SpanKind.CLIENT, attributes=CHAT_ATTRS)
        span.set_attribute("gen_ai.request.model", model)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            response = plain_chat(messages, model=model)
            record_response(span, response)
            return response
        finally:
            otel_context.detach(token)
            span.end()

    def search(self, order_id: int) -> dict[str, Any]:
        span = self.tracer.start_span("execute_tool search_orders", attributes=SEARCH_ATTRS)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            return self.chat(MESSAGES, model=MODEL)
        finally:
            otel_context.detach(token)
            span.end()

    def support(self, order_id: int) -> dict[str, Any]:
        span = self.tracer.start_span("invoke_agent support", attributes=AGENT_ATTRS)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            result = self.search(order_id)
            span.set_attribute("agentwatch.task.outcome", "completed")
            return result
        finally:
            otel_context.detach(token)
            span.end()


# -- timing ----------------------------------------------------------------------------------------

SyncFn = Callable[[int], object]
AsyncFn = Callable[[int], Awaitable[object]]


def _loop_sync(fn: SyncFn, n: int) -> int:
    start = time.perf_counter_ns()
    for i in range(n):
        fn(i)
    return time.perf_counter_ns() - start


def _each_sync(fn: SyncFn, n: int) -> list[int]:
    clock = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        start = clock()
        fn(i)
        out[i] = clock() - start
    return out


async def _loop_async(fn: AsyncFn, n: int) -> int:
    start = time.perf_counter_ns()
    for i in range(n):
        await fn(i)
    return time.perf_counter_ns() - start


async def _each_async(fn: AsyncFn, n: int) -> list[int]:
    clock = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        start = clock()
        await fn(i)
        out[i] = clock() - start
    return out


@dataclass
class Side:
    """One way of running a scenario, and what was measured for it."""

    label: str
    fn: Any
    flush: Callable[[], object] | None = None
    exporter: DiscardExporter | None = None
    means_ns: list[float] = field(default_factory=list)  # one per round
    samples_ns: list[int] = field(default_factory=list)  # pooled over rounds
    dropped: int = 0

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.samples_ns)
        return {
            "mean_ns": statistics.median(self.means_ns),
            "p50_ns": float(percentile(ordered, 0.50)),
            "p99_ns": float(percentile(ordered, 0.99)),
        }


def percentile(ordered: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of an already sorted sequence."""
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


@dataclass
class Scenario:
    """``sides[0]`` is the baseline, ``sides[1]`` agentwatch, ``sides[2:]`` informational."""

    key: str
    title: str
    is_async: bool
    spans_per_call: int  # per call on every side when configured; 0 for the no-op scenarios
    decorated_per_call: int  # decorated functions per call (for the no-op per-call figure)
    sides: list[Side]
    ratios: list[list[float]] = field(default_factory=list)  # per round: agentwatch / side i

    def ratio(self, side: int = 0) -> float:
        return statistics.median(r[side] for r in self.ratios)

    def ratio_range(self, side: int = 0) -> str:
        values = [r[side] for r in self.ratios]
        return f"{min(values):.2f} to {max(values):.2f}"

    def added_ns(self) -> float:
        """Median over rounds of (agentwatch - baseline) per decorated function call."""
        base, agentwatch = self.sides[0].means_ns, self.sides[1].means_ns
        per_round = [
            (a - b) / self.decorated_per_call for a, b in zip(agentwatch, base, strict=True)
        ]
        return statistics.median(per_round)


class Runner:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def block(self, side: Side, is_async: bool, n: int, spans_per_call: int) -> None:
        """Warm up, time ``n`` calls in a loop, then ``n`` calls one by one; flush (untimed)."""
        fn, exporter = side.fn, side.exporter
        before = exporter.exported if exporter is not None else 0
        gc.collect()
        if is_async:
            self.loop.run_until_complete(_loop_async(fn, WARMUP_CALLS))
            total = self.loop.run_until_complete(_loop_async(fn, n))
            samples = self.loop.run_until_complete(_each_async(fn, n))
        else:
            _loop_sync(fn, WARMUP_CALLS)
            total = _loop_sync(fn, n)
            samples = _each_sync(fn, n)
        if side.flush is not None:
            side.flush()
        if exporter is not None:
            expected = (WARMUP_CALLS + 2 * n) * spans_per_call
            side.dropped += expected - (exporter.exported - before)
        side.means_ns.append(total / n)
        side.samples_ns.extend(samples)

    def rounds(self, scenarios: list[Scenario], rounds: int, n: int) -> None:
        """Each round runs every side of every scenario; the side order rotates per round."""
        for r in range(rounds):
            for sc in scenarios:
                k = len(sc.sides)
                for i in range(k):
                    self.block(sc.sides[(i + r) % k], sc.is_async, n, sc.spans_per_call)
                ours = sc.sides[1].means_ns[-1]
                sc.ratios.append([ours / side.means_ns[-1] for side in sc.sides])


# -- the fairness check ----------------------------------------------------------------------------


def describe(spans: Sequence[ReadableSpan]) -> list[dict[str, Any]]:
    """Spans as comparable dicts: parents by name, ids dropped."""
    by_id = {s.context.span_id: s.name for s in spans if s.context is not None}
    out = []
    for s in spans:
        attrs = {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in (s.attributes or {}).items()
        }
        out.append(
            {
                "name": s.name,
                "kind": s.kind.name,
                "parent": by_id.get(s.parent.span_id) if s.parent is not None else None,
                "resource": dict(s.resource.attributes),
                "attributes": dict(sorted(attrs.items())),
            }
        )
    return out


def fairness_check(loop: asyncio.AbstractEventLoop, sc: Scenario) -> dict[str, Any]:
    """Export one call of each side and compare the spans with agentwatch's."""
    described: dict[str, list[dict[str, Any]]] = {}
    for side in sc.sides:
        assert side.exporter is not None
        assert side.flush is not None
        side.flush()
        side.exporter.kept = []
        if sc.is_async:
            loop.run_until_complete(side.fn(1))
        else:
            side.fn(1)
        side.flush()
        described[side.label] = describe(side.exporter.kept)
        side.exporter.kept = None
    ours = described[sc.sides[1].label]
    identical = all(spans == ours for spans in described.values())
    return {"identical": identical, "spans": described}


# -- reporting -------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "opentelemetry_sdk": metadata.version("opentelemetry-sdk"),
        "agentwatch": aw.__version__,
        "agentwatch_revision": source_revision(),
    }


def source_revision() -> str:
    """The git commit the measured SDK comes from, marked ``+dirty`` if ``sdk/`` has changes."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(aw.__file__)))
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "sdk"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def us(ns: float) -> str:
    return f"{ns / 1000:.2f}"


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def render(configured: list[Scenario], noop: list[Scenario]) -> tuple[str, bool]:
    lines = [
        "| scenario | bare OTel µs/call | agentwatch µs/call | ratio (range over rounds) | "
        "bare p50 / p99 µs | agentwatch p50 / p99 µs | target | result |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    ok = True
    for sc in configured:
        b, a = sc.sides[0].summary(), sc.sides[1].summary()
        passed = sc.ratio() <= RATIO_TARGET
        ok &= passed
        lines.append(
            f"| {sc.title} | {us(b['mean_ns'])} | {us(a['mean_ns'])} | "
            f"{sc.ratio():.2f} ({sc.ratio_range()}) | "
            f"{us(b['p50_ns'])} / {us(b['p99_ns'])} | {us(a['p50_ns'])} / {us(a['p99_ns'])} | "
            f"≤ {RATIO_TARGET:.2f} | {verdict(passed)} |"
        )
    lines += [
        "",
        "| no-op path (not configured) | undecorated µs/call | decorated µs/call | "
        "added ns per decorated call | undecorated p50 / p99 µs | decorated p50 / p99 µs | "
        "target | result |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for sc in noop:
        b, a = sc.sides[0].summary(), sc.sides[1].summary()
        passed = sc.added_ns() < NOOP_TARGET_NS
        ok &= passed
        lines.append(
            f"| {sc.title} | {us(b['mean_ns'])} | {us(a['mean_ns'])} | {sc.added_ns():.0f} | "
            f"{us(b['p50_ns'])} / {us(b['p99_ns'])} | {us(a['p50_ns'])} / {us(a['p99_ns'])} | "
            f"< {NOOP_TARGET_NS:.0f} ns | {verdict(passed)} |"
        )
    lines += [
        "",
        "Informational (no target): against OTel's cheapest way to make a span current "
        "(`start_span` + `context.attach`/`detach` + `end`, same attributes).",
        "",
        "| scenario | minimal OTel µs/call | agentwatch µs/call | ratio (range over rounds) |"
        " minimal p50 / p99 µs |",
        "|---|---:|---:|---:|---:|",
    ]
    for sc in configured:
        m, a = sc.sides[2].summary(), sc.sides[1].summary()
        lines.append(
            f"| {sc.title} | {us(m['mean_ns'])} | {us(a['mean_ns'])} | "
            f"{sc.ratio(2):.2f} ({sc.ratio_range(2)}) | "
            f"{us(m['p50_ns'])} / {us(m['p99_ns'])} |"
        )
    return "\n".join(lines), ok


def scenario_json(sc: Scenario) -> dict[str, Any]:
    sides = {
        side.label: {**side.summary(), "means_ns": side.means_ns, "dropped": side.dropped}
        for side in sc.sides
    }
    return {
        "title": sc.title,
        "sides": sides,
        "ratio_agentwatch_over": {side.label: sc.ratio(i) for i, side in enumerate(sc.sides)},
        "per_round_ratios": sc.ratios,
        "added_ns_per_decorated_call": sc.added_ns(),
    }


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=3000, help="timed calls per side per round")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds")
    parser.add_argument("--json", metavar="PATH", help="also write the full results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.rounds < 1:
        parser.error("--calls and --rounds must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    n, rounds = args.calls, args.rounds
    started = time.perf_counter()
    # Both BatchSpanProcessors read this at construction: large enough that nothing is dropped
    # even if the worker thread falls behind; blocks are also flushed (untimed) in between.
    os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(max(2048, 4 * (WARMUP_CALLS + 2 * n)))
    loop = asyncio.new_event_loop()
    runner = Runner(loop)

    # 1. The no-op path: agentwatch not configured.
    if aw.is_configured():
        aw.shutdown()
    noop = [
        Scenario("noop_sync", "sync tool", False, 0, 1,
                 [Side("undecorated", plain_lookup), Side("decorated", aw_lookup)]),
        Scenario("noop_async", "async tool (awaited)", True, 0, 1,
                 [Side("undecorated", plain_fetch), Side("decorated", aw_fetch)]),
        Scenario("noop_nested", "nested agent→tool→llm (3 decorated calls)", False, 0, 3,
                 [Side("undecorated", plain_support), Side("decorated", aw_support)]),
    ]  # fmt: skip
    runner.rounds(noop, rounds, n * NOOP_MULTIPLIER)

    # 2. Configured: the bare OTel provider and agentwatch's own, same processor and exporter.
    bare_exporter, aw_exporter = DiscardExporter(), DiscardExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench-agent"}))
    provider.add_span_processor(BatchSpanProcessor(bare_exporter))
    tracer = provider.get_tracer("bench-bare")
    aw.configure(service_name="bench-agent", exporter=aw_exporter)

    def bare_flush() -> object:
        return provider.force_flush()

    def aw_flush() -> object:
        return aw.force_flush()

    def sides(bare_fn: Any, aw_fn: Any, minimal_fn: Any) -> list[Side]:
        return [
            Side("bare", bare_fn, bare_flush, bare_exporter),
            Side("agentwatch", aw_fn, aw_flush, aw_exporter),
            Side("minimal", minimal_fn, bare_flush, bare_exporter),
        ]

    bare, minimal = Bare(tracer), Minimal(tracer)
    configured = [
        Scenario("sync", "sync tool", False, 1, 1, sides(bare.lookup, aw_lookup, minimal.lookup)),
        Scenario("async", "async tool (awaited)", True, 1, 1,
                 sides(bare.fetch, aw_fetch, minimal.fetch)),
        Scenario("nested", "nested agent→tool→llm", False, 3, 3,
                 sides(bare.support, aw_support, minimal.support)),
    ]  # fmt: skip
    fairness = {sc.key: fairness_check(loop, sc) for sc in configured}
    runner.rounds(configured, rounds, n)
    aw.shutdown()
    provider.shutdown()
    loop.close()

    elapsed = time.perf_counter() - started
    table, ok = render(configured, noop)
    info = machine()
    print(
        f"agentwatch SDK overhead: {n} calls x {rounds} rounds per side "
        f"(no-op: {n * NOOP_MULTIPLIER}), {info['cores']} cores, Python {info['python']}, "
        f"OTel SDK {info['opentelemetry_sdk']}, agentwatch {info['agentwatch_revision']}, "
        f"{elapsed:.1f} s\n"
    )
    print(table)
    print()
    for key, check in fairness.items():
        state = "identical spans on every side" if check["identical"] else "SPANS DIFFER (--json)"
        print(f"fairness check, {key}: {state}")
    dropped = sum(side.dropped for sc in configured for side in sc.sides)
    print(f"spans dropped by the batch processors: {dropped}")
    print(f"overall: {verdict(ok)}")

    if args.json:
        result = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
            "machine": info,
            "calls": n,
            "rounds": rounds,
            "warmup_calls": WARMUP_CALLS,
            "noop_calls": n * NOOP_MULTIPLIER,
            "elapsed_s": elapsed,
            "targets": {"ratio_max": RATIO_TARGET, "noop_added_ns_max": NOOP_TARGET_NS},
            "configured": {sc.key: scenario_json(sc) for sc in configured},
            "noop": {sc.key: scenario_json(sc) for sc in noop},
            "fairness": fairness,
            "dropped": dropped,
            "pass": ok,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())

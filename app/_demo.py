"""A simulated fleet of support agents, run through the real SDK (``agentwatch demo``).

No network and no real model: a fake client returns provider-shaped responses (OpenAI chat
completions and Anthropic messages) with plausible token counts, so everything downstream
(usage extraction, pricing, dashboards, alerts) sees what a real fleet would send.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from agentwatch import _config
from agentwatch._decorators import agent, llm, tool
from agentwatch._errors import AgentLimitExceeded
from agentwatch._limits import Limits
from agentwatch._records import (
    Thresholds,
    current_trace_ref,
    iteration,
    record_decision,
    record_feedback,
    set_outcome,
)


@dataclass(frozen=True, slots=True)
class TaskProfile:
    """How one task type behaves: how sure the agent is and how often it is right."""

    task_type: str
    weight: float
    confidence_mean: float
    model: str
    provider: str
    tool_error_rate: float
    steps: int


PROFILES: tuple[TaskProfile, ...] = (
    TaskProfile("order_status", 0.4, 0.92, "gpt-4o-mini", "openai", 0.01, 1),
    TaskProfile("refund", 0.25, 0.78, "gpt-4o", "openai", 0.03, 2),
    TaskProfile("billing_dispute", 0.15, 0.62, "claude-3-5-sonnet-20241022", "anthropic", 0.05, 3),
    TaskProfile("technical_issue", 0.2, 0.7, "claude-3-5-haiku-20241022", "anthropic", 0.08, 3),
)
THRESHOLDS = Thresholds(auto_at=0.85, review_at=0.6)


class FakeModelClient:
    """Returns provider-shaped responses; ``multiplier`` inflates token use (a cost spike)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def complete(
        self, provider: str, model: str, prompt_chars: int, multiplier: float = 1.0
    ) -> dict[str, Any]:
        input_tokens = int(prompt_chars / 4 * multiplier) + self.rng.randint(200, 900)
        output_tokens = int(self.rng.randint(60, 400) * multiplier)
        if provider == "anthropic":
            cached = self.rng.choice((0, 0, 512))
            return {
                "id": f"msg_{self.rng.getrandbits(48):x}",
                "type": "message",
                "model": model,
                "content": [{"type": "text", "text": "Here is what I found."}],
                "stop_reason": "end_turn",
                "usage": {
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "cache_read_input_tokens": cached,
                    "cache_creation_input_tokens": 0,
                },
            }
        cached = self.rng.choice((0, 0, 256))
        return {
            "id": f"chatcmpl-{self.rng.getrandbits(48):x}",
            "object": "chat.completion",
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Here is what I found."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": input_tokens + cached,
                "completion_tokens": output_tokens,
                "prompt_tokens_details": {"cached_tokens": cached},
            },
        }


class DemoFleet:
    """A fleet of support agents handling tickets of several task types."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.client = FakeModelClient(self.rng)
        # task type -> multiplier; `agentwatch up --demo` raises these to stage spikes.
        self.error_boost: dict[str, float] = {}
        self.cost_boost: dict[str, float] = {}
        self._task_type = ""
        self.outcomes: Counter[str] = Counter()

        @llm(provider="openai")
        def ask_openai(model: str, prompt: str) -> dict[str, Any]:
            boost = self.cost_boost.get(self._task_type, 1.0)
            return self.client.complete("openai", model, len(prompt), boost)

        @llm(provider="anthropic")
        def ask_anthropic(model: str, prompt: str) -> dict[str, Any]:
            boost = self.cost_boost.get(self._task_type, 1.0)
            return self.client.complete("anthropic", model, len(prompt), boost)

        @tool(tier="read")
        def lookup_order(order_id: str, error_rate: float) -> dict[str, str]:
            """Look an order up in the order system."""
            self._maybe_fail(error_rate, "order service timed out")
            return {"order_id": order_id, "status": self.rng.choice(("shipped", "pending"))}

        @tool(tier="read")
        def search_kb(query: str, error_rate: float) -> list[str]:
            """Search the knowledge base."""
            self._maybe_fail(error_rate, "knowledge base timed out")
            return [f"article about {query}"]

        @tool(tier="write_risky")
        def issue_refund(order_id: str, amount: float, error_rate: float) -> str:
            """Refund an order."""
            self._maybe_fail(error_rate, "payment gateway timed out")
            return f"refunded {amount:.2f} on {order_id}"

        @tool(tier="destructive")
        def close_account(customer_id: str) -> str:  # declared, rarely (never) called
            """Close a customer account."""
            return f"closed {customer_id}"

        self.ask_openai = ask_openai
        self.ask_anthropic = ask_anthropic
        self.lookup_order = lookup_order
        self.search_kb = search_kb
        self.issue_refund = issue_refund
        self.close_account = close_account

    def _maybe_fail(self, error_rate: float, message: str) -> None:
        if self.rng.random() < error_rate:
            raise TimeoutError(message)

    def pick_profile(self) -> TaskProfile:
        weights = [p.weight for p in PROFILES]
        return self.rng.choices(PROFILES, weights=weights, k=1)[0]

    def handle_ticket(self, profile: TaskProfile) -> str:
        self._task_type = profile.task_type
        limits = Limits(max_iterations=profile.steps + 2, max_tool_calls=8, max_tokens=60_000)

        tools = (self.lookup_order, self.search_kb, self.issue_refund, self.close_account)

        @agent(name="support", task_type=profile.task_type, limits=limits, tools=tools)
        def support(ticket_id: str) -> str:
            error_rate = profile.tool_error_rate * self.error_boost.get(profile.task_type, 1.0)
            ask = self.ask_anthropic if profile.provider == "anthropic" else self.ask_openai
            steps = profile.steps + (3 if self.rng.random() < 0.03 else 0)  # a runaway now and then
            for _ in range(steps):
                iteration()
                ask(profile.model, f"ticket {ticket_id}: " + "context " * self.rng.randint(50, 400))
                try:
                    self.lookup_order(ticket_id, error_rate)
                    self.search_kb(profile.task_type, error_rate)
                except TimeoutError:
                    if self.rng.random() < 0.5:
                        raise
            confidence = min(1.0, max(0.0, self.rng.gauss(profile.confidence_mean, 0.12)))
            decision = record_decision("resolve", confidence, thresholds=THRESHOLDS)
            if decision.route == "escalate":
                set_outcome("escalated", reason="low confidence")
            elif profile.task_type == "refund" and decision.route == "auto":
                self.issue_refund(ticket_id, self.rng.uniform(5, 200), error_rate)
            ref = current_trace_ref()
            if ref is not None and self.rng.random() < 0.3:
                # Human review later says whether the decision was right; likelier when sure.
                right = self.rng.random() < 0.5 + confidence / 2.1
                record_feedback(ref, correct=right, thumbs_up=right, score=1.0 if right else 0.0)
            return decision.route or "auto"

        try:
            support(f"T{self.rng.getrandbits(24):06x}")
        except AgentLimitExceeded:
            return "limit_exceeded"
        except Exception:  # noqa: BLE001 - the demo agent fails like real agents do
            return "failed"
        return "handled"

    def run(self, tickets: int, pace_s: float = 0.0) -> Counter[str]:
        for _ in range(tickets):
            self.outcomes[self.handle_ticket(self.pick_profile())] += 1
            if pace_s:
                time.sleep(pace_s)  # pacing a simulated workload, not waiting for anything
        return self.outcomes


def run_demo(
    tickets: int = 20, seed: int = 7, endpoint: str | None = None, console: bool = False
) -> str:
    """Configure the SDK, run ``tickets`` tickets through the fleet, flush, and summarize."""
    if console:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

        _config.configure(
            service_name="demo-support-fleet",
            span_processors=[SimpleSpanProcessor(ConsoleSpanExporter())],
        )
    else:
        _config.configure(service_name="demo-support-fleet", endpoint=endpoint)
    try:
        outcomes = DemoFleet(seed).run(tickets)
        _config.force_flush()
    finally:
        _config.shutdown()
    return "demo tickets: " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items()))

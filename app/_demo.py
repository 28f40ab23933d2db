"""A simulated fleet of support agents, run through the real SDK (``agentwatch demo``).

No network and no real model: a fake client returns provider-shaped responses (OpenAI chat
completions and Anthropic messages) with plausible token counts, so everything downstream
(usage extraction, pricing, dashboards, alerts) sees what a real fleet would send.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

from agentwatch import _config
from agentwatch import _expectations as expect
from agentwatch._decorators import agent, llm, tool
from agentwatch._errors import AgentLimitExceeded
from agentwatch._health import Probe, health_check
from agentwatch._limits import Limits
from agentwatch._records import (
    Thresholds,
    current_trace_ref,
    iteration,
    record_decision,
    record_feedback,
    route_by_confidence,
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
        self,
        provider: str,
        model: str,
        prompt_chars: int,
        multiplier: float = 1.0,
        text: str = "Here is what I found.",
    ) -> dict[str, Any]:
        input_tokens = int(prompt_chars / 4 * multiplier) + self.rng.randint(200, 900)
        output_tokens = int(self.rng.randint(60, 400) * multiplier)
        if provider == "anthropic":
            cached = self.rng.choice((0, 0, 512))
            return {
                "id": f"msg_{self.rng.getrandbits(48):x}",
                "type": "message",
                "model": model,
                "content": [{"type": "text", "text": text}],
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
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": input_tokens + cached,
                "completion_tokens": output_tokens,
                "prompt_tokens_details": {"cached_tokens": cached},
            },
        }


@dataclass(frozen=True, slots=True)
class _Ticket:
    """What one ticket's model and tool calls need to know: set per ticket in a context
    variable, so fleets shared by threads (the probes') keep no per-ticket state of their own."""

    task_type: str
    error_rate: float
    cost_factor: float


_TICKET: ContextVar[_Ticket | None] = ContextVar("agentwatch_demo_ticket", default=None)

# Simulated latency at scale 1, in seconds: a model call waits a first-token time plus its
# output at ~250 tokens/s (0.3-2.5 s); each tool has its own range (50-400 ms).
MODEL_LATENCY_S: Final = (0.3, 2.5)
FIRST_TOKEN_S: Final = (0.3, 0.6)
OUTPUT_TOKENS_PER_S: Final = 250.0
TOOL_LATENCY_S: Final = {
    "lookup_order": (0.05, 0.25),
    "search_kb": (0.1, 0.4),
    "issue_refund": (0.2, 0.4),
    "close_account": (0.15, 0.35),
}
REASONING: Final = {
    "auto": "{task} for {customer}: the order history supports the request; confidence {c:.2f} "
    "is above the auto-approve bar.",
    "review": "{task} for {customer}: the policy probably applies but the order history is "
    "incomplete (confidence {c:.2f}); a person should confirm.",
    "escalate": "{task} for {customer}: conflicting facts in the ticket (confidence {c:.2f}); "
    "handing it to a person.",
}
DEFAULT_ANSWER: Final = "Here is what I found."
# What the fake model knows: the questions the health probes ask.
CANNED_ANSWERS: Final = {
    "How long do I have to return an item?": (
        "You can return an item within 30 days of delivery for a full refund."
    ),
}


def output_tokens(response: Mapping[str, Any]) -> int:
    usage = response.get("usage") or {}
    return int(usage.get("output_tokens") or usage.get("completion_tokens") or 0)


class DemoFleet:
    """A fleet of support agents handling tickets of several task types.

    ``latency_scale`` makes model and tool calls take simulated time (1.0: as a real fleet,
    see ``MODEL_LATENCY_S``; 0, the default: none), drawn from an RNG of its own so the
    tickets' course is the same at any scale; ``stop`` cuts the waiting short. Each
    ``destructive_rate`` of tickets (default none) also asks to close the customer's account.
    """

    def __init__(
        self,
        seed: int = 7,
        *,
        latency_scale: float = 0.0,
        destructive_rate: float = 0.0,
        stop: threading.Event | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.latency_rng = random.Random(f"{seed}/latency")
        self.latency_scale = latency_scale
        self.destructive_rate = destructive_rate
        self.stop = stop or threading.Event()
        self.client = FakeModelClient(self.rng)
        # task type -> multiplier; `agentwatch up --demo` raises these to stage spikes.
        self.error_boost: dict[str, float] = {}
        self.cost_boost: dict[str, float] = {}
        self.outcomes: Counter[str] = Counter()

        @llm(provider="openai")
        def ask_openai(model: str, prompt: str) -> dict[str, Any]:
            return self._answer("openai", model, prompt)

        @llm(provider="anthropic")
        def ask_anthropic(model: str, prompt: str) -> dict[str, Any]:
            return self._answer("anthropic", model, prompt)

        @tool(tier="read")
        def lookup_order(order_id: str) -> dict[str, str]:
            """Look an order up in the order system."""
            self._tool_call("lookup_order", "order service timed out")
            return {"order_id": order_id, "status": self.rng.choice(("shipped", "pending"))}

        @tool(tier="read")
        def search_kb(query: str) -> list[str]:
            """Search the knowledge base."""
            self._tool_call("search_kb", "knowledge base timed out")
            return [f"article about {query}"]

        @tool(tier="write_risky")
        def issue_refund(order_id: str, amount: float) -> str:
            """Refund an order."""
            self._tool_call("issue_refund", "payment gateway timed out")
            return f"refunded {amount:.2f} on {order_id}"

        @tool(tier="destructive")
        def close_account(customer_id: str, reason: str) -> str:
            """Close a customer account."""
            self._tool_call("close_account", "")
            return f"closed {customer_id}"

        self.ask_openai = ask_openai
        self.ask_anthropic = ask_anthropic
        self.lookup_order = lookup_order
        self.search_kb = search_kb
        self.issue_refund = issue_refund
        self.close_account = close_account

    def _simulate(self, low_s: float, high_s: float) -> None:
        if self.latency_scale > 0:
            seconds = self.latency_rng.uniform(low_s, high_s) * self.latency_scale
            self.stop.wait(seconds)  # simulated work of a model or tool call, not waiting for data

    def _answer(self, provider: str, model: str, prompt: str) -> dict[str, Any]:
        ticket = _TICKET.get()
        factor = ticket.cost_factor if ticket is not None else 1.0
        text = CANNED_ANSWERS.get(prompt, DEFAULT_ANSWER)
        response = self.client.complete(provider, model, len(prompt), factor, text=text)
        if self.latency_scale > 0:
            writing_s = output_tokens(response) / OUTPUT_TOKENS_PER_S
            low, high = FIRST_TOKEN_S
            fastest, slowest = MODEL_LATENCY_S
            seconds = min(max(writing_s + low, fastest), slowest)
            self._simulate(seconds, min(seconds + high - low, slowest))
        return response

    def _tool_call(self, name: str, failure: str) -> None:
        self._simulate(*TOOL_LATENCY_S[name])
        ticket = _TICKET.get()
        if failure and ticket is not None and self.rng.random() < ticket.error_rate:
            raise TimeoutError(failure)

    def pick_profile(self) -> TaskProfile:
        weights = [p.weight for p in PROFILES]
        return self.rng.choices(PROFILES, weights=weights, k=1)[0]

    def handle_ticket(self, profile: TaskProfile) -> str:
        ticket = _Ticket(
            task_type=profile.task_type,
            error_rate=profile.tool_error_rate * self.error_boost.get(profile.task_type, 1.0),
            cost_factor=self.cost_boost.get(profile.task_type, 1.0),
        )
        token = _TICKET.set(ticket)
        try:
            return self._handle(profile)
        finally:
            _TICKET.reset(token)

    def _handle(self, profile: TaskProfile) -> str:
        limits = Limits(max_iterations=profile.steps + 2, max_tool_calls=8, max_tokens=60_000)

        tools = (self.lookup_order, self.search_kb, self.issue_refund, self.close_account)

        @agent(name="support", task_type=profile.task_type, limits=limits, tools=tools)
        def support(ticket_id: str) -> str:
            ask = self.ask_anthropic if profile.provider == "anthropic" else self.ask_openai
            steps = profile.steps + (3 if self.rng.random() < 0.03 else 0)  # a runaway now and then
            for _ in range(steps):
                iteration()
                ask(profile.model, f"ticket {ticket_id}: " + "context " * self.rng.randint(50, 400))
                try:
                    self.lookup_order(ticket_id)
                    self.search_kb(profile.task_type)
                except TimeoutError:
                    if self.rng.random() < 0.5:
                        raise
            customer = f"{ticket_id.lower()}@customers.example.com"  # redacted when captured
            confidence = min(1.0, max(0.0, self.rng.gauss(profile.confidence_mean, 0.12)))
            route = route_by_confidence(confidence, THRESHOLDS)
            reasoning = REASONING[route].format(
                task=profile.task_type.replace("_", " "), customer=customer, c=confidence
            )
            decision = record_decision(
                "resolve", confidence, thresholds=THRESHOLDS, reasoning=reasoning
            )
            if decision.route == "escalate":
                set_outcome("escalated", reason="low confidence")
            elif profile.task_type == "refund" and decision.route == "auto":
                self.issue_refund(ticket_id, round(self.rng.uniform(5, 200), 2))
            if self.destructive_rate and self.rng.random() < self.destructive_rate:
                self._close_account(ticket_id, customer)
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

    def _close_account(self, ticket_id: str, customer: str) -> None:
        """The customer asked to close their account: closed at once when the agent is sure."""
        confidence = min(1.0, max(0.0, self.rng.gauss(0.9, 0.06)))
        decision = record_decision(
            "close_account",
            confidence,
            thresholds=THRESHOLDS,
            reasoning=f"{customer} asked in writing to close the account; no open orders.",
        )
        if decision.route == "auto":
            self.close_account(f"C{ticket_id[1:]}", "customer request")

    def reply(self, question: str, model: str = "gpt-4o-mini") -> str:
        """A one-off answer from the support model, outside any ticket (the health probes ask)."""
        response = self.ask_openai(model, question)
        return str(response["choices"][0]["message"]["content"])

    def run(self, tickets: int, pace_s: float = 0.0) -> Counter[str]:
        for _ in range(tickets):
            self.outcomes[self.handle_ticket(self.pick_profile())] += 1
            if pace_s:
                time.sleep(pace_s)  # pacing a simulated workload, not waiting for anything
        return self.outcomes


def demo_health_checks(
    fleet: DemoFleet, order_service_down: Callable[[], bool], every_s: float = 10.0
) -> list[Probe[[], str]]:
    """Two probes on ``fleet`` (its own: the scheduler's thread uses it), as a user writes them:
    ``refund-policy`` always passes; ``order-status`` fails while ``order_service_down()``
    (its order lookup times out, and the answer has no status in it)."""

    @health_check(name="refund-policy", expect=expect.contains("30 days"), every_s=every_s)
    def refund_policy() -> str:
        return fleet.reply("How long do I have to return an item?")

    @health_check(
        name="order-status", expect=expect.matches(r"\b(shipped|pending)\b"), every_s=every_s
    )
    def order_status() -> str:
        down = order_service_down()
        token = _TICKET.set(_Ticket("probe", error_rate=1.0 if down else 0.0, cost_factor=1.0))
        try:
            fleet.reply("Where is order T000042?")
            return f"Order T000042 is {fleet.lookup_order('T000042')['status']}."
        except TimeoutError:
            return "Sorry, I cannot look orders up right now. Please try again later."
        finally:
            _TICKET.reset(token)

    return [refund_policy, order_status]


def run_demo(
    tickets: int = 20,
    seed: int = 7,
    endpoint: str | None = None,
    console: bool = False,
    latency_scale: float = 0.0,
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
        outcomes = DemoFleet(seed, latency_scale=latency_scale).run(tickets)
        _config.force_flush()
    finally:
        _config.shutdown()
    return "demo tickets: " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items()))

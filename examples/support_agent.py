"""A customer-support agent instrumented with every agentwatch SDK feature. No network needed.

Run it:

    python examples/support_agent.py                 # spans printed to the console
    OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 python examples/support_agent.py
    python examples/support_agent.py --endpoint http://localhost:4318   # e.g. `agentwatch up`

The "LLM" is a fake client that returns exactly what the OpenAI and Anthropic SDKs return
(chat completions, streamed chunks, Anthropic messages and stream events), so usage extraction,
pricing and the dashboards see what a real agent would send.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import agentwatch as aw

# --- a fake model client: provider-shaped responses, no network -------------------------------


class FakeLLM:
    """Stands in for `openai.OpenAI()` and `anthropic.Anthropic()`: same response shapes."""

    def openai_chat(self, model: str, messages: list[dict[str, str]]) -> SimpleNamespace:
        """Like `client.chat.completions.create(...)`: an object with `.usage`. OpenAI counts
        cached prompt tokens inside `prompt_tokens`."""
        prompt = sum(len(m["content"]) for m in messages) // 4 + 300
        return SimpleNamespace(
            id="chatcmpl-example",
            model=f"{model}-2024-08-06",
            choices=[
                SimpleNamespace(
                    message=SimpleNamespace(role="assistant", content="Refund looks valid."),
                    finish_reason="stop",
                )
            ],
            usage=SimpleNamespace(
                prompt_tokens=prompt,
                completion_tokens=45,
                prompt_tokens_details=SimpleNamespace(cached_tokens=256),
                completion_tokens_details=SimpleNamespace(reasoning_tokens=0),
            ),
        )

    def openai_stream(self, model: str, messages: list[dict[str, str]]) -> Iterator[Any]:
        """Like `create(..., stream=True, stream_options={"include_usage": True})`: chunks of
        text, then a last chunk with no choices that carries the usage."""
        for piece in ("Thanks for reaching out. ", "Your order is on its way."):
            yield {"model": model, "choices": [{"delta": {"content": piece}}], "usage": None}
        yield {"model": model, "choices": [{"delta": {}, "finish_reason": "stop"}], "usage": None}
        yield {
            "model": model,
            "choices": [],
            "usage": {"prompt_tokens": 410, "completion_tokens": 18},
        }

    def anthropic_message(self, model: str, prompt: str) -> dict[str, Any]:
        """Like `client.messages.create(...)` as JSON. Anthropic's `input_tokens` EXCLUDES the
        cache; agentwatch adds cache reads and writes back, as the GenAI conventions ask."""
        return {
            "id": "msg_example",
            "type": "message",
            "model": model,
            "content": [{"type": "text", "text": "Category: billing_dispute"}],
            "stop_reason": "end_turn",
            "usage": {
                "input_tokens": 120,
                "output_tokens": 12,
                "cache_read_input_tokens": 900,
                "cache_creation_input_tokens": 0,
            },
        }

    async def anthropic_stream(self, model: str, prompt: str) -> AsyncIterator[dict[str, Any]]:
        """Like `async with client.messages.stream(...)`: usage arrives in message_start (input)
        and message_delta (cumulative output)."""
        yield {
            "type": "message_start",
            "message": {"id": "msg_stream", "model": model, "usage": {"input_tokens": 80}},
        }
        for text in ("Summary: ", "customer wants a refund."):
            await asyncio.sleep(0)
            yield {"type": "content_block_delta", "delta": {"type": "text_delta", "text": text}}
        yield {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 9},
        }
        yield {"type": "message_stop"}


llm_client = FakeLLM()

# --- LLM calls: @aw.llm makes a `chat {model}` span and reads usage from the response ---------


@aw.llm(provider="openai")
def ask_openai(*, model: str, messages: list[dict[str, str]]) -> SimpleNamespace:
    # The model comes from the `model=` keyword; usage, response model and finish reasons from
    # the returned object. With content capture on, `messages` is recorded (redacted).
    return llm_client.openai_chat(model, messages)


@aw.llm(provider="openai")
def stream_openai(*, model: str, messages: list[dict[str, str]]) -> Iterator[Any]:
    # A returned stream is wrapped: the span ends when the caller has consumed it, with the
    # usage of the final chunk.
    return llm_client.openai_stream(model, messages)


@aw.llm(provider="anthropic", model="claude-3-5-haiku-20241022")
def classify(prompt: str) -> dict[str, Any]:
    # `model=` on the decorator names the span when the call has no model keyword.
    return llm_client.anthropic_message("claude-3-5-haiku-20241022", prompt)


@aw.llm(provider="anthropic")
async def summarize(prompt: str) -> AsyncIterator[dict[str, Any]]:
    # An async generator that yields the provider's stream events: agentwatch reads the usage
    # from the events as they pass through.
    async for event in llm_client.anthropic_stream("claude-3-5-sonnet-20241022", prompt):
        yield event


# --- tools: @aw.tool makes an `execute_tool {name}` span with a risk tier ---------------------


ORDERS = {
    "A-100": {"status": "delivered", "amount": 42.0},
    "A-200": {"status": "in transit", "amount": 310.0},
    "A-300": {"status": "delivered", "amount": 15.5},
}


@aw.tool(tier="read")
def lookup_order(order_id: str) -> dict[str, Any]:
    """Look an order up in the order system."""
    if order_id not in ORDERS:
        raise TimeoutError("order service timed out")  # the span records error.type
    return ORDERS[order_id]


@aw.tool(tier="read")
def search_kb(query: str) -> list[str]:
    """Search the knowledge base."""
    # A model call we cannot decorate (say an embeddings endpoint of a custom client): record
    # its usage by hand. It lands on this tool span and counts against the agent's budget.
    aw.record_usage(
        model="text-embedding-3-small", provider="openai", input_tokens=12, output_tokens=0
    )
    return [f"kb: how to handle {query}"]


@aw.tool(tier="write_risky")
def issue_refund(order_id: str, amount: float) -> str:
    """Refund an order."""
    return f"refunded {amount:.2f} on {order_id}"


@aw.tool(tier="write_safe", name="crm.add_note")
def add_note(ticket_id: str, note: str) -> None:
    """Add a note to the ticket in the CRM."""


@aw.tool(tier="destructive")
def close_account(customer_id: str) -> str:
    """Close a customer account (declared for its tier; this example never calls it)."""
    return f"closed {customer_id}"


@aw.tool(tier="read")
async def fetch_history(customer_id: str, page: int) -> str:
    await asyncio.sleep(0)
    return f"{customer_id} history page {page}"


# --- the agents -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ticket:
    ticket_id: str
    customer_id: str
    order_id: str
    text: str
    confidence: float  # what our (fake) model would say about its decision
    runaway: bool = False  # a ticket that makes the agent loop until a limit stops it


# Routing bands for decisions: auto at >= 0.85, human review from 0.6, escalate below.
THRESHOLDS = aw.Thresholds(auto_at=0.85, review_at=0.6)

# A budget for each run: a runaway agent gets AgentLimitExceeded raised into it. Cost is priced
# locally from the bundled price table (agentwatch[cost]).
LIMITS = aw.Limits(
    max_iterations=4, max_tokens=50_000, max_cost_usd=0.50, max_tool_calls=12, max_wall_time_s=30
)


@aw.agent(name="support", task_type="refund", description="Handles refund tickets", limits=LIMITS)
def handle_refund(ticket: Ticket) -> dict[str, Any]:
    """One agent run: an `invoke_agent support` span; its outcome defaults to completed (or
    failed if it raises) unless set_outcome says otherwise."""
    ref = aw.current_trace_ref()  # store it with the ticket; feedback comes back to it later
    while True:
        aw.iteration()  # counts against max_iterations; raises AgentLimitExceeded past it
        order = lookup_order(ticket.order_id)
        # Tools run in a thread pool still belong to this run's trace: agentwatch carries the
        # OpenTelemetry context into threads and pools started inside a decorated call.
        with ThreadPoolExecutor(max_workers=2) as pool:
            articles = list(pool.map(search_kb, ["refund policy", "shipping delays"]))
        answer = ask_openai(
            model="gpt-4o",
            messages=[
                {"role": "system", "content": f"Order: {order}. Articles: {articles}"},
                {"role": "user", "content": ticket.text},
            ],
        )
        if not ticket.runaway:
            break
    aw.check_limits()  # e.g. wall time, between steps that are not tools or LLM calls
    decision = aw.record_decision(
        "approve_refund",
        ticket.confidence,
        thresholds=THRESHOLDS,
        reasoning=f"{answer.choices[0].message.content} Customer wrote: {ticket.text}",
    )
    if decision.route == "auto":
        result = issue_refund(ticket.order_id, order["amount"])
    elif decision.route == "review":
        add_note(ticket.ticket_id, "refund needs a human check")
        aw.set_outcome("escalated", reason="confidence in the review band")
        result = "queued for review"
    else:
        aw.set_outcome("escalated", reason="low confidence")
        result = "escalated to a human"
    return {"ticket": ticket.ticket_id, "result": result, "route": decision.route, "ref": str(ref)}


@aw.agent(name="support", task_type="order_status")
def answer_status(ticket: Ticket) -> str:
    """Streams its answer to the customer as it is generated."""
    lookup_order(ticket.order_id)
    parts = []
    for chunk in stream_openai(
        model="gpt-4o-mini", messages=[{"role": "user", "content": ticket.text}]
    ):
        for choice in chunk["choices"]:
            parts.append(choice["delta"].get("content") or "")
    aw.record_decision("answer_directly", 0.93, route="auto")  # a route chosen by the agent
    return "".join(parts)


@aw.agent(name="classifier")
def categorize(text: str) -> str:
    """A sub-agent: its span nests under the caller's and inherits the caller's task type."""
    response = classify(text)
    return str(response["content"][0]["text"])


@aw.agent(name="triage", task_type="billing_dispute")
async def triage(ticket: Ticket) -> str:
    """An async agent: parallel tools with asyncio.gather, an async streamed LLM call, and a
    sub-agent that inherits this run's task type."""
    pages = await asyncio.gather(*(fetch_history(ticket.customer_id, p) for p in range(3)))
    summary = [event async for event in summarize(f"{ticket.text} {pages}")]
    category = categorize(ticket.text)
    route = aw.route_by_confidence(ticket.confidence, THRESHOLDS)
    aw.record_decision("category", ticket.confidence, route=route)
    return f"{category} ({len(summary)} events summarized)"


TICKETS = [
    Ticket("T-1", "C-1", "A-100", "Item arrived broken, mail me at jane@example.com", 0.93),
    Ticket("T-2", "C-2", "A-200", "Refund please, call +1 415 555 0100", 0.71),
    Ticket("T-3", "C-3", "A-300", "I want my money back, card 4111 1111 1111 1111", 0.41),
    Ticket("T-4", "C-4", "A-404", "Where is my refund?", 0.9),  # order service fails
    Ticket("T-5", "C-5", "A-100", "Refund, refund, refund!", 0.9, runaway=True),
]


def run_tickets() -> Counter[str]:
    """Run every agent over the tickets, then send feedback as a human reviewer would."""
    outcomes: Counter[str] = Counter()
    refs: list[str] = []
    for ticket in TICKETS:
        try:
            refs.append(handle_refund(ticket)["ref"])
            outcomes["handled"] += 1
        except aw.AgentLimitExceeded as exc:  # recorded as outcome=limit_exceeded
            outcomes[f"limit_exceeded:{exc.limit}"] += 1
        except TimeoutError:  # recorded as outcome=failed, error.type=TimeoutError
            outcomes["failed"] += 1
    answer_status(TICKETS[0])
    asyncio.run(triage(TICKETS[1]))
    # Later, a reviewer marks the first decision right: the feedback span joins that trace.
    aw.record_feedback(refs[0], correct=True, thumbs_up=True, score=1.0, comment="spot on")
    aw.record_feedback(refs[1], correct=False, comment="should have refunded; jane@example.com")
    return outcomes


# Content capture is opt-in. What is recorded passes through the redactor: the default one
# (emails, phone and card numbers, API keys, bearer tokens) plus our own ticket-id pattern.
REDACT = aw.make_redactor([r"\bC-\d+\b"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--endpoint", help="OTLP/HTTP endpoint (default: OTEL_EXPORTER_OTLP_ENDPOINT)"
    )
    args = parser.parse_args(argv)
    # An application (or a test using aw.capture_spans) that configured agentwatch already
    # keeps its setup; otherwise send to the endpoint given, or print spans to the console.
    owns_setup = not aw.is_configured()
    if owns_setup:
        endpoint = args.endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        common: dict[str, Any] = {
            "service_name": "example-support-agent",
            "environment": "example",
            "resource_attributes": {"service.version": "1.0.0"},
            "capture_content": True,
            "redact": REDACT,
            "max_content_chars": 2000,
        }
        if endpoint:
            aw.configure(endpoint=endpoint, **common)
        else:
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

            aw.configure(span_processors=[SimpleSpanProcessor(ConsoleSpanExporter())], **common)
    try:
        outcomes = run_tickets()
        aw.force_flush()  # e.g. before a serverless function freezes; shutdown() flushes too
    finally:
        if owns_setup:
            aw.shutdown()  # flushes what is still batched
    print("tickets:", ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

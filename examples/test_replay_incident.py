"""A production incident as a regression test: the support agent, replayed against the trace
it left (incident_trace.jsonl, exported with `agentwatch export trace`; record_incident.py
regenerates it).

    pytest examples/test_replay_incident.py

Every `@aw.tool` call is answered from the trace instead of running, so the test is
deterministic and needs no order system: should the agent call another tool, call one with
other arguments, or skip one, the replay fails the test and says which call.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import agentwatch as aw

# examples/ is not a package: pytest puts this folder on sys.path, so its modules import by name.
support_agent = importlib.import_module("support_agent")
INCIDENT_TICKET = importlib.import_module("record_incident").INCIDENT_TICKET

INCIDENT = Path(__file__).resolve().with_name("incident_trace.jsonl")


@pytest.fixture(autouse=True)
def no_live_systems(monkeypatch: pytest.MonkeyPatch) -> None:
    """Today's order system no longer knows the order: only the replay can answer for it."""
    monkeypatch.setattr(support_agent, "ORDERS", {})


def test_the_agent_still_refunds_the_parcel_in_transit(
    agentwatch_spans: aw.CapturedSpans, agentwatch_replay: Any
) -> None:
    # The trace was recorded with the example's redactor: arguments compare as recorded.
    replay = agentwatch_replay(INCIDENT, redact=support_agent.REDACT)

    result = support_agent.handle_refund(INCIDENT_TICKET)

    assert (result["route"], result["result"]) == ("auto", "refunded 310.00 on A-200")
    replay.assert_complete()  # the fixture's teardown checks this too
    refund = agentwatch_spans.one("execute_tool issue_refund")
    assert (refund.attributes or {})["agentwatch.replay"] is True


def openai_shaped(step: dict[str, Any]) -> SimpleNamespace:
    """The recorded model answer in the shape handle_refund reads (an OpenAI chat completion)."""
    message = SimpleNamespace(role="assistant", content=step["output_messages"])
    return SimpleNamespace(
        model=step["model"],
        choices=[SimpleNamespace(message=message, finish_reason="stop")],
        usage=SimpleNamespace(
            prompt_tokens=step["input_tokens"], completion_tokens=step["output_tokens"]
        ),
    )


def test_model_calls_can_be_replayed_too(
    agentwatch_replay: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(support_agent, "llm_client", None)  # a live model call would fail
    agentwatch_replay(INCIDENT, models=openai_shaped, redact=support_agent.REDACT)

    result = support_agent.handle_refund(INCIDENT_TICKET)

    assert result["result"] == "refunded 310.00 on A-200"

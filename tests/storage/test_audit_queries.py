"""The audit of actions, checked against the seeded demo fleet read back span by span: every
call of a writing tool, its agent, outcome and the decision before it."""

from __future__ import annotations

from collections import Counter

import pytest

from agentwatch.storage._audit_queries import WRITING_TIERS, risky_actions
from agentwatch.storage._scope import Filters

from . import reference as ref
from .fleet import Fleet


def writing_calls(fleet: Fleet, filters: Filters) -> list[ref.Span]:
    return [
        s
        for s in fleet.spans
        if s.operation == "execute_tool"
        and s.attrs.get("agentwatch.tool.tier") in WRITING_TIERS
        and ref.in_range(s, filters)
    ]


def test_every_writing_call_is_listed_newest_first_with_its_agent(fleet: Fleet) -> None:
    want = writing_calls(fleet, Filters())
    assert want, "the demo fleet calls write_risky and destructive tools"

    rows = risky_actions(fleet.store, Filters()).dicts()

    assert len(rows) == len(want)
    assert Counter((r["tool"], r["tier"]) for r in rows) == Counter(
        (s.attrs["gen_ai.tool.name"], s.attrs["agentwatch.tool.tier"]) for s in want
    )
    assert [r["time_ms"] for r in rows] == sorted((r["time_ms"] for r in rows), reverse=True)
    errors = sum(1 for s in want if s.status == "Error")
    assert sum(1 for r in rows if r["outcome"] == "error") == errors
    agents = {s.trace_id: s.agent for s in fleet.spans if s.operation == "invoke_agent"}
    assert all(r["agent"] == agents[r["trace_id"]] for r in rows)


def test_the_justification_is_the_closest_decision_before_the_call(fleet: Fleet) -> None:
    decisions = [s for s in fleet.spans if s.operation == "decision"]
    for row in risky_actions(fleet.store, Filters()).dicts():
        before = [
            d
            for d in decisions
            if d.trace_id == row["trace_id"] and d.ts <= row["at"].timestamp() * 1e9 + 1000
        ]
        if before:
            closest = max(before, key=lambda d: d.ts)
            assert row["decision"] == closest.attrs["agentwatch.decision.name"]
        else:
            assert row["decision"] == ""


@pytest.mark.parametrize("tier", WRITING_TIERS)
def test_filters_narrow_by_tier_outcome_and_tool(fleet: Fleet, tier: str) -> None:
    everything = risky_actions(fleet.store, Filters()).dicts()

    by_tier = risky_actions(fleet.store, Filters(), tier=tier).dicts()
    failed = risky_actions(fleet.store, Filters(), outcome="error").dicts()

    assert by_tier == [r for r in everything if r["tier"] == tier]
    assert failed == [r for r in everything if r["outcome"] == "error"]
    if everything:
        tool = everything[0]["tool"]
        assert risky_actions(fleet.store, Filters(), tool=tool).dicts() == [
            r for r in everything if r["tool"] == tool
        ]


def test_a_tier_or_outcome_outside_the_list_is_refused(fleet: Fleet) -> None:
    with pytest.raises(ValueError, match="tier must be one of"):
        risky_actions(fleet.store, Filters(), tier="read' OR 1=1 --")
    with pytest.raises(ValueError, match="outcome must be"):
        risky_actions(fleet.store, Filters(), outcome="maybe")

"""The audit of actions, checked against the seeded demo fleet read back span by span: every
call of a writing tool, its agent, outcome and the decision before it."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from agentwatch.storage._audit_queries import WRITING_TIERS, access_patterns, risky_actions
from agentwatch.storage._scope import Filters

from . import reference as ref
from .fleet import Fleet, wait_until


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


# --- access patterns --------------------------------------------------------------------------
def tool_counts(spans: list[ref.Span], start_ns: int, end_ns: int) -> Counter[tuple[str, str, str]]:
    """(agent, tool, tier) -> calls in [start, end), from the stored rows."""
    run_agent = {s.trace_id: s.agent for s in spans if s.operation == "invoke_agent"}
    return Counter(
        (
            s.agent or run_agent.get(s.trace_id, ""),
            s.attrs.get("gen_ai.tool.name", ""),
            s.attrs.get("agentwatch.tool.tier", ""),
        )
        for s in spans
        if s.operation == "execute_tool" and start_ns <= s.ts < end_ns
    )


@pytest.fixture(scope="module")
def with_a_new_tool(fleet: Fleet) -> datetime:
    """One more run of the support agent, calling a tool it never called before; returns a
    moment after it is stored."""
    import agentwatch as aw

    @aw.tool(tier="read")  # not a writing tier: the audit tests above count those
    def tag_ticket(ticket: str) -> str:
        return ticket

    @aw.agent(name="support", task_type="refund")
    def support() -> None:
        tag_ticket("T-1")

    aw.configure(service_name="support-fleet", endpoint=fleet.collector.urls()["otlp_http"])
    try:
        support()
    finally:
        aw.shutdown()
    wait_until(
        lambda: (
            fleet.store.query(
                "SELECT count() FROM agentwatch.otel_traces "
                "WHERE SpanName = 'execute_tool tag_ticket'"
            ).scalar()
            == 1
        ),
        what="the new tool's call",
    )
    return datetime.now(UTC) + timedelta(milliseconds=1)


def test_access_patterns_compare_each_agents_tools_with_the_period_before(
    fleet: Fleet, with_a_new_tool: datetime
) -> None:
    filters = Filters(start=fleet.middle, end=with_a_new_tool)
    start, end = ref.ns(fleet.middle), ref.ns(with_a_new_tool)
    spans = ref.load_spans(fleet.store)
    now = tool_counts(spans, start, end)
    before = tool_counts(spans, start - (end - start), start)

    rows = access_patterns(fleet.store, filters).dicts()

    got = {(r["agent"], r["tool"], r["tier"]): (r["calls"], r["previous_calls"]) for r in rows}
    assert got == {key: (now[key], before[key]) for key in now.keys() | before.keys()}
    new = [(r["agent"], r["tool"]) for r in rows if r["new"]]
    assert new == [("support", "tag_ticket")]
    assert not [r for r in rows if r["dropped"] and r["calls"]]


def test_access_patterns_narrow_by_agent_and_service(
    fleet: Fleet, with_a_new_tool: datetime
) -> None:
    filters = Filters(start=fleet.started, end=with_a_new_tool)
    everything = access_patterns(fleet.store, filters).dicts()

    nobody = access_patterns(fleet.store, replace(filters, agent="nobody")).dicts()
    billing = access_patterns(fleet.store, replace(filters, service="billing-fleet")).dicts()

    assert everything
    assert nobody == []
    assert {r["tool"] for r in billing} <= {r["tool"] for r in everything}
    assert sum(r["calls"] for r in billing) < sum(r["calls"] for r in everything)

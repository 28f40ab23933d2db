"""Migration 3 on a real embedded ClickHouse: the typed Iterations and AgentTools columns, and the
per-trace facts that a materialized view keeps as spans are inserted (back-filled from the spans
already stored when the migration runs)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from agentwatch.storage._schema import (
    MIGRATIONS_TABLE,
    TRACE_FACTS_TABLE,
    migrations,
    migrations_table_ddl,
)
from agentwatch.storage._store import EmbeddedStore, apply_migrations

HOUR_NS = 3600 * 10**9
T0 = time.time_ns() // HOUR_NS * HOUR_NS - 2 * HOUR_NS  # a recent whole hour (within the TTL)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    embedded = EmbeddedStore(tmp_path / "data")
    yield embedded
    embedded.close()


def span(
    trace: str, span_id: str, parent: str, at_ns: int, attributes: dict[str, str], **extra: Any
) -> dict[str, Any]:
    return {
        "Timestamp": at_ns,
        "TraceId": trace,
        "SpanId": span_id,
        "ParentSpanId": parent,
        "ServiceName": extra.get("service", "svc"),
        "SpanAttributes": attributes,
        "Duration": extra.get("duration", 1_000_000),
        "StatusCode": extra.get("status", "Unset"),
        "CostUsd": extra.get("cost", 0.0),
    }


def agent(task_type: str, outcome: str = "", **extra: str) -> dict[str, str]:
    attributes = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "support",
        "agentwatch.task.type": task_type,
        **extra,
    }
    if outcome:
        attributes["agentwatch.task.outcome"] = outcome
    return attributes


CHAT = {"gen_ai.operation.name": "chat", "agentwatch.task.type": "refund"}


def insert(store: EmbeddedStore, spans: list[dict[str, Any]]) -> None:
    """Rows shaped as the stock exporter writes them (typed columns left to their DEFAULTs)."""
    columns = {name: [s[name] for s in spans] for name in spans[0]}
    table = pa.table(
        {
            **columns,
            "Timestamp": pa.array(columns["Timestamp"], pa.timestamp("ns", tz="UTC")),
            "SpanAttributes": pa.array(
                [list(a.items()) for a in columns["SpanAttributes"]],
                pa.map_(pa.string(), pa.string()),
            ),
            "Duration": pa.array(columns["Duration"], pa.uint64()),
        }
    )
    store.insert_arrow("otel_traces", table)


def facts(store: EmbeddedStore) -> list[dict[str, Any]]:
    """The facts per trace and hour, merged (as queries merge them)."""
    return store.query(
        "SELECT toUnixTimestamp(Hour) AS hour, sum(RootAgentSpans) AS roots, "
        "sum(NestedAgentSpans) AS nested, max(RootTaskType) AS task_type, "
        "max(RootOutcome) AS outcome, min(FirstAgent) AS first_agent, sum(Spend) AS spend, "
        "sum(OtherErrors) AS other_errors, groupArrayArray(Decisions) AS decisions "
        f"FROM agentwatch.{TRACE_FACTS_TABLE} GROUP BY Hour, TraceKey ORDER BY hour, roots"
    ).dicts()


def test_the_view_keeps_each_traces_facts_per_hour(store: EmbeddedStore) -> None:
    """A trace inserted in two batches, its spans on both sides of an hour boundary, makes one
    fact row per hour: root agent, spend, decisions and errors each in the hour of their span."""
    apply_migrations(store)
    decision = {
        "gen_ai.operation.name": "decision",
        "agentwatch.decision.confidence": "0.75",
        "agentwatch.task.type": "refund",
    }
    insert(
        store,
        [
            span("t1", "c1", "a1", T0 - 5 * 10**9, CHAT, cost=0.5),
            span("t1", "d1", "a1", T0 + 2 * 10**9, decision, status="Error"),
        ],
    )
    insert(store, [span("t1", "a1", "", T0 - 10 * 10**9, agent("refund", "escalated"))])
    assert facts(store) == [
        {
            "hour": (T0 - HOUR_NS) // 10**9,
            "roots": 1,
            "nested": 0,
            "task_type": "refund",
            "outcome": "escalated",
            "first_agent": "~",
            "spend": 0.5,
            "other_errors": 0,
            "decisions": [],
        },
        {
            "hour": T0 // 10**9,
            "roots": 0,
            "nested": 0,
            "task_type": "",
            "outcome": "",
            "first_agent": "~",
            "spend": 0.0,
            "other_errors": 1,
            "decisions": [{"1": 0.75, "2": "refund"}],  # a tuple, as Arrow returns it
        },
    ]


def test_an_agent_under_a_foreign_parent_is_packed_with_its_start_time(
    store: EmbeddedStore,
) -> None:
    """Agent spans that are not roots keep the earliest one's start and fields, in a string
    that sorts by start time and survives separators in the values."""
    apply_migrations(store)
    insert(
        store,
        [
            span("t2", "a2", "web", T0 + 7, agent("a,b", "failed"), duration=42),
            span("t2", "a3", "a2", T0 + 9, agent("later")),
        ],
    )
    [row] = facts(store)
    assert (row["roots"], row["nested"]) == (0, 2)
    start, agent_name, task_type, outcome, limit_hit, duration = row["first_agent"].split(",")
    assert int(start) == T0 + 7
    assert len(start) == 19  # zero-padded: strings order as the times do
    assert [agent_name, task_type, outcome, limit_hit] == ["c3VwcG9ydA==", "YSxi", "ZmFpbGVk", ""]
    assert duration == "42"


def test_migration_3_back_fills_the_spans_stored_before_it(store: EmbeddedStore) -> None:
    """Spans stored under migrations 1 and 2 get their facts when migration 3 runs, the same
    facts as the view writes for spans inserted after it."""
    store.command("CREATE DATABASE IF NOT EXISTS agentwatch")
    apply_up_to(store, 2)
    rows = [
        span("t3", "a1", "", T0, agent("refund", "completed")),
        span("t3", "c1", "a1", T0 + 10**9, CHAT, cost=0.25),
    ]
    insert(store, rows)
    assert apply_migrations(store) == [3, 4, 5, 6, 7]
    back_filled = facts(store)
    store.command(f"TRUNCATE TABLE agentwatch.{TRACE_FACTS_TABLE}")
    insert(store, rows)
    assert back_filled == facts(store)
    assert back_filled[0]["spend"] == 0.25


def test_re_running_migration_3_does_not_back_fill_twice(store: EmbeddedStore) -> None:
    """A start that stopped after the back-fill, before recording migration 3, runs its
    statements again: the back-fill only writes into an empty table."""
    apply_migrations(store)
    insert(store, [span("t4", "a1", "", T0, agent("refund"))])
    for statement in migrations("agentwatch", 30)[2].statements:
        store.command(statement)
    assert [row["roots"] for row in facts(store)] == [1]


def test_iterations_and_declared_tools_are_typed_columns(store: EmbeddedStore) -> None:
    """Any writer that fills the map fills them; a malformed tool list reads as none."""
    apply_migrations(store)
    tools = json.dumps(["lookup_order", "close_account"])
    insert(
        store,
        [
            span("t5", "a1", "", T0, agent("x", **{"agentwatch.task.iterations": "3"})),
            span("t5", "a2", "a1", T0, agent("x", **{"agentwatch.agent.tools": tools})),
            span("t5", "a3", "a1", T0, agent("x", **{"agentwatch.agent.tools": "not json"})),
        ],
    )
    rows = store.query(
        "SELECT SpanId, Iterations, AgentTools FROM agentwatch.otel_traces ORDER BY SpanId"
    ).rows
    assert rows == [("a1", 3, []), ("a2", 0, ["lookup_order", "close_account"]), ("a3", 0, [])]


def test_the_facts_keep_the_span_tables_retention(store: EmbeddedStore) -> None:
    """A new --retention-days changes both TTLs, so facts never outlive their spans."""
    apply_migrations(store, retention_days=30)
    apply_migrations(store, retention_days=7)
    created = store.query(
        "SELECT create_table_query FROM system.tables WHERE database = 'agentwatch' "
        "AND name = {t:String}",
        {"t": TRACE_FACTS_TABLE},
    ).scalar()
    assert "TTL Hour + toIntervalDay(7)" in created


def apply_up_to(store: EmbeddedStore, version: int) -> None:
    """The schema as an older agentwatch left it: migrations up to ``version``, recorded."""
    for migration in migrations("agentwatch", 30)[:version]:
        for statement in migration.statements:
            store.command(statement)
    store.command(migrations_table_ddl("agentwatch"))
    for migration in migrations("agentwatch", 30)[:version]:
        store.command(
            f"INSERT INTO agentwatch.{MIGRATIONS_TABLE} (version, description) "
            "VALUES ({v:UInt32}, {d:String})",
            {"v": migration.version, "d": migration.description},
        )

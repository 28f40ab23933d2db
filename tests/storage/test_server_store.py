"""ServerStore (clickhouse-connect) over the real ClickHouse HTTP protocol against a real engine.

No modern ClickHouse server can be installed here (see docs/clickhouse.md), so the server is the
collector's ``QueryEndpoint`` with ``allow_write=True`` in front of a chDB engine: ServerStore's
unmodified clickhouse-connect client sends its real requests (DDL in POST bodies, ``param_*``
bindings, ``INSERT ... FORMAT Arrow`` with an lz4-compressed Arrow IPC file as the body) over
real HTTP, and the ClickHouse engine inside chDB parses and runs every statement. What this does
not exercise is ClickHouse's own HTTP handler: the HTTP layer is our shim.

Set ``AGENTWATCH_TEST_CLICKHOUSE_URL=http://user:password@host:8123`` to run the same ServerStore
tests against a real ClickHouse server instead (each test uses, then drops, its own database).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from agentwatch.query._endpoint import READ_ONLY, QueryEndpoint
from agentwatch.storage._schema import (
    ALERTS_TABLE,
    MIGRATIONS_TABLE,
    SPANS_TABLE,
    TRACE_FACTS_TABLE,
    TRACE_FACTS_VIEW,
)
from agentwatch.storage._store import EmbeddedStore, ServerStore, StorageError, apply_migrations

DB = "agentwatch"
REAL_SERVER = os.environ.get("AGENTWATCH_TEST_CLICKHOUSE_URL", "").rstrip("/")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EmbeddedStore]:
    """An empty chDB engine: no migrations, the ServerStore under test makes the schema."""
    store = EmbeddedStore(tmp_path / "engine", database=DB)
    yield store
    store.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerStore]:
    """A ServerStore on a fresh database: the write-enabled endpoint over an empty chDB engine,
    or the real server named by AGENTWATCH_TEST_CLICKHOUSE_URL."""
    database = f"aw_test_{uuid.uuid4().hex[:12]}"
    if REAL_SERVER:
        store = ServerStore(f"{REAL_SERVER}/{database}")
        try:
            yield store
        finally:
            store.command(f"DROP DATABASE IF EXISTS {database}")
            store.close()
        return
    engine = EmbeddedStore(tmp_path / "engine", database=database)
    try:
        with QueryEndpoint(engine, port=0, allow_write=True) as endpoint:
            store = ServerStore(endpoint.client_url(database))
            try:
                yield store
            finally:
                store.close()
    finally:
        engine.close()


def span_batch(now_ns: int) -> pa.Table:
    """Three spans as the collector builds them: attributes in maps, typed columns left to
    the table's DEFAULT expressions."""
    attrs = [
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": "1200",
            "gen_ai.usage.output_tokens": "80",
        },
        {"openinference.span.kind": "TOOL", "tool.name": "search", "error.type": "TimeoutError"},
        {"gen_ai.operation.name": "invoke_agent", "agentwatch.decision.confidence": "0.4"},
    ]
    return pa.table(
        {
            "Timestamp": pa.array([now_ns, now_ns + 1_000, now_ns + 2_000], pa.timestamp("ns")),
            "TraceId": ["t1", "t1", "t2"],
            "SpanId": ["s1", "s2", "s3"],
            "SpanName": ["chat gpt-4o", "search", "invoke_agent support"],
            "ServiceName": ["support-bot"] * 3,
            "StatusCode": ["Unset", "Error", "Unset"],
            "ResourceAttributes": pa.array(
                [[("deployment.environment.name", "prod")]] * 3,
                pa.map_(pa.string(), pa.string()),
            ),
            "SpanAttributes": pa.array(
                [list(a.items()) for a in attrs], pa.map_(pa.string(), pa.string())
            ),
            "Duration": pa.array([2_000_000, 3_000_000, 9_000_000], pa.uint64()),
            "CostUsd": [0.0038, 0.0, 0.0],
            "Priced": pa.array([1, 0, 0], pa.uint8()),
        }
    )


def test_migrations_apply_once_then_are_idempotent(server: ServerStore) -> None:
    """apply_migrations creates the schema over HTTP, and a second run applies nothing."""
    assert apply_migrations(server) == [1, 2, 3, 4, 5, 6, 7]
    assert apply_migrations(server) == []
    tables = server.query(f"SHOW TABLES FROM {server.database}").rows
    assert sorted(t for (t,) in tables) == sorted(
        [ALERTS_TABLE, MIGRATIONS_TABLE, SPANS_TABLE, TRACE_FACTS_TABLE, TRACE_FACTS_VIEW]
    )
    versions = server.query(f"SELECT version FROM {server.database}.{MIGRATIONS_TABLE}").rows
    assert sorted(versions) == [(1,), (2,), (3,), (4,), (5,), (6,), (7,)]


def test_inserted_rows_read_back_with_derived_typed_columns(server: ServerStore) -> None:
    """insert_arrow writes through HTTP; the typed columns are derived from the attributes."""
    apply_migrations(server)
    server.insert_arrow(SPANS_TABLE, span_batch(time.time_ns()))
    rows = server.query(
        "SELECT SpanId, Operation, Provider, RequestModel, InputTokens, OutputTokens, ToolName, "
        f"ErrorType, Confidence, Environment, CostUsd, Priced FROM {server.database}.{SPANS_TABLE} "
        "ORDER BY SpanId"
    ).rows
    assert rows == [
        ("s1", "chat", "openai", "gpt-4o", 1200, 80, "", "", None, "prod", 0.0038, 1),
        ("s2", "execute_tool", "", "", 0, 0, "search", "TimeoutError", None, "prod", 0.0, 0),
        ("s3", "invoke_agent", "", "", 0, 0, "", "", 0.4, "prod", 0.0, 0),
    ]


def test_parameterized_queries_bind_every_value(server: ServerStore) -> None:
    """String, Array, DateTime64 and UInt64 parameters bind server-side and filter correctly."""
    apply_migrations(server)
    now_ns = time.time_ns()
    server.insert_arrow(SPANS_TABLE, span_batch(now_ns))
    since = datetime.fromtimestamp(now_ns / 1e9, UTC) - timedelta(minutes=5)
    result = server.query(
        f"SELECT SpanId FROM {server.database}.{SPANS_TABLE} "
        "WHERE ServiceName = {service:String} AND has({traces:Array(String)}, TraceId) "
        "AND Timestamp >= {since:DateTime64(9)} AND Duration >= {min_ns:UInt64} ORDER BY SpanId",
        {"service": "support-bot", "traces": ["t1", "x'); DROP TABLE y; --"], "since": since,
         "min_ns": 2_500_000},
    )  # fmt: skip
    assert result.rows == [("s2",)]


def test_query_arrow_returns_arrow_over_http(server: ServerStore) -> None:
    """ServerStore.query_arrow returns a pyarrow table with the aggregated values."""
    apply_migrations(server)
    server.insert_arrow(SPANS_TABLE, span_batch(time.time_ns()))
    table = server.query_arrow(
        f"SELECT Operation, sum(InputTokens) AS tokens FROM {server.database}.{SPANS_TABLE} "
        "WHERE Operation = {op:String} GROUP BY Operation",
        {"op": "chat"},
    )
    assert table.to_pylist() == [{"Operation": "chat", "tokens": 1200}]


def test_server_errors_surface_as_storage_errors(server: ServerStore) -> None:
    """A statement ClickHouse rejects raises StorageError carrying ClickHouse's message."""
    apply_migrations(server)
    with pytest.raises(StorageError, match="UNKNOWN_TABLE"):
        server.query(f"SELECT * FROM {server.database}.no_such_table")


def test_read_only_endpoint_refuses_server_store_ddl(engine: EmbeddedStore) -> None:
    """Without allow_write the same ServerStore cannot migrate: DDL is refused as read-only."""
    with QueryEndpoint(engine, port=0) as endpoint:
        store = ServerStore(endpoint.client_url(DB))
        try:
            with pytest.raises(StorageError, match=READ_ONLY):
                apply_migrations(store)
        finally:
            store.close()

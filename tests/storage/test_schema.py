"""The span table schema: identifiers are validated before they reach DDL, the table is a
superset of the OTel ClickHouse exporter's otel_traces (daily partitions, TTL retention that
drops whole parts), and migrations apply once on a real embedded ClickHouse."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from agentwatch.storage._conventions import COLUMNS
from agentwatch.storage._schema import (
    MIGRATIONS_TABLE,
    SPANS_TABLE,
    check_identifier,
    migrations,
    migrations_table_ddl,
    spans_table_ddl,
)
from agentwatch.storage._store import EmbeddedStore, apply_migrations

# The exporter's otel_traces columns and types (Events/Links are its Nested columns, flattened).
EXPORTER_COLUMNS = {
    "Timestamp": "DateTime64(9)",
    "TraceId": "String",
    "SpanId": "String",
    "ParentSpanId": "String",
    "TraceState": "String",
    "SpanName": "LowCardinality(String)",
    "SpanKind": "LowCardinality(String)",
    "ServiceName": "LowCardinality(String)",
    "ResourceAttributes": "Map(LowCardinality(String), String)",
    "ScopeName": "String",
    "ScopeVersion": "String",
    "SpanAttributes": "Map(LowCardinality(String), String)",
    "Duration": "UInt64",
    "StatusCode": "LowCardinality(String)",
    "StatusMessage": "String",
    "Events.Timestamp": "Array(DateTime64(9))",
    "Events.Name": "Array(LowCardinality(String))",
    "Events.Attributes": "Array(Map(LowCardinality(String), String))",
    "Links.TraceId": "Array(String)",
    "Links.SpanId": "Array(String)",
    "Links.TraceState": "Array(String)",
    "Links.Attributes": "Array(Map(LowCardinality(String), String))",
}


# -- identifiers --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["agentwatch", "_private", "db_2", "A" * 63])
def test_plain_identifiers_are_accepted(name: str):
    assert check_identifier(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "1starts_with_digit",
        "has space",
        "semi;colon",
        "x; DROP TABLE otel_traces",
        "db.table",
        "`quoted`",
        "dash-ed",
        "quote'",
        "A" * 64,
        "ünicode",
        "new\nline",
    ],
)
def test_anything_else_is_rejected_before_it_reaches_sql(name: str):
    with pytest.raises(ValueError, match="not a valid ClickHouse identifier"):
        check_identifier(name)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"database": "x; DROP DATABASE y"},
        {"database": "agentwatch", "table": "t`"},
        {"database": "agentwatch", "on_cluster": "c' OR 1"},
    ],
)
def test_ddl_refuses_unsafe_names(kwargs: dict[str, str]):
    with pytest.raises(ValueError, match="not a valid ClickHouse identifier"):
        spans_table_ddl(retention_days=30, **kwargs)


def test_the_migrations_table_ddl_refuses_unsafe_names():
    with pytest.raises(ValueError, match="not a valid ClickHouse identifier"):
        migrations_table_ddl("a b")


@pytest.mark.parametrize("days", [0, -1, 36501])
def test_retention_outside_1_to_36500_days_is_refused(days: int):
    with pytest.raises(ValueError, match="retention_days"):
        spans_table_ddl("agentwatch", days)


# -- the DDL text -------------------------------------------------------------------------------
def test_the_table_has_every_exporter_column_with_its_type():
    ddl = spans_table_ddl("agentwatch", 30)
    for name, kind in EXPORTER_COLUMNS.items():
        assert f"`{name}` {kind}" in ddl, name


def test_the_table_is_partitioned_by_day_like_the_exporters():
    assert "PARTITION BY toDate(Timestamp)" in spans_table_ddl("agentwatch", 30)


def test_retention_is_a_ttl_that_drops_whole_parts():
    ddl = spans_table_ddl("agentwatch", 7)
    assert "TTL toDateTime(Timestamp) + toIntervalDay(7)" in ddl
    assert "ttl_only_drop_parts = 1" in ddl


def test_every_typed_column_is_a_default_expression_over_the_attributes():
    ddl = spans_table_ddl("agentwatch", 30)
    for name in [c.name for c in COLUMNS] + ["Operation", "Environment", "ErrorType"]:
        line = next(line for line in ddl.splitlines() if line.strip().startswith(f"`{name}`"))
        assert " DEFAULT " in line, name


def test_cost_columns_default_to_unpriced():
    ddl = spans_table_ddl("agentwatch", 30)
    assert "`CostUsd` Float64 DEFAULT 0" in ddl
    assert "`Priced` UInt8 DEFAULT 0" in ddl


def test_the_table_name_and_cluster_are_placed_where_asked():
    ddl = spans_table_ddl("aw", 30, on_cluster="main", table="spans_local")
    assert ddl.startswith("CREATE TABLE IF NOT EXISTS aw.spans_local ON CLUSTER main (")


def test_migration_versions_start_at_1_and_increase():
    versions = [m.version for m in migrations("agentwatch", 30)]
    assert versions == list(range(1, len(versions) + 1))
    assert all(m.description and m.statements for m in migrations("agentwatch", 30))


# -- on a real embedded ClickHouse --------------------------------------------------------------
@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    embedded = EmbeddedStore(tmp_path / "data")
    yield embedded
    embedded.close()


def test_migrations_apply_once_and_are_idempotent(store: EmbeddedStore):
    every = [m.version for m in migrations(store.database, 30)]
    assert apply_migrations(store) == every
    assert apply_migrations(store) == []
    recorded = store.query(f"SELECT version FROM {store.database}.{MIGRATIONS_TABLE}").rows
    assert sorted(v for (v,) in recorded) == every


def test_clickhouse_accepts_the_ddl_with_the_exporter_columns_and_types(store: EmbeddedStore):
    apply_migrations(store)
    columns = dict(
        store.query(
            "SELECT name, type FROM system.columns "
            "WHERE database = {db:String} AND table = {t:String}",
            {"db": store.database, "t": SPANS_TABLE},
        ).rows
    )
    for name, kind in EXPORTER_COLUMNS.items():
        assert columns[name] == kind, name
    for column in COLUMNS:
        assert column.name in columns


def test_the_created_table_carries_the_requested_retention(store: EmbeddedStore):
    apply_migrations(store, retention_days=9)
    created = store.query(
        "SELECT create_table_query FROM system.tables WHERE database = {db:String} "
        "AND name = {t:String}",
        {"db": store.database, "t": SPANS_TABLE},
    ).scalar()
    assert "TTL toDateTime(Timestamp) + toIntervalDay(9)" in created
    assert "ttl_only_drop_parts = 1" in created


def test_rows_older_than_the_retention_are_dropped(store: EmbeddedStore):
    apply_migrations(store, retention_days=30)
    now = time.time_ns()
    rows = pa.table(
        {
            "Timestamp": pa.array([now - 40 * 86_400 * 10**9, now], pa.timestamp("ns", tz="UTC")),
            "TraceId": ["expired", "recent"],
            "SpanId": ["a", "b"],
        }
    )
    store.insert_arrow(SPANS_TABLE, rows)
    store.command(f"OPTIMIZE TABLE {store.database}.{SPANS_TABLE} FINAL")
    kept = store.query(f"SELECT TraceId FROM {store.database}.{SPANS_TABLE}").rows
    assert kept == [("recent",)]


def test_a_new_retention_applies_to_an_existing_table(store: EmbeddedStore):
    """Restarting with another --retention-days changes the existing table's TTL."""
    apply_migrations(store, retention_days=30)
    apply_migrations(store, retention_days=7)
    created = store.query(
        "SELECT create_table_query FROM system.tables WHERE database = {db:String} "
        "AND name = {t:String}",
        {"db": store.database, "t": SPANS_TABLE},
    ).scalar()
    assert "toIntervalDay(7)" in created


def test_the_span_table_merges_column_by_column(store: EmbeddedStore):
    """Migration 4 leaves the span table set to merge vertically from the first row and column,
    which bounds the memory merges take in the collector's process."""
    apply_migrations(store)
    created = store.query(
        "SELECT create_table_query FROM system.tables WHERE database = {db:String} "
        "AND name = {t:String}",
        {"db": store.database, "t": SPANS_TABLE},
    ).scalar()
    assert "vertical_merge_algorithm_min_rows_to_activate = 1" in created
    assert "vertical_merge_algorithm_min_columns_to_activate = 1" in created

"""The ClickHouse schema, as versioned migrations.

The span table is a superset of the OpenTelemetry Collector ClickHouse exporter's
``otel_traces`` layout, so the stock exporter can write rows our dashboard reads. The typed
analytics columns are DEFAULT expressions over ``SpanAttributes`` (generated from
``_conventions.COLUMNS``): any writer that fills the map fills them. Cost is the exception:
it is priced by our collector, and rows from other writers count as unpriced.

DDL cannot take bound parameters, so the few values it needs (database name, retention days)
are validated here before they are placed in the statement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from agentwatch.storage._conventions import (
    COLUMNS,
    ENVIRONMENT_KEYS,
    OPENINFERENCE_KINDS,
    TRACELOOP_ENTITY_KEY,
    TRACELOOP_KIND_KEY,
    TRACELOOP_KINDS,
    Column,
)

SPANS_TABLE: Final = "otel_traces"
MIGRATIONS_TABLE: Final = "agentwatch_migrations"
ALERTS_TABLE: Final = "agentwatch_alerts"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def check_identifier(name: str) -> str:
    """Reject anything but a plain identifier: it goes into DDL, which has no parameters."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a valid ClickHouse identifier: {name!r}")
    return name


def _quote(text: str) -> str:
    # Only our own constant attribute keys pass through here, never user input.
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _coalesce(keys: tuple[str, ...]) -> str:
    parts = [f"SpanAttributes[{_quote(k)}]" for k in keys]
    if len(parts) == 1:
        return parts[0]
    inner = ", ".join(f"nullIf({p}, '')" for p in parts)
    return f"ifNull(coalesce({inner}), '')"


def _column_ddl(column: Column) -> str:
    source = _coalesce(column.keys)
    if column.traceloop_kinds:
        kinds = ", ".join(_quote(k) for k in column.traceloop_kinds)
        entity = (
            f"if(SpanAttributes[{_quote(TRACELOOP_KIND_KEY)}] IN ({kinds}), "
            f"SpanAttributes[{_quote(TRACELOOP_ENTITY_KEY)}], '')"
        )
        source = f"if({source} != '', {source}, {entity})"
    if column.kind == "string":
        return f"`{column.name}` LowCardinality(String) DEFAULT {source}"
    if column.kind == "uint":
        return f"`{column.name}` UInt64 DEFAULT toUInt64OrZero({source})"
    if column.kind == "float":
        return f"`{column.name}` Nullable(Float64) DEFAULT toFloat64OrNull({source})"
    return (
        f"`{column.name}` Nullable(UInt8) DEFAULT "
        f"multiIf({source} IN ('true', '1'), 1, {source} IN ('false', '0'), 0, NULL)"
    )


def _operation_ddl() -> str:
    oi = "SpanAttributes['openinference.span.kind']"
    tl = "SpanAttributes['traceloop.span.kind']"
    branches = [
        "SpanAttributes['gen_ai.operation.name'] != '', SpanAttributes['gen_ai.operation.name']"
    ]
    branches += [f"upper({oi}) = {_quote(k)}, {_quote(v)}" for k, v in OPENINFERENCE_KINDS.items()]
    branches.append(f"{oi} != '', lower({oi})")
    branches += [f"{tl} = {_quote(k)}, {_quote(v)}" for k, v in TRACELOOP_KINDS.items()]
    branches.append(f"{tl} != '', {tl}")
    branches.append("SpanAttributes['llm.request.type'] = 'chat', 'chat'")
    return f"`Operation` LowCardinality(String) DEFAULT multiIf({', '.join(branches)}, '')"


def _environment_ddl() -> str:
    parts = ", ".join(f"nullIf(ResourceAttributes[{_quote(k)}], '')" for k in ENVIRONMENT_KEYS)
    return f"`Environment` LowCardinality(String) DEFAULT ifNull(coalesce({parts}), '')"


def spans_table_ddl(
    database: str,
    retention_days: int,
    *,
    on_cluster: str | None = None,
    engine: str = "MergeTree()",
    table: str = SPANS_TABLE,
) -> str:
    """CREATE TABLE for the span table (a superset of the exporter's otel_traces)."""
    if not 1 <= retention_days <= 36500:
        raise ValueError(f"retention_days must be an integer in 1..36500, not {retention_days!r}")
    db = check_identifier(database)
    check_identifier(table)
    cluster = f" ON CLUSTER {check_identifier(on_cluster)}" if on_cluster else ""
    analytics = ",\n    ".join(
        [_operation_ddl(), *(_column_ddl(c) for c in COLUMNS), _environment_ddl()]
    )
    return f"""CREATE TABLE IF NOT EXISTS {db}.{table}{cluster} (
    `Timestamp` DateTime64(9) CODEC(Delta, ZSTD(1)),
    `TraceId` String CODEC(ZSTD(1)),
    `SpanId` String CODEC(ZSTD(1)),
    `ParentSpanId` String CODEC(ZSTD(1)),
    `TraceState` String CODEC(ZSTD(1)),
    `SpanName` LowCardinality(String) CODEC(ZSTD(1)),
    `SpanKind` LowCardinality(String) CODEC(ZSTD(1)),
    `ServiceName` LowCardinality(String) CODEC(ZSTD(1)),
    `ResourceAttributes` Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    `ScopeName` String CODEC(ZSTD(1)),
    `ScopeVersion` String CODEC(ZSTD(1)),
    `SpanAttributes` Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    `Duration` UInt64 CODEC(T64, ZSTD(1)),
    `StatusCode` LowCardinality(String) CODEC(ZSTD(1)),
    `StatusMessage` String CODEC(ZSTD(1)),
    `Events.Timestamp` Array(DateTime64(9)) CODEC(ZSTD(1)),
    `Events.Name` Array(LowCardinality(String)) CODEC(ZSTD(1)),
    `Events.Attributes` Array(Map(LowCardinality(String), String)) CODEC(ZSTD(1)),
    `Links.TraceId` Array(String) CODEC(ZSTD(1)),
    `Links.SpanId` Array(String) CODEC(ZSTD(1)),
    `Links.TraceState` Array(String) CODEC(ZSTD(1)),
    `Links.Attributes` Array(Map(LowCardinality(String), String)) CODEC(ZSTD(1)),
    {analytics},
    `ErrorType` LowCardinality(String) DEFAULT if(SpanAttributes['error.type'] != '',
        SpanAttributes['error.type'], if(StatusCode = 'Error', '_OTHER', '')),
    `CostUsd` Float64 DEFAULT 0 CODEC(ZSTD(1)),
    `Priced` UInt8 DEFAULT 0,
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = {engine}
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))
TTL toDateTime(Timestamp) + toIntervalDay({retention_days})
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


def migrations(database: str, retention_days: int) -> tuple[Migration, ...]:
    """Every schema change, in order. Never edit a released one: append a new version."""
    db = check_identifier(database)
    return (
        Migration(1, "span table", (spans_table_ddl(db, retention_days),)),
        Migration(2, "alerts table", (alerts_table_ddl(db, retention_days),)),
    )


def alerts_table_ddl(database: str, retention_days: int, *, table: str = ALERTS_TABLE) -> str:
    """CREATE TABLE for alert state changes: an append-only log, one row each time an incident
    fires and one when it resolves (both carry the incident's ``IncidentId`` and ``FiredAt``).

    The current state of an incident is its latest row (``argMax(..., UpdatedAt)``), so the
    table needs no mutations and keeps what every notification said.
    """
    if not 1 <= retention_days <= 36500:
        raise ValueError(f"retention_days must be an integer in 1..36500, not {retention_days!r}")
    db = check_identifier(database)
    check_identifier(table)
    return f"""CREATE TABLE IF NOT EXISTS {db}.{table} (
    `IncidentId` String,
    `Rule` LowCardinality(String),
    `Kind` LowCardinality(String),
    `Severity` LowCardinality(String),
    `Metric` LowCardinality(String),
    `GroupKey` String,
    `State` LowCardinality(String),
    `FiredAt` DateTime64(3),
    `ResolvedAt` Nullable(DateTime64(3)),
    `UpdatedAt` DateTime64(3),
    `Value` Nullable(Float64),
    `Baseline` Nullable(Float64),
    `Score` Nullable(Float64),
    `Summary` String,
    `TraceIds` Array(String),
    `Links` Array(String),
    `Notified` UInt8
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(FiredAt)
ORDER BY (FiredAt, Rule, GroupKey, UpdatedAt)
TTL toDateTime(FiredAt) + toIntervalDay({retention_days})"""


def migrations_table_ddl(database: str) -> str:
    db = check_identifier(database)
    return (
        f"CREATE TABLE IF NOT EXISTS {db}.{MIGRATIONS_TABLE} "
        "(version UInt32, description String, applied_at DateTime64(3) DEFAULT now64(3)) "
        "ENGINE = MergeTree ORDER BY version"
    )


def cluster_ddl(database: str, cluster: str, retention_days: int) -> list[str]:
    """DDL for a ClickHouse cluster: a Replicated local table and a Distributed table over it.

    Collectors insert into the Distributed table ``otel_traces``; it shards by trace so a
    trace's spans stay together.
    """
    db = check_identifier(database)
    c = check_identifier(cluster)
    local = f"{SPANS_TABLE}_local"
    replicated = f"ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{db}/{local}', '{{replica}}')"
    return [
        f"CREATE DATABASE IF NOT EXISTS {db} ON CLUSTER {c}",
        spans_table_ddl(db, retention_days, on_cluster=c, engine=replicated, table=local),
        f"CREATE TABLE IF NOT EXISTS {db}.{SPANS_TABLE} ON CLUSTER {c} AS {db}.{local} "
        f"ENGINE = Distributed({c}, {db}, {local}, cityHash64(TraceId))",
    ]

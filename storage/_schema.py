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
    OPENINFERENCE_KIND_KEY,
    OPENINFERENCE_KINDS,
    TRACELOOP_ENTITY_KEY,
    TRACELOOP_KIND_KEY,
    TRACELOOP_KINDS,
    Column,
)

SPANS_TABLE: Final = "otel_traces"
MIGRATIONS_TABLE: Final = "agentwatch_migrations"
ALERTS_TABLE: Final = "agentwatch_alerts"
TRACE_FACTS_TABLE: Final = "agentwatch_trace_facts"
TRACE_FACTS_VIEW: Final = "agentwatch_trace_facts_mv"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def check_identifier(name: str) -> str:
    """Reject anything but a plain identifier: it goes into DDL, which has no parameters."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a valid ClickHouse identifier: {name!r}")
    return name


def check_retention_days(retention_days: int) -> int:
    """Retention goes into DDL (a TTL), which has no parameters: accept only a sane integer."""
    if not 1 <= retention_days <= 36500:
        raise ValueError(f"retention_days must be an integer in 1..36500, not {retention_days!r}")
    return retention_days


def _on_cluster(cluster: str | None) -> str:
    return f" ON CLUSTER {check_identifier(cluster)}" if cluster else ""


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
    if column.root_chain_span_name:
        source = f"if({source} != '', {source}, if({_ROOT_CHAIN}, SpanName, ''))"
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


# A root OpenInference CHAIN span is a framework's whole run (``_conventions.is_root_chain``).
_ROOT_CHAIN: Final = (
    f"ParentSpanId = '' AND upper(SpanAttributes[{_quote(OPENINFERENCE_KIND_KEY)}]) = 'CHAIN'"
)


def _operation_ddl() -> str:
    oi = f"SpanAttributes[{_quote(OPENINFERENCE_KIND_KEY)}]"
    tl = f"SpanAttributes[{_quote(TRACELOOP_KIND_KEY)}]"
    branches = [
        "SpanAttributes['gen_ai.operation.name'] != '', SpanAttributes['gen_ai.operation.name']",
        f"{_ROOT_CHAIN}, 'invoke_agent'",
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
    check_retention_days(retention_days)
    db, cluster = check_identifier(database), _on_cluster(on_cluster)
    check_identifier(table)
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
        Migration(
            3,
            "typed Iterations and AgentTools columns; per-trace facts by hour",
            (
                f"ALTER TABLE {db}.{SPANS_TABLE} " + _add_columns(SPAN_COLUMNS_V3),
                trace_facts_table_ddl(db, retention_days),
                # Back-fill first, then start the view: a statement that fails half-way is
                # re-run by the next start, and the back-fill only runs into an empty table.
                f"INSERT INTO {db}.{TRACE_FACTS_TABLE} "  # noqa: S608 - identifiers validated
                + trace_facts_select(
                    f"{db}.{SPANS_TABLE}",
                    f"(SELECT count() FROM {db}.{TRACE_FACTS_TABLE}) = 0",  # noqa: S608
                ),
                f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{TRACE_FACTS_VIEW} "
                f"TO {db}.{TRACE_FACTS_TABLE} AS " + trace_facts_select(f"{db}.{SPANS_TABLE}"),
            ),
        ),
        Migration(
            4,
            "span table merges column by column",
            (f"ALTER TABLE {db}.{SPANS_TABLE} MODIFY SETTING {VERTICAL_MERGES}",),
        ),
        Migration(
            5,
            "reasoning tokens under OpenLLMetry's and PydanticAI's keys too",
            (f"ALTER TABLE {db}.{SPANS_TABLE} " + _modify_columns(COLUMNS_V5),),
        ),
        Migration(
            6,
            "a root OpenInference chain (a LangGraph graph) is an agent run, named by its span",
            (f"ALTER TABLE {db}.{SPANS_TABLE} " + _modify_v6(),),
        ),
        Migration(
            7,
            "declared tools from gen_ai.tool.definitions too",
            (f"ALTER TABLE {db}.{SPANS_TABLE} MODIFY COLUMN {AGENT_TOOLS_V7}",),
        ),
    )


# --- migration 7: the tools a span declares, in our key or in the GenAI convention's ------------
# gen_ai.tool.definitions is a JSON array of tool objects, named at the top level (the
# convention) or under "function" (OpenAI's request shape).
_TOOL_DEFINITION_NAME: Final = (
    "if(JSONExtractString(definition, 'name') != '', JSONExtractString(definition, 'name'), "
    "JSONExtractString(definition, 'function', 'name'))"
)
AGENT_TOOLS_V7: Final = (
    "`AgentTools` Array(LowCardinality(String)) DEFAULT "
    "if(SpanAttributes['agentwatch.agent.tools'] != '', "
    "JSONExtract(SpanAttributes['agentwatch.agent.tools'], 'Array(String)'), "
    f"arrayFilter(name -> name != '', arrayMap(definition -> {_TOOL_DEFINITION_NAME}, "
    "JSONExtractArrayRaw(SpanAttributes['gen_ai.tool.definitions']))))"
)


# --- migration 6: framework runs whose root span is a chain --------------------------------------
def _modify_v6() -> str:
    return f"MODIFY COLUMN {_operation_ddl()}, " + _modify_columns(("AgentName",))


# --- migration 5: typed columns whose attribute keys grew (their DEFAULT follows COLUMNS) --------
COLUMNS_V5: Final = ("ReasoningTokens",)


def _modify_columns(names: tuple[str, ...]) -> str:
    by_name = {column.name: column for column in COLUMNS}
    return ", ".join(f"MODIFY COLUMN {_column_ddl(by_name[name])}" for name in names)


# --- migration 4 ----------------------------------------------------------------------------------
# The span table is wide (40+ columns, maps and nested arrays). A horizontal merge holds a block
# and a write buffer for every column at once; merging column by column bounds that, with
# inserts no slower (measured in benchmarks/BENCHMARKS.md, "Collector throughput").
VERTICAL_MERGES: Final = (
    "vertical_merge_algorithm_min_rows_to_activate = 1, "
    "vertical_merge_algorithm_min_columns_to_activate = 1"
)


# --- migration 3: typed columns the dashboard reads on every agent span --------------------------
SPAN_COLUMNS_V3: Final = (
    # aw.iteration() counts; read on every agent span for the Overview's iterations tile.
    "`Iterations` UInt64 DEFAULT toUInt64OrZero(SpanAttributes['agentwatch.task.iterations'])",
    # @agent(tools=[...]): the tools an agent declares, a JSON array in the map.
    "`AgentTools` Array(LowCardinality(String)) DEFAULT "
    "JSONExtract(SpanAttributes['agentwatch.agent.tools'], 'Array(String)')",
)


def _add_columns(columns: tuple[str, ...]) -> str:
    return ", ".join(f"ADD COLUMN IF NOT EXISTS {column}" for column in columns)


# --- migration 3: per-trace facts, one row per (hour, service, environment, trace) ---------------
# The dashboard's per-task numbers (error categories, decisions by task outcome, spend per trace)
# join spans of one trace to its agent span. Over millions of traces, reading and hashing the
# 32-character trace ids at query time dominated; this table holds each trace's facts per hour,
# service and environment, filled by a materialized view as spans are inserted (so by any
# writer, the stock OTel exporter included) and merged in the background. A query adds up the
# rows of the whole hours in its range (keyed by a 128-bit hash of the trace id) and computes
# the same rows from the spans of the partial hours at both ends, so results are exact.
#
# Every column is a SimpleAggregateFunction, cheap to merge: the task's fields come from its
# root agent span (max over root agent spans: a trace has one root); a trace whose agent spans
# are all below other spans (nested under a foreign parent) takes its earliest agent span's,
# packed into one string ordered by start time (``FirstAgent``) and unpacked when needed.
_AGENT: Final = "Operation = 'invoke_agent'"
_ROOT_AGENT: Final = f"{_AGENT} AND ParentSpanId = ''"
_NESTED_AGENT: Final = f"{_AGENT} AND ParentSpanId != ''"
_MODEL_OPERATIONS: Final = "('chat', 'text_completion', 'generate_content')"
OUTCOME_SQL: Final = "multiIf(Outcome != '', Outcome, StatusCode = 'Error', 'failed', 'completed')"
# A nested agent span's start (19 zero-padded digits of ns, so strings sort by time) and its
# fields, each base64-encoded (so no value can contain the separator). '~' sorts after digits:
# it stands for "no such span in this row".
_PACKED_AGENT: Final = (
    "concat(leftPad(toString(toUnixTimestamp64Nano(Timestamp)), 19, '0'), ',', "
    "base64Encode(AgentName), ',', base64Encode(TaskType), ',', "
    f"base64Encode({OUTCOME_SQL}), ',', base64Encode(LimitExceeded), ',', toString(Duration))"
)
NO_FIRST_AGENT: Final = "~"


def trace_facts_select(source: str, where: str = "") -> str:
    """The SELECT that turns spans of ``source`` into trace-fact rows (the view's query; the
    dashboard runs it on the partial hours at the ends of a range). ``where`` is constant SQL.

    Changing it changes what the view writes: that takes a new migration."""
    condition = "Timestamp >= toDateTime64(0, 9)" + (f" AND {where}" if where else "")
    return (
        "SELECT toStartOfHour(Timestamp, 'UTC') AS Hour, ServiceName, Environment, "  # noqa: S608 - constant SQL
        "reinterpretAsUInt128(sipHash128(TraceId)) AS TraceKey, "
        f"countIf({_ROOT_AGENT}) AS RootAgentSpans, "
        f"countIf({_NESTED_AGENT}) AS NestedAgentSpans, "
        f"maxIf(AgentName, {_ROOT_AGENT}) AS Agent, "
        f"maxIf(TaskType, {_ROOT_AGENT}) AS RootTaskType, "
        f"maxIf({OUTCOME_SQL}, {_ROOT_AGENT}) AS RootOutcome, "
        f"maxIf(LimitExceeded, {_ROOT_AGENT}) AS LimitHit, "
        f"maxIf(Duration, {_ROOT_AGENT}) AS RootDuration, "
        f"if(NestedAgentSpans > 0, minIf({_PACKED_AGENT}, {_NESTED_AGENT}), "
        f"'{NO_FIRST_AGENT}') AS FirstAgent, "
        "sumIf(CostUsd, CostUsd > 0) AS Spend, "
        "countIf(CostUsd > 0 AND TaskType = '') AS UntypedPricedSpans, "
        f"countIf(ErrorType != '' AND Operation IN {_MODEL_OPERATIONS}) AS ModelErrors, "
        "countIf(ErrorType != '' AND Operation = 'execute_tool') AS ToolErrors, "
        "countIf(ErrorType != '' AND Operation NOT IN "
        "('chat', 'text_completion', 'generate_content', 'execute_tool', 'invoke_agent')) "
        "AS OtherErrors, "
        "groupArrayIf((assumeNotNull(Confidence), toString(TaskType)), "
        "Operation = 'decision' AND Confidence IS NOT NULL) AS Decisions "
        f"FROM {source} WHERE {condition} "
        "GROUP BY Hour, ServiceName, Environment, TraceKey"
    )


def trace_facts_table_ddl(
    database: str,
    retention_days: int,
    *,
    on_cluster: str | None = None,
    engine: str = "AggregatingMergeTree()",
    table: str = TRACE_FACTS_TABLE,
) -> str:
    """CREATE TABLE for the per-trace facts (see ``trace_facts_select``)."""
    check_retention_days(retention_days)
    db, cluster = check_identifier(database), _on_cluster(on_cluster)
    check_identifier(table)

    def simple(function: str, kind: str) -> str:
        return f"SimpleAggregateFunction({function}, {kind})"

    return f"""CREATE TABLE IF NOT EXISTS {db}.{table}{cluster} (
    `Hour` DateTime('UTC'),
    `ServiceName` LowCardinality(String),
    `Environment` LowCardinality(String),
    `TraceKey` UInt128,
    `RootAgentSpans` {simple("sum", "UInt64")},
    `NestedAgentSpans` {simple("sum", "UInt64")},
    `Agent` {simple("max", "LowCardinality(String)")},
    `RootTaskType` {simple("max", "LowCardinality(String)")},
    `RootOutcome` {simple("max", "LowCardinality(String)")},
    `LimitHit` {simple("max", "LowCardinality(String)")},
    `RootDuration` {simple("max", "UInt64")},
    `FirstAgent` {simple("min", "String")},
    `Spend` {simple("sum", "Float64")},
    `UntypedPricedSpans` {simple("sum", "UInt64")},
    `ModelErrors` {simple("sum", "UInt64")},
    `ToolErrors` {simple("sum", "UInt64")},
    `OtherErrors` {simple("sum", "UInt64")},
    `Decisions` {simple("groupArrayArray", "Array(Tuple(Float64, String))")}
) ENGINE = {engine}
PARTITION BY toDate(Hour)
ORDER BY (Hour, ServiceName, Environment, TraceKey)
TTL Hour + toIntervalDay({retention_days})
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1"""


def alerts_table_ddl(database: str, retention_days: int, *, table: str = ALERTS_TABLE) -> str:
    """CREATE TABLE for alert state changes: an append-only log, one row each time an incident
    fires and one when it resolves (both carry the incident's ``IncidentId`` and ``FiredAt``).

    The current state of an incident is its latest row (``argMax(..., UpdatedAt)``), so the
    table needs no mutations and keeps what every notification said.
    """
    check_retention_days(retention_days)
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
    """DDL for a ClickHouse cluster: Replicated local tables and Distributed tables over them,
    in the state every migration leaves a single node in.

    Collectors insert into the Distributed table ``otel_traces``; it shards by trace so a
    trace's spans stay together. On each shard, the materialized view fills that shard's trace
    facts from the spans its local table receives; the dashboard reads them all through the
    Distributed ``agentwatch_trace_facts`` (a trace's rows are all on its spans' shard).
    """
    db = check_identifier(database)
    c = check_identifier(cluster)
    local = f"{SPANS_TABLE}_local"
    facts_local = f"{TRACE_FACTS_TABLE}_local"

    def replicated(engine: str, table: str) -> str:
        return f"Replicated{engine}('/clickhouse/tables/{{shard}}/{db}/{table}', '{{replica}}')"

    return [
        f"CREATE DATABASE IF NOT EXISTS {db} ON CLUSTER {c}",
        spans_table_ddl(
            db,
            retention_days,
            on_cluster=c,
            engine=replicated("MergeTree", local),
            table=local,
        ),
        f"ALTER TABLE {db}.{local} ON CLUSTER {c} " + _add_columns(SPAN_COLUMNS_V3),
        f"CREATE TABLE IF NOT EXISTS {db}.{SPANS_TABLE} ON CLUSTER {c} AS {db}.{local} "
        f"ENGINE = Distributed({c}, {db}, {local}, cityHash64(TraceId))",
        trace_facts_table_ddl(
            db,
            retention_days,
            on_cluster=c,
            engine=replicated("AggregatingMergeTree", facts_local),
            table=facts_local,
        ),
        f"CREATE TABLE IF NOT EXISTS {db}.{TRACE_FACTS_TABLE} ON CLUSTER {c} "
        f"AS {db}.{facts_local} ENGINE = Distributed({c}, {db}, {facts_local}, rand())",
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{TRACE_FACTS_VIEW} ON CLUSTER {c} "
        f"TO {db}.{facts_local} AS " + trace_facts_select(f"{db}.{local}"),
        f"ALTER TABLE {db}.{local} ON CLUSTER {c} MODIFY SETTING {VERTICAL_MERGES}",
        f"ALTER TABLE {db}.{local} ON CLUSTER {c} " + _modify_columns(COLUMNS_V5),
        f"ALTER TABLE {db}.{SPANS_TABLE} ON CLUSTER {c} " + _modify_columns(COLUMNS_V5),
        f"ALTER TABLE {db}.{local} ON CLUSTER {c} " + _modify_v6(),
        f"ALTER TABLE {db}.{SPANS_TABLE} ON CLUSTER {c} " + _modify_v6(),
        f"ALTER TABLE {db}.{local} ON CLUSTER {c} MODIFY COLUMN {AGENT_TOOLS_V7}",
        f"ALTER TABLE {db}.{SPANS_TABLE} ON CLUSTER {c} MODIFY COLUMN {AGENT_TOOLS_V7}",
    ]

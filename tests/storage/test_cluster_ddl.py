"""The cluster DDL (ON CLUSTER, ReplicatedMergeTree, Distributed) against ClickHouse's own parser.

No cluster (nor Keeper) runs here, so these statements cannot be executed; instead ClickHouse's
parser inside chDB reads each one (``formatQuerySingleLine``), which rejects anything that is not
valid ClickHouse SQL and returns the canonical form the assertions look at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agentwatch.storage._schema import (
    SPANS_TABLE,
    TRACE_FACTS_TABLE,
    TRACE_FACTS_VIEW,
    cluster_ddl,
)
from agentwatch.storage._store import EmbeddedStore, StorageError

DB = "agentwatch"
CLUSTER = "aw_cluster"
Parse = Callable[[str], str]


@pytest.fixture
def parse(tmp_path: Path) -> Iterator[Parse]:
    """ClickHouse's parser: the statement as ClickHouse formats it, or StorageError."""
    store = EmbeddedStore(tmp_path / "parser")

    def run(sql: str) -> str:
        formatted = store.query("SELECT formatQuerySingleLine({sql:String})", {"sql": sql}).scalar()
        assert isinstance(formatted, str)
        return formatted

    yield run
    store.close()


STATEMENTS = cluster_ddl(DB, CLUSTER, 30)


STATEMENT_IDS = [
    "database",
    "local table",
    "local table columns",
    "distributed table",
    "local trace facts",
    "distributed trace facts",
    "trace facts view",
    "local table vertical merges",
    "local table reasoning-token keys",
    "distributed table reasoning-token keys",
    "local table root chains",
    "distributed table root chains",
    "local table declared tools",
    "distributed table declared tools",
]


@pytest.mark.parametrize("sql", STATEMENTS, ids=STATEMENT_IDS)
def test_every_statement_parses(parse: Parse, sql: str) -> None:
    """ClickHouse's parser accepts each cluster statement, ON CLUSTER clause included."""
    assert f"ON CLUSTER {CLUSTER}" in parse(sql)


def test_local_table_is_replicated_with_shard_and_replica_macros(parse: Parse) -> None:
    """The local table is a ReplicatedMergeTree keyed by {shard}/{replica}, keeping TTL and
    whole-part TTL drops."""
    formatted = parse(STATEMENTS[1])
    assert f"CREATE TABLE IF NOT EXISTS {DB}.{SPANS_TABLE}_local ON CLUSTER {CLUSTER}" in formatted
    assert (
        f"ENGINE = ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{DB}/{SPANS_TABLE}_local', "
        "'{replica}')"
    ) in formatted
    assert "TTL toDateTime(Timestamp) + toIntervalDay(30)" in formatted
    assert "ttl_only_drop_parts = 1" in formatted


def test_distributed_table_shards_by_trace(parse: Parse) -> None:
    """The table collectors write to is Distributed over the local tables, sharded by TraceId,
    under the single-node table's name (so the dashboard's SQL is the same)."""
    formatted = parse(STATEMENTS[3])
    assert formatted == (
        f"CREATE TABLE IF NOT EXISTS {DB}.{SPANS_TABLE} ON CLUSTER {CLUSTER} "
        f"AS {DB}.{SPANS_TABLE}_local "
        f"ENGINE = Distributed({CLUSTER}, {DB}, {SPANS_TABLE}_local, cityHash64(TraceId))"
    )


def test_local_table_gets_the_columns_later_migrations_add(parse: Parse) -> None:
    """The local table is altered on every node before the Distributed table copies its
    columns, so the cluster has the columns migration 3 adds to a single node's table."""
    formatted = parse(STATEMENTS[2])
    assert formatted.startswith(f"ALTER TABLE {DB}.{SPANS_TABLE}_local ON CLUSTER {CLUSTER}")
    assert "ADD COLUMN IF NOT EXISTS `Iterations` UInt64" in formatted
    assert "ADD COLUMN IF NOT EXISTS `AgentTools` Array(LowCardinality(String))" in formatted


def test_trace_facts_are_replicated_per_shard_and_read_through_a_distributed_table(
    parse: Parse,
) -> None:
    """Each shard keeps the facts of its own traces in a replicated AggregatingMergeTree with
    the span table's retention; the dashboard reads them under the single-node name."""
    local = parse(STATEMENTS[4])
    assert (
        f"CREATE TABLE IF NOT EXISTS {DB}.{TRACE_FACTS_TABLE}_local ON CLUSTER {CLUSTER}" in local
    )
    assert (
        "ENGINE = ReplicatedAggregatingMergeTree("
        f"'/clickhouse/tables/{{shard}}/{DB}/{TRACE_FACTS_TABLE}_local', '{{replica}}')"
    ) in local
    assert "TTL Hour + toIntervalDay(30)" in local
    assert parse(STATEMENTS[5]) == (
        f"CREATE TABLE IF NOT EXISTS {DB}.{TRACE_FACTS_TABLE} ON CLUSTER {CLUSTER} "
        f"AS {DB}.{TRACE_FACTS_TABLE}_local "
        f"ENGINE = Distributed({CLUSTER}, {DB}, {TRACE_FACTS_TABLE}_local, rand())"
    )


def test_the_view_feeds_each_shards_facts_from_its_local_spans(parse: Parse) -> None:
    """The view reads the local span table (each shard's own inserts) into the local facts,
    under the name migration 3 gives it (so a collector's migration finds it and skips it)."""
    formatted = parse(STATEMENTS[6])
    assert formatted.startswith(
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {DB}.{TRACE_FACTS_VIEW} ON CLUSTER {CLUSTER} "
        f"TO {DB}.{TRACE_FACTS_TABLE}_local AS SELECT"
    )
    assert f"FROM {DB}.{SPANS_TABLE}_local WHERE" in formatted


def test_the_parser_rejects_broken_ddl(parse: Parse) -> None:
    """The check is not vacuous: a truncated statement is a syntax error."""
    with pytest.raises(StorageError, match="SYNTAX_ERROR"):
        parse(STATEMENTS[1][: len(STATEMENTS[1]) // 2])


def test_cluster_name_must_be_an_identifier() -> None:
    """The cluster name goes into DDL unparameterized, so anything but an identifier is refused."""
    with pytest.raises(ValueError, match="identifier"):
        cluster_ddl(DB, "c; DROP DATABASE agentwatch", 30)

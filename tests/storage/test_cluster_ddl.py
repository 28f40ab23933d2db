"""The cluster DDL (ON CLUSTER, ReplicatedMergeTree, Distributed) against ClickHouse's own parser.

No cluster (nor Keeper) runs here, so these statements cannot be executed; instead ClickHouse's
parser inside chDB reads each one (``formatQuerySingleLine``), which rejects anything that is not
valid ClickHouse SQL and returns the canonical form the assertions look at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agentwatch.storage._schema import SPANS_TABLE, cluster_ddl
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


@pytest.mark.parametrize("sql", STATEMENTS, ids=["database", "local table", "distributed table"])
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
    formatted = parse(STATEMENTS[2])
    assert formatted == (
        f"CREATE TABLE IF NOT EXISTS {DB}.{SPANS_TABLE} ON CLUSTER {CLUSTER} "
        f"AS {DB}.{SPANS_TABLE}_local "
        f"ENGINE = Distributed({CLUSTER}, {DB}, {SPANS_TABLE}_local, cityHash64(TraceId))"
    )


def test_the_parser_rejects_broken_ddl(parse: Parse) -> None:
    """The check is not vacuous: a truncated statement is a syntax error."""
    with pytest.raises(StorageError, match="SYNTAX_ERROR"):
        parse(STATEMENTS[1][: len(STATEMENTS[1]) // 2])


def test_cluster_name_must_be_an_identifier() -> None:
    """The cluster name goes into DDL unparameterized, so anything but an identifier is refused."""
    with pytest.raises(ValueError, match="identifier"):
        cluster_ddl(DB, "c; DROP DATABASE agentwatch", 30)

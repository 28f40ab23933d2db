"""The embedded store (chDB in this process): commands, bound-parameter queries, Arrow inserts,
errors as StorageError, data that survives closing, and the one-directory-per-process rule."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from agentwatch._errors import ConfigurationError
from agentwatch.storage._store import EmbeddedStore, Rows, StorageError, open_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    embedded = EmbeddedStore(tmp_path / "data")
    embedded.command(f"CREATE DATABASE IF NOT EXISTS {embedded.database}")
    embedded.command(
        f"CREATE TABLE {embedded.database}.items "
        "(id UInt32, name String, tags Array(String), note String DEFAULT 'none') "
        "ENGINE = MergeTree ORDER BY id"
    )
    yield embedded
    embedded.close()


def items(ids: list[int], names: list[str]) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(ids, pa.uint32()),
            "name": pa.array(names, pa.string()),
            "tags": pa.array([[n, n.upper()] for n in names], pa.list_(pa.string())),
        }
    )


def test_an_arrow_insert_is_read_back_with_defaults_for_missing_columns(store: EmbeddedStore):
    store.insert_arrow("items", items([2, 1], ["b", "a"]))
    rows = store.query(f"SELECT id, name, tags, note FROM {store.database}.items ORDER BY id")
    assert rows.columns == ["id", "name", "tags", "note"]
    assert rows.rows == [(1, "a", ["a", "A"], "none"), (2, "b", ["b", "B"], "none")]


def test_queries_bind_parameters_so_values_are_never_sql(store: EmbeddedStore):
    store.insert_arrow("items", items([1, 2], ["a", "x' OR '1'='1"]))
    sql = f"SELECT id FROM {store.database}.items WHERE name = {{name:String}}"
    assert store.query(sql, {"name": "x' OR '1'='1"}).rows == [(2,)]
    assert store.query(sql, {"name": "nope' OR 1=1 --"}).rows == []


def test_query_arrow_returns_an_arrow_table(store: EmbeddedStore):
    store.insert_arrow("items", items([1], ["a"]))
    table = store.query_arrow(
        f"SELECT id, name FROM {store.database}.items WHERE id = {{id:UInt32}}", {"id": 1}
    )
    assert isinstance(table, pa.Table)
    assert table.to_pylist() == [{"id": 1, "name": "a"}]


def test_rows_helpers():
    rows = Rows(["a", "b"], [(1, "x"), (2, "y")])
    assert rows.dicts() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert rows.scalar() == 1
    assert Rows(["a"], []).scalar() is None


def test_query_raw_returns_the_requested_clickhouse_format(store: EmbeddedStore):
    store.insert_arrow("items", items([1, 2], ["a", "b"]))
    raw = store.query_raw(f"SELECT id, name FROM {store.database}.items ORDER BY id", "JSONEachRow")
    assert [json.loads(line) for line in raw.decode().splitlines()] == [
        {"id": 1, "name": "a"},
        {"id": 2, "name": "b"},
    ]


def test_a_failing_statement_raises_storage_error_with_clickhouse_s_message(
    store: EmbeddedStore,
):
    with pytest.raises(StorageError, match="no_such_table"):
        store.query(f"SELECT * FROM {store.database}.no_such_table")
    with pytest.raises(StorageError, match="Syntax error"):
        store.command("SELEKT 1")


def test_an_insert_with_an_unknown_column_raises_storage_error(store: EmbeddedStore):
    bad = items([1], ["a"]).append_column("nope", pa.array(["x"]))
    with pytest.raises(StorageError, match="nope"):
        store.insert_arrow("items", bad)
    assert store.query(f"SELECT count() FROM {store.database}.items").scalar() == 0


def test_an_insert_into_an_unsafe_table_name_is_refused_before_sql(store: EmbeddedStore):
    with pytest.raises(ValueError, match="not a valid ClickHouse identifier"):
        store.insert_arrow("items; DROP TABLE items", items([1], ["a"]))


def test_the_store_keeps_working_after_an_error(store: EmbeddedStore):
    with pytest.raises(StorageError):
        store.command("SELEKT 1")
    store.insert_arrow("items", items([7], ["ok"]))
    assert store.query(f"SELECT name FROM {store.database}.items").rows == [("ok",)]


def test_data_survives_closing_and_reopening_the_directory(tmp_path: Path):
    first = EmbeddedStore(tmp_path / "data")
    first.command(f"CREATE DATABASE IF NOT EXISTS {first.database}")
    first.command(f"CREATE TABLE {first.database}.t (n UInt8) ENGINE = MergeTree ORDER BY n")
    first.insert_arrow("t", pa.table({"n": pa.array([1, 2, 3], pa.uint8())}))
    first.close()
    second = EmbeddedStore(tmp_path / "data")
    try:
        assert second.query(f"SELECT sum(n) FROM {second.database}.t").scalar() == 6
    finally:
        second.close()


def test_a_second_data_directory_in_the_same_process_is_refused_clearly(
    store: EmbeddedStore, tmp_path: Path
):
    with pytest.raises(StorageError, match="only one process may open it"):
        EmbeddedStore(tmp_path / "other")


def test_an_unsafe_database_name_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="not a valid ClickHouse identifier"):
        EmbeddedStore(tmp_path / "data", database="x; DROP")


def test_open_store_is_embedded_without_a_url(tmp_path: Path):
    opened = open_store(None, tmp_path / "data")
    try:
        assert isinstance(opened, EmbeddedStore)
        assert opened.path == tmp_path / "data"
    finally:
        opened.close()


def test_open_store_with_a_bad_url_is_a_configuration_error(tmp_path: Path):
    with pytest.raises(ConfigurationError, match="--clickhouse-url must look like"):
        open_store("clickhouse://host/db", tmp_path / "data")


def test_an_insert_commits_while_a_long_read_is_still_running(store: EmbeddedStore):
    """Reads run on their own read-only connection: an insert (the collector's writer) is not
    held up by a slow query (an alert pass, a dashboard page) running at the same time."""
    reading = threading.Thread(target=store.query, args=("SELECT sleep(2)",))
    reading.start()
    deadline = time.monotonic() + 10
    while not store._read_lock.locked():  # the read has begun
        assert time.monotonic() < deadline, "the read never started"
        time.sleep(0.001)
    store.insert_arrow("items", items([7], ["during the read"]))
    committed_while_reading = reading.is_alive()
    reading.join(10)
    assert committed_while_reading
    assert store.query(f"SELECT name FROM {store.database}.items").rows == [("during the read",)]


def test_reads_cannot_write(store: EmbeddedStore):
    """The read connection is read-only: a write sent as a query is refused by the engine."""
    with pytest.raises(StorageError, match="readonly"):
        store.query(f"INSERT INTO {store.database}.items (id, name) VALUES (1, 'x')")

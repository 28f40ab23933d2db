"""Reader sessions on their own, with no admission in front: what the engine itself refuses.

The query endpoint's admission policy decides first; these tests run statements straight on a
``ReaderSession`` to show the second line of defence, and to pin down where the engine alone is
not enough (so that the policy's refusals of those are not optional).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentwatch.storage._reader import ReaderLimits, ReaderSession
from agentwatch.storage._store import EmbeddedStore, StorageError, apply_migrations
from tests.polling import wait_until


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStore]:
    opened = EmbeddedStore(Path(tmp_path_factory.mktemp("reader")) / "data")
    apply_migrations(opened)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def reader(store: EmbeddedStore) -> Iterator[ReaderSession]:
    limits = ReaderLimits(
        max_execution_time_s=2, max_memory_usage_bytes=64 * 1024 * 1024, max_result_rows=1000
    )
    session = ReaderSession(store, "reader_under_test", limits)
    yield session
    session.close()


# Reads 200,000 rows, then computes ten billion pairs: only the time limit stops it.
RUNAWAY = (
    "SELECT count() FROM numbers(100000) AS a, numbers(100000) AS b WHERE a.number * b.number = 7"
)


def code_of(reader: ReaderSession, sql: str) -> str:
    with pytest.raises(StorageError) as failed:
        reader.run(sql, "TSV", None)
    return str(failed.value).split(".", 1)[0]


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO agentwatch.otel_traces (TraceId) VALUES ('x')",
        "CREATE TABLE agentwatch.evil (a UInt8) ENGINE = Memory",
        "DROP TABLE agentwatch.otel_traces",
        "SELECT * FROM file('/etc/hostname', LineAsString)",
        "SELECT * FROM url('http://127.0.0.1:9/', LineAsString)",
        "SELECT 1 SETTINGS readonly = 0",
        "SELECT 1 SETTINGS max_execution_time = 0",
    ],
)
def test_the_engine_refuses_writes_table_functions_and_setting_changes(
    reader: ReaderSession, sql: str
) -> None:
    """readonly = 1 holds at the engine even with admission turned off."""
    assert code_of(reader, sql) == "Code: 164"


def test_time_memory_and_result_limits_hold_at_the_engine(reader: ReaderSession) -> None:
    assert code_of(reader, RUNAWAY) == "Code: 159"  # TIMEOUT_EXCEEDED
    assert code_of(reader, "SELECT count() FROM numbers_mt(1e12)") == "Code: 158"  # rows to read
    assert code_of(reader, "SELECT groupArray(number) FROM numbers(1e8)") == "Code: 241"
    assert code_of(reader, "SELECT number FROM numbers(10000)") == "Code: 396"
    assert bytes(reader.run("SELECT 1", "TSV", None).bytes()) == b"1\n"  # and it still serves


def test_a_settings_clause_in_a_subquery_lifts_no_limit(reader: ReaderSession) -> None:
    """The engine does not apply a subquery's SETTINGS: readonly and the time limit still hold."""
    lifted = "SELECT * FROM (SELECT getSetting('readonly') SETTINGS readonly = 0)"
    assert bytes(reader.run(lifted, "TSV", None).bytes()) == b"1\n"
    escape = f"SELECT * FROM ({RUNAWAY} SETTINGS max_execution_time = 0)"
    assert code_of(reader, escape) == "Code: 159"


def run_in_background(reader: ReaderSession, sql: str) -> tuple[threading.Thread, list[str]]:
    """``sql`` running on ``reader`` in a thread, and the errors it ends with."""
    errors: list[str] = []

    def run() -> None:
        try:
            reader.run(sql, "TSV", None)
        except StorageError as exc:
            errors.append(str(exc))

    worker = threading.Thread(target=run)
    worker.start()
    return worker, errors


def running_count(store: EmbeddedStore, reader: ReaderSession) -> int:
    count: int = store.query(
        "SELECT count() FROM system.processes WHERE Settings['log_comment'] = {name:String}",
        {"name": reader.name},
    ).scalar()
    return count


def test_cancel_kills_the_running_query(store: EmbeddedStore) -> None:
    """``cancel`` (KILL QUERY on the store's own connection) ends a query long before its limit."""
    slow = ReaderSession(store, "reader_to_cancel", ReaderLimits(max_execution_time_s=120))
    worker, errors = run_in_background(slow, RUNAWAY)
    try:
        wait_until(lambda: running_count(store, slow) == 1, timeout=30, what="the query")
        slow.cancel()
        worker.join(30)
        assert not worker.is_alive()
        assert len(errors) == 1
        assert "QUERY_WAS_CANCELLED" in errors[0]
    finally:
        slow.close()


def test_a_waiting_cancel_returns_only_once_the_query_has_ended(store: EmbeddedStore) -> None:
    """``cancel(wait_s=...)``: when it returns no query of the reader is left for the kill to
    land on, so the reader's next query cannot be the one it hits; and a cancel that arrives
    while the query is still pending is not undone by the retry meant for stale kills."""
    slow = ReaderSession(store, "reader_to_cancel_sync", ReaderLimits(max_execution_time_s=120))
    worker, errors = run_in_background(slow, RUNAWAY)
    try:
        wait_until(lambda: running_count(store, slow) == 1, timeout=30, what="the query")
        slow.cancel(wait_s=30)
        assert running_count(store, slow) == 0
        worker.join(30)
        assert len(errors) == 1
        assert "QUERY_WAS_CANCELLED" in errors[0]
        assert slow.run("SELECT 1", "TSV", None).bytes() == b"1\n"
    finally:
        slow.close()


def test_the_engine_alone_does_not_confine_scalar_file_or_into_outfile(
    reader: ReaderSession, tmp_path: Path
) -> None:
    """Measured on chDB 4.4: in its local mode neither ``readonly = 1`` nor ``user_files_path``
    stops the scalar ``file()`` or ``INTO OUTFILE``. That is why the admission policy refuses
    both by name and by tree shape; if this test starts failing, the engine has learned to
    refuse them too."""
    secret = tmp_path / "secret.txt"
    secret.write_text("the-secret")
    read = reader.run(f"SELECT file('{secret}')", "TSVRaw", None)
    assert bytes(read.bytes()).decode().strip() == "the-secret"
    written = tmp_path / "written.tsv"
    reader.run(f"SELECT 1 INTO OUTFILE '{written}'", "TSV", None)
    assert written.exists()

"""A failed insert of several requests fails only the requests that caused it.

Each test queues its requests before the writer starts, so they go out as one batch (one
insert); the insert counters prove it. Then the writer's retry round, request by request, over
a real embedded store: a request the store refuses gets ``RowsRefused`` (its own rows are the
problem) while those batched with it are stored and acknowledged; when the store fails for
everyone, every request keeps ``StorageError`` (retried). ``spans_stored`` always equals the
rows in the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import pyarrow as pa
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agentwatch.collector._decode import request_to_columns
from agentwatch.collector._pricing import PriceTable
from agentwatch.collector._rows import spans_to_arrow
from agentwatch.collector._stats import Stats
from agentwatch.collector._writer import BatchWriter, RowsRefused, WriterSettings, store_side
from agentwatch.storage._schema import SPANS_TABLE
from agentwatch.storage._store import EmbeddedStore, StorageError, apply_migrations
from tests.collector.conftest import (
    make_request,
    make_span,
    new_trace_id,
    span_counts,
    total_spans,
    trace_batch,
    wait_until,
)

NS_PER_DAY = 86_400 * 1_000_000_000
TOO_MANY_PARTITIONS = "Too many partitions for single INSERT block"


class DroppingStore(EmbeddedStore):
    """The real embedded store; ``drop_after`` set, it drops the span table once that many
    inserts have succeeded: the store failing between two inserts of a retry round."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.drop_after: int | None = None
        self.inserted = 0

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        super().insert_arrow(table, data)
        self.inserted += 1
        if self.inserted == self.drop_after:
            self.drop_spans()

    def drop_spans(self) -> None:
        self.command(f"DROP TABLE {self.database}.{SPANS_TABLE} SYNC")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DroppingStore]:
    # chDB opens one data directory per process: one store per test, closed after it.
    opened = DroppingStore(tmp_path / "data")
    apply_migrations(opened)
    yield opened
    opened.close()


OneBatch = Callable[[list[pa.Table]], tuple[Stats, list[Future[None]]]]


@pytest.fixture
def one_batch(store: DroppingStore) -> Iterator[OneBatch]:
    """Queue the tables, then start the writer: they are all waiting, so one batch."""
    writers: list[BatchWriter] = []

    def write(tables: list[pa.Table]) -> tuple[Stats, list[Future[None]]]:
        stats = Stats()
        settings = WriterSettings(
            max_delay_s=60.0,
            max_batch_rows=1_000_000,
            max_queued_rows=1_000_000,
            flush_when_waiting=len(tables),
            idle_flush_rows=1_000_000,
        )
        writer = BatchWriter(store, stats, settings)
        writers.append(writer)
        futures = [writer.submit(table) for table in tables]
        writer.start()
        wait_until(lambda: all(f.done() for f in futures), timeout=30, what="every ack")
        assert writer.queued_rows == 0
        return stats, futures

    yield write
    for writer in writers:
        writer.stop()


def arrow(request: ExportTraceServiceRequest) -> pa.Table:
    return spans_to_arrow(request_to_columns(request), PriceTable())


def rows(n: int, trace_id: bytes) -> pa.Table:
    """``n`` spans of one trace, starting now, as the receivers hand them to the writer."""
    return arrow(trace_batch(n, trace_id))


def days_ahead(first: int, last: int, trace_id: bytes) -> pa.Table:
    """One span a day from ``first`` to ``last`` days ahead (each day is a partition)."""
    now = time.time_ns()
    spans = [
        make_span(f"day {d}", trace_id=trace_id, start_ns=now + d * NS_PER_DAY)
        for d in range(first, last + 1)
    ]
    return arrow(make_request(*spans))


def outcome(future: Future[None]) -> BaseException | None:
    return future.exception(timeout=0)


@pytest.mark.slow
def test_a_request_the_store_refuses_fails_alone_and_those_batched_with_it_are_stored(
    store: DroppingStore, one_batch: OneBatch
):
    good_ids = [new_trace_id(), new_trace_id()]
    poison_id = new_trace_id()
    poison = days_ahead(1, 150, poison_id)  # 150 partitions in one insert: more than 100
    stats, (first, refused, last) = one_batch([rows(3, good_ids[0]), poison, rows(4, good_ids[1])])

    assert outcome(first) is None
    assert outcome(last) is None
    error = outcome(refused)
    assert isinstance(error, RowsRefused)
    assert not isinstance(error, StorageError)
    assert TOO_MANY_PARTITIONS in error.store_message
    assert TOO_MANY_PARTITIONS in str(error)
    assert isinstance(error.__cause__, StorageError)

    assert span_counts(store, [*good_ids, poison_id]) == {
        good_ids[0].hex(): 3,
        good_ids[1].hex(): 4,
        poison_id.hex(): 0,
    }
    snapshot = stats.snapshot()
    assert snapshot["spans_stored"] == total_spans(store) == 7
    # The batch's insert and the poison's own failed; the good requests went in one by one.
    assert snapshot["insert_failures"] == 2
    assert snapshot["inserts"] == 2


@pytest.mark.slow
def test_requests_that_only_together_touch_too_many_days_are_each_stored(
    store: DroppingStore, one_batch: OneBatch
):
    """Each request covers 60 days (the receivers allow up to 100), together 120: the batch's
    insert is refused, each request's own insert is not."""
    ids = [new_trace_id(), new_trace_id()]
    stats, futures = one_batch([days_ahead(1, 60, ids[0]), days_ahead(61, 120, ids[1])])
    assert [outcome(f) for f in futures] == [None, None]
    assert span_counts(store, ids) == {ids[0].hex(): 60, ids[1].hex(): 60}
    snapshot = stats.snapshot()
    assert snapshot["spans_stored"] == total_spans(store) == 120
    assert (snapshot["insert_failures"], snapshot["inserts"]) == (1, 2)


@pytest.mark.slow
def test_a_request_with_a_column_the_store_lacks_is_refused_alone(
    store: DroppingStore, one_batch: OneBatch
):
    """Tables that cannot be joined into one insert are inserted one by one at once."""
    good_id, bad_id = new_trace_id(), new_trace_id()
    bad = rows(2, bad_id).append_column("NoSuchColumn", pa.array(["x", "y"]))
    stats, (good, refused) = one_batch([rows(5, good_id), bad])
    assert outcome(good) is None
    error = outcome(refused)
    assert isinstance(error, RowsRefused)
    assert "NoSuchColumn" in error.store_message
    assert span_counts(store, [good_id, bad_id]) == {good_id.hex(): 5, bad_id.hex(): 0}
    snapshot = stats.snapshot()
    assert snapshot["spans_stored"] == total_spans(store) == 5
    assert (snapshot["insert_failures"], snapshot["inserts"]) == (1, 1)


@pytest.mark.slow
def test_when_every_retry_fails_each_request_keeps_the_storage_error(
    store: DroppingStore, one_batch: OneBatch
):
    """No insert of the round succeeded: the writer cannot tell bad rows from a bad store, so
    the requests are retried by their senders rather than dropped."""
    ids = [new_trace_id(), new_trace_id()]
    stats, futures = one_batch([days_ahead(1, 150, ids[0]), days_ahead(1, 120, ids[1])])
    for future in futures:
        error = outcome(future)
        assert isinstance(error, StorageError)
        assert TOO_MANY_PARTITIONS in str(error)
    assert total_spans(store) == 0
    snapshot = stats.snapshot()
    assert snapshot["spans_stored"] == 0
    assert (snapshot["insert_failures"], snapshot["inserts"]) == (3, 0)


@pytest.mark.slow
def test_a_missing_table_fails_every_request_with_storage_error_and_no_retries(
    store: DroppingStore, one_batch: OneBatch
):
    store.drop_spans()
    stats, futures = one_batch([rows(2, new_trace_id()) for _ in range(3)])
    for future in futures:
        error = outcome(future)
        assert isinstance(error, StorageError)
        assert "UNKNOWN_TABLE" in str(error)
    snapshot = stats.snapshot()
    assert (snapshot["insert_failures"], snapshot["inserts"], snapshot["spans_stored"]) == (
        1,
        0,
        0,
    )


@pytest.mark.slow
def test_a_closed_store_fails_every_request_with_storage_error(
    store: DroppingStore, one_batch: OneBatch
):
    store.close()
    stats, futures = one_batch([rows(2, new_trace_id()) for _ in range(3)])
    assert all(type(outcome(f)) is StorageError for f in futures)
    snapshot = stats.snapshot()
    assert (snapshot["insert_failures"], snapshot["spans_stored"]) == (1, 0)


@pytest.mark.slow
def test_a_store_failing_during_the_retries_refuses_nobody(
    store: DroppingStore, one_batch: OneBatch
):
    """The first request goes in alone, then the table is gone: the poison's own insert meets
    the missing table, which is the store's condition, so it and the request not yet tried get
    StorageError (retried), not RowsRefused."""
    good_id, poison_id, later_id = new_trace_id(), new_trace_id(), new_trace_id()
    store.drop_after = 1  # the batch's insert fails, so the first success is the first retry
    stats, (good, poison, later) = one_batch(
        [rows(3, good_id), days_ahead(1, 150, poison_id), rows(2, later_id)]
    )
    assert outcome(good) is None
    for future in (poison, later):
        error = outcome(future)
        assert type(error) is StorageError
        assert "UNKNOWN_TABLE" in str(error)
    snapshot = stats.snapshot()
    assert snapshot["spans_stored"] == 3  # what went in before the table was dropped
    assert (snapshot["insert_failures"], snapshot["inserts"]) == (2, 1)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "Code: 252. DB::Exception: Too many partitions for single INSERT block (more than "
            "100). (TOO_MANY_PARTS)",
            False,
        ),
        ("Code: 16. DB::Exception: No such column NoSuchColumn. (NO_SUCH_COLUMN_IN_TABLE)", False),
        (
            "Code: 252. DB::Exception: Too many parts (3001 with average size of 1.00 KiB) in "
            "table. Merges are processing significantly slower than inserts. (TOO_MANY_PARTS) "
            "(version 24.8.1)",
            True,
        ),
        (
            "Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)",
            True,
        ),
        ("Code: 60. DB::Exception: Table a.b does not exist. (UNKNOWN_TABLE)", True),
        ("HTTPConnectionPool(host='ch', port=8123): Max retries exceeded", True),
        ("'NoneType' object has no attribute 'query'", True),
    ],
)
def test_what_counts_as_the_store_own_condition(message: str, expected: bool) -> None:
    assert store_side(StorageError(message)) is expected
    assert store_side(RuntimeError(message))  # not the store's answer at all

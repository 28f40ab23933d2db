"""The batching writer over a real embedded store: futures complete only after the insert that
holds their rows committed; a full queue refuses new rows at once (bounded memory, nothing
dropped); queued rows are batched; a failed insert of one request fails it with the store's
error (how a failed batch of several is split up: test_writer_isolation.py); stop drains.

Inserts are slowed with ``GatedStore`` (see conftest): the real store, with each insert waiting
for the test to open a gate, so "the store is slower than the arrivals" happens exactly when a
test says so instead of depending on machine load.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, wait
from pathlib import Path

import pyarrow as pa
import pytest

from agentwatch.collector._decode import request_to_columns
from agentwatch.collector._pricing import PriceTable
from agentwatch.collector._rows import spans_to_arrow
from agentwatch.collector._stats import Stats
from agentwatch.collector._writer import BatchWriter, Overloaded, WriterSettings, WriterStopped
from agentwatch.storage._store import StorageError, apply_migrations
from tests.collector.conftest import (
    GatedStore,
    new_trace_id,
    span_counts,
    total_spans,
    trace_batch,
    wait_until,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def store(tmp_path: Path) -> Iterator[GatedStore]:
    gated = GatedStore(tmp_path / "data")
    apply_migrations(gated)
    yield gated
    gated.gate.set()
    gated.close()


@pytest.fixture
def make_writer(store: GatedStore) -> Iterator[type[BatchWriter]]:
    writers: list[BatchWriter] = []

    class StartedWriter(BatchWriter):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            writers.append(self)
            self.start()

    yield StartedWriter
    store.gate.set()
    for writer in writers:
        writer.stop()


def rows(n: int, trace_id: bytes | None = None) -> pa.Table:
    """``n`` spans of one trace as the receivers hand them to the writer."""
    return spans_to_arrow(request_to_columns(trace_batch(n, trace_id)), PriceTable())


def test_a_future_completes_only_after_its_rows_are_committed(
    store: GatedStore, make_writer: type[BatchWriter]
):
    writer = make_writer(store, Stats(), WriterSettings(max_delay_s=0.0))
    store.gate.clear()
    trace_id = new_trace_id()
    future = writer.submit(rows(3, trace_id))
    wait_until(store.insert_waiting.is_set, what="the insert to start")
    assert not future.done()
    store.gate.set()
    future.result(timeout=30)
    assert span_counts(store, [trace_id]) == {trace_id.hex(): 3}


def test_a_full_queue_refuses_at_once_keeps_memory_bounded_and_loses_nothing_accepted(
    store: GatedStore, make_writer: type[BatchWriter]
):
    stats = Stats()
    limit = 10
    writer = make_writer(store, stats, WriterSettings(max_delay_s=0.0, max_queued_rows=limit))
    store.gate.clear()
    accepted: list[tuple[bytes, Future[None]]] = []
    refused: list[Overloaded] = []
    refused_ids: list[bytes] = []
    depths: list[int] = []
    for _ in range(12):
        trace_id = new_trace_id()
        try:
            accepted.append((trace_id, writer.submit(rows(3, trace_id))))
        except Overloaded as exc:
            refused.append(exc)
            refused_ids.append(trace_id)
        depths.append(writer.queued_rows)
        if len(accepted) == 1:
            wait_until(store.insert_waiting.is_set, what="the first insert to start")

    assert len(accepted) == 3  # 9 rows queued; 3 more would be 12 > 10
    assert len(refused) == 9
    assert all(exc.retry_after_s == 1 and f"(limit {limit})" in str(exc) for exc in refused)
    assert max(depths) <= limit
    assert stats.snapshot()["queue_depth_spans"] == 9

    store.gate.set()
    for _, future in accepted:
        future.result(timeout=30)
    counts = span_counts(store, [t for t, _ in accepted] + refused_ids)
    assert [counts[t.hex()] for t, _ in accepted] == [3, 3, 3]
    assert [counts[t.hex()] for t in refused_ids] == [0] * 9
    assert writer.queued_rows == 0


def test_one_request_larger_than_the_queue_limit_is_accepted_into_an_empty_queue(
    store: GatedStore, make_writer: type[BatchWriter]
):
    """Otherwise it could never be stored; memory stays within the limit plus one request."""
    writer = make_writer(store, Stats(), WriterSettings(max_delay_s=0.0, max_queued_rows=5))
    trace_id = new_trace_id()
    writer.submit(rows(8, trace_id)).result(timeout=30)
    assert span_counts(store, [trace_id]) == {trace_id.hex(): 8}


def test_rows_queued_while_an_insert_runs_go_out_together_in_batches(
    store: GatedStore, make_writer: type[BatchWriter]
):
    stats = Stats()
    writer = make_writer(store, stats, WriterSettings(max_delay_s=0.0, max_batch_rows=10))
    store.gate.clear()
    futures = [writer.submit(rows(1))]
    wait_until(store.insert_waiting.is_set, what="the first insert to start")
    futures += [writer.submit(rows(2)) for _ in range(10)]
    store.gate.set()
    for future in futures:
        future.result(timeout=30)
    assert total_spans(store) == 21
    snapshot = stats.snapshot()
    assert snapshot["spans_stored"] == 21
    assert snapshot["inserts"] == 3  # 1 row, then 10 + 10 rows (max_batch_rows=10)


def test_a_failed_insert_of_one_request_fails_it_with_the_store_error_and_the_writer_carries_on(
    store: GatedStore, make_writer: type[BatchWriter]
):
    stats = Stats()
    writer = make_writer(store, stats, WriterSettings(max_delay_s=0.0))
    bad = rows(2).append_column("NoSuchColumn", pa.array(["x", "y"]))
    # Alone in its batch: nothing tells its rows from the store, so not RowsRefused.
    with pytest.raises(StorageError, match="NoSuchColumn"):
        writer.submit(bad).result(timeout=30)
    assert stats.snapshot()["insert_failures"] == 1
    assert stats.snapshot()["spans_stored"] == 0
    assert writer.queued_rows == 0
    trace_id = new_trace_id()
    writer.submit(rows(2, trace_id)).result(timeout=30)
    assert span_counts(store, [trace_id]) == {trace_id.hex(): 2}


def test_stop_returns_only_after_everything_queued_is_written_then_refuses_more(
    store: GatedStore, make_writer: type[BatchWriter]
):
    writer = make_writer(store, Stats(), WriterSettings(max_delay_s=0.0))
    store.gate.clear()
    ids = [new_trace_id() for _ in range(4)]
    futures = [writer.submit(rows(5, trace_id)) for trace_id in ids]
    wait_until(store.insert_waiting.is_set, what="the first insert to start")
    store.gate.set()
    writer.stop()
    assert all(f.done() and f.exception() is None for f in futures)
    assert set(span_counts(store, ids).values()) == {5}
    with pytest.raises(WriterStopped):
        writer.submit(rows(1))


def test_enough_waiting_requests_are_committed_at_once_fewer_wait_for_the_delay(
    store: GatedStore, make_writer: type[BatchWriter]
):
    """With flush_when_waiting requests queued the writer commits without waiting out
    max_delay_s (their clients can send nothing more until it does); fewer stay queued for more
    rows to join them."""
    stats = Stats()
    writer = make_writer(
        store, stats, WriterSettings(max_delay_s=60.0, max_batch_rows=1000, flush_when_waiting=3)
    )
    first = [writer.submit(rows(2)) for _ in range(2)]
    # Two requests: the writer keeps waiting for more (max_delay_s is a minute away).
    done, _ = wait(first, timeout=0.3)
    assert not done
    assert stats.snapshot()["inserts"] == 0
    third = writer.submit(rows(2))
    for future in [*first, third]:
        future.result(timeout=15)  # far sooner than max_delay_s
    assert stats.snapshot()["inserts"] == 1
    assert total_spans(store) == 6


def test_a_sizeable_batch_is_committed_once_arrivals_pause(
    store: GatedStore, make_writer: type[BatchWriter]
):
    """A few busy exporters wait on the commit: once idle_flush_rows are queued and nothing new
    arrives for idle_flush_s, the writer commits instead of waiting out max_delay_s; a smaller
    queue keeps waiting for more rows."""
    stats = Stats()
    writer = make_writer(
        store,
        stats,
        WriterSettings(
            max_delay_s=60.0, flush_when_waiting=100, idle_flush_rows=5, idle_flush_s=0.05
        ),
    )
    small = writer.submit(rows(3))
    done, _ = wait([small], timeout=0.3)  # 3 rows < 5: keeps waiting for more
    assert not done
    large = writer.submit(rows(3))  # 6 rows >= 5, then no more arrivals
    for future in (small, large):
        future.result(timeout=15)  # far sooner than max_delay_s
    assert stats.snapshot()["inserts"] == 1

"""One batching writer per store: bounded queue in, columnar inserts out, acks after commit.

A request's rows are acknowledged only once the insert that holds them has returned. When the
queue is full, ``submit`` refuses at once (the receivers answer 503 / UNAVAILABLE with
Retry-After) so memory stays bounded and exporters back off and retry.

A failure stays with the request that caused it. Several requests go out as one insert; when
that insert fails, the writer tells the store's trouble from one request's rows:

* The store's own condition (no ClickHouse error in the message, so the connection, the
  session or the client failed; or a ClickHouse error about the store's state, see
  ``_STORE_CONDITIONS``, such as a missing table, memory, merges behind, a read-only replica):
  every request in the batch gets that ``StorageError`` (503 / UNAVAILABLE, retried), with no
  retries that would only fail again.
* Anything else (the store answered and refused the insert, e.g. "too many partitions for
  single INSERT block" when the requests together touch more than 100 days, or rows it cannot
  read): the requests are inserted again one by one, in order, each its own insert. Each one
  that succeeds is acknowledged at once. One that fails gets ``RowsRefused`` (its rows are the
  problem: 400 / INVALID_ARGUMENT, not retried) only when another request's insert in the same
  round succeeded and its own error is not the store's condition: the store demonstrably took
  inserts, so what differs is the rows. When no insert of the round succeeds the writer cannot
  tell a store failing for everyone from requests that are all bad, so each keeps its
  ``StorageError`` (retried, as before). A store-side error ends the round: the requests not
  yet tried get it too.
* A batch of one request that fails keeps its ``StorageError``: nothing to compare it with.

Refusing wrongly loses data (exporters drop what got a 400), retrying wrongly only repeats a
request, so every doubt falls on the ``StorageError`` side. ``Stats.stored`` counts only inserts
that returned, so ``spans_stored`` is the rows in the store; ``Stats.insert_failed`` counts
every failed insert, retries included.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass

import pyarrow as pa

from agentwatch._errors import AgentwatchError
from agentwatch.collector._stats import Stats
from agentwatch.storage._schema import SPANS_TABLE
from agentwatch.storage._store import StorageError, Store

logger = logging.getLogger("agentwatch.collector")


class Overloaded(AgentwatchError):
    """The write queue is full; try again after ``retry_after_s``."""

    def __init__(self, queued: int, limit: int, retry_after_s: int = 1) -> None:
        super().__init__(f"collector is overloaded: {queued} spans queued (limit {limit})")
        self.retry_after_s = retry_after_s


class WriterStopped(AgentwatchError):
    """The writer is shutting down and takes no more rows."""


class RowsRefused(AgentwatchError):
    """The store refused this request's rows while it took other requests' inserts: sending
    the same rows again would fail again. ``store_message`` is the store's own message."""

    def __init__(self, store_message: str) -> None:
        super().__init__(f"the store refused these spans: {store_message}")
        self.store_message = store_message


# The store answered with one of its errors ("Code: 252. DB::Exception: ...", from chDB and from
# a ClickHouse server alike); a failure without one is the connection, session or client.
_CLICKHOUSE_ERROR = re.compile(r"Code: \d+\. DB::Exception")
# ClickHouse errors about the store's state, never about the rows of an insert (matched as
# "(NAME)" in the message). "Too many parts" (merges behind) shares its name with "too many
# partitions for single INSERT block" (TOO_MANY_PARTS), so it is matched by its text.
_STORE_CONDITIONS = frozenset(
    {
        "ABORTED",
        "ALL_CONNECTION_TRIES_FAILED",
        "CANNOT_ALLOCATE_MEMORY",
        "KEEPER_EXCEPTION",
        "MEMORY_LIMIT_EXCEEDED",
        "NETWORK_ERROR",
        "NOT_ENOUGH_SPACE",
        "NO_ZOOKEEPER",
        "QUERY_WAS_CANCELLED",
        "READONLY",
        "SOCKET_TIMEOUT",
        "TABLE_IS_DROPPED",
        "TABLE_IS_READ_ONLY",
        "TIMEOUT_EXCEEDED",
        "TOO_MANY_SIMULTANEOUS_QUERIES",
        "UNKNOWN_DATABASE",
        "UNKNOWN_TABLE",
    }
)


def store_side(error: Exception) -> bool:
    """Whether ``error`` (from an insert) is the store's own condition rather than its verdict
    on the rows; in doubt it is the store's (see the module docstring)."""
    if not isinstance(error, StorageError):
        return True
    message = str(error)
    if _CLICKHOUSE_ERROR.search(message) is None:
        return True
    return "Too many parts" in message or any(f"({name})" in message for name in _STORE_CONDITIONS)


@dataclass(frozen=True, slots=True)
class WriterSettings:
    max_batch_rows: int = 50_000
    max_delay_s: float = 0.25
    max_queued_rows: int = 400_000
    release_memory_every_s: float = 1.0
    # Commit at once when this many requests wait on the commit: acks wait for commits, so
    # waiting out max_delay_s with the receivers' admission half full of waiting requests only
    # idles; the other half is decoded meanwhile and makes the next batch. Fewer waiting
    # requests (light load) still wait up to max_delay_s, so inserts stay few.
    flush_when_waiting: int = 8
    # Also commit once this many rows wait and nothing new has arrived for idle_flush_s: a few
    # busy exporters send back to back and wait on the commit, so a pause means they are all
    # waiting. Small requests (light load) still batch for up to max_delay_s.
    idle_flush_rows: int = 2000
    idle_flush_s: float = 0.02


class BatchWriter:
    def __init__(
        self,
        store: Store,
        stats: Stats,
        settings: WriterSettings | None = None,
        table: str = SPANS_TABLE,
    ) -> None:
        self.store = store
        self.stats = stats
        self.settings = settings or WriterSettings()
        self.table = table
        self._queue: deque[tuple[pa.Table, Future[None]]] = deque()
        self._queued_rows = 0
        self._last_submit = time.monotonic()
        self._cond = threading.Condition()
        self._stopping = False
        self._last_release = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="agentwatch-writer", daemon=True)
        stats.queue_depth_fn = lambda: self._queued_rows

    def start(self) -> None:
        self._thread.start()

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def submit(self, rows: pa.Table) -> Future[None]:
        """Queue rows; the future completes once they are committed (or the insert failed)."""
        future: Future[None] = Future()
        n = rows.num_rows
        with self._cond:
            if self._stopping:
                raise WriterStopped("collector is shutting down")
            if self._queued_rows > 0 and self._queued_rows + n > self.settings.max_queued_rows:
                raise Overloaded(self._queued_rows, self.settings.max_queued_rows)
            self._queue.append((rows, future))
            self._queued_rows += n
            self._last_submit = time.monotonic()
            self._cond.notify()
        return future

    def _enough_waiting(self) -> bool:
        return len(self._queue) >= self.settings.flush_when_waiting

    def _take_batch(self) -> list[tuple[pa.Table, Future[None]]]:
        settings = self.settings
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue:
                return []
            deadline = time.monotonic() + settings.max_delay_s
            while (
                self._queued_rows < settings.max_batch_rows
                and not self._stopping
                and not self._enough_waiting()
            ):
                now = time.monotonic()
                remaining = deadline - now
                if remaining <= 0:
                    break
                if self._queued_rows >= settings.idle_flush_rows:
                    # A sizeable batch and arrivals have paused: its senders are waiting on
                    # this commit (a few busy exporters), so waiting longer only idles.
                    idle_for = now - self._last_submit
                    if idle_for >= settings.idle_flush_s:
                        break
                    remaining = min(remaining, settings.idle_flush_s - idle_for)
                self._cond.wait(remaining)
            batch: list[tuple[pa.Table, Future[None]]] = []
            rows = 0
            while self._queue and (
                not batch or rows + self._queue[0][0].num_rows <= settings.max_batch_rows
            ):
                item = self._queue.popleft()
                rows += item[0].num_rows
                batch.append(item)
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            if not batch:
                return
            self._write(batch)

    def _write(self, batch: list[tuple[pa.Table, Future[None]]]) -> None:
        """Insert the batch as one insert; when that fails, as the module docstring says."""
        if len(batch) == 1:
            table, future = batch[0]
            self._complete(table, future, self._insert(table))
            return
        try:
            table = pa.concat_tables([t for t, _ in batch])
        except Exception:
            # The requests' tables disagree (never from the receivers): insert each alone.
            logger.exception("cannot join %d requests into one insert", len(batch))
        else:
            error = self._insert(table, requests=len(batch))
            del table
            if error is None:
                self._complete_all(batch, None)
                return
            if store_side(error):
                self._complete_all(batch, error)
                return
        self._insert_each(batch)

    def _insert_each(self, batch: list[tuple[pa.Table, Future[None]]]) -> None:
        """The retry round: each request its own insert, in order; acked as each returns."""
        failed: list[tuple[pa.Table, Future[None], Exception]] = []
        stored_any = False
        for index, (table, future) in enumerate(batch):
            error = self._insert(table)
            if error is None:
                stored_any = True
                self._complete(table, future, None)
                continue
            failed.append((table, future, error))
            if store_side(error):
                failed += [(t, f, error) for t, f in batch[index + 1 :]]
                break
        for table, future, error in failed:
            if stored_any and not store_side(error):
                refused = RowsRefused(str(error))
                refused.__cause__ = error
                error = refused
            self._complete(table, future, error)

    def _insert(self, table: pa.Table, requests: int = 1) -> Exception | None:
        """One insert, counted in the stats; returns its error, if any."""
        started = time.perf_counter()
        try:
            self.store.insert_arrow(self.table, table)
        except Exception as exc:
            self.stats.insert_failed()
            logger.exception(
                "insert of %d spans from %d request(s) failed", table.num_rows, requests
            )
            return exc
        self.stats.stored(table.num_rows, time.perf_counter() - started)
        self._maybe_release_memory()
        return None

    def _complete(self, table: pa.Table, future: Future[None], error: Exception | None) -> None:
        """Release the request's rows from the queue count, then answer its waiter."""
        with self._cond:
            self._queued_rows -= table.num_rows
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    def _complete_all(
        self, batch: list[tuple[pa.Table, Future[None]]], error: Exception | None
    ) -> None:
        with self._cond:
            self._queued_rows -= sum(t.num_rows for t, _ in batch)
        for _, future in batch:
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    def _maybe_release_memory(self) -> None:
        # chDB's allocator keeps what inserts and merges freed; purging it every second costs
        # little of the writer's time and keeps the RSS bounded.
        release = getattr(self.store, "release_memory", None)
        now = time.monotonic()
        if release is None or now - self._last_release < self.settings.release_memory_every_s:
            return
        self._last_release = now
        try:
            release()
        except Exception:
            logger.exception("releasing memory failed")

    def stop(self, timeout_s: float = 30.0) -> None:
        """Take no more rows, write everything queued, then return."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

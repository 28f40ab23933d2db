"""One batching writer per store: bounded queue in, columnar inserts out, acks after commit.

A request's rows are acknowledged only once the insert that holds them has returned. When the
queue is full, ``submit`` refuses at once (the receivers answer 503 / UNAVAILABLE with
Retry-After) so memory stays bounded and exporters back off and retry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass

import pyarrow as pa

from agentwatch._errors import AgentwatchError
from agentwatch.collector._stats import Stats
from agentwatch.storage._schema import SPANS_TABLE
from agentwatch.storage._store import Store

logger = logging.getLogger("agentwatch.collector")


class Overloaded(AgentwatchError):
    """The write queue is full; try again after ``retry_after_s``."""

    def __init__(self, queued: int, limit: int, retry_after_s: int = 1) -> None:
        super().__init__(f"collector is overloaded: {queued} spans queued (limit {limit})")
        self.retry_after_s = retry_after_s


class WriterStopped(AgentwatchError):
    """The writer is shutting down and takes no more rows."""


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
            rows = sum(t.num_rows for t, _ in batch)
            started = time.perf_counter()
            error: Exception | None = None
            try:
                table = pa.concat_tables([t for t, _ in batch]) if len(batch) > 1 else batch[0][0]
                self.store.insert_arrow(self.table, table)
            except Exception as exc:
                logger.exception("insert of %d spans failed", rows)
                self.stats.insert_failed()
                error = exc
            else:
                self.stats.stored(rows, time.perf_counter() - started)
                self._maybe_release_memory()
            with self._cond:
                self._queued_rows -= rows
            for _, future in batch:
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

    def _maybe_release_memory(self) -> None:
        # chDB's allocator keeps what inserts and merges freed (~200 MB under load); purging
        # it every second costs a few ms of the writer's time and keeps the RSS bounded.
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

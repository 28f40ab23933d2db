"""The collector's own counters, as JSON and as Prometheus text."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Stats:
    """Thread-safe counters: received, stored, rejected by reason, insert latency."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.spans_received = 0
        self.requests_decoded_natively = 0
        self.spans_stored = 0
        self.rejected: Counter[str] = Counter()  # requests, by reason
        self.spans_refused: Counter[str] = Counter()  # spans of stored requests, by reason
        self.inserts = 0
        self.insert_seconds_total = 0.0
        self.insert_seconds_max = 0.0
        self.insert_failures = 0
        self.queue_depth_fn: Any = None

    def request(self, spans: int, *, native: bool = False) -> None:
        with self._lock:
            self.requests += 1
            self.spans_received += spans
            self.requests_decoded_natively += native

    def reject(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] += 1

    def spans_rejected(self, reason: str, spans: int) -> None:
        with self._lock:
            self.spans_refused[reason] += spans

    def stored(self, spans: int, seconds: float) -> None:
        with self._lock:
            self.spans_stored += spans
            self.inserts += 1
            self.insert_seconds_total += seconds
            self.insert_seconds_max = max(self.insert_seconds_max, seconds)

    def insert_failed(self) -> None:
        with self._lock:
            self.insert_failures += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            depth = self.queue_depth_fn() if self.queue_depth_fn is not None else 0
            return {
                "requests": self.requests,
                "requests_decoded_natively": self.requests_decoded_natively,
                "spans_received": self.spans_received,
                "spans_stored": self.spans_stored,
                "rejected": dict(self.rejected),
                "spans_rejected": dict(self.spans_refused),
                "queue_depth_spans": depth,
                "inserts": self.inserts,
                "insert_failures": self.insert_failures,
                "insert_seconds_total": round(self.insert_seconds_total, 6),
                "insert_seconds_max": round(self.insert_seconds_max, 6),
            }

    def prometheus(self) -> str:
        snap = self.snapshot()
        lines = [
            "# TYPE agentwatch_requests_total counter",
            f"agentwatch_requests_total {snap['requests']}",
            "# TYPE agentwatch_requests_decoded_natively_total counter",
            f"agentwatch_requests_decoded_natively_total {snap['requests_decoded_natively']}",
            "# TYPE agentwatch_spans_received_total counter",
            f"agentwatch_spans_received_total {snap['spans_received']}",
            "# TYPE agentwatch_spans_stored_total counter",
            f"agentwatch_spans_stored_total {snap['spans_stored']}",
            "# TYPE agentwatch_rejected_total counter",
        ]
        lines += [
            f'agentwatch_rejected_total{{reason="{reason}"}} {count}'
            for reason, count in sorted(snap["rejected"].items())
        ]
        lines.append("# TYPE agentwatch_spans_rejected_total counter")
        lines += [
            f'agentwatch_spans_rejected_total{{reason="{reason}"}} {count}'
            for reason, count in sorted(snap["spans_rejected"].items())
        ]
        lines += [
            "# TYPE agentwatch_queue_depth_spans gauge",
            f"agentwatch_queue_depth_spans {snap['queue_depth_spans']}",
            "# TYPE agentwatch_insert_seconds summary",
            f"agentwatch_insert_seconds_sum {snap['insert_seconds_total']}",
            f"agentwatch_insert_seconds_count {snap['inserts']}",
            "# TYPE agentwatch_insert_failures_total counter",
            f"agentwatch_insert_failures_total {snap['insert_failures']}",
        ]
        return "\n".join(lines) + "\n"

"""Which decoded spans the store keeps: those it would drop or wrap are refused, not acknowledged.

The span table's TTL drops rows older than the retention at insert, and computes on 32-bit
``DateTime`` (which ends in 2106), so a span dated later wraps to 1970 and is dropped too. A
span refused here is reported back to its sender (OTLP partial success) and counted by reason,
so ``spans_stored`` is only ever what was written. Pure: the caller gives the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from agentwatch.collector._decode import InvalidRequest

NS_PER_S: Final = 1_000_000_000
NS_PER_DAY: Final = 86_400 * NS_PER_S
# The last second a ClickHouse DateTime holds (2106-02-07 06:28:15 UTC).
LAST_DATETIME_S: Final = 2**32 - 1
# The store refuses an insert that touches more partitions (days) than this.
MAX_DAYS_PER_REQUEST: Final = 100
# A span this close to the retention edge would be dropped by the time it is merged.
RETENTION_MARGIN_NS: Final = 60 * NS_PER_S

TOO_OLD: Final = "older_than_retention"
TOO_LATE: Final = "after_storable_time"


@dataclass(frozen=True, slots=True)
class StorableWindow:
    """The span start times the store keeps, for a retention of ``retention_days``."""

    retention_days: int

    def bounds(self, now_ns: int) -> tuple[int, int]:
        oldest = now_ns - self.retention_days * NS_PER_DAY + RETENTION_MARGIN_NS
        # The TTL adds the retention to the span's time, and that sum must not pass 2106 either.
        latest = (LAST_DATETIME_S - self.retention_days * 86_400) * NS_PER_S
        return oldest, latest

    def describe(self, reason: str) -> str:
        if reason == TOO_OLD:
            return f"older than the {self.retention_days}-day retention"
        _, latest = self.bounds(0)
        when = datetime.fromtimestamp(latest // NS_PER_S, UTC).strftime("%Y-%m-%d %H:%M:%S")
        return f"dated after {when} UTC, the latest time the store keeps"


@dataclass(frozen=True, slots=True)
class Split:
    """The rows to store and how many were refused, by reason."""

    kept: pa.Table
    rejected: dict[str, int]

    @property
    def rejected_count(self) -> int:
        return sum(self.rejected.values())


def split_storable(table: pa.Table, window: StorableWindow, now_ns: int) -> Split:
    """Keep the rows the store keeps (perhaps none); raise ``InvalidRequest`` when the kept rows
    cover more days than one insert may touch."""
    if table.num_rows == 0:
        return Split(table, {})
    oldest, latest = window.bounds(now_ns)
    times = table.column("Timestamp").cast(pa.int64())
    lowest, highest = (value.as_py() for value in pc.min_max(times).values())
    if lowest >= oldest and highest <= latest:
        kept, rejected = table, {}
    else:
        too_old = pc.less(times, oldest)
        too_late = pc.greater(times, latest)
        rejected = {
            reason: count
            for reason, count in (
                (TOO_OLD, pc.sum(too_old).as_py() or 0),
                (TOO_LATE, pc.sum(too_late).as_py() or 0),
            )
            if count
        }
        kept = table.filter(pc.invert(pc.or_(too_old, too_late)))
        if kept.num_rows == 0:
            return Split(kept, rejected)
        times = kept.column("Timestamp").cast(pa.int64())
        lowest, highest = (value.as_py() for value in pc.min_max(times).values())
    if (highest - lowest) // NS_PER_DAY >= MAX_DAYS_PER_REQUEST - 1:
        days = pc.count_distinct(pc.divide(times, NS_PER_DAY)).as_py()
        if days > MAX_DAYS_PER_REQUEST:
            raise InvalidRequest(
                f"spans start on {days} different days; one request may cover at most "
                f"{MAX_DAYS_PER_REQUEST} (send them in several requests)",
                "too_many_days",
            )
    return Split(kept, rejected)


def rejection_message(split: Split, total: int, window: StorableWindow) -> str:
    parts = ", ".join(
        f"{count} {window.describe(reason)}" for reason, count in split.rejected.items()
    )
    return f"{split.rejected_count} of {total} spans not stored: {parts}"

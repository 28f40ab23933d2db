"""What a query reads, for every reader of the span table: the dashboard sidebar's ``Filters``
(a time range and a scope), the ``Scope`` of the alert and health reads and their windows, and
the constant SQL fragments that apply them.

Values only ever reach ClickHouse as ``{name:Type}`` bound parameters (the database name too, as
an ``Identifier``); the fragments below name those parameters and hold no value.
"""

# The SQL below is concatenated from this module's own constant fragments only; every value is
# a bound parameter, so the S608 string-built-SQL heuristic does not apply to anything here.
# ruff: noqa: S608

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from agentwatch.storage._schema import SPANS_TABLE
from agentwatch.storage._store import Store

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_NS_PER_S: Final = 1_000_000_000
_MAX_NS: Final = 2**63 - 1
_HOUR_NS: Final = 3600 * 10**9
# The last whole hour a DateTime (the trace facts' Hour) holds; later spans are read as spans.
_LAST_HOUR_NS: Final = (2**32 - 1) // 3600 * 3600 * 10**9


def epoch_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch of a timezone-aware ``moment``, exactly (integer arithmetic:
    a float timestamp has too few digits for nanoseconds, and drifts for far dates)."""
    if moment.tzinfo is None:
        raise ValueError("times need to be timezone-aware datetimes (e.g. datetime.now(UTC))")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * _NS_PER_S + delta.microseconds * 1000


# --- the alert and health reads: a scope and windows --------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Scope:
    """Only spans and tasks matching every non-empty field count. ``service`` and
    ``environment`` filter spans; ``agent``, ``task_type`` and ``model`` filter tasks. For span
    counts (no-data rules) ``agent`` and ``task_type`` keep the spans carrying them and
    ``model`` does not apply; for probe runs only ``service`` and ``environment`` do. Passive
    health's series keep one agent's runs and calls (``agent``) and one task type's decisions
    (``task_type``); ``model`` does not apply to them."""

    service: str = ""
    agent: str = ""
    task_type: str = ""
    model: str = ""
    environment: str = ""

    def params(self) -> dict[str, str]:
        return {
            "service": self.service,
            "agent": self.agent,
            "task_type": self.task_type,
            "model": self.model,
            "environment": self.environment,
        }


def window_params(end_ns: int, window_s: int, windows: int, *, max_windows: int) -> dict[str, int]:
    """``start_ns``, ``end_ns`` and ``window_ns`` of ``windows`` windows ending at ``end_ns``.

    Window 0 is ``[end - window, end)``, window 1 the one before, and so on (``window_of``)."""
    if window_s <= 0:
        raise ValueError(f"window_s must be positive, not {window_s}")
    if not 1 <= windows <= max_windows:
        raise ValueError(f"windows must be in 1..{max_windows}, not {windows}")
    window_ns = window_s * _NS_PER_S
    return {"start_ns": end_ns - windows * window_ns, "end_ns": end_ns, "window_ns": window_ns}


def window_of(ts_ns: str) -> str:
    """The window (0 = the latest) that ``ts_ns`` (SQL: nanoseconds since the epoch) falls in."""
    return f"intDiv({{end_ns:Int64}} - 1 - {ts_ns}, {{window_ns:Int64}})"


# --- the dashboard: the sidebar's filters -------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Filters:
    """What the dashboard's sidebar selects. Empty strings and ``None`` mean "all"."""

    start: datetime | None = None
    end: datetime | None = None
    service: str = ""
    agent: str = ""
    task_type: str = ""
    environment: str = ""

    def __post_init__(self) -> None:
        start_ns, end_ns = self._bounds()
        if start_ns >= end_ns:
            raise ValueError(f"the time range is empty: start={self.start} end={self.end}")

    @classmethod
    def last(cls, duration: timedelta, *, now: datetime | None = None, **others: str) -> Filters:
        """The ``duration`` up to ``now`` (default: the current time)."""
        end = now or datetime.now(UTC)
        return cls(start=end - duration, end=end, **others)

    def _bounds(self) -> tuple[int, int]:
        start_ns = epoch_ns(self.start) if self.start is not None else 0
        end_ns = epoch_ns(self.end) if self.end is not None else _MAX_NS
        return start_ns, end_ns

    def previous(self) -> Filters:
        """The period of the same length just before this one (for trends)."""
        if self.start is None or self.end is None:
            raise ValueError("a previous period needs both start and end")
        return replace(self, start=self.start - (self.end - self.start), end=self.start)

    @property
    def by_task(self) -> bool:
        """Whether a task-level filter (agent, task type) is set."""
        return bool(self.agent or self.task_type)

    @property
    def scope(self) -> Scope:
        """The sidebar's service, environment, agent and task type, for passive health."""
        return Scope(
            service=self.service,
            environment=self.environment,
            agent=self.agent,
            task_type=self.task_type,
        )

    def params(self, store: Store) -> dict[str, Any]:
        start_ns, end_ns = self._bounds()
        # The whole hours inside the range are read from the trace facts; the partial hours
        # at both ends ([start, hours_from) and [hours_to, end)) from the spans.
        hours_from = min(-(-start_ns // _HOUR_NS) * _HOUR_NS, _LAST_HOUR_NS)
        hours_to = min(end_ns // _HOUR_NS * _HOUR_NS, _LAST_HOUR_NS)
        if hours_from >= hours_to:
            hours_from = hours_to = end_ns
        return {
            "db": store.database,
            "start_ns": start_ns,
            "end_ns": end_ns,
            "hours_from_ns": hours_from,
            "hours_to_ns": hours_to,
            "hours_from_s": hours_from // 10**9,
            "hours_to_s": hours_to // 10**9,
            "service": self.service,
            "agent": self.agent,
            "task_type": self.task_type,
            "environment": self.environment,
        }


def bucket_seconds(filters: Filters, points: int = 60) -> int:
    """A round time-bucket size giving about ``points`` buckets over the filter's range."""
    start_ns, end_ns = filters._bounds()
    if filters.start is None:
        return 86_400
    span_s = (end_ns - start_ns) / 1e9 / points
    for step in (10, 30, 60, 300, 600, 900, 1800, 3600, 10800, 21600, 43200, 86400):
        if span_s <= step:
            return step
    return 86_400 * math.ceil(span_s / 86_400)


# --- SQL fragments (constants only) -------------------------------------------------------------
SPANS: Final = "{db:Identifier}." + SPANS_TABLE
"""The span table, qualified with the bound database."""
IN_RANGE: Final = (
    "Timestamp >= fromUnixTimestamp64Nano({start_ns:Int64}) "
    "AND Timestamp < fromUnixTimestamp64Nano({end_ns:Int64})"
)
SINCE_START: Final = "Timestamp >= fromUnixTimestamp64Nano({start_ns:Int64})"
"""From the range's start on, with no end: for feedback, which arrives after the fact."""
SPAN_SCOPE: Final = (
    "({service:String} = '' OR ServiceName = {service:String}) "
    "AND ({environment:String} = '' OR Environment = {environment:String})"
)
"""The service and environment filters, which apply to spans (the sidebar's and a scope's)."""
MODEL_NAME: Final = "if(ResponseModel != '', ResponseModel, RequestModel)"
BUCKET_START: Final = (
    "intDiv(toUInt32(toUnixTimestamp(Timestamp)), {bucket_s:UInt32}) * {bucket_s:UInt32}"
)
"""Unix seconds of the start of a span's ``{bucket_s}`` time bucket."""
# Traces holding a health-check span are probes, not traffic.
NOT_PROBES: Final = (
    f"TraceId NOT IN (SELECT TraceId FROM {SPANS} WHERE {IN_RANGE} AND HealthCheck != '')"
)

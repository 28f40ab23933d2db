"""How numbers read on the dashboard, and the Overview tiles with their targets and trends.

Plain functions with no Streamlit in them, so the tests check the exact strings the pages show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Final, Literal
from urllib.parse import urlsplit, urlunsplit

from agentwatch.storage._overview_queries import Overview

NONE: Final = "—"


def pct(value: float | None, digits: int = 1) -> str:
    return NONE if value is None else f"{value * 100:.{digits}f}%"


def usd(value: float | None) -> str:
    if value is None:
        return NONE
    if abs(value) < 0.01:
        return f"${value:.4f}"
    if abs(value) < 1000:
        return f"${value:,.2f}"
    return f"${value:,.0f}"


def seconds(value: float | None) -> str:
    if value is None:
        return NONE
    if value < 0.01:
        return f"{value * 1000:.2f} ms"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def number(value: float | None, digits: int = 1) -> str:
    return NONE if value is None else f"{value:,.{digits}f}"


def count(value: int | None) -> str:
    return NONE if value is None else f"{value:,}"


def when(epoch_ms: int | float) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


# --- deltas ---------------------------------------------------------------------------------------
def _signed(text: str, value: float) -> str:
    return ("+" if value >= 0 else "-") + text


def delta_pp(now: float | None, before: float | None) -> str | None:
    """A rate's change in percentage points."""
    if now is None or before is None:
        return None
    change = (now - before) * 100
    return _signed(f"{abs(change):.1f} pp", change)


def delta_usd(now: float | None, before: float | None) -> str | None:
    if now is None or before is None:
        return None
    return _signed(usd(abs(now - before)), now - before)


def delta_number(now: float | None, before: float | None, digits: int = 1) -> str | None:
    if now is None or before is None:
        return None
    return _signed(f"{abs(now - before):,.{digits}f}", now - before)


def delta_seconds(now: float | None, before: float | None) -> str | None:
    if now is None or before is None:
        return None
    return _signed(seconds(abs(now - before)), now - before)


# --- targets and tiles ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Targets:
    """What "good" means for each Overview tile; the Overview page lets the user change them."""

    completion_rate: float = 0.85  # at least
    escalation_rate: float = 0.15  # at most
    cost_per_task: float = 0.02  # USD, at most
    avg_iterations: float = 5.0  # at most
    tool_error_rate: float = 0.05  # at most
    limit_exceeded_rate: float = 0.02  # at most
    p95_latency_s: float = 30.0  # at most


TARGET_NAMES: Final = tuple(f.name for f in fields(Targets))


@dataclass(frozen=True, slots=True)
class Tile:
    """One KPI tile: ``st.metric(label, value, delta, delta_color, help=help)`` + a target line."""

    label: str
    value: str
    delta: str | None
    delta_color: Literal["normal", "inverse", "off"]
    target: str  # e.g. "target ≥ 85.0%"
    on_target: bool | None  # None: nothing to judge yet
    help: str

    @property
    def status(self) -> str:
        if not self.target:
            return ""
        if self.on_target is None:
            return f"{self.target} · no data yet"
        return f"{self.target} · {'on target' if self.on_target else 'off target'}"


@dataclass(frozen=True, slots=True)
class _Kpi:
    label: str
    value: Callable[[Overview], float | None]
    show: Callable[[float | None], str]
    delta: Callable[[float | None, float | None], str | None]
    target: str  # a Targets field, or "" for none
    higher_is_better: bool
    help: str


_KPIS: Final = (
    _Kpi(
        "Task completion",
        lambda o: o.completion_rate,
        pct,
        delta_pp,
        "completion_rate",
        True,
        "Tasks whose outcome is completed, of all tasks (a task is a trace with an agent span).",
    ),
    _Kpi(
        "Escalation rate",
        lambda o: o.escalation_rate,
        pct,
        delta_pp,
        "escalation_rate",
        False,
        "Tasks handed to a human (outcome escalated).",
    ),
    _Kpi(
        "Cost per task",
        lambda o: o.cost_per_task,
        usd,
        delta_usd,
        "cost_per_task",
        False,
        "Spend of the period (priced model calls) divided by its tasks.",
    ),
    _Kpi(
        "Iterations per task",
        lambda o: o.avg_iterations,
        number,
        delta_number,
        "avg_iterations",
        False,
        "Average agent-loop iterations counted with aw.iteration(), over runs that count them.",
    ),
    _Kpi(
        "Tool error rate",
        lambda o: o.tool_error_rate,
        pct,
        delta_pp,
        "tool_error_rate",
        False,
        "Tool calls that raised, of all tool calls.",
    ),
    _Kpi(
        "Limit exceeded",
        lambda o: o.limit_exceeded_rate,
        pct,
        delta_pp,
        "limit_exceeded_rate",
        False,
        "Tasks stopped by an iteration, token, cost, tool-call or wall-time limit.",
    ),
    _Kpi(
        "Agent latency p50",
        lambda o: o.p50_latency_s,
        seconds,
        delta_seconds,
        "",
        False,
        "Median duration of a task's outermost agent span.",
    ),
    _Kpi(
        "Agent latency p95",
        lambda o: o.p95_latency_s,
        seconds,
        delta_seconds,
        "p95_latency_s",
        False,
        "95th percentile duration of a task's outermost agent span.",
    ),
)


def _target_text(kpi: _Kpi, target: float) -> str:
    sign = "≥" if kpi.higher_is_better else "≤"
    return f"target {sign} {kpi.show(target)}"


def overview_tiles(now: Overview, before: Overview, targets: Targets) -> list[Tile]:
    """The Overview tiles: this period's value, change since the previous period, target."""
    tiles = [
        Tile(
            "Tasks",
            count(now.tasks),
            _signed(f"{abs(now.tasks - before.tasks):,}", now.tasks - before.tasks)
            if before.tasks
            else None,
            "off",
            "",
            None,
            "Traces with an agent span in the period. Delta: change since the previous period.",
        )
    ]
    for kpi in _KPIS:
        value, previous = kpi.value(now), kpi.value(before)
        target_text, on_target = "", None
        if kpi.target:
            target = float(getattr(targets, kpi.target))
            target_text = _target_text(kpi, target)
            if value is not None:
                on_target = value >= target if kpi.higher_is_better else value <= target
        tiles.append(
            Tile(
                kpi.label,
                kpi.show(value),
                kpi.delta(value, previous),
                "normal" if kpi.higher_is_better else "inverse",
                target_text,
                on_target,
                f"{kpi.help} Previous period: {kpi.show(previous)}.",
            )
        )
    return tiles

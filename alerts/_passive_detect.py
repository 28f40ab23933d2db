"""Passive health, judged: signs of a sick agent in numbers read from the spans it already sends.

- **Silent agent**: an agent that ran in most recent windows has no run in the latest one.
- **Longer answers**: an agent's median output tokens per model call is far above its own
  baseline (answers that suddenly get much longer often mean the agent is rambling or
  hallucinating).
- **Confidence drop**: a task type's median decision confidence is far below its baseline.

Pure (``silent_agent``, ``longer_answers``, ``confidence_drop`` and the ``*_findings``
functions over query rows): numbers in, ``PassiveFinding`` out, no storage and no clock. It
reuses the alert detectors of ``_detect``: ``silence_finding`` for silence, and
``robust_baseline`` (median and MAD of earlier windows) for the medians, whose scale is also
floored by the noise a median has at the latest window's count (``median_shift``). The queries
are run by ``_passive``.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from agentwatch.alerts._detect import robust_baseline, silence_finding
from agentwatch.storage._health_queries import MAX_WINDOWS

PassiveKind = Literal["silent_agent", "longer_answers", "confidence_drop"]
KINDS: Final[tuple[PassiveKind, ...]] = ("silent_agent", "longer_answers", "confidence_drop")
TITLES: Final[Mapping[PassiveKind, str]] = {
    "silent_agent": "Silent agent",
    "longer_answers": "Longer answers",
    "confidence_drop": "Confidence drop",
}
_NS: Final = 1_000_000_000
MEDIAN_SE: Final = math.sqrt(math.pi / 2)
"""The standard error of a median of n values is about this x their standard deviation / sqrt(n)."""


@dataclass(frozen=True, slots=True)
class PassiveSettings:
    """How passive health judges. Every signal compares the latest ``window_s`` window with the
    ``baseline_windows`` windows before it."""

    window_s: int = 900
    baseline_windows: int = 16
    settle_s: float = 30.0
    """Windows end this long before ``now``: spans reach the store a few seconds late."""
    min_active_windows: int = 12
    """An agent "normally has traffic" when it ran in at least this many baseline windows."""
    min_calls: int = 20
    """Model calls a window needs before its median output tokens is judged or learnt from."""
    longer_ratio: float = 2.0
    """Answers are "much longer" at this multiple of the baseline median, or more..."""
    longer_threshold: float = 4.0
    """...and this many standard deviations above it (see ``median_shift``)."""
    min_decisions: int = 20
    """Decisions a window needs before its median confidence is judged or learnt from."""
    confidence_drop: float = 0.1
    """Confidence "has dropped" when its median fell by at least this much (absolute)..."""
    confidence_threshold: float = 4.0
    """...and by this many standard deviations (see ``median_shift``)."""
    min_history: int = 3
    """Baseline windows with enough volume needed before a median is judged at all."""

    def __post_init__(self) -> None:
        if self.window_s <= 0:
            raise ValueError(f"window_s must be positive, not {self.window_s}")
        if not 1 <= self.baseline_windows < MAX_WINDOWS:
            raise ValueError(f"baseline_windows must be in 1..{MAX_WINDOWS - 1}")
        if not 1 <= self.min_active_windows <= self.baseline_windows:
            raise ValueError("min_active_windows must be in 1..baseline_windows")


@dataclass(frozen=True, slots=True)
class PassiveFinding:
    """One signal for one agent or task type: ``breaching`` is True (unhealthy), False
    (healthy) or None (too little traffic or history to tell)."""

    kind: PassiveKind
    subject: str
    """The agent (silent agent, longer answers) or task type (confidence drop)."""
    breaching: bool | None
    summary: str
    """What moved, by how much, against what baseline."""
    value: float | None = None
    """Runs in the latest window; median output tokens per call; median confidence."""
    baseline: float | None = None
    volume: int = 0
    """Runs, calls or decisions in the latest window."""
    last_seen_ns: int | None = None
    """Silent agents: the start of the agent's latest run."""

    @property
    def title(self) -> str:
        return TITLES[self.kind]

    @property
    def group_key(self) -> str:
        """As the alert evaluator keys groups: ``agent=...`` or ``task_type=...``."""
        field = "task_type" if self.kind == "confidence_drop" else "agent"
        return f"{field}={self.subject}"


def _num(value: float) -> str:
    return f"{value:.3g}"


@dataclass(frozen=True, slots=True)
class Median:
    """One window of a per-item value (output tokens per call, confidence per decision): the
    median, how many items, and their spread (a robust standard deviation: IQR / 1.349)."""

    value: float
    count: int
    spread: float = 0.0


ShiftStatus = Literal["judged", "low_volume", "insufficient_history"]


@dataclass(frozen=True, slots=True)
class Shift:
    """How far the latest window's median is from the baseline, in standard deviations."""

    status: ShiftStatus
    current: Median
    baseline: float | None = None
    scale: float | None = None
    score: float | None = None
    history_windows: int = 0

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.current.value / self.baseline


def median_shift(
    current: Median,
    history: Sequence[Median],
    *,
    min_count: int,
    min_history: int = 3,
    relative_floor: float = 0.0,
) -> Shift:
    """Judge the latest window's median against the earlier windows' (oldest first).

    Windows under ``min_count`` items are neither judged nor learnt from. The baseline is the
    median of the usable windows' medians; the scale a move is measured in is the largest of
    their MAD (as a standard deviation, ``robust_baseline``), ``relative_floor`` x the
    baseline, and the noise the latest median has at its own count (``MEDIAN_SE`` x the
    typical spread / sqrt(count)): a window with few items is not over-read.
    """
    if current.count < min_count:
        return Shift("low_volume", current)
    usable = [m for m in history if m.count >= min_count]
    if len(usable) < min_history:
        return Shift("insufficient_history", current, history_windows=len(usable))
    spread = statistics.median(m.spread for m in usable)
    noise = MEDIAN_SE * spread / math.sqrt(current.count)
    base = robust_baseline(
        [m.value for m in usable], relative_floor=relative_floor, absolute_floor=noise
    )
    change = current.value - base.median
    if base.scale > 0:
        score = change / base.scale
    else:
        score = math.copysign(math.inf, change) if change else 0.0
    return Shift("judged", current, base.median, base.scale, score, base.windows)


def _history(windows: Mapping[int, Median], baseline_windows: int) -> list[Median]:
    """Windows ``baseline_windows`` .. 1, oldest first; a window without data is empty."""
    return [windows.get(k, Median(0.0, 0)) for k in range(baseline_windows, 0, -1)]


# --- the three signals, on numbers ----------------------------------------------------------------
def silent_agent(
    agent: str,
    runs: Mapping[int, int],
    settings: PassiveSettings = PassiveSettings(),
    *,
    last_seen_ns: int | None = None,
) -> PassiveFinding:
    """``runs`` per window (0 = the latest; missing windows had none). Silent when window 0
    is empty and the agent ran in at least ``min_active_windows`` of the baseline windows."""
    current = runs.get(0, 0)
    baseline = [runs.get(k, 0) for k in range(1, settings.baseline_windows + 1)]
    active = sum(1 for n in baseline if n > 0)
    finding = silence_finding(
        current,
        active,
        baseline_windows=settings.baseline_windows,
        min_active_windows=settings.min_active_windows,
    )
    typical = sorted(baseline)[len(baseline) // 2]
    minutes = f"{settings.window_s / 60:g} min"
    if current > 0:
        summary = f"{current} runs in the last {minutes}"
    elif finding.breaching:
        summary = (
            f"no runs in the last {minutes}; it ran in {active} of the previous "
            f"{settings.baseline_windows} windows (typically {typical} runs per window)"
        )
    else:
        summary = (
            f"no runs in the last {minutes}, but it ran in only {active} of the previous "
            f"{settings.baseline_windows} windows: too rarely to call it silent"
        )
    if current == 0 and last_seen_ns is not None:
        last = datetime.fromtimestamp(last_seen_ns / _NS, UTC)
        summary += f"; last run at {last:%Y-%m-%d %H:%M:%S} UTC"
    return PassiveFinding(
        "silent_agent",
        agent,
        finding.breaching,
        summary,
        value=float(current),
        baseline=float(typical),
        volume=current,
        last_seen_ns=last_seen_ns,
    )


def _unjudged(
    kind: PassiveKind, subject: str, shift: Shift, what: str, items: str, min_count: int
) -> PassiveFinding:
    current = shift.current
    if shift.status == "low_volume":
        summary = f"{what} {_num(current.value)} over too few {items} ({current.count}) to judge"
        if current.count == 0:
            summary = f"no {items} in the latest window"
    else:
        summary = (
            f"{what} {_num(current.value)}: only {shift.history_windows} earlier windows with "
            f"at least {min_count} {items}, too few for a baseline"
        )
    value = current.value if current.count else None
    return PassiveFinding(kind, subject, None, summary, value=value, volume=current.count)


def longer_answers(
    agent: str, windows: Mapping[int, Median], settings: PassiveSettings = PassiveSettings()
) -> PassiveFinding:
    """``windows``: per window (0 = the latest), the median output tokens per model call.
    Breaching when the latest median is at least ``longer_ratio`` times the baseline median and
    ``longer_threshold`` standard deviations above it."""
    shift = median_shift(
        windows.get(0, Median(0.0, 0)),
        _history(windows, settings.baseline_windows),
        min_count=settings.min_calls,
        min_history=settings.min_history,
        relative_floor=0.1,
    )
    what = "median output tokens per model call"
    if shift.baseline is None or shift.score is None:
        return _unjudged("longer_answers", agent, shift, what, "calls", settings.min_calls)
    current, ratio = shift.current, shift.ratio
    breaching = (
        shift.score > settings.longer_threshold
        and ratio is not None
        and ratio >= settings.longer_ratio
    )
    times = f"x{ratio:.1f}" if ratio is not None else "from zero"
    summary = (
        f"{what} is {_num(current.value)} against a baseline of {_num(shift.baseline)} "
        f"({times}; median of {shift.history_windows} windows, {current.count} calls now)"
    )
    return PassiveFinding(
        "longer_answers",
        agent,
        breaching,
        summary,
        value=current.value,
        baseline=shift.baseline,
        volume=current.count,
    )


def confidence_drop(
    task_type: str, windows: Mapping[int, Median], settings: PassiveSettings = PassiveSettings()
) -> PassiveFinding:
    """``windows``: per window (0 = the latest), the median decision confidence. Breaching when
    the latest median fell at least ``confidence_drop`` below the baseline median and
    ``confidence_threshold`` standard deviations below it."""
    shift = median_shift(
        windows.get(0, Median(0.0, 0)),
        _history(windows, settings.baseline_windows),
        min_count=settings.min_decisions,
        min_history=settings.min_history,
        relative_floor=0.02,
    )
    what = "median decision confidence"
    if shift.baseline is None or shift.score is None:
        return _unjudged(
            "confidence_drop", task_type, shift, what, "decisions", settings.min_decisions
        )
    current = shift.current
    change = current.value - shift.baseline
    breaching = -shift.score > settings.confidence_threshold and -change >= settings.confidence_drop
    verb = "fell to" if change < 0 else "is"
    summary = (
        f"{what} {verb} {current.value:.2f} against a baseline of {shift.baseline:.2f} "
        f"({change:+.2f}; median of {shift.history_windows} windows, "
        f"{current.count} decisions now)"
    )
    return PassiveFinding(
        "confidence_drop",
        task_type,
        breaching,
        summary,
        value=current.value,
        baseline=shift.baseline,
        volume=current.count,
    )


# --- the same, on query rows ----------------------------------------------------------------
def _windows(
    rows: Iterable[Mapping[str, Any]], subject: str, value: str, count: str
) -> dict[str, dict[int, Median]]:
    out: dict[str, dict[int, Median]] = defaultdict(dict)
    for row in rows:
        median = Median(float(row[value]), int(row[count]), float(row["spread"] or 0.0))
        out[str(row[subject])][int(row["window"])] = median
    return dict(out)


def silent_agent_findings(
    rows: Iterable[Mapping[str, Any]], settings: PassiveSettings
) -> list[PassiveFinding]:
    """From ``agent_runs`` rows: one finding per agent."""
    runs: dict[str, dict[int, int]] = defaultdict(dict)
    last: dict[str, int] = {}
    for row in rows:
        agent = str(row["agent"])
        runs[agent][int(row["window"])] = int(row["runs"])
        last[agent] = max(last.get(agent, 0), int(row["last_ns"]))
    return [
        silent_agent(agent, runs[agent], settings, last_seen_ns=last[agent])
        for agent in sorted(runs)
    ]


def longer_answer_findings(
    rows: Iterable[Mapping[str, Any]], settings: PassiveSettings
) -> list[PassiveFinding]:
    """From ``chat_output_tokens`` rows: one finding per agent."""
    by_agent = _windows(rows, "agent", "median_output_tokens", "calls")
    return [longer_answers(agent, by_agent[agent], settings) for agent in sorted(by_agent)]


def confidence_findings(
    rows: Iterable[Mapping[str, Any]], settings: PassiveSettings
) -> list[PassiveFinding]:
    """From ``decision_confidence`` rows: one finding per task type."""
    by_type = _windows(rows, "task_type", "median_confidence", "decisions")
    return [confidence_drop(t, by_type[t], settings) for t in sorted(by_type)]

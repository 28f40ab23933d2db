"""The Decisions & confidence page's queries: calibration against human feedback, the threshold
explorer, and the confidence distribution by task type and by task outcome (the Overview shows
the latter).

What the numbers mean is defined once, in ``storage._tasks``.
"""

# The SQL below is concatenated from constant fragments only (this module's and those of
# storage._scope and storage._tasks); every value is a bound parameter, so the S608
# string-built-SQL heuristic does not apply to anything here.
# ruff: noqa: S608

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from agentwatch.storage._review_queries import ABOUT as FEEDBACK_ABOUT
from agentwatch.storage._scope import IN_RANGE, SINCE_START, SPAN_SCOPE, SPANS, Filters
from agentwatch.storage._store import Rows, Store
from agentwatch.storage._tasks import TASKS, fact_rows, fact_tasks, ratio

# --- decisions ----------------------------------------------------------------------------------
_BUCKET: Final = "least(toUInt32(floor(d.Confidence * {bins:UInt32})), {bins:UInt32} - 1) AS bucket"
# Decisions come with their trace's facts, so pairing them with their task's outcome reads no
# trace ids. A fact row that holds the task's root agent span (as good as every row, once the
# store has merged a trace's inserts) pairs its decisions with that span's outcome on the spot;
# only decisions in other rows (another hour, inserts not merged yet, tasks without a root agent
# span) are grouped by trace first, for the traces with such rows. Every decision in range
# counts, whatever its service.
_TASK_ROOT_ROW: Final = (
    f"RootAgentSpans > 0 AND {SPAN_SCOPE} "
    "AND ({agent:String} = '' OR Agent = {agent:String}) "
    "AND ({task_type:String} = '' OR RootTaskType = {task_type:String})"
)
_IN_ROOT_ROW: Final = f"RootAgentSpans > 0 AND {SPAN_SCOPE}"
_ELSEWHERE_KEYS: Final = (
    "SELECT TraceKey FROM ("
    + fact_rows("ServiceName, Environment, TraceKey, RootAgentSpans")
    + f") WHERE NOT ({_IN_ROOT_ROW})"
)
_CONFIDENCE_KEYS: Final = (
    "least(toUInt32(floor(d.1 * {bins:UInt32})), {bins:UInt32} - 1) AS bucket, "
    "if(d.2 != '', d.2, task_type) AS decision_task_type, outcome AS task_outcome"
)
_CONFIDENCE_SQL: Final = (
    "SELECT bucket, bucket / {bins:UInt32} AS confidence_from, decision_task_type, "
    "task_outcome, sum(n) AS decisions FROM ("
    f"SELECT {_CONFIDENCE_KEYS}, sum(RootAgentSpans) AS n FROM ("
    "SELECT Decisions, RootAgentSpans, toString(RootTaskType) AS task_type, "
    "toString(RootOutcome) AS outcome FROM ("
    + fact_rows(
        "ServiceName, Environment, TraceKey, RootAgentSpans, Agent, RootTaskType, RootOutcome, "
        "Decisions"
    )
    + f") WHERE {_TASK_ROOT_ROW}) ARRAY JOIN Decisions AS d "
    "GROUP BY bucket, decision_task_type, task_outcome "
    f"UNION ALL SELECT {_CONFIDENCE_KEYS}, sum(weight) AS n FROM ("
    "SELECT task_type, outcome, weight, decision_list FROM ("
    + fact_tasks(
        f", groupArrayArrayIf(Decisions, NOT ({_IN_ROOT_ROW})) AS decision_list",
        ", Decisions",
        keys=_ELSEWHERE_KEYS,
    )
    + ")) ARRAY JOIN decision_list AS d GROUP BY bucket, decision_task_type, task_outcome"
    ") GROUP BY bucket, decision_task_type, task_outcome "
    "ORDER BY bucket, decision_task_type, task_outcome"
)
_FEEDBACK: Final = (
    "SELECT TraceId, 1 AS has_feedback, "
    "toUInt8(ifNull(argMax(FeedbackCorrect, Timestamp), 0)) AS correct "
    f"FROM {SPANS} WHERE {SINCE_START} AND Operation = 'feedback' "
    "AND FeedbackCorrect IS NOT NULL "
    # A review of a tool call judges the action, not how sure the decision was.
    f"AND SpanAttributes['{FEEDBACK_ABOUT}'] != 'action' GROUP BY TraceId"
)
_CALIBRATION_SQL: Final = (
    f"SELECT {_BUCKET}, bucket / {{bins:UInt32}} AS confidence_from, "
    "count() AS decisions, avg(d.Confidence) AS mean_confidence, "
    "sum(f.has_feedback) AS with_feedback, sum(f.correct) AS correct, "
    "if(with_feedback > 0, correct / with_feedback, NULL) AS accuracy, "
    "countIf(t.outcome = 'completed') AS completed, "
    "countIf(t.outcome = 'escalated') AS escalated "
    f"FROM {SPANS} AS d INNER JOIN ({TASKS}) AS t USING TraceId "
    f"LEFT JOIN ({_FEEDBACK}) AS f USING TraceId "
    f"WHERE {IN_RANGE} AND d.Operation = 'decision' AND d.Confidence IS NOT NULL "
    "GROUP BY bucket ORDER BY bucket"
)


def confidence_distribution(store: Store, filters: Filters, bins: int = 20) -> Rows:
    """Decisions per confidence bucket, by task type and by the outcome of the task."""
    return store.query(_CONFIDENCE_SQL, {**filters.params(store), "bins": _bins(bins)})


def calibration(store: Store, filters: Filters, bins: int = 10) -> Rows:
    """Per confidence bucket: decisions, mean confidence, and how often human feedback in the
    same trace said the decision was right (the latest ``feedback.correct`` wins)."""
    return store.query(_CALIBRATION_SQL, {**filters.params(store), "bins": _bins(bins)})


def threshold_explorer(store: Store, filters: Filters) -> Rows:
    """Calibration at 0.01 resolution: what ``threshold_summary`` needs for any threshold."""
    return calibration(store, filters, bins=100)


def _bins(bins: int) -> int:
    if not 1 <= bins <= 1000:
        raise ValueError(f"bins must be in 1..1000, not {bins}")
    return bins


@dataclass(frozen=True, slots=True)
class ThresholdSummary:
    """What auto-approving every decision at or above ``threshold`` would have meant."""

    threshold: float
    decisions: int
    auto: int
    auto_with_feedback: int
    auto_correct: int
    below_with_feedback: int
    below_correct: int

    @property
    def auto_share(self) -> float | None:
        return ratio(self.auto, self.decisions)

    @property
    def auto_accuracy(self) -> float | None:
        return ratio(self.auto_correct, self.auto_with_feedback)

    @property
    def below_accuracy(self) -> float | None:
        return ratio(self.below_correct, self.below_with_feedback)


def threshold_summary(explorer: Rows, threshold: float) -> ThresholdSummary:
    """Sum ``threshold_explorer`` rows above and below ``threshold`` (a multiple of 0.01)."""
    cut = round(threshold * 100)
    decisions = auto = auto_fb = auto_ok = below_fb = below_ok = 0
    for row in explorer.dicts():
        n, fb, ok = int(row["decisions"]), int(row["with_feedback"]), int(row["correct"])
        decisions += n
        if int(row["bucket"]) >= cut:
            auto, auto_fb, auto_ok = auto + n, auto_fb + fb, auto_ok + ok
        else:
            below_fb, below_ok = below_fb + fb, below_ok + ok
    return ThresholdSummary(threshold, decisions, auto, auto_fb, auto_ok, below_fb, below_ok)

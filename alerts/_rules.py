"""Alert rules: what the evaluator checks, from a TOML file validated with pydantic.

::

    include_defaults = true          # keep the built-in cost/error spike rules too

    [[rule]]
    name = "refund cost spike"
    kind = "anomaly"                 # anomaly | threshold | daily_budget | no_data | health_failure
    metric = "cost"                  # cost | cost_per_task | error_rate | escalation_rate
                                     # | latency_p95 | tokens
    group_by = "task_type"           # task_type | agent | model | none
    where = { task_type = "refund" }
    window_s = 300
    baseline_windows = 24
    min_volume = 20
    threshold = 4.0                  # robust z: (value - median) / (1.4826 * MAD), floored

The same file says which decisions go to the dashboard's review queue besides those routed to
``review`` or ``escalate`` (``parse_review_rules``)::

    [[review]]
    name = "unsure auto refunds"
    confidence_below = 0.9           # flag decisions below this confidence
    route = "auto"                   # optional: auto | review | escalate
    where = { task_type = "refund" } # service | agent | task_type | environment

A bad file raises ``AlertRulesError`` naming the file, the line, the rule (number and name) and
the field. With no file, ``default_rules()`` alerts on cost and error spikes per task type, on
agents that go silent and on failing health checks.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Protocol, Self, TypeAlias, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from agentwatch._errors import ConfigurationError
from agentwatch.storage._review_queries import ReviewRule

Metric: TypeAlias = Literal[
    "cost", "cost_per_task", "error_rate", "escalation_rate", "latency_p95", "tokens"
]
GroupBy: TypeAlias = Literal["task_type", "agent", "model", "none"]
Severity: TypeAlias = Literal["info", "warning", "critical"]
Direction: TypeAlias = Literal["up", "down", "both"]

# Metrics that are a share of tasks: their noise floor is the binomial spread at the volume.
PROPORTION_METRICS: Final = frozenset({"error_rate", "escalation_rate"})
KINDS: Final = ("anomaly", "threshold", "daily_budget", "no_data", "health_failure")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Where(_Strict):
    """Only spans matching every given field count towards the rule."""

    service: str | None = None
    agent: str | None = None
    task_type: str | None = None
    model: str | None = None
    environment: str | None = None


class _Rule(_Strict):
    name: str = Field(min_length=1, max_length=200)
    severity: Severity = "warning"
    enabled: bool = True
    where: Where = Where()
    fire_after: int = Field(default=1, ge=1, le=100)
    """Consecutive breaching evaluations before the alert fires."""
    resolve_after: int = Field(default=2, ge=1, le=100)
    """Consecutive clear evaluations before a firing alert resolves."""
    cooldown_s: int = Field(default=3600, ge=0)
    """A key that fires again within this long of its last notification is not re-notified."""


class AnomalyRule(_Rule):
    """The metric moved far from its rolling baseline (median and MAD of earlier windows)."""

    kind: Literal["anomaly"]
    metric: Metric
    group_by: GroupBy = "task_type"
    window_s: int = Field(default=300, ge=10, le=86_400)
    baseline_windows: int = Field(default=24, ge=3, le=1000)
    min_volume: int = Field(default=20, ge=1)
    """Tasks in a window for it to be judged, or to count towards the baseline."""
    threshold: float = Field(default=4.0, gt=0, le=1000)
    direction: Direction = "up"
    min_delta: float = Field(default=0.0, ge=0)
    """The smallest absolute move that can alert, in the metric's unit (USD, share, ms...)."""
    relative_floor: float = Field(default=0.15, ge=0, le=10)
    """The baseline spread is at least this share of the median: flat series do not alarm on
    noise."""

    @property
    def proportion(self) -> bool:
        return self.metric in PROPORTION_METRICS


class ThresholdRule(_Rule):
    """The metric over a window crossed a fixed value."""

    kind: Literal["threshold"]
    metric: Metric
    op: Literal[">", ">=", "<", "<="] = ">"
    value: float
    group_by: GroupBy = "none"
    window_s: int = Field(default=300, ge=10, le=86_400)
    min_volume: int = Field(default=1, ge=0)


class DailyBudgetRule(_Rule):
    """Spend since midnight (in ``timezone``) is over ``budget_usd``."""

    kind: Literal["daily_budget"]
    budget_usd: float = Field(gt=0)
    group_by: GroupBy = "none"
    timezone: str = "UTC"
    resolve_after: int = Field(default=1, ge=1, le=100)

    @model_validator(mode="after")
    def _known_timezone(self) -> Self:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: unknown time zone {self.timezone!r}") from None
        return self


class NoDataRule(_Rule):
    """A group that usually has traffic has sent nothing for ``silence_s``.

    "Usually" means spans in at least ``min_active_windows`` of the ``baseline_windows``
    windows of ``silence_s`` before the silence: an agent run once in a while never fires.
    """

    kind: Literal["no_data"]
    group_by: Literal["agent", "service", "task_type"] = "agent"
    silence_s: int = Field(default=900, ge=60, le=7 * 86_400)
    baseline_windows: int = Field(default=8, ge=1, le=1000)
    min_active_windows: int = Field(default=6, ge=1)

    @model_validator(mode="after")
    def _active_within_baseline(self) -> Self:
        if self.min_active_windows > self.baseline_windows:
            raise ValueError(
                f"min_active_windows: {self.min_active_windows} is more than baseline_windows "
                f"({self.baseline_windows})"
            )
        return self


class HealthFailureRule(_Rule):
    """A health check (or any, without ``check``) failed ``consecutive_failures`` runs in a row."""

    kind: Literal["health_failure"]
    check: str | None = None
    consecutive_failures: int = Field(default=1, ge=1, le=1000)
    severity: Severity = "critical"
    resolve_after: int = Field(default=1, ge=1, le=100)


Rule: TypeAlias = Annotated[
    AnomalyRule | ThresholdRule | DailyBudgetRule | NoDataRule | HealthFailureRule,
    Field(discriminator="kind"),
]
_RULE: Final[TypeAdapter[Rule]] = TypeAdapter(Rule)
_TOP_LEVEL_KEYS: Final = ("include_defaults", "rule", "review")


class ReviewWhere(_Strict):
    """Only decisions matching every given field are flagged (decisions have no model)."""

    service: str | None = None
    agent: str | None = None
    task_type: str | None = None
    environment: str | None = None


class ReviewRuleModel(_Strict):
    """A ``[[review]]`` table: decisions below ``confidence_below`` (for its ``where``) go to the
    dashboard's review queue."""

    name: str = Field(min_length=1, max_length=200)
    confidence_below: float = Field(gt=0.0, le=1.0)
    route: Literal["auto", "review", "escalate"] | None = None
    """Only decisions routed so: ``auto`` flags those no person would otherwise see."""
    where: ReviewWhere = ReviewWhere()
    enabled: bool = True

    def rule(self) -> ReviewRule:
        where = self.where
        return ReviewRule(
            name=self.name,
            confidence_below=self.confidence_below,
            route=self.route or "",
            task_type=where.task_type or "",
            agent=where.agent or "",
            service=where.service or "",
            environment=where.environment or "",
        )


def default_rules() -> list[Rule]:
    """What ``agentwatch up`` checks with no rule file."""
    return [
        AnomalyRule(
            name="cost spike",
            kind="anomaly",
            metric="cost",
            group_by="task_type",
            min_volume=10,
            min_delta=0.01,
        ),
        AnomalyRule(
            name="error spike",
            kind="anomaly",
            metric="error_rate",
            group_by="task_type",
            min_volume=20,
            min_delta=0.05,
            severity="critical",
        ),
        NoDataRule(name="agent silent", kind="no_data", group_by="agent"),
        HealthFailureRule(name="health check failing", kind="health_failure"),
    ]


def demo_rules() -> list[Rule]:
    """The default rules with 20-second windows and a 10-minute baseline, for
    ``agentwatch up --demo``.
    Its fleet runs ~6 tickets a second, ~30 refund tasks a window, and from minute 1 to minute 3
    multiplies refund cost x5 and tool errors x10 (refund failures go from ~9% to ~50%). The
    first minute's three complete windows are enough history for a baseline, so both spike
    alerts fire with the first or second complete window of the spike (the first still holds
    tickets begun before it), 20 to 60 seconds after it starts (plus the evaluator's settling
    time): about two minutes after ``up``. With so short a history the spike soon weighs on the
    baseline (the error rate's noise is judged from the baseline's mean), so a later window of
    the spike may look normal: an alert resolves only after six clear windows (two minutes, the
    spike's length), from the spike's end to a minute after it. Windows of 20 seconds hold
    enough tasks to tell the spike from noise at the default threshold. The cost of the smaller
    task types (~18 tasks a window) moves with how many of them a window happens to hold, by a
    quarter window to window, more than the default 15% floor on the spread allows for: the cost
    rule's floor is 35% (refunds at x5 still score far above the threshold)."""
    rules: list[Rule] = []
    for rule in default_rules():
        if isinstance(rule, AnomalyRule):
            update: dict[str, Any] = {"window_s": 20, "baseline_windows": 30, "resolve_after": 6}
            if rule.metric == "cost":
                update["relative_floor"] = 0.35
            rule = rule.model_copy(update=update)
        rules.append(rule)
    return rules


# --- errors -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RuleProblem:
    """One thing wrong in a rule file, located as precisely as the file allows."""

    message: str
    rule_number: int | None = None  # 1-based, in file order
    rule_name: str | None = None
    field: str | None = None
    line: int | None = None
    table: str = "rule"  # or "review"

    def describe(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line is not None else source
        parts = [where]
        if self.rule_number is not None:
            named = f" ({self.rule_name!r})" if self.rule_name else ""
            parts.append(f"{self.table} {self.rule_number}{named}")
        if self.field:
            parts.append(f"field {self.field!r}")
        return ": ".join([*parts, self.message])


class AlertRulesError(ConfigurationError):
    """The rule file is not valid; ``problems`` lists every problem found."""

    def __init__(self, source: str, problems: Sequence[RuleProblem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = [p.describe(source) for p in self.problems]
        super().__init__("invalid alert rules:\n  " + "\n  ".join(lines))


# --- loading ----------------------------------------------------------------------------------
_ANY_HEADER = re.compile(r"^\s*\[")


def _rule_blocks(text: str, table: str = "rule") -> list[tuple[int, int]]:
    """(first, end) line indexes of each ``[[table]]`` block, its sub-tables included."""
    header = re.compile(rf"^\s*\[\[\s*{table}\s*\]\]")
    sub_table = re.compile(rf"^\s*\[\s*{table}\s*\.")
    lines = text.splitlines()
    blocks: list[tuple[int, int]] = []
    start: int | None = None
    for i, line in enumerate(lines):
        if header.match(line):
            if start is not None:
                blocks.append((start, i))
            start = i
        elif start is not None and _ANY_HEADER.match(line) and not sub_table.match(line):
            blocks.append((start, i))
            start = None
    if start is not None:
        blocks.append((start, len(lines)))
    return blocks


def _line_of(
    text: str, block: tuple[int, int] | None, path: Sequence[str], table: str = "rule"
) -> int | None:
    """The 1-based line of ``path`` inside a rule's block, or of the block's header."""
    if block is None:
        return None
    lines = text.splitlines()
    first, end = block
    for key in reversed(path):
        pattern = re.compile(rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\")\s*=")
        for i in range(first, end):
            if pattern.match(lines[i]):
                return i + 1
        header = re.compile(rf"^\s*\[\s*{table}\s*\.\s*{re.escape(key)}\s*\]")
        for i in range(first, end):
            if header.match(lines[i]):
                return i + 1
    return first + 1


def _message(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required"
    msg = str(error.get("msg", "invalid"))
    return msg.removeprefix("Value error, ")


def _rule_problems(
    exc: ValidationError,
    table: Mapping[str, Any],
    number: int,
    text: str,
    block: Any,
    kind_of_table: str = "rule",
) -> list[RuleProblem]:
    name = table.get("name") if isinstance(table.get("name"), str) else None
    tag = table.get("kind")
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = [str(p) for p in error.get("loc", ())]
        kind = error.get("type", "")
        message = _message(error)
        if kind == "union_tag_not_found":
            loc, message = ["kind"], f"required, one of {', '.join(KINDS)}"
        elif kind == "union_tag_invalid":
            loc, message = ["kind"], f"must be one of {', '.join(KINDS)}, not {tag!r}"
        elif loc and loc[0] == tag:
            loc = loc[1:]
        if not loc and ":" in message:
            # A model validator names its field first: "min_active_windows: 9 is more than..."
            field, _, rest = message.partition(":")
            if field.isidentifier():
                loc, message = [field], rest.strip()
        problems.append(
            RuleProblem(
                message=message,
                rule_number=number,
                rule_name=name,
                field=".".join(loc) or None,
                line=_line_of(text, block, loc, kind_of_table),
                table=kind_of_table,
            )
        )
    return problems


def _document(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AlertRulesError(source, [RuleProblem(f"not valid TOML: {exc}")]) from None


def _read(path: str | Path) -> tuple[str, str]:
    """A rules file's text and the name its errors give it."""
    file = Path(path)
    try:
        return file.read_text(encoding="utf-8"), str(file)
    except OSError as exc:
        raise AlertRulesError(str(file), [RuleProblem(f"cannot read: {exc.strerror}")]) from None


_Named = TypeVar("_Named", bound="_HasName")


class _HasName(Protocol):
    @property
    def name(self) -> str: ...


def _validated_tables(
    text: str,
    tables: Sequence[Any],
    kind_of_table: str,
    validate: Callable[[Any], _Named],
    problems: list[RuleProblem],
) -> tuple[list[_Named], dict[str, int]]:
    """Each ``[[kind_of_table]]`` table validated, in file order, with its number by name;
    what is wrong with any of them (a bad value, a duplicate name) goes into ``problems``."""
    blocks = _rule_blocks(text, kind_of_table)
    valid: list[_Named] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(tables):
        number = index + 1
        block = blocks[index] if index < len(blocks) else None
        if not isinstance(table, dict):
            problems.append(RuleProblem("must be a table", rule_number=number, table=kind_of_table))
            continue
        try:
            item = validate(table)
        except ValidationError as exc:
            problems.extend(_rule_problems(exc, table, number, text, block, kind_of_table))
            continue
        if item.name in seen:
            problems.append(
                RuleProblem(
                    f"duplicate name, already used by {kind_of_table} {seen[item.name]}",
                    rule_number=number,
                    rule_name=item.name,
                    field="name",
                    line=_line_of(text, block, ["name"], kind_of_table),
                    table=kind_of_table,
                )
            )
            continue
        seen[item.name] = number
        valid.append(item)
    return valid, seen


def parse_rules(text: str, source: str = "<rules>") -> list[Rule]:
    """Rules from TOML text; raises ``AlertRulesError`` listing every problem."""
    document = _document(text, source)
    problems: list[RuleProblem] = []
    for key in document:
        if key not in _TOP_LEVEL_KEYS:
            problems.append(
                RuleProblem(
                    f"unknown top-level key (expected {' or '.join(_TOP_LEVEL_KEYS)})", field=key
                )
            )
    include_defaults = document.get("include_defaults", False)
    if not isinstance(include_defaults, bool):
        problems.append(RuleProblem("must be true or false", field="include_defaults"))
    tables = document.get("rule", [])
    if not isinstance(tables, list):
        problems.append(RuleProblem("must be an array of tables: write [[rule]]", field="rule"))
        tables = []
    rules, seen = _validated_tables(text, tables, "rule", _RULE.validate_python, problems)
    if problems:
        raise AlertRulesError(source, problems)
    if include_defaults is True:
        rules = [r for r in default_rules() if r.name not in seen] + rules
    return [r for r in rules if r.enabled]


def load_rules(path: str | Path | None) -> list[Rule]:
    """Rules from a TOML file, or ``default_rules()`` when ``path`` is None."""
    if path is None:
        return default_rules()
    text, source = _read(path)
    return parse_rules(text, source=source)


# --- review rules -----------------------------------------------------------------------------
def parse_review_rules(text: str, source: str = "<rules>") -> list[ReviewRule]:
    """The ``[[review]]`` tables of a rules file (the ``[[rule]]`` ones are ``parse_rules``'s);
    raises ``AlertRulesError`` listing every problem."""
    tables = _document(text, source).get("review", [])
    if not isinstance(tables, list):
        raise AlertRulesError(
            source, [RuleProblem("must be an array of tables: write [[review]]", field="review")]
        )
    problems: list[RuleProblem] = []
    models, _ = _validated_tables(text, tables, "review", ReviewRuleModel.model_validate, problems)
    if problems:
        raise AlertRulesError(source, problems)
    return [model.rule() for model in models if model.enabled]


def demo_review_rules() -> list[ReviewRule]:
    """What ``agentwatch up --demo`` flags without a rules file: refunds its fleet approves on
    its own (auto from 0.85 confidence) while below 0.9, the money going out on the least sure
    approvals."""
    return [
        ReviewRule(
            name="unsure auto refunds", confidence_below=0.9, route="auto", task_type="refund"
        )
    ]


def load_review_rules(path: str | Path | None) -> list[ReviewRule]:
    """The review rules of a rules file; none without a file."""
    if path is None:
        return []
    text, source = _read(path)
    return parse_review_rules(text, source=source)

"""Alert rule files: TOML validated with pydantic, errors that name the line, rule and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentwatch.alerts._detect import AlertKey, Observation, step
from agentwatch.alerts._rules import (
    AlertRulesError,
    AnomalyRule,
    DailyBudgetRule,
    HealthFailureRule,
    NoDataRule,
    RuleProblem,
    ThresholdRule,
    default_rules,
    load_review_rules,
    load_rules,
    parse_review_rules,
    parse_rules,
)
from agentwatch.storage._review_queries import ReviewRule

EVERY_KIND = """
[[rule]]
name = "refund cost"
kind = "anomaly"
metric = "cost"
where = { task_type = "refund" }

[[rule]]
name = "slow"
kind = "threshold"
metric = "latency_p95"
op = ">="
value = 2000

[[rule]]
name = "budget"
kind = "daily_budget"
budget_usd = 50
timezone = "Europe/Paris"

[[rule]]
name = "silent"
kind = "no_data"
silence_s = 600

[[rule]]
name = "probe"
kind = "health_failure"
check = "refund-policy"
consecutive_failures = 2
"""


def problems(text: str) -> list[RuleProblem]:
    with pytest.raises(AlertRulesError) as caught:
        parse_rules(text, source="rules.toml")
    return list(caught.value.problems)


def test_a_file_with_every_kind_parses_into_typed_rules() -> None:
    assert [type(r) for r in parse_rules(EVERY_KIND)] == [
        AnomalyRule,
        ThresholdRule,
        DailyBudgetRule,
        NoDataRule,
        HealthFailureRule,
    ]


def test_unset_fields_take_their_documented_defaults() -> None:
    [rule] = parse_rules('[[rule]]\nname = "c"\nkind = "anomaly"\nmetric = "cost"\n')
    assert isinstance(rule, AnomalyRule)
    assert (rule.group_by, rule.window_s, rule.baseline_windows, rule.threshold) == (
        "task_type",
        300,
        24,
        4.0,
    )


def test_a_bad_value_names_the_line_rule_and_field() -> None:
    text = '[[rule]]\nname = "ok"\nkind = "anomaly"\nmetric = "cost"\n\n'
    text += '[[rule]]\nname = "bad"\nkind = "anomaly"\nmetric = "costs"\n'
    [problem] = problems(text)
    assert problem.describe("rules.toml").startswith(
        "rules.toml:9: rule 2 ('bad'): field 'metric': Input should be 'cost', "
    )


def test_the_error_message_lists_every_problem() -> None:
    text = '[[rule]]\nname = "a"\nkind = "anomaly"\nmetric = "x"\nwindow_s = 1\n'
    with pytest.raises(AlertRulesError) as caught:
        parse_rules(text, source="rules.toml")
    assert str(caught.value).splitlines()[1:] == [
        "  rules.toml:4: rule 1 ('a'): field 'metric': Input should be 'cost', 'cost_per_task', "
        "'error_rate', 'escalation_rate', 'latency_p95' or 'tokens'",
        "  rules.toml:5: rule 1 ('a'): field 'window_s': Input should be greater than or equal "
        "to 10",
    ]


def test_an_unknown_field_is_an_error_not_ignored() -> None:
    [problem] = problems(
        '[[rule]]\nname = "a"\nkind = "anomaly"\nmetric = "cost"\nthreshhold = 3\n'
    )
    assert (problem.field, problem.message, problem.line) == ("threshhold", "unknown field", 5)


def test_a_missing_required_field_points_at_the_rules_header() -> None:
    [problem] = problems('\n[[rule]]\nname = "a"\nkind = "anomaly"\n')
    assert (problem.field, problem.message, problem.line) == ("metric", "required", 2)


def test_an_unknown_kind_lists_the_kinds() -> None:
    [problem] = problems('[[rule]]\nname = "a"\nkind = "spike"\n')
    assert (problem.field, problem.message) == (
        "kind",
        "must be one of anomaly, threshold, daily_budget, no_data, health_failure, not 'spike'",
    )


def test_a_nested_where_field_is_located_in_its_sub_table() -> None:
    text = '[[rule]]\nname = "a"\nkind = "anomaly"\nmetric = "cost"\n[rule.where]\nagnt = "x"\n'
    [problem] = problems(text)
    assert (problem.field, problem.line) == ("where.agnt", 6)


def test_cross_field_checks_name_their_field() -> None:
    text = '[[rule]]\nname = "s"\nkind = "no_data"\nmin_active_windows = 9\n'
    [problem] = problems(text)
    assert (problem.field, problem.message, problem.line) == (
        "min_active_windows",
        "9 is more than baseline_windows (8)",
        4,
    )


def test_an_unknown_time_zone_is_an_error() -> None:
    [problem] = problems(
        '[[rule]]\nname = "b"\nkind = "daily_budget"\nbudget_usd = 5\ntimezone = "Mars/Olympus"\n'
    )
    assert (problem.field, problem.message) == ("timezone", "unknown time zone 'Mars/Olympus'")


def test_duplicate_rule_names_are_an_error_on_the_second() -> None:
    rule = '[[rule]]\nname = "same"\nkind = "health_failure"\n'
    [problem] = problems(rule + rule)
    assert (problem.rule_number, problem.field, problem.line) == (2, "name", 5)


def test_an_unknown_top_level_key_is_an_error() -> None:
    [problem] = problems("rules = []\n")
    assert problem.field == "rules"


def test_invalid_toml_reports_where_it_broke() -> None:
    [problem] = problems('[[rule]]\nname = "a\n')
    assert "line 2" in problem.message


def test_include_defaults_adds_the_default_rules_before_the_files() -> None:
    text = 'include_defaults = true\n[[rule]]\nname = "p"\nkind = "health_failure"\n'
    names = [r.name for r in parse_rules(text)]
    assert names == [*(r.name for r in default_rules()), "p"]


def test_a_rule_named_like_a_default_replaces_it() -> None:
    text = (
        'include_defaults = true\n[[rule]]\nname = "cost spike"\nkind = "anomaly"\n'
        'metric = "cost"\nthreshold = 8\n'
    )
    [cost] = [r for r in parse_rules(text) if r.name == "cost spike"]
    assert isinstance(cost, AnomalyRule)
    assert cost.threshold == 8


def test_disabled_rules_are_dropped() -> None:
    text = '[[rule]]\nname = "off"\nkind = "health_failure"\nenabled = false\n'
    assert parse_rules(text) == []


def test_the_defaults_alert_on_cost_and_error_spikes_per_task_type() -> None:
    anomalies = {(r.metric, r.group_by) for r in default_rules() if isinstance(r, AnomalyRule)}
    assert anomalies == {("cost", "task_type"), ("error_rate", "task_type")}


def test_no_file_means_the_default_rules() -> None:
    assert load_rules(None) == default_rules()


def test_load_rules_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(EVERY_KIND, encoding="utf-8")
    assert len(load_rules(path)) == 5


def test_a_missing_file_is_a_rules_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(AlertRulesError, match=r"nope\.toml: cannot read"):
        load_rules(missing)


def test_rules_are_the_state_machines_policies() -> None:
    """fire_after / resolve_after / cooldown_s on a rule drive its alerts."""
    [rule] = parse_rules('[[rule]]\nname = "p"\nkind = "health_failure"\nfire_after = 2\n')
    key = AlertKey("p")
    _, transitions = step({}, [Observation(key, True, at=0.0)], {rule.name: rule})
    assert transitions == []


def test_rule_metrics_and_groupings_are_the_ones_the_queries_compute() -> None:
    """A metric or grouping a rule file may name is one the evaluator's queries can compute."""
    from typing import get_args

    from agentwatch.alerts._rules import GroupBy, Metric
    from agentwatch.storage._alert_queries import TASK_GROUPS, TASK_METRICS

    assert get_args(Metric) == TASK_METRICS
    assert get_args(GroupBy) == TASK_GROUPS


# --- review rules ---------------------------------------------------------------------------
REVIEW_FILE = """
[[rule]]
name = "cost spike"
kind = "anomaly"
metric = "cost"

[[review]]
name = "unsure refunds"
confidence_below = 0.9
where = { task_type = "refund", environment = "prod" }

[[review]]
name = "anything unsure"
confidence_below = 0.5

[[review]]
name = "unsure auto approvals"
confidence_below = 0.95
route = "auto"

[[review]]
name = "switched off"
confidence_below = 0.5
enabled = false
"""


def test_review_tables_sit_beside_alert_rules_in_one_file() -> None:
    reviews = parse_review_rules(REVIEW_FILE)
    alerts = parse_rules(REVIEW_FILE)

    assert reviews == [
        ReviewRule(
            name="unsure refunds", confidence_below=0.9, task_type="refund", environment="prod"
        ),
        ReviewRule(name="anything unsure", confidence_below=0.5),
        ReviewRule(name="unsure auto approvals", confidence_below=0.95, route="auto"),
    ]
    assert [r.name for r in alerts] == ["cost spike"]


@pytest.mark.parametrize(
    ("table", "field", "message"),
    [
        ('name = "x"\nconfidence_below = 1.5', "confidence_below", "less than or equal to 1"),
        ('name = "x"\nconfidence_below = 0', "confidence_below", "greater than 0"),
        ('name = "x"', "confidence_below", "required"),
        ('name = "x"\nconfidence_below = 0.5\nwhere = { model = "gpt-4o" }', "where.model", ""),
        ('name = "x"\nconfidence_below = 0.5\nroute = "maybe"', "route", "'auto'"),
        ('name = "x"\nconfidence_below = 0.5\ntier = "read"', "tier", "unknown field"),
    ],
)
def test_a_bad_review_table_names_its_line_and_field(table: str, field: str, message: str) -> None:
    text = f"[[rule]]\nname = 'a'\nkind = 'anomaly'\nmetric = 'cost'\n\n[[review]]\n{table}\n"

    with pytest.raises(AlertRulesError) as caught:
        parse_review_rules(text, source="rules.toml")

    (problem,) = caught.value.problems
    assert (problem.table, problem.rule_number, problem.field) == ("review", 1, field)
    assert problem.line is not None
    assert problem.line >= 6
    assert message in problem.message
    assert str(caught.value).startswith("invalid alert rules:\n  rules.toml:")
    assert ": review 1 ('x'): " in str(caught.value)


def test_two_review_tables_of_one_name_are_refused() -> None:
    text = "[[review]]\nname = 'x'\nconfidence_below = 0.5\n\n[[review]]\nname = 'x'\n"
    text += "confidence_below = 0.6\n"
    with pytest.raises(AlertRulesError, match=r"review 2 .*duplicate name"):
        parse_review_rules(text)


def test_without_a_file_there_are_no_review_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(REVIEW_FILE, encoding="utf-8")

    assert load_review_rules(None) == []
    assert [r.name for r in load_review_rules(path)] == [
        "unsure refunds",
        "anything unsure",
        "unsure auto approvals",
    ]
    with pytest.raises(AlertRulesError, match="cannot read"):
        load_review_rules(tmp_path / "missing.toml")

"""The alert state machine: firing and resolved transitions, de-duplication and cooldown."""

from __future__ import annotations

from collections.abc import Sequence

from agentwatch.alerts._detect import (
    AlertKey,
    AlertState,
    DefaultPolicy,
    Observation,
    Transition,
    step,
)

KEY = AlertKey("cost spike", "task_type=refund")
OTHER = AlertKey("cost spike", "task_type=billing")
HOURLY = DefaultPolicy(fire_after=1, resolve_after=2, cooldown_s=3600)


def run(
    breaches: Sequence[bool | None],
    policy: DefaultPolicy = HOURLY,
    every_s: float = 300.0,
) -> list[tuple[int, Transition]]:
    """Feed one observation per evaluation for KEY; (evaluation index, transition) pairs."""
    states: dict[AlertKey, AlertState] = {}
    out: list[tuple[int, Transition]] = []
    for i, breaching in enumerate(breaches):
        obs = Observation(KEY, breaching, at=i * every_s, summary=f"eval {i}")
        states, transitions = step(states, [obs], {KEY.rule: policy})
        out.extend((i, t) for t in transitions)
    return out


def kinds(timeline: list[tuple[int, Transition]]) -> list[tuple[int, str, bool]]:
    return [(i, t.kind, t.notify) for i, t in timeline]


def test_the_first_breach_fires_with_fire_after_one() -> None:
    assert kinds(run([False, True])) == [(1, "fired", True)]


def test_fire_after_waits_for_consecutive_breaches() -> None:
    policy = DefaultPolicy(fire_after=2, resolve_after=1)
    assert kinds(run([True, False, True, True], policy)) == [(3, "fired", True)]


def test_a_firing_alert_is_one_incident_however_long_it_breaches() -> None:
    assert kinds(run([True] * 10)) == [(0, "fired", True)]


def test_it_resolves_after_resolve_after_clear_evaluations() -> None:
    assert kinds(run([True, True, False, False, False])) == [
        (0, "fired", True),
        (3, "resolved", True),
    ]


def test_a_single_clear_evaluation_does_not_resolve_a_flapping_alert() -> None:
    assert kinds(run([True, False, True, False, True])) == [(0, "fired", True)]


def test_the_resolution_carries_when_the_incident_started() -> None:
    [_, (_, resolved)] = run([False, True, True, False, False])
    assert (resolved.since, resolved.at) == (300.0, 1200.0)


def test_unknown_evaluations_change_nothing() -> None:
    assert kinds(run([True, None, None, False, None, False])) == [
        (0, "fired", True),
        (5, "resolved", True),
    ]


def test_a_new_incident_within_the_cooldown_is_recorded_but_not_notified() -> None:
    # fires at 0 s, resolves at 600 s, fires again at 900 s: within the hour's cooldown
    assert kinds(run([True, False, False, True])) == [
        (0, "fired", True),
        (2, "resolved", True),
        (3, "fired", False),
    ]


def test_the_resolution_of_an_unnotified_incident_is_not_notified_either() -> None:
    assert kinds(run([True, False, False, True, False, False]))[-1] == (5, "resolved", False)


def test_after_the_cooldown_a_new_incident_is_notified_again() -> None:
    policy = DefaultPolicy(fire_after=1, resolve_after=1, cooldown_s=600)
    assert kinds(run([True, False, False, True], policy)) == [
        (0, "fired", True),
        (1, "resolved", True),
        (3, "fired", True),
    ]


def test_keys_of_the_same_rule_fire_independently() -> None:
    _, transitions = step({}, [Observation(KEY, True, at=0.0), Observation(OTHER, False, at=0.0)])
    assert [t.key for t in transitions] == [KEY]


def test_keys_not_observed_keep_their_state() -> None:
    states, _ = step({}, [Observation(KEY, True, at=0.0)])
    states, _ = step(states, [Observation(OTHER, True, at=300.0)])
    assert states[KEY].status == "firing"


def test_the_summary_of_a_firing_alert_follows_the_latest_evaluation() -> None:
    states, _ = step({}, [Observation(KEY, True, at=0.0, summary="x5")])
    states, _ = step(states, [Observation(KEY, True, at=300.0, summary="x7")])
    assert states[KEY].summary == "x7"


def test_rules_without_a_policy_use_the_default() -> None:
    _, transitions = step({}, [Observation(KEY, True, at=0.0)], {}, default=DefaultPolicy(2))
    assert transitions == []


def test_step_does_not_modify_the_states_it_is_given() -> None:
    before: dict[AlertKey, AlertState] = {}
    step(before, [Observation(KEY, True, at=0.0)])
    assert before == {}

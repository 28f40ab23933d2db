"""Health probes: a root span per run with agentwatch.health.*; a scheduler that never dies."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from opentelemetry.trace import StatusCode

import agentwatch as aw
from agentwatch import _health
from agentwatch._health import (
    HEALTH_ANSWER,
    HEALTH_FAILED_EXPECTATION,
    HEALTH_LATENCY_MS,
    HEALTH_REASON,
)
from agentwatch._testing import attributes as attrs
from tests.sdk.support import parent_id, span_id, trace_id

# Each test starts with an empty probe registry and leaves no scheduler running.
pytestmark = pytest.mark.usefixtures("isolated_registry")

_THIRTY_DAYS = aw.expect.contains("30 days")


def _probe(
    answer: str = "Within 30 days.",
    *,
    expect: aw.Expectation | None = _THIRTY_DAYS,
    every_s: float = 60.0,
) -> aw.Probe[[], str]:
    @aw.health_check(name="refund-policy", expect=expect, every_s=every_s)
    def refund_policy() -> str:
        return answer

    return refund_policy


def test_a_passing_run_is_one_span_with_the_check_and_its_result() -> None:
    probe = _probe()
    with aw.capture_spans() as captured:
        probe.run()
    span = captured.one("health_check refund-policy")
    assert {k: v for k, v in attrs(span).items() if k != HEALTH_LATENCY_MS} == {
        "agentwatch.health.check": "refund-policy",
        "agentwatch.health.passed": True,
    }


def test_the_span_records_the_latency_in_milliseconds() -> None:
    @aw.health_check(name="slow")
    def slow() -> str:
        time.sleep(0.05)
        return "ok"

    with aw.capture_spans() as captured:
        slow.run()
    assert attrs(captured.one("health_check slow"))[HEALTH_LATENCY_MS] >= 50


def test_a_failed_expectation_is_named_on_the_span_with_its_reason() -> None:
    probe = _probe(answer="Within a month.")
    with aw.capture_spans() as captured:
        probe.run()
    span_attrs = attrs(captured.one("health_check refund-policy"))
    assert span_attrs["agentwatch.health.passed"] is False
    assert span_attrs[HEALTH_FAILED_EXPECTATION] == "contains('30 days')"
    assert span_attrs[HEALTH_REASON] == "the answer does not contain '30 days'"


def test_a_failed_expectation_is_not_a_span_error() -> None:
    probe = _probe(answer="Within a month.")
    with aw.capture_spans() as captured:
        probe.run()
    assert captured.one("health_check refund-policy").status.status_code is StatusCode.UNSET


def test_the_result_says_which_expectation_failed_and_why() -> None:
    result = _probe(answer="Within a month.").run()
    assert (result.passed, result.failed_expectation, result.reason) == (
        False,
        "contains('30 days')",
        "the answer does not contain '30 days'",
    )


def test_a_probe_that_raises_fails_with_the_exception_as_reason() -> None:
    @aw.health_check(name="down")
    def down() -> str:
        raise ConnectionError("agent unreachable")

    result = down.run()
    assert (result.passed, result.reason) == (
        False,
        "the probe raised ConnectionError: agent unreachable",
    )


def test_a_probe_that_raises_marks_its_span_as_an_error() -> None:
    @aw.health_check(name="down")
    def down() -> str:
        raise ConnectionError("agent unreachable")

    with aw.capture_spans() as captured:
        down.run()
    span = captured.one("health_check down")
    assert (span.status.status_code, attrs(span)["error.type"]) == (
        StatusCode.ERROR,
        "ConnectionError",
    )


def test_the_answer_is_not_recorded_without_content_capture() -> None:
    probe = _probe()
    with aw.capture_spans() as captured:
        probe.run()
    assert HEALTH_ANSWER not in attrs(captured.one("health_check refund-policy"))


def test_the_answer_excerpt_is_recorded_redacted_with_content_capture() -> None:
    probe = _probe(answer="Within 30 days, ask jane@example.com.")
    with aw.capture_spans(capture_content=True) as captured:
        probe.run()
    assert attrs(captured.one("health_check refund-policy"))[HEALTH_ANSWER] == (
        "Within 30 days, ask [REDACTED:email]."
    )


def test_the_answer_excerpt_is_cut_to_the_excerpt_length() -> None:
    probe = _probe(answer="30 days " + "x" * 5000, expect=None)
    with aw.capture_spans(capture_content=True) as captured:
        probe.run()
    excerpt = attrs(captured.one("health_check refund-policy"))[HEALTH_ANSWER]
    assert excerpt.startswith("30 days xxx")
    assert excerpt.endswith("...[truncated 4008 chars]")


def test_the_reason_is_redacted_on_the_span() -> None:
    @aw.health_check(name="down")
    def down() -> str:
        raise ConnectionError("no answer for jane@example.com")

    # Content capture off: the exception's message (it may quote user data) is not recorded.
    with aw.capture_spans() as captured:
        down.run()
    assert attrs(captured.one("health_check down"))[HEALTH_REASON] == (
        "the probe raised ConnectionError"
    )
    with aw.capture_spans(capture_content=True) as captured:
        down.run()
    assert attrs(captured.one("health_check down"))[HEALTH_REASON] == (
        "the probe raised ConnectionError: no answer for [REDACTED:email]"
    )


def test_the_agents_spans_nest_under_the_health_check_span() -> None:
    @aw.agent(name="support")
    def support(question: str) -> str:
        return "Within 30 days."

    @aw.health_check(name="refund-policy")
    def probe() -> str:
        return support("How long for returns?")

    with aw.capture_spans() as captured:
        probe.run()
    health = captured.one("health_check refund-policy")
    assert parent_id(captured.one("invoke_agent support")) == span_id(health)


def test_a_health_check_run_inside_an_agent_call_is_its_own_trace() -> None:
    probe = _probe()

    @aw.agent(name="support")
    def support() -> None:
        probe.run()

    with aw.capture_spans() as captured:
        support()
    health = captured.one("health_check refund-policy")
    assert (health.parent, trace_id(health) != trace_id(captured.one("invoke_agent support"))) == (
        None,
        True,
    )


def test_async_probes_are_awaited() -> None:
    @aw.health_check(name="async", expect=aw.expect.contains("30 days"))
    async def probe() -> str:
        await asyncio.sleep(0)
        return "Within 30 days."

    assert probe.run().passed


def test_async_probes_run_from_inside_a_running_event_loop() -> None:
    @aw.health_check(name="async", expect=aw.expect.contains("30 days"))
    async def probe() -> str:
        await asyncio.sleep(0)
        return "Within 30 days."

    async def main() -> list[aw.HealthResult]:
        return aw.run_health_checks([probe])

    assert [r.passed for r in asyncio.run(main())] == [True]


def test_probes_run_without_agentwatch_configured() -> None:
    assert not aw.is_configured()
    assert _probe().run().passed


def test_run_health_checks_runs_every_registered_probe_once() -> None:
    calls: list[str] = []

    @aw.health_check(name="a")
    def a() -> str:
        calls.append("a")
        return ""

    @aw.health_check(name="b")
    def b() -> str:
        calls.append("b")
        return ""

    results = aw.run_health_checks()
    assert ([r.check for r in results], calls) == (["a", "b"], ["a", "b"])


def test_registering_a_name_again_replaces_the_earlier_probe() -> None:
    _probe(answer="first")
    second = _probe(answer="second")
    assert _health.registered_health_checks() == [second]


def test_a_decorated_probe_still_calls_through() -> None:
    assert _probe(answer="hello")() == "hello"


def test_a_probe_must_be_callable_without_arguments() -> None:
    with pytest.raises(aw.ConfigurationError, match="callable without arguments"):

        @aw.health_check(name="needs-args")
        def needs_args(question: str) -> str:
            return question


def test_every_s_must_be_positive() -> None:
    with pytest.raises(aw.ConfigurationError, match="every_s"):
        aw.health_check(name="x", every_s=0)


def test_expect_must_be_an_expectation() -> None:
    with pytest.raises(aw.ConfigurationError, match=r"aw\.expect\.contains"):
        aw.health_check(name="x", expect="30 days")  # type: ignore[call-overload]


class _Collect:
    """Collects scheduler results and lets a test wait for the n-th one without polling."""

    def __init__(self, wanted: int) -> None:
        self.results: list[aw.HealthResult] = []
        self.wanted = wanted
        self.done = threading.Event()

    def __call__(self, result: aw.HealthResult) -> None:
        self.results.append(result)
        if len(self.results) >= self.wanted:
            self.done.set()


def test_the_scheduler_runs_probes_every_every_s_seconds() -> None:
    _probe(every_s=0.05)
    collect = _Collect(wanted=3)
    started = time.monotonic()
    aw.start_health_checks(on_result=collect)
    assert collect.done.wait(5.0)
    assert time.monotonic() - started >= 0.1  # three runs are two periods apart


def test_the_scheduler_keeps_running_after_a_probe_raises() -> None:
    @aw.health_check(name="down", every_s=0.01)
    def down() -> str:
        raise ConnectionError("agent unreachable")

    collect = _Collect(wanted=3)
    aw.start_health_checks(on_result=collect)
    assert collect.done.wait(5.0)


def test_the_scheduler_keeps_running_after_the_callback_raises() -> None:
    _probe(every_s=0.01)
    seen = threading.Event()
    count = 0

    def explode(result: aw.HealthResult) -> None:
        nonlocal count
        count += 1
        if count >= 2:
            seen.set()
        raise RuntimeError("callback bug")

    aw.start_health_checks(on_result=explode)
    assert seen.wait(5.0)


def test_the_scheduler_emits_one_span_per_run() -> None:
    _probe(every_s=0.01)
    collect = _Collect(wanted=2)
    with aw.capture_spans() as captured:
        aw.start_health_checks(on_result=collect)
        assert collect.done.wait(5.0)
        assert aw.stop_health_checks()
        assert len(captured.named("health_check refund-policy")) == len(collect.results)


def test_stop_wakes_the_scheduler_without_waiting_for_the_next_run() -> None:
    _probe(every_s=3600)
    collect = _Collect(wanted=1)
    aw.start_health_checks(on_result=collect)
    assert collect.done.wait(5.0)
    started = time.monotonic()
    assert aw.stop_health_checks(timeout_s=5.0)
    assert time.monotonic() - started < 1.0


def test_a_probe_registered_after_start_runs_without_waiting_for_a_poll() -> None:
    collect = _Collect(wanted=1)
    aw.start_health_checks(on_result=collect)  # nothing registered: the scheduler sleeps
    _probe(every_s=3600)
    assert collect.done.wait(0.5)


def test_an_explicit_probe_list_ignores_later_registrations() -> None:
    first = _probe(every_s=3600)
    collect = _Collect(wanted=1)
    aw.start_health_checks([first], on_result=collect)
    assert collect.done.wait(5.0)

    @aw.health_check(name="later", every_s=3600)
    def later() -> str:
        return ""

    assert aw.stop_health_checks()
    assert [r.check for r in collect.results] == ["refund-policy"]


def test_the_scheduler_runs_in_a_daemon_thread() -> None:
    _probe(every_s=3600)
    aw.start_health_checks()
    scheduler = _health._SCHEDULER
    assert scheduler is not None
    assert scheduler.thread.daemon

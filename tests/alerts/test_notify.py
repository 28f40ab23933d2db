"""Notifications against a real HTTP receiver on loopback: payloads, retries, a receiver that
is down or slow, and one notification per incident end to end from stored spans.

Retry backoffs are set to milliseconds so the tests are fast; every wait polls with a
deadline.
"""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime, timedelta

import pytest

from agentwatch.alerts._evaluator import Evaluator, EvaluatorSettings
from agentwatch.alerts._notify import (
    Alert,
    ConsoleNotifier,
    DeliveryError,
    Dispatcher,
    LogNotifier,
    RetryPolicy,
    SlackNotifier,
    WebhookNotifier,
    slack_payload,
)
from agentwatch.storage._schema import SPANS_TABLE
from agentwatch.storage._store import EmbeddedStore

from .receiver import Receiver, closed_port_url, receiving, wait_until
from .workload import NS, Spans, Spike, ns, steady_workload

FAST = RetryPolicy(attempts=4, initial_backoff_s=0.001, multiplier=2.0, max_backoff_s=0.01)
AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def alert(event: str = "fired", **changes: object) -> Alert:
    fields: dict[str, object] = {
        "incident_id": "4f1c2a9e0b7d6c5e3a21",
        "event": event,
        "rule": "cost spike",
        "kind": "anomaly",
        "severity": "warning",
        "summary": "cost rose to 5.1 from a baseline of 1.02 (x5.0, robust z 9.3 over 24 windows)",
        "at": AT + timedelta(minutes=5),
        "fired_at": AT,
        "group": "task_type=refund",
        "metric": "cost",
        "value": 5.1,
        "baseline": 1.02,
        "score": 9.3,
        "trace_ids": ("a" * 32, "b" * 32),
        "links": (
            f"http://dash/traces?trace_id={'a' * 32}",
            f"http://dash/traces?trace_id={'b' * 32}",
        ),
        **changes,
    }
    return Alert(**fields)  # type: ignore[arg-type]


def delivered(dispatcher: Dispatcher, name: str) -> int:
    return dispatcher.stats()[name].delivered


# --- payloads -----------------------------------------------------------------------------------
def test_the_webhook_posts_the_alert_as_json() -> None:
    with receiving() as receiver:
        WebhookNotifier(receiver.url).send(alert())
    [request] = receiver.requests
    assert request.headers["Content-Type"] == "application/json"
    assert request.body == {
        "version": 1,
        "event": "fired",
        "incident_id": "4f1c2a9e0b7d6c5e3a21",
        "rule": "cost spike",
        "kind": "anomaly",
        "severity": "warning",
        "metric": "cost",
        "group": "task_type=refund",
        "summary": alert().summary,
        "text": f"FIRING: cost spike [task_type=refund] (warning): {alert().summary}",
        "at": "2026-11-21T12:05:00.000Z",
        "fired_at": "2026-11-21T12:00:00.000Z",
        "value": 5.1,
        "baseline": 1.02,
        "score": 9.3,
        "trace_ids": ["a" * 32, "b" * 32],
        "links": list(alert().links),
    }


def test_an_infinite_score_is_sent_as_null() -> None:
    """A spike from a zero baseline has an infinite robust z; JSON has no infinity."""
    with receiving() as receiver:
        WebhookNotifier(receiver.url).send(alert(baseline=0.0, score=float("inf")))
    [request] = receiver.requests
    assert (request.body["baseline"], request.body["score"]) == (0.0, None)


def test_the_slack_payload_has_fallback_text_and_blocks_with_trace_links() -> None:
    with receiving() as receiver:
        SlackNotifier(receiver.url).send(alert())
    [request] = receiver.requests
    body = request.body
    assert body["text"].startswith(":warning: FIRING: cost spike [task_type=refund]")
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "section", "context"]
    assert body["blocks"][1]["text"]["text"] == alert().summary
    links = body["blocks"][3]["elements"][0]["text"]
    assert f"<http://dash/traces?trace_id={'a' * 32}|trace {'a' * 16}>" in links


def test_the_slack_payload_escapes_slacks_control_characters() -> None:
    payload = slack_payload(alert(group="task_type=<refund & co>"))
    assert "task_type=&lt;refund &amp; co&gt;" in payload["blocks"][2]["fields"][2]["text"]


def test_a_resolved_alert_says_so() -> None:
    payload = slack_payload(alert("resolved"))
    assert payload["text"].startswith(":white_check_mark: resolved: cost spike")


def test_the_console_prints_the_alert_and_its_links() -> None:
    out = io.StringIO()
    ConsoleNotifier(out).send(alert())
    assert out.getvalue().splitlines() == [
        f"agentwatch alert FIRING: cost spike [task_type=refund] (warning): {alert().summary}",
        *(f"  {link}" for link in alert().links),
    ]


# --- delivery -----------------------------------------------------------------------------------
def test_the_backoff_grows_exponentially_up_to_its_cap() -> None:
    policy = RetryPolicy(attempts=6, initial_backoff_s=1.0, multiplier=2.0, max_backoff_s=5.0)
    assert [policy.backoff(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_a_retry_after_from_the_receiver_is_honoured_up_to_the_cap() -> None:
    policy = RetryPolicy(attempts=3, initial_backoff_s=1.0, max_backoff_s=30.0)
    assert (policy.backoff(1, retry_after_s=20.0), policy.backoff(1, retry_after_s=90.0)) == (
        20.0,
        30.0,
    )


def test_a_server_error_is_retried_until_delivered() -> None:
    with receiving(Receiver(statuses=[503, 500])) as receiver:
        dispatcher = Dispatcher([WebhookNotifier(receiver.url)], retry=FAST)
        dispatcher.submit(alert())
        assert dispatcher.close(10)
    stats = dispatcher.stats()[f"webhook {receiver.url.split('/')[2]}"]
    assert (len(receiver.requests), stats.retries, stats.delivered, stats.failed) == (3, 2, 1, 0)


def test_a_receiver_that_is_down_is_retried_then_given_up() -> None:
    notifier = WebhookNotifier(closed_port_url())
    dispatcher = Dispatcher([notifier], retry=FAST)
    dispatcher.submit(alert())
    assert dispatcher.close(10)
    stats = dispatcher.stats()[notifier.name]
    assert (stats.retries, stats.failed, stats.delivered) == (FAST.attempts - 1, 1, 0)
    assert "cannot reach" in stats.last_error


def test_a_client_error_is_not_retried() -> None:
    with receiving(Receiver(statuses=[400])) as receiver:
        notifier = WebhookNotifier(receiver.url)
        dispatcher = Dispatcher([notifier], retry=FAST)
        dispatcher.submit(alert())
        assert dispatcher.close(10)
    assert (len(receiver.requests), dispatcher.stats()[notifier.name].failed) == (1, 1)


def test_a_too_many_requests_answer_is_retried() -> None:
    with receiving(Receiver(statuses=[429], retry_after="0")) as receiver:
        notifier = WebhookNotifier(receiver.url)
        dispatcher = Dispatcher([notifier], retry=FAST)
        dispatcher.submit(alert())
        assert dispatcher.close(10)
    assert (len(receiver.requests), delivered(dispatcher, notifier.name)) == (2, 1)


def test_a_slow_receiver_blocks_neither_submit_nor_the_other_notifiers() -> None:
    gate = threading.Event()
    with receiving(Receiver(gate=gate)) as receiver:
        gate.clear()  # the receiver holds every request until released
        printed = io.StringIO()
        webhook = WebhookNotifier(receiver.url)
        dispatcher = Dispatcher([webhook, ConsoleNotifier(printed)], retry=FAST)
        dispatcher.submit(alert())
        wait_until(lambda: "FIRING" in printed.getvalue(), what="the console line")
        assert delivered(dispatcher, webhook.name) == 0  # still held by the receiver
        gate.set()
        assert dispatcher.close(10)
    assert delivered(dispatcher, webhook.name) == 1


def test_a_notifier_that_raises_anything_is_counted_not_propagated() -> None:
    class Broken:
        name = "broken"

        def send(self, alert: Alert) -> None:
            raise DeliveryError("refused", retryable=False)

    dispatcher = Dispatcher([Broken()], retry=FAST)
    dispatcher.submit(alert())
    assert dispatcher.close(10)
    assert dispatcher.stats()["broken"].failed == 1


def test_a_full_queue_drops_and_counts_instead_of_blocking() -> None:
    gate = threading.Event()
    with receiving(Receiver(gate=gate)) as receiver:
        gate.clear()
        webhook = WebhookNotifier(receiver.url)
        dispatcher = Dispatcher([webhook], retry=FAST, queue_size=1)
        dispatcher.submit(alert())
        wait_until(lambda: receiver.arrived == 1, what="the first delivery to reach the receiver")
        dispatcher.submit(alert())  # waits in the queue
        dispatcher.submit(alert())  # no room: dropped
        gate.set()
        assert dispatcher.close(10)
    stats = dispatcher.stats()[webhook.name]
    assert (stats.delivered, stats.dropped) == (2, 1)


def test_webhook_urls_must_be_http() -> None:
    with pytest.raises(ValueError, match="--webhook must be an http"):
        WebhookNotifier("file:///etc/passwd")


# --- end to end from stored spans ---------------------------------------------------------------
W = 300
NOW = datetime.fromtimestamp(datetime.now(UTC).timestamp() // W * W, UTC)


def test_an_incident_sends_one_fired_and_one_resolved_message(store: EmbeddedStore) -> None:
    """A refund cost spike over four windows, evaluated every window: the receiver gets the
    incident once when it fires and once when it resolves, with the same incident id."""
    t0 = ns(NOW) - 36 * W * NS
    spike = Spike("refund", t0 + 24 * W * NS, t0 + 28 * W * NS, cost_factor=5.0)
    spans = steady_workload(Spans(), start_ns=t0, windows=36, window_s=W, seed=21, spikes=[spike])
    store.insert_arrow(SPANS_TABLE, spans.table())
    with receiving() as receiver:
        dispatcher = Dispatcher([WebhookNotifier(receiver.url)], retry=FAST)
        evaluator = Evaluator(store, settings=EvaluatorSettings(settle_s=0), dispatcher=dispatcher)
        for i in range(24, 36):
            evaluator.evaluate(datetime.fromtimestamp((t0 + (i + 1) * W * NS) / NS, UTC))
        assert dispatcher.close(10)
    bodies = receiver.bodies()
    assert [(b["event"], b["rule"], b["group"]) for b in bodies] == [
        ("fired", "cost spike", "task_type=refund"),
        ("resolved", "cost spike", "task_type=refund"),
    ]
    assert bodies[0]["incident_id"] == bodies[1]["incident_id"]


def test_evaluation_goes_on_while_the_receiver_is_down(store: EmbeddedStore) -> None:
    spans = Spans()
    spans.probe(ns(NOW) - 300 * NS, check="refund-policy", passed=False)
    store.insert_arrow(SPANS_TABLE, spans.table())
    webhook = WebhookNotifier(closed_port_url())
    dispatcher = Dispatcher([webhook], retry=FAST)
    evaluator = Evaluator(store, settings=EvaluatorSettings(settle_s=0), dispatcher=dispatcher)
    first = evaluator.evaluate(NOW)
    later = Spans()
    later.probe(ns(NOW) + 10 * NS, check="refund-policy", passed=True)
    store.insert_arrow(SPANS_TABLE, later.table())
    second = evaluator.evaluate(NOW + timedelta(minutes=1))
    assert dispatcher.close(10)
    assert ([a.event for a in first.alerts], [a.event for a in second.alerts]) == (
        ["fired"],
        ["resolved"],
    )
    assert dispatcher.stats()[webhook.name].failed == 2


def test_the_log_notifier_logs_fired_alerts_as_warnings(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="agentwatch.alerts"):
        LogNotifier().send(alert())
        LogNotifier().send(alert("resolved"))
    assert [(r.levelname, r.getMessage()[:26]) for r in caplog.records] == [
        ("WARNING", "FIRING: cost spike [task_t"),
        ("INFO", "resolved: cost spike [task"),
    ]

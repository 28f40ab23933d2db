"""Alert notifications: console/log lines, a generic JSON webhook, Slack incoming webhooks.

The evaluator hands each alert to a ``Dispatcher``, which queues it for every notifier and
returns at once: each notifier has its own worker thread and bounded queue, so a slow or
failing webhook delays neither the evaluation nor the other notifiers. A delivery that fails
for a reason that may pass (connection refused, timeout, HTTP 408/429/5xx) is retried with
exponential backoff (``RetryPolicy``: bounded attempts, honouring ``Retry-After``); one that
cannot succeed (another 4xx) is given up at once. Either way the failure is logged and
counted, never raised to the evaluator.

Payloads:

- JSON webhook: ``{"version": 1, "event": "fired" | "resolved", "incident_id", "rule", "kind",
  "severity", "metric", "group", "summary", "text", "at", "fired_at", "value", "baseline",
  "score", "trace_ids", "links"}`` (times in ISO 8601 UTC). ``incident_id`` is the same in an
  incident's fired and resolved messages, so a receiver can pair and de-duplicate them.
- Slack: ``{"text": <one-line fallback>, "blocks": [header, summary, fields, trace links]}``,
  what Slack's incoming webhooks (and Mattermost's, and others that copy them) accept.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, Literal, Protocol, TextIO
from urllib.parse import urlparse

from agentwatch._errors import AgentwatchError, ConfigurationError

logger = logging.getLogger("agentwatch.alerts.notify")

AlertEvent = Literal["fired", "resolved"]
USER_AGENT: Final = "agentwatch-alerts/1"


@dataclass(frozen=True, slots=True)
class Alert:
    """An incident that fired or resolved: what the evaluator stores and notifiers send."""

    incident_id: str
    event: AlertEvent
    rule: str
    kind: str
    severity: str
    summary: str
    """What moved, by how much, against what baseline (or the rule's own finding)."""
    at: datetime
    fired_at: datetime
    group: str = ""
    """``task_type=refund``, ``agent=support``, ``check=refund-policy``; empty when ungrouped."""
    metric: str = ""
    value: float | None = None
    baseline: float | None = None
    score: float | None = None
    trace_ids: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    notify: bool = True
    """False inside the cooldown of an earlier notification for the same rule and group."""

    @property
    def title(self) -> str:
        state = "FIRING" if self.event == "fired" else "resolved"
        where = f" [{self.group}]" if self.group else ""
        return f"{state}: {self.rule}{where} ({self.severity})"

    @property
    def text(self) -> str:
        """One line: the title and the summary."""
        return f"{self.title}: {self.summary}"

    def payload(self) -> dict[str, Any]:
        """The generic JSON webhook body."""
        return {
            "version": 1,
            "event": self.event,
            "incident_id": self.incident_id,
            "rule": self.rule,
            "kind": self.kind,
            "severity": self.severity,
            "metric": self.metric,
            "group": self.group,
            "summary": self.summary,
            "text": self.text,
            "at": _iso(self.at),
            "fired_at": _iso(self.fired_at),
            "value": _finite(self.value),
            "baseline": _finite(self.baseline),
            "score": _finite(self.score),
            "trace_ids": list(self.trace_ids),
            "links": list(self.links),
        }


def _finite(value: float | None) -> float | None:
    """JSON has no infinity or NaN (a spike from a zero baseline has an infinite score)."""
    return value if value is not None and math.isfinite(value) else None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- notifiers ----------------------------------------------------------------------------------
class DeliveryError(AgentwatchError):
    """A delivery failed; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool, retry_after_s: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class Notifier(Protocol):
    """Sends one alert somewhere; raises ``DeliveryError`` (or any exception) on failure."""

    @property
    def name(self) -> str: ...

    def send(self, alert: Alert) -> None: ...


class ConsoleNotifier:
    """One line per alert on a stream (stdout by default): what ``agentwatch up`` prints."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self.name = "console"

    def send(self, alert: Alert) -> None:
        stream = self._stream or sys.stdout
        lines = [f"agentwatch alert {alert.text}"]
        lines += [f"  {link}" for link in alert.links]
        if alert.trace_ids and not alert.links:
            lines.append(f"  traces: {', '.join(alert.trace_ids)}")
        print("\n".join(lines), file=stream, flush=True)


class LogNotifier:
    """Alerts as log records on ``agentwatch.alerts``: WARNING when fired, INFO when resolved."""

    def __init__(self, logger_name: str = "agentwatch.alerts") -> None:
        self._logger = logging.getLogger(logger_name)
        self.name = "log"

    def send(self, alert: Alert) -> None:
        level = logging.WARNING if alert.event == "fired" else logging.INFO
        self._logger.log(level, "%s", alert.text, extra={"alert": alert.payload()})


def _check_url(url: str, what: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigurationError(f"{what} must be an http(s) URL, not {url!r}")
    return url


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def post_json(
    url: str, body: Mapping[str, Any], *, timeout_s: float, headers: Mapping[str, str]
) -> None:
    """POST ``body`` as JSON; raise ``DeliveryError`` unless the answer is 2xx."""
    data = json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked by _check_url
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as exc:
        status = exc.code
        retry_after = _retry_after(exc.headers.get("Retry-After")) if exc.headers else None
        exc.close()
        raise DeliveryError(
            f"HTTP {status}",
            retryable=status in (408, 425, 429) or status >= 500,
            retry_after_s=retry_after,
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(
            f"cannot reach {urlparse(url).netloc}: {reason}", retryable=True
        ) from None


class WebhookNotifier:
    """POSTs ``Alert.payload()`` as JSON to ``url``."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        headers: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        self.url = _check_url(url, "--webhook")
        self.timeout_s = timeout_s
        self.headers = dict(headers or {})
        self.name = name or f"webhook {urlparse(url).netloc}"

    def send(self, alert: Alert) -> None:
        post_json(self.url, alert.payload(), timeout_s=self.timeout_s, headers=self.headers)


_SEVERITY_ICON: Final = {
    "critical": ":red_circle:",
    "warning": ":warning:",
    "info": ":information_source:",
}


def _mrkdwn(text: str) -> str:
    """Slack's three control characters, escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def slack_payload(alert: Alert) -> dict[str, Any]:
    """An incoming-webhook message: ``text`` (notifications, fallback) and Block Kit blocks."""
    icon = (
        ":white_check_mark:"
        if alert.event == "resolved"
        else _SEVERITY_ICON.get(alert.severity, ":warning:")
    )
    fields = [
        f"*Rule*\n{_mrkdwn(alert.rule)} ({alert.kind})",
        f"*Severity*\n{alert.severity}",
        f"*Group*\n{_mrkdwn(alert.group) or 'all'}",
        f"*Fired at*\n{_iso(alert.fired_at)}",
    ]
    if alert.metric:
        fields.append(f"*{_mrkdwn(alert.metric)}*\n{_number(alert.value)}")
    if alert.baseline is not None:
        fields.append(f"*Baseline*\n{_number(alert.baseline)}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": alert.title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(alert.summary)[:3000]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": text} for text in fields[:10]]},
    ]
    if alert.links:
        links = [
            f"<{link}|trace {tid[:16]}>"
            for tid, link in zip(alert.trace_ids, alert.links, strict=False)
        ]
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(links)}]}
        )
    elif alert.trace_ids:
        ids = ", ".join(f"`{t}`" for t in alert.trace_ids)
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"traces: {ids}"}]}
        )
    return {"text": f"{icon} {_mrkdwn(alert.text)}", "blocks": blocks}


class SlackNotifier:
    """POSTs a Slack incoming-webhook message (``slack_payload``) to ``url``."""

    def __init__(self, url: str, *, timeout_s: float = 10.0, name: str | None = None) -> None:
        self.url = _check_url(url, "--slack-webhook")
        self.timeout_s = timeout_s
        self.name = name or f"slack {urlparse(url).netloc}"

    def send(self, alert: Alert) -> None:
        post_json(self.url, slack_payload(alert), timeout_s=self.timeout_s, headers={})


# --- delivery -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try: ``attempts`` in all, waiting ``initial_backoff_s`` after the first
    failure, then ``multiplier`` times longer each time, at most ``max_backoff_s`` (a
    ``Retry-After`` from the receiver is honoured up to that cap too)."""

    attempts: int = 5
    initial_backoff_s: float = 1.0
    multiplier: float = 2.0
    max_backoff_s: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {self.attempts}")
        if self.initial_backoff_s < 0 or self.multiplier < 1 or self.max_backoff_s < 0:
            raise ValueError("backoffs must be >= 0 and the multiplier >= 1")

    def backoff(self, failures: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after the ``failures``-th failed attempt."""
        delay = self.initial_backoff_s * self.multiplier ** (failures - 1)
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return min(delay, self.max_backoff_s)


@dataclass
class DeliveryStats:
    """Per notifier: alerts delivered, given up on, retries made, dropped for a full queue."""

    delivered: int = 0
    failed: int = 0
    retries: int = 0
    dropped: int = 0
    last_error: str = ""


@dataclass
class _Channel:
    notifier: Notifier
    retry: RetryPolicy
    queue: queue.Queue[Alert | None]
    """Alerts to deliver; ``None`` wakes the worker to stop."""
    stats: DeliveryStats = field(default_factory=DeliveryStats)
    stop: threading.Event = field(default_factory=threading.Event)
    idle: threading.Condition = field(default_factory=threading.Condition)
    busy: bool = False
    thread: threading.Thread | None = None

    def run(self) -> None:
        while True:
            alert = self.queue.get()
            if alert is None:
                with self.idle:
                    self.queue.task_done()
                    self.idle.notify_all()
                return
            with self.idle:
                self.busy = True
            try:
                self._deliver(alert)
            finally:
                with self.idle:
                    self.busy = False
                    self.queue.task_done()
                    self.idle.notify_all()

    def _deliver(self, alert: Alert) -> None:
        name = self.notifier.name
        for attempt in range(1, self.retry.attempts + 1):
            try:
                self.notifier.send(alert)
            except Exception as exc:  # noqa: BLE001 - a notifier's failure must not escape
                retryable = getattr(exc, "retryable", True)
                self.stats.last_error = str(exc) or type(exc).__name__
                if not retryable or attempt == self.retry.attempts or self.stop.is_set():
                    self.stats.failed += 1
                    logger.error(
                        "gave up notifying %s of %s after %d attempt%s: %s",
                        name,
                        alert.title,
                        attempt,
                        "" if attempt == 1 else "s",
                        self.stats.last_error,
                    )
                    return
                delay = self.retry.backoff(attempt, getattr(exc, "retry_after_s", None))
                logger.warning(
                    "notifying %s failed (%s); retry %d in %.3gs",
                    name,
                    self.stats.last_error,
                    attempt,
                    delay,
                )
                self.stats.retries += 1
                if self.stop.wait(delay):  # stopping: one last try below, then give up
                    continue
            else:
                self.stats.delivered += 1
                return


class Dispatcher:
    """Queues each alert for every notifier and delivers it from that notifier's own thread.

    ``submit`` never blocks: when a notifier's queue is full (a receiver down for long), the
    alert is dropped for that notifier and counted. ``close`` waits for queued deliveries up to
    a deadline, then stops the workers (an alert still waiting for a retry is given up).
    """

    def __init__(
        self,
        notifiers: Sequence[Notifier],
        *,
        retry: RetryPolicy = RetryPolicy(),
        queue_size: int = 1000,
    ) -> None:
        self._channels = [
            _Channel(notifier, retry, queue.Queue(maxsize=queue_size)) for notifier in notifiers
        ]
        for index, channel in enumerate(self._channels):
            channel.thread = threading.Thread(
                target=channel.run, name=f"agentwatch-notify-{index}", daemon=True
            )
            channel.thread.start()

    @property
    def notifiers(self) -> list[Notifier]:
        return [c.notifier for c in self._channels]

    def stats(self) -> dict[str, DeliveryStats]:
        return {c.notifier.name: c.stats for c in self._channels}

    def submit(self, alert: Alert) -> None:
        for channel in self._channels:
            try:
                channel.queue.put_nowait(alert)
            except queue.Full:
                channel.stats.dropped += 1
                logger.error(
                    "notification queue for %s is full: dropped %s",
                    channel.notifier.name,
                    alert.title,
                )

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every queued alert was delivered or given up; False on timeout."""
        deadline = time.monotonic() + timeout_s
        for channel in self._channels:
            with channel.idle:
                while not (channel.queue.unfinished_tasks == 0 and not channel.busy):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    channel.idle.wait(min(left, 0.1))
        return True

    def close(self, timeout_s: float = 10.0) -> bool:
        """Deliver what is queued (up to ``timeout_s``), then stop; False if some was not."""
        flushed = self.flush(timeout_s)
        for channel in self._channels:
            channel.stop.set()
            _put_stop(channel.queue)
        for channel in self._channels:
            if channel.thread is not None:
                channel.thread.join(timeout=max(1.0, timeout_s))
        return flushed


def _put_stop(pending: queue.Queue[Alert | None]) -> None:
    """Wake a worker to stop, making room by dropping what is still queued if need be (close
    has already waited for it as long as it was allowed to)."""
    while True:
        try:
            pending.put_nowait(None)
            return
        except queue.Full:
            try:
                pending.get_nowait()
                pending.task_done()
            except queue.Empty:
                pass

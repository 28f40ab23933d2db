"""``agentwatch alerts`` and the alert loop of ``agentwatch up``: options, store, report.

The command line's alert options become an ``AlertOptions``; ``start_alert_service`` runs the
evaluator (``alerts/_evaluator.py``) on a background thread with the configured notifiers, and
``run_command`` is ``agentwatch alerts`` itself.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from agentwatch.alerts._evaluator import (
    AlertService,
    EvaluationPass,
    Evaluator,
    EvaluatorSettings,
)
from agentwatch.alerts._notify import (
    ConsoleNotifier,
    Dispatcher,
    Notifier,
    RetryPolicy,
    SlackNotifier,
    WebhookNotifier,
)
from agentwatch.alerts._rules import Rule, default_rules, demo_rules, load_rules
from agentwatch.storage import _alert_queries as alert_queries
from agentwatch.storage._store import (
    EmbeddedStore,
    ServerStore,
    StorageError,
    Store,
    apply_migrations,
)


@dataclass(frozen=True, slots=True)
class AlertOptions:
    """What the command line configures: rules, where to send alerts, links."""

    rules_file: Path | None = None
    webhooks: tuple[str, ...] = ()
    slack_webhooks: tuple[str, ...] = ()
    dashboard_url: str | None = None
    enabled: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def rules(self, *, demo: bool = False) -> list[Rule]:
        """The rule file's rules; without one, the defaults (``demo_rules`` for the demo)."""
        if self.rules_file is not None:
            return load_rules(self.rules_file)
        return demo_rules() if demo else default_rules()

    def notifiers(self, stream: TextIO | None = None) -> list[Notifier]:
        """The console, then each webhook and Slack webhook."""
        notifiers: list[Notifier] = [ConsoleNotifier(stream)]
        notifiers += [WebhookNotifier(url) for url in self.webhooks]
        notifiers += [SlackNotifier(url) for url in self.slack_webhooks]
        return notifiers


def start_alert_service(
    store: Store,
    rules: Sequence[Rule],
    options: AlertOptions,
    *,
    dashboard_url: str | None = None,
    record: bool = True,
    stream: TextIO | None = None,
) -> AlertService:
    """An evaluator over ``store`` on a background thread, notifying the console and the
    configured webhooks. ``options.dashboard_url`` wins over ``dashboard_url``."""
    dispatcher = Dispatcher(options.notifiers(stream), retry=options.retry)
    settings = EvaluatorSettings(
        dashboard_url=options.dashboard_url or dashboard_url, record=record
    )
    service = AlertService(Evaluator(store, rules, dispatcher=dispatcher, settings=settings))
    service.start()
    return service


def _open_for_alerts(clickhouse_url: str | None, data_dir: Path) -> tuple[Store, bool]:
    """The store to evaluate, and whether alerts can be recorded in it."""
    if not clickhouse_url:
        try:
            store: Store = EmbeddedStore(data_dir / "data")
        except StorageError as exc:
            raise StorageError(
                f"{exc}. While `agentwatch up` or `agentwatch collector` runs on this directory "
                "it evaluates alerts itself; to check them from here, read through its "
                "endpoint: agentwatch alerts --once --clickhouse-url http://127.0.0.1:8123"
            ) from None
        apply_migrations(store)
        return store, True
    store = ServerStore(clickhouse_url)
    try:
        apply_migrations(store)
    except StorageError as refused:
        try:  # a read-only endpoint (the embedded collector's) or a read-only user
            alert_queries.check_readable(store)
        except StorageError:
            store.close()
            raise refused from None
        return store, False
    return store, True


def run_command(
    options: AlertOptions,
    *,
    clickhouse_url: str | None,
    data_dir: Path,
    once: bool,
    out: TextIO,
    err: TextIO,
    stop: threading.Event | None = None,
) -> int:
    """``agentwatch alerts``. With ``once``: one pass, print what breaches, record and send
    nothing, exit 1 if anything breaches (2 if a rule could not be evaluated). Without: run
    the evaluator until ``stop`` is set (SIGINT/SIGTERM from the command line)."""
    rules = options.rules()
    store, record = _open_for_alerts(clickhouse_url, data_dir)
    try:
        if once:
            evaluator = Evaluator(store, rules, settings=EvaluatorSettings(record=False))
            return _report(evaluator.evaluate(datetime.now(UTC)), len(rules), out)
        if not record:
            print(
                "agentwatch alerts: this ClickHouse endpoint is read-only (the embedded "
                "collector's?): evaluating without recording alerts; `agentwatch up` records "
                "its own",
                file=err,
                flush=True,
            )
        service = start_alert_service(
            store, rules, options, record=record, stream=out, dashboard_url=options.dashboard_url
        )
        print(
            f"agentwatch alerts: evaluating {len(rules)} rules; Ctrl-C to stop",
            file=err,
            flush=True,
        )
        (stop or threading.Event()).wait()
        service.stop()
        return 0
    finally:
        store.close()


def _report(result: EvaluationPass, rules: int, out: TextIO) -> int:
    for verdict in result.verdicts:
        if verdict.breaching:
            where = f" [{verdict.group}]" if verdict.group else ""
            print(f"BREACHING {verdict.rule}{where}: {verdict.summary}", file=out)
    for rule, error in result.errors.items():
        print(f"ERROR     {rule}: {error}", file=out)
    breaching = sum(bool(v.breaching) for v in result.verdicts)
    clear = sum(v.breaching is False for v in result.verdicts)
    unjudged = sum(v.breaching is None for v in result.verdicts)
    print(
        f"{rules} rules: {breaching} breaching, {clear} ok, {unjudged} with too little data "
        f"to judge ({result.seconds:.2f}s)",
        file=out,
        flush=True,
    )
    if result.errors:
        return 2
    return 1 if breaching else 0

"""``agentwatch alerts`` end to end: rule file errors, ``--once`` through a collector's
read-only ClickHouse endpoint, an embedded store another process holds, and the running
evaluator notifying a real webhook receiver."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentwatch.alerts._notify import RetryPolicy
from agentwatch.alerts._rules import parse_rules
from agentwatch.app._alerts_cli import AlertOptions, run_command
from agentwatch.app._cli import main
from agentwatch.query._endpoint import QueryEndpoint
from agentwatch.storage import _alert_queries as alert_queries
from agentwatch.storage._schema import SPANS_TABLE
from agentwatch.storage._store import EmbeddedStore
from tests.alerts.receiver import receiving, wait_until
from tests.alerts.workload import NS, Spans, ns

NOW = datetime.now(UTC)

BAD_RULES = """\
include_defaults = true

[[rule]]
name = "refund cost"
kind = "anomaly"
metric = "cost"
window_s = 5
"""


def test_a_bad_rule_file_is_one_error_naming_file_line_rule_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(BAD_RULES, encoding="utf-8")
    code = main(["alerts", "--rules", str(rules), "--once", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{rules}:7: rule 1 ('refund cost'): field 'window_s'" in err
    assert "Traceback" not in err


def test_once_refuses_webhooks_it_would_not_send(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["alerts", "--once", "--webhook", "http://127.0.0.1:9/hook"])
    assert (code, "--once only prints" in capsys.readouterr().err) == (2, True)


@pytest.fixture
def failing_probe(store: EmbeddedStore) -> EmbeddedStore:
    spans = Spans()
    spans.probe(ns(NOW) - 120 * NS, check="refund-policy", passed=False, expectation="contains")
    store.insert_arrow(SPANS_TABLE, spans.table())
    return store


@pytest.fixture
def read_only_url(failing_probe: EmbeddedStore) -> Iterator[str]:
    """The collector's read-only ClickHouse HTTP endpoint over the store."""
    with QueryEndpoint(failing_probe, port=0) as endpoint:
        yield endpoint.client_url(failing_probe.database)


def test_once_through_the_read_only_endpoint_prints_what_breaches_and_exits_1(
    read_only_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["alerts", "--once", "--clickhouse-url", read_only_url])
    out = capsys.readouterr().out
    assert code == 1
    assert "BREACHING health check failing [check=refund-policy]: failed the last 1 run" in out


def test_the_embedded_store_of_a_running_collector_is_an_error_with_the_way_out(
    failing_probe: EmbeddedStore,
) -> None:
    """This process holds the engine, as a collector would: another process cannot open it."""
    result = subprocess.run(
        [sys.executable, "-m", "agentwatch", "alerts", "--once", "--data-dir", "."],
        cwd=failing_probe.path.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "--clickhouse-url http://127.0.0.1:8123" in result.stderr
    assert "Traceback" not in result.stderr


def running(options: AlertOptions, url: str, out: io.StringIO, err: io.StringIO):
    stop = threading.Event()
    codes: list[int] = []
    thread = threading.Thread(
        target=lambda: codes.append(
            run_command(
                options,
                clickhouse_url=url,
                data_dir=Path("unused"),
                once=False,
                out=out,
                err=err,
                stop=stop,
            )
        )
    )
    thread.start()
    return stop, thread, codes


def test_the_evaluator_runs_read_only_through_the_endpoint_and_still_notifies(
    read_only_url: str,
) -> None:
    out, err = io.StringIO(), io.StringIO()
    with receiving() as receiver:
        options = AlertOptions(webhooks=(receiver.url,), retry=RetryPolicy(attempts=1))
        stop, thread, codes = running(options, read_only_url, out, err)
        try:
            wait_until(lambda: receiver.bodies(), timeout=30, what="the webhook")
        finally:
            stop.set()
            thread.join(30)
    [body] = receiver.bodies()
    assert (codes, body["rule"], body["group"]) == (
        [0],
        "health check failing",
        "check=refund-policy",
    )
    assert "read-only" in err.getvalue()
    assert "FIRING: health check failing [check=refund-policy]" in out.getvalue()


def test_against_a_writable_server_the_evaluator_records_incidents(
    failing_probe: EmbeddedStore,
) -> None:
    out, err = io.StringIO(), io.StringIO()
    with QueryEndpoint(failing_probe, port=0, allow_write=True) as endpoint:
        url = endpoint.client_url(failing_probe.database)
        stop, thread, codes = running(AlertOptions(), url, out, err)
        try:
            wait_until(
                lambda: alert_queries.active_alerts(failing_probe).rows, timeout=30, what="a record"
            )
        finally:
            stop.set()
            thread.join(30)
    [incident] = alert_queries.active_alerts(failing_probe).dicts()
    assert (codes, incident["rule"], incident["group_key"]) == (
        [0],
        "health check failing",
        "check=refund-policy",
    )


def test_the_readme_rule_file_example_is_valid() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    example = readme.split("### Alerts", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    names = [rule.name for rule in parse_rules(example, source="README.md")]
    assert names[-2:] == ["refund cost per task", "daily spend"]

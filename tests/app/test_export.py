"""``agentwatch export trace``: a stored trace as JSON lines, one step per line, in order,
through a collector's query endpoint and from the embedded store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import agentwatch as aw
from agentwatch.app._cli import main
from agentwatch.app._collector import Collector
from tests.collector.conftest import _start, run_sdk_agent, span_rows, wait_until

CARD = "4111 1111 1111 1111"


def exported(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    assert main(["export", "trace", *argv]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.fixture
def stored_trace(tmp_path: Path) -> Any:
    """A collector with its query endpoint, holding one run of the SDK's support agent
    recorded with content capture on; yields (collector, trace id)."""
    collector: Collector = _start(tmp_path, query_port=0)
    try:
        aw.configure(
            service_name="support-service",
            endpoint=f"http://127.0.0.1:{collector.http.port}",
            capture_content=True,
            propagate_to_threads=False,
        )
        try:
            trace_id = run_sdk_agent(f"T-{CARD}")
        finally:
            aw.shutdown()
        wait_until(lambda: len(span_rows(collector.store, trace_id)) == 5, what="the run")
        yield collector, trace_id
    finally:
        collector.stop()


def test_a_trace_exports_as_its_steps_in_order_then_its_outcome(
    stored_trace: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    collector, trace_id = stored_trace
    url = collector.query_client_url("agentwatch")
    assert url is not None

    lines = exported(capsys, trace_id, "--clickhouse-url", url)

    assert [line["step"] for line in lines] == [
        "agent_run",
        "tool_call",
        "model_call",
        "decision",
        "tool_call",
        "outcome",
    ]
    assert [line["seq"] for line in lines] == list(range(1, 7))
    assert {line["trace_id"] for line in lines} == {trace_id}
    run, read, model, decision, refund, outcome = lines
    assert (run["agent"], run["task_type"], run["outcome"]) == (
        "support-bot",
        "refund",
        "escalated",
    )
    assert run["parent_span_id"] is None
    assert {read["parent_span_id"], model["parent_span_id"]} == {run["span_id"]}
    assert (read["tool"], read["tier"], read["error"]) == ("lookup_order", "read", None)
    assert read["arguments"] == {"order_id": "o-1"}
    assert (refund["tool"], refund["tier"]) == ("issue_refund", "destructive")
    assert refund["error"]["type"] == "PermissionError"
    assert (model["model"], model["input_tokens"], model["output_tokens"]) == (
        "gpt-4o-2024-08-06",
        1200,
        300,
    )
    assert model["cost_usd"] > 0
    assert model["input_messages"] is not None
    assert (decision["decision"], decision["confidence"], decision["route"]) == (
        "approve_refund",
        0.875,
        "review",
    )
    assert outcome == {
        "trace_id": trace_id,
        "seq": 6,
        "step": "outcome",
        "outcome": "escalated",
        "agent": "support-bot",
        "task_type": "refund",
        "duration_ms": run["duration_ms"],
        "model_calls": 1,
        "tool_calls": 2,
        "input_tokens": 1200,
        "output_tokens": 300,
        "cost_usd": model["cost_usd"],
    }
    # Captured content is exported as stored: redacted at the source.
    assert CARD not in "\n".join(json.dumps(line) for line in lines)


def test_the_embedded_store_exports_the_same_lines_to_a_file(
    stored_trace: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    collector, trace_id = stored_trace
    url = collector.query_client_url("agentwatch")
    assert url is not None
    through_endpoint = exported(capsys, trace_id, "--clickhouse-url", url)
    collector.stop()  # chDB opens a data directory in one process at a time: make way
    target = tmp_path / "trace.jsonl"

    assert (
        main(["export", "trace", trace_id.upper(), "--data-dir", str(tmp_path), "-o", str(target)])
        == 0
    )

    assert [json.loads(line) for line in target.read_text().splitlines()] == through_endpoint


def test_an_unknown_trace_or_a_malformed_id_is_a_clear_error(
    stored_trace: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    collector, _ = stored_trace
    url = collector.query_client_url("agentwatch")
    assert url is not None

    assert main(["export", "trace", "0" * 32, "--clickhouse-url", url]) == 1
    assert "no trace 000" in capsys.readouterr().err
    assert main(["export", "trace", "' OR 1=1 --", "--clickhouse-url", url]) == 2
    assert "32 hex digits" in capsys.readouterr().err

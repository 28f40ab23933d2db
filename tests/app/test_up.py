"""``agentwatch up --demo`` end to end, as a user runs it: a real process on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.proto.NewSession_pb2 import Config

from agentwatch.storage._store import ServerStore, StorageError
from tests.up_process import (
    Up,
    agentwatch_up,
    children,
    http_get,
    port_is_free,
    process_exists,
    wait_until,
)

pytestmark = pytest.mark.slow


def stored_tasks(up: Up) -> int:
    """Agent runs stored so far, read through the collector's query endpoint."""
    return stored_spans(up, "Operation = 'invoke_agent'")


def stored_spans(up: Up, where: str) -> int:
    """Spans matching ``where`` (a constant condition) stored so far."""
    store = ServerStore(up.query_url, connect_timeout_s=2.0)
    try:
        return int(
            store.query(
                "SELECT count() FROM {db:Identifier}.otel_traces WHERE " + where,
                {"db": store.database},
            ).scalar()
        )
    finally:
        store.close()


# What the demo shows within seconds (at the tests' rate); the spike comes a minute in.
DEMO_FEATURES = {
    "a passing health check": "HealthCheck = 'refund-policy' AND HealthPassed",
    "the order-status health check": "HealthCheck = 'order-status'",
    "a decision for review, with its reasoning": (
        "Route = 'review' AND SpanAttributes['agentwatch.decision.reasoning'] != ''"
    ),
    "an escalated decision": "Route = 'escalate'",
    "a write_risky call with its arguments": (
        "ToolTier = 'write_risky' AND SpanAttributes['gen_ai.tool.call.arguments'] != ''"
    ),
    "a destructive call": "ToolTier = 'destructive'",
    "a model call of realistic length": "Operation = 'chat' AND Duration >= 10000000",
}


INGEST_TOKEN = "up-test-ingest-token-42"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """``up --demo`` with an ingest token: the demo fleet and the dashboard's answers must
    present it like any other sender."""
    with agentwatch_up(
        tmp_path_factory.mktemp("up"), "--demo", "--demo-rate", "20", "--ingest-token", INGEST_TOKEN
    ) as up:
        up.wait_until_ready()
        yield up


def test_up_prints_the_url_of_every_service(running: Up) -> None:
    running.wait_for_line("Press Ctrl-C to stop.", timeout=30)
    printed = running.output
    for name, port in (
        ("otlp_http", running.ports["http"]),
        ("otlp_grpc", running.ports["grpc"]),
        ("clickhouse_http", running.ports["query"]),
        ("dashboard", running.ports["dashboard"]),
    ):
        assert any(line.split() == [name, f"http://127.0.0.1:{port}"] for line in running.lines), (
            printed
        )


def test_the_query_password_is_generated_private_and_required(running: Up) -> None:
    """On first start a password is made in the data directory (mode 0600), printed nowhere,
    and the query endpoint refuses a client without it."""
    secret = running.data_dir / "query-password"
    assert secret.stat().st_mode & 0o777 == 0o600
    password = secret.read_text().strip()
    assert len(password) >= 16
    assert password not in running.output
    assert str(secret) in running.output  # where to find it is printed
    anonymous = f"http://127.0.0.1:{running.ports['query']}/agentwatch"
    with pytest.raises(StorageError, match="516"):
        ServerStore(anonymous, connect_timeout_s=2.0)


def test_demo_agents_data_reaches_the_store(running: Up) -> None:
    wait_until(lambda: stored_tasks(running) >= 5, timeout=30, what="demo tasks in the store")


def test_the_demo_shows_probes_decisions_for_review_and_risky_calls(running: Up) -> None:
    def missing() -> list[str]:
        return [name for name, where in DEMO_FEATURES.items() if not stored_spans(running, where)]

    wait_until(lambda: not missing(), timeout=30, what="every demo feature in the store")


def test_the_dashboard_hides_the_developer_menu(running: Up) -> None:
    """Streamlit's "viewer" toolbar: no Deploy button, rerun or clear cache."""
    (dashboard,) = children(running.process.pid)
    argv = Path(f"/proc/{dashboard}/cmdline").read_bytes().decode().split("\0")
    mode = argv[argv.index("--client.toolbarMode") + 1]
    assert mode == "viewer"
    Config.ToolbarMode.Value(mode.upper())  # a value this Streamlit knows, or ValueError


def test_the_dashboard_sends_review_answers_to_this_collector_with_its_token(
    running: Up,
) -> None:
    """The Review page's wiring, as ``up`` hands it to the Streamlit process; an answer sent
    with it is stored."""
    from agentwatch.dashboards._review import Answer, send_answer

    (dashboard,) = children(running.process.pid)
    raw = Path(f"/proc/{dashboard}/environ").read_bytes().decode().split("\0")
    env = dict(item.partition("=")[::2] for item in raw if item)
    assert env["AGENTWATCH_OTLP_ENDPOINT"] == f"http://127.0.0.1:{running.ports['http']}"
    assert env["AGENTWATCH_INGEST_TOKEN"] == INGEST_TOKEN
    assert env["AGENTWATCH_DEMO_RULES"] == "1"
    assert "AGENTWATCH_RULES_FILE" not in env
    trace_id = "5" * 32

    send_answer(
        Answer(trace_id=trace_id, span_id="6" * 16, kind="decision", correct=True, reviewer="t"),
        env["AGENTWATCH_OTLP_ENDPOINT"],
        env["AGENTWATCH_INGEST_TOKEN"],
    )

    assert stored_spans(running, f"TraceId = '{trace_id}' AND Operation = 'feedback'") == 1


def test_dashboard_serves_its_page(running: Up) -> None:
    page = http_get(running.dashboard_url)
    assert page is not None
    assert "<title>Streamlit</title>" in page  # the app shell; the browser test renders it


def test_ctrl_c_stops_collector_dashboard_and_demo(tmp_path: Path) -> None:
    with agentwatch_up(tmp_path, "--demo", "--demo-rate", "20") as up:
        up.wait_until_ready()
        wait_until(lambda: stored_tasks(up) > 0, timeout=30, what="demo tasks in the store")
        dashboards = children(up.process.pid)
        assert len(dashboards) == 1, dashboards  # the Streamlit server
        assert up.interrupt() == 0, up.output
        assert up.lines[-1] == "agentwatch stopped.", up.output
        assert not process_exists(dashboards[0])
        for name, port in up.ports.items():
            assert port_is_free(port), f"{name} port {port} still bound"

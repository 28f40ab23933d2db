"""The ``agentwatch`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias

from agentwatch._errors import AgentwatchError

if TYPE_CHECKING:
    from agentwatch.app._alerts_cli import AlertOptions
    from agentwatch.app._collector import CollectorConfig

    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def _add_demo(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "demo",
        help="run the example support agent through the SDK",
        description="Run the example support agent (fake LLM, no network) and export its spans.",
    )
    parser.add_argument(
        "--endpoint",
        default=None,
        help="OTLP/HTTP endpoint (default: env, then http://localhost:4318)",
    )
    parser.add_argument("--tickets", type=int, default=20, help="tickets to handle (default: 20)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    parser.add_argument(
        "--latency",
        type=_non_negative,
        default=0.0,
        metavar="SCALE",
        help="simulated model and tool latency; 1 is a real fleet's (default: 0, no waiting)",
    )
    parser.add_argument(
        "--console", action="store_true", help="print spans to stdout instead of exporting"
    )
    parser.set_defaults(handler=_run_demo)


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number >= 0, not {text!r}")
    return value


def _run_demo(args: argparse.Namespace) -> int:
    from agentwatch.app._demo import run_demo

    summary = run_demo(
        tickets=args.tickets,
        seed=args.seed,
        endpoint=args.endpoint,
        console=args.console,
        latency_scale=args.latency,
    )
    print(summary)
    return 0


def _collector_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=".agentwatch", help="embedded store directory")
    parser.add_argument(
        "--clickhouse-url",
        default=os.environ.get("AGENTWATCH_CLICKHOUSE_URL"),
        help="http://user:pass@host:8123/db of a ClickHouse server (default: embedded chDB)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address for the OTLP receivers")
    parser.add_argument("--http-port", type=int, default=4318, help="OTLP/HTTP port")
    parser.add_argument("--grpc-port", type=int, default=4317, help="OTLP/gRPC port")
    parser.add_argument("--no-grpc", action="store_true", help="do not start the gRPC receiver")
    parser.add_argument(
        "--query-port", type=int, default=8123, help="read-only ClickHouse HTTP port"
    )
    parser.add_argument("--query-host", default="127.0.0.1", help="address for the query endpoint")
    parser.add_argument(
        "--query-password",
        default=os.environ.get("AGENTWATCH_QUERY_PASSWORD"),
        help="password of the query endpoint (env AGENTWATCH_QUERY_PASSWORD; default: one is "
        "generated on first start and kept in DATA_DIR/query-password)",
    )
    parser.add_argument(
        "--query-allow-remote",
        action="store_true",
        help="let the query endpoint listen beyond loopback (--query-host); it always needs the "
        "password, and nothing is encrypted: put a TLS proxy in front",
    )
    parser.add_argument(
        "--ingest-token",
        default=os.environ.get("AGENTWATCH_INGEST_TOKEN"),
        help="require Authorization: Bearer <token> on ingest (env AGENTWATCH_INGEST_TOKEN)",
    )
    parser.add_argument("--prices", default=None, help="TOML file of [[price]] overrides")
    parser.add_argument("--retention-days", type=int, default=30, help="keep spans this many days")
    parser.add_argument(
        "--python-decoder",
        action="store_true",
        help="decode OTLP protobuf in Python only, not with the native decoder (same rows)",
    )
    parser.add_argument(
        "--content",
        choices=("keep", "redact", "drop"),
        default="redact",
        help="prompt/response text in spans from any sender (OpenInference, OTel GenAI, "
        "OpenLLMetry, PydanticAI, ours): redact secrets and personal data in it (default), "
        "keep it as sent, or drop those attributes; exception and status text is redacted "
        "unless keep",
    )
    limits = parser.add_argument_group("ingest limits (beyond them: 413, or 503 + Retry-After)")
    limits.add_argument(
        "--max-body-mb", type=int, default=16, help="request body as sent (default: 16)"
    )
    limits.add_argument(
        "--max-request-decoded-mb",
        type=int,
        default=64,
        help="one request once decoded: rows, resource copies, JSON parsing (default: 64)",
    )
    limits.add_argument(
        "--max-decoded-in-flight-mb",
        type=int,
        default=256,
        help="all requests in progress together, decoded (default: 256)",
    )
    limits.add_argument(
        "--max-connections",
        type=int,
        default=1024,
        help="open OTLP/HTTP connections; more get 503 at once (default: 1024)",
    )
    limits.add_argument(
        "--max-receiving",
        type=int,
        default=64,
        help="requests still sending their body; more get 503 at once (default: 64)",
    )
    limits.add_argument(
        "--body-timeout-s",
        type=float,
        default=30.0,
        help="total time to receive a request body; then 408 (default: 30)",
    )
    limits.add_argument(
        "--max-concurrent-requests",
        type=int,
        default=16,
        help="requests decoded at once (default: 16)",
    )


def _collector_config(args: argparse.Namespace) -> CollectorConfig:
    from pathlib import Path

    from agentwatch.app._collector import CollectorConfig
    from agentwatch.collector._budget import MIB
    from agentwatch.collector._http import HttpLimits

    return CollectorConfig(
        data_dir=Path(args.data_dir),
        clickhouse_url=args.clickhouse_url,
        host=args.host,
        http_port=args.http_port,
        grpc_port=None if args.no_grpc else args.grpc_port,
        query_port=args.query_port,
        query_host=args.query_host,
        query_password=args.query_password,
        query_allow_remote=args.query_allow_remote,
        ingest_token=args.ingest_token,
        prices_file=Path(args.prices) if args.prices else None,
        retention_days=args.retention_days,
        native_decoder=not args.python_decoder,
        max_body_bytes=args.max_body_mb * MIB,
        max_request_decoded_bytes=args.max_request_decoded_mb * MIB,
        max_decoded_bytes_in_flight=args.max_decoded_in_flight_mb * MIB,
        max_concurrent_requests=args.max_concurrent_requests,
        http_limits=HttpLimits(
            max_connections=args.max_connections,
            max_receiving=args.max_receiving,
            body_timeout_s=args.body_timeout_s,
        ),
        content=args.content,
    )


def _add_collector(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "collector",
        help="receive OTLP and store it in ClickHouse",
        description="Receive OTLP traces (HTTP :4318, gRPC :4317), price them and store them in "
        "ClickHouse: embedded chDB under --data-dir, or a server with --clickhouse-url. In "
        "embedded mode also serves a read-only ClickHouse HTTP endpoint for the dashboard.",
    )
    _collector_arguments(parser)
    parser.set_defaults(handler=_run_collector)


def _run_collector(args: argparse.Namespace) -> int:
    from agentwatch.app._collector import Collector

    Collector(_collector_config(args)).serve_forever()
    return 0


def _add_up(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "up",
        help="run the collector and the dashboard together (and a demo fleet with --demo)",
        description="Start the collector (embedded chDB under --data-dir) and the dashboard, "
        "print their URLs, and stop both on Ctrl-C. --demo also runs a simulated fleet of "
        "agents through the real SDK (realistic latency, health probes, decisions for review, "
        "risky tool calls) with a cost and an error spike from minute 1 to minute 3.",
    )
    _collector_arguments(parser)
    parser.add_argument("--dashboard-port", type=int, default=8501, help="dashboard port")
    parser.add_argument(
        "--dashboard-host",
        default="127.0.0.1",
        help="address for the dashboard (beyond loopback it needs --dashboard-password)",
    )
    parser.add_argument(
        "--dashboard-password",
        default=os.environ.get("AGENTWATCH_DASHBOARD_PASSWORD"),
        help="password the dashboard asks for (env AGENTWATCH_DASHBOARD_PASSWORD)",
    )
    parser.add_argument("--demo", action="store_true", help="run the demo agent fleet too")
    parser.add_argument(
        "--demo-rate", type=float, default=6.0, help="demo tickets per second (default: 6)"
    )
    parser.add_argument(
        "--demo-latency",
        type=_non_negative,
        default=1.0,
        metavar="SCALE",
        help="scale of the demo's simulated model and tool latency (default: 1, a real "
        "fleet's: model calls 0.3-2.5 s, tools 50-400 ms; 0: no waiting)",
    )
    parser.add_argument(
        "--demo-tickets",
        type=int,
        default=None,
        metavar="N",
        help="send N demo tickets, then idle (default: run until stopped)",
    )
    _alert_arguments(parser, service=True)
    parser.set_defaults(handler=_run_up)


def _run_up(args: argparse.Namespace) -> int:
    from agentwatch.app._up import DemoSchedule, run_up

    return run_up(
        _collector_config(args),
        dashboard_port=args.dashboard_port,
        dashboard_host=args.dashboard_host,
        dashboard_password=args.dashboard_password,
        demo=args.demo,
        alerts=_alert_options(args),
        schedule=DemoSchedule(
            tickets_per_s=args.demo_rate,
            tickets=args.demo_tickets,
            latency_scale=args.demo_latency,
        ),
    )


def _alert_arguments(parser: argparse.ArgumentParser, *, service: bool = False) -> None:
    parser.add_argument(
        "--rules",
        default=None,
        metavar="FILE",
        help="alert rules (TOML); default: cost and error spikes per task type, silent agents, "
        "failing health checks",
    )
    parser.add_argument(
        "--webhook",
        action="append",
        default=[],
        metavar="URL",
        help="POST each alert as JSON to URL (repeatable)",
    )
    parser.add_argument(
        "--slack-webhook",
        action="append",
        default=[],
        metavar="URL",
        help="post each alert to this Slack incoming webhook (repeatable)",
    )
    parser.add_argument(
        "--dashboard-url",
        default=None,
        metavar="URL",
        help="link alerts to their traces as URL/traces?trace_id=..."
        + (" (default: the dashboard started here)" if service else ""),
    )
    if service:
        parser.add_argument("--no-alerts", action="store_true", help="do not evaluate alerts")


def _alert_options(args: argparse.Namespace) -> AlertOptions:
    from pathlib import Path

    from agentwatch.app._alerts_cli import AlertOptions

    return AlertOptions(
        rules_file=Path(args.rules) if args.rules else None,
        webhooks=tuple(args.webhook),
        slack_webhooks=tuple(args.slack_webhook),
        dashboard_url=args.dashboard_url,
        enabled=not getattr(args, "no_alerts", False),
    )


def _reader_store_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a command that reads the store finds it: a server or a collector's query
    endpoint, else the embedded store."""
    parser.add_argument(
        "--clickhouse-url",
        default=os.environ.get("AGENTWATCH_CLICKHOUSE_URL"),
        help="http://user:pass@host:8123/db of a ClickHouse server or a collector's query "
        "endpoint (default: the embedded store under --data-dir, if no collector holds it)",
    )
    parser.add_argument("--data-dir", default=".agentwatch", help="embedded store directory")


def _add_alerts(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "alerts",
        help="evaluate alert rules over stored spans and send notifications",
        description="Evaluate alert rules (--rules, or the defaults) over the stored spans once "
        "per window, record firing and resolved incidents in the alerts table and notify the "
        "console and any --webhook / --slack-webhook. --once checks once, prints what breaches "
        "and exits 1 if anything does (records and sends nothing). `agentwatch up` runs the "
        "evaluator itself; use this command with a ClickHouse server, or with the embedded "
        "collector's read-only endpoint (--clickhouse-url http://127.0.0.1:8123), where alerts "
        "cannot be recorded.",
    )
    _reader_store_arguments(parser)
    _alert_arguments(parser)
    parser.add_argument(
        "--once", action="store_true", help="check once, print, exit 1 if anything breaches"
    )
    parser.set_defaults(handler=_run_alerts)


def _run_alerts(args: argparse.Namespace) -> int:
    from pathlib import Path

    from agentwatch.app._alerts_cli import run_command
    from agentwatch.app._signals import stop_on_signals

    if args.once and (args.webhook or args.slack_webhook):
        print(
            "agentwatch: error: --once only prints; webhooks are for the running evaluator",
            file=sys.stderr,
        )
        return 2
    with stop_on_signals() as stop:
        return run_command(
            _alert_options(args),
            clickhouse_url=args.clickhouse_url,
            data_dir=Path(args.data_dir),
            once=args.once,
            out=sys.stdout,
            err=sys.stderr,
            stop=stop,
        )


def _add_health(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "health",
        help="run semantic health checks",
        description="Run @aw.health_check probes.",
    )
    actions = parser.add_subparsers(dest="health_command", metavar="ACTION", required=True)
    run = actions.add_parser(
        "run",
        help="run probes once; exit 1 if any failed (for CI and cron)",
        description="Import each module:probe (or every probe a module registers), run it once, "
        "print the results, and exit 0 when all passed, 1 when any failed, 2 on a bad target. "
        "The current directory is importable.",
    )
    run.add_argument("targets", nargs="+", metavar="module[:probe]", help="probes to run")
    run.add_argument(
        "--endpoint", default=None, help="also export the health check spans to this OTLP/HTTP URL"
    )
    run.add_argument(
        "--service-name",
        default=os.environ.get("OTEL_SERVICE_NAME", "agentwatch-health"),
        help="service.name of the exported spans (default: OTEL_SERVICE_NAME, agentwatch-health)",
    )
    run.set_defaults(handler=_run_health)


def _run_health(args: argparse.Namespace) -> int:
    from agentwatch.app._health_cli import run_from_command_line

    return run_from_command_line(
        args.targets,
        endpoint=args.endpoint,
        service_name=args.service_name,
        out=sys.stdout,
        err=sys.stderr,
    )


def _add_export(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "export",
        help="write stored telemetry out (a trace as a structured action log)",
        description="Write stored telemetry out.",
    )
    kinds = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    trace_parser = kinds.add_parser(
        "trace",
        help="one trace as JSON lines, one step per line, in order",
        description="Write one trace as a structured action log: JSON lines, one step per line "
        "in start order (agent runs, model calls, tool calls, decisions, other spans), then an "
        "outcome line. Content appears where the sender captured it.",
    )
    trace_parser.add_argument("trace_id", help="the trace id (32 hex digits)")
    _reader_store_arguments(trace_parser)
    trace_parser.add_argument(
        "--output", "-o", help="file to write (default: standard output)", default=None
    )
    trace_parser.set_defaults(handler=_run_export_trace)


def _run_export_trace(args: argparse.Namespace) -> int:
    import re
    from pathlib import Path

    from agentwatch.app._export import export_trace
    from agentwatch.storage._store import EmbeddedStore, ServerStore, Store

    if not re.fullmatch(r"[0-9a-fA-F]{32}", args.trace_id):
        print("agentwatch: error: a trace id is 32 hex digits", file=sys.stderr)
        return 2
    if not args.clickhouse_url and not (Path(args.data_dir) / "data").is_dir():
        print(f"agentwatch: error: no store under {args.data_dir}", file=sys.stderr)
        return 2
    store: Store = (
        ServerStore(args.clickhouse_url)
        if args.clickhouse_url
        else EmbeddedStore(Path(args.data_dir) / "data")
    )
    try:
        if args.output:
            with open(args.output, "w", encoding="utf-8") as out:
                steps = export_trace(store, args.trace_id, out)
        else:
            steps = export_trace(store, args.trace_id, sys.stdout)
    finally:
        store.close()
    if not steps:
        print(f"agentwatch: error: no trace {args.trace_id.lower()} is stored", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentwatch",
        description="Observability and cost monitoring for AI agents.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_demo(sub)
    _add_collector(sub)
    _add_up(sub)
    _add_health(sub)
    _add_alerts(sub)
    _add_export(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    try:
        code: int = args.handler(args)
    except AgentwatchError as exc:  # configuration and storage errors: one line, no traceback
        print(f"agentwatch: error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())

"""The ``agentwatch`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
        "--console", action="store_true", help="print spans to stdout instead of exporting"
    )
    parser.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from agentwatch._demo import run_demo

    summary = run_demo(
        tickets=args.tickets, seed=args.seed, endpoint=args.endpoint, console=args.console
    )
    print(summary)
    return 0


def _add_collector(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "collector",
        help="receive OTLP and store it in ClickHouse",
        description="Receive OTLP traces (HTTP :4318, gRPC :4317), price them and store them in "
        "ClickHouse: embedded chDB under --data-dir, or a server with --clickhouse-url. In "
        "embedded mode also serves a read-only ClickHouse HTTP endpoint for the dashboard.",
    )
    parser.add_argument("--data-dir", default=".agentwatch", help="embedded store directory")
    parser.add_argument(
        "--clickhouse-url",
        default=os.environ.get("AGENTWATCH_CLICKHOUSE_URL"),
        help="http://user:pass@host:8123/db of a ClickHouse server (default: embedded chDB)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address for the OTLP receivers")
    parser.add_argument("--http-port", type=int, default=4318, help="OTLP/HTTP port")
    parser.add_argument("--grpc-port", type=int, default=4317, help="OTLP/gRPC port (0: any)")
    parser.add_argument("--no-grpc", action="store_true", help="do not start the gRPC receiver")
    parser.add_argument(
        "--query-port", type=int, default=8123, help="read-only ClickHouse HTTP port"
    )
    parser.add_argument("--query-host", default="127.0.0.1", help="address for the query endpoint")
    parser.add_argument(
        "--ingest-token",
        default=os.environ.get("AGENTWATCH_INGEST_TOKEN"),
        help="require Authorization: Bearer <token> on ingest (env AGENTWATCH_INGEST_TOKEN)",
    )
    parser.add_argument("--prices", default=None, help="TOML file of [[price]] overrides")
    parser.add_argument("--retention-days", type=int, default=30, help="keep spans this long")
    parser.set_defaults(handler=_run_collector)


def _run_collector(args: argparse.Namespace) -> int:
    from pathlib import Path

    from agentwatch.collector._app import Collector, CollectorConfig

    config = CollectorConfig(
        data_dir=Path(args.data_dir),
        clickhouse_url=args.clickhouse_url,
        host=args.host,
        http_port=args.http_port,
        grpc_port=None if args.no_grpc else args.grpc_port,
        query_port=args.query_port,
        query_host=args.query_host,
        ingest_token=args.ingest_token,
        prices_file=Path(args.prices) if args.prices else None,
        retention_days=args.retention_days,
    )
    Collector(config).serve_forever()
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

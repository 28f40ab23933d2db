"""The ``agentwatch`` command line."""

from __future__ import annotations

import argparse
import logging
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentwatch",
        description="Observability and cost monitoring for AI agents.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_demo(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

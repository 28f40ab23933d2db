"""What the query endpoint's admission costs a dashboard query, side by side in one run.

    python -m benchmarks.bench_query_endpoint [--demo-tickets 300] [--rounds 30] [--json PATH]

A store is seeded with the demo fleet (``--demo-tickets`` tickets through the real SDK and OTLP
path into a real collector), then, round after round, each of the Overview page's queries runs:

- **direct**: on the ``EmbeddedStore`` in process (no HTTP, no admission): the engine's time;
- **admission**: the read path's own work for it, without running it (``ReaderSession.parse``:
  ``formatQuery`` and ``EXPLAIN AST graph = 1``, then ``read_graph`` and ``admit``);
- **endpoint**: through clickhouse-connect and the collector's query endpoint, as the dashboard
  runs it (HTTP, password, admission, the reader session, Native result).

Medians per query, in milliseconds, and the sum over the page. The three are interleaved in
every round, so load on the machine hits all of them alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from agentwatch.app._collector import Collector, CollectorConfig
from agentwatch.query._policy import AllowList, admit, read_graph
from agentwatch.storage._overview_queries import overview_with_trend
from agentwatch.storage._reader import ReaderLimits, ReaderSession
from agentwatch.storage._scope import Filters
from agentwatch.storage._store import EmbeddedStore, Params, Rows, ServerStore


class Recording:
    """A Store that records the statements a query function sends (and answers from ``inner``)."""

    def __init__(self, inner: EmbeddedStore) -> None:
        self.inner = inner
        self.database = inner.database
        self.statements: list[tuple[str, dict[str, Any]]] = []

    def query(self, sql: str, params: Params | None = None) -> Rows:
        self.statements.append((sql, dict(params or {})))
        return self.inner.query(sql, params)

    def query_arrow(self, sql: str, params: Params | None = None) -> Any:
        self.statements.append((sql, dict(params or {})))
        return self.inner.query_arrow(sql, params)


@contextmanager
def seeded_collector(tickets: int) -> Iterator[Collector]:
    import agentwatch as aw
    from agentwatch.app._demo import DemoFleet

    with tempfile.TemporaryDirectory() as tmp:
        collector = Collector(
            CollectorConfig(data_dir=Path(tmp), http_port=0, grpc_port=None, query_port=0)
        )
        collector.start()
        try:
            aw.configure(service_name="bench", endpoint=collector.urls()["otlp_http"])
            fleet = DemoFleet(seed=3)
            for _ in range(tickets):
                fleet.handle_ticket(fleet.pick_profile())
            aw.shutdown()
            yield collector
        finally:
            collector.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--demo-tickets", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    with seeded_collector(args.demo_tickets) as collector:
        store = collector.store
        assert isinstance(store, EmbeddedStore)
        filters = Filters.last(timedelta(days=1))
        recording = Recording(store)
        overview_with_trend(recording, filters)  # type: ignore[arg-type]
        statements = recording.statements
        url = collector.query_client_url("agentwatch")
        assert url is not None
        client = ServerStore(url)
        reader = ReaderSession(store, "bench_admission_reader", ReaderLimits())
        catalog = reader.catalog()
        allow = AllowList.build(
            catalog.functions,
            catalog.combinators,
            catalog.table_functions,
            catalog.databases,
            frozenset({store.database}),
        )

        def admission(sql: str, params: dict[str, Any]) -> None:
            bound = {k: str(v) for k, v in params.items()}
            admit(read_graph(reader.parse(sql, bound).graph), allow)

        ways: dict[str, Callable[[str, dict[str, Any]], object]] = {
            "direct": store.query,
            "admission": admission,
            "endpoint": client.query,
        }
        times: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for _ in range(args.rounds):
            for index, (sql, params) in enumerate(statements):
                for way, run in ways.items():
                    started = time.perf_counter()
                    run(sql, params)
                    times[way][index].append((time.perf_counter() - started) * 1000)
        reader.close()
        client.close()

    medians = {
        way: [statistics.median(times[way][i]) for i in range(len(statements))] for way in ways
    }
    print(f"{len(statements)} Overview queries, {args.rounds} rounds, median ms per query")
    print(f"{'query':>5} {'direct':>8} {'admission':>10} {'endpoint':>9}")
    for i in range(len(statements)):
        print(f"{i:>5} " + " ".join(f"{medians[w][i]:>{len(w) + 1}.2f}" for w in ways))
    totals = {way: sum(values) for way, values in medians.items()}
    print("page  " + " ".join(f"{totals[w]:>{len(w) + 1}.1f}" for w in ways))
    if args.json:
        args.json.write_text(json.dumps({"medians_ms": medians, "totals_ms": totals}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

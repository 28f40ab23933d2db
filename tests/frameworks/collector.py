"""A real agentwatch collector for the framework runs, and what its store and queries say.

The same ``Collector`` the ``agentwatch collector`` command runs, in-process on a free
loopback port (OTLP/HTTP only), default content policy, the writer flushing at once. chDB
opens one data directory per process: close it before another store is opened.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from pathlib import Path
from typing import Any

from agentwatch.app._collector import Collector, CollectorConfig
from agentwatch.collector._writer import WriterSettings
from agentwatch.storage._schema import SPANS_TABLE
from tests import polling
from tests.frameworks.agents import Run


@functools.cache
def query(name: str) -> Any:
    """One of the dashboard's query functions or classes (``overview``, ``Filters``, ...), found
    by name in ``agentwatch.storage``: its modules are being split and renamed while the tree is
    restructured, so these tests do not pin where each one lives."""
    import agentwatch.storage as storage

    for info in sorted(pkgutil.iter_modules(storage.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{storage.__name__}.{info.name}")
        if callable(found := getattr(module, name, None)):
            return found
    raise LookupError(f"no {name!r} in any module of agentwatch.storage")


class FrameworkCollector:
    def __init__(self, data_dir: Path) -> None:
        self.collector = Collector(
            CollectorConfig(
                data_dir=data_dir,
                http_port=0,
                grpc_port=None,
                query_port=None,
                writer=WriterSettings(max_delay_s=0.005),
            )
        )
        self.collector.start()
        self.store = self.collector.store

    @property
    def url(self) -> str:
        return self.collector.urls()["otlp_http"]

    def close(self) -> None:
        self.collector.stop()

    def count(self, service: str) -> int:
        sql = (
            f"SELECT count() FROM {self.store.database}.{SPANS_TABLE} "
            "WHERE ServiceName = {service:String}"
        )
        return int(self.store.query(sql, {"service": service}).scalar())

    def wait_for(self, run: Run, timeout: float = 15.0) -> None:
        """Until every span the run finished is stored."""
        polling.wait_until(
            lambda: self.count(run.service) >= len(run.spans),
            timeout,
            f"{len(run.spans)} spans of {run.service}",
        )

    def spans(self, service: str, columns: str = "*") -> list[dict[str, Any]]:
        """The stored spans of ``service``, in start order (``columns``: constant SQL)."""
        sql = (
            f"SELECT {columns} FROM {self.store.database}.{SPANS_TABLE} "
            "WHERE ServiceName = {service:String} ORDER BY Timestamp, SpanId"
        )
        return self.store.query(sql, {"service": service}).dicts()

    def agent_names(self, service: str) -> list[str]:
        """The agent names the sidebar offers, from ``service``'s agent spans."""
        sql = (
            f"SELECT DISTINCT AgentName FROM {self.store.database}.{SPANS_TABLE} "
            "WHERE ServiceName = {service:String} AND Operation = 'invoke_agent' "
            "AND AgentName != '' ORDER BY AgentName"
        )
        return [str(row[0]) for row in self.store.query(sql, {"service": service}).rows]

    def facts(self, service: str, agent: str = "") -> dict[str, Any]:
        """What the dashboard's queries return for ``service`` (optionally one agent)."""
        filters = query("Filters")(service=service, agent=agent)
        overview = query("overview")(self.store, filters)
        cost = query("cost_summary")(self.store, filters)
        names = self.agent_names(service)
        return {
            "tasks": overview.tasks,
            "completed": overview.completed,
            "p50_latency_s": overview.p50_latency_s,
            "cost_usd": overview.cost_usd,
            "tool_calls": overview.tool_calls,
            "agent names on agent spans": names,
            "tasks per agent filter": {
                name: query("overview")(
                    self.store, query("Filters")(service=service, agent=name)
                ).tasks
                for name in names
            },
            "tool_usage": [
                (r["tool"], r["calls"]) for r in query("tool_usage")(self.store, filters).dicts()
            ],
            "declared_tools": [
                r["tool"] for r in query("declared_tools")(self.store, filters).dicts()
            ],
            "trace_list": [
                {
                    k: r[k]
                    for k in ("agent", "task_type", "outcome", "duration_s", "spans", "tokens")
                }
                for r in query("trace_list")(self.store, filters).dicts()
            ],
            "model_calls": cost.model_calls,
            "unpriced_calls": cost.unpriced_calls,
        }

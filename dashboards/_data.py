"""Where the dashboard reads from: ClickHouse over HTTP with clickhouse-connect, cached briefly.

``AGENTWATCH_CLICKHOUSE_URL`` says where (``http://user:pass@host:8123/database``). In embedded
mode that is the collector's read-only query endpoint (``agentwatch up`` sets it); with a
ClickHouse server it is the server. Either way the store is ``ServerStore``, and every query
is a function of ``agentwatch.storage._queries`` (or of the alert and health reads, and passive
health), run through ``query()`` so that results are cached for ``CACHE_TTL_S`` seconds per
(URL, query, arguments).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Concatenate, Final, ParamSpec, TypeVar, cast

import streamlit as st

from agentwatch._errors import AgentwatchError
from agentwatch.alerts import _passive as ph
from agentwatch.dashboards._format import safe_url
from agentwatch.storage import _alert_queries as aq
from agentwatch.storage import _health_queries as hq
from agentwatch.storage import _queries as q
from agentwatch.storage._store import ServerStore, Store

ENV_URL: Final = "AGENTWATCH_CLICKHOUSE_URL"
DEFAULT_URL: Final = "http://127.0.0.1:8123/agentwatch"
CACHE_TTL_S: Final = 15

P = ParamSpec("P")
R = TypeVar("R")

# The queries the pages may run, by name (the cache key names the query, not its code).
_QUERIES: Final[dict[str, Callable[..., Any]]] = {
    fn.__name__: fn
    for fn in (
        q.overview,
        q.completion_by_task_type,
        q.cost_by_task_type,
        q.confidence_distribution,
        q.calibration,
        q.threshold_explorer,
        q.tool_usage,
        q.declared_tools,
        q.error_categories,
        q.cost_over_time_by_model,
        q.cost_over_time_by_task_type,
        q.cost_summary,
        q.unpriced_models,
        q.most_expensive_traces,
        q.trace_list,
        q.trace_spans,
        q.filter_options,
        q.data_presence,
        aq.active_alerts,
        aq.recent_alerts,
        hq.alerts_table_exists,
        hq.health_checks,
        hq.health_pass_rate,
        ph.check_passive_health,
    )
}


class Unavailable(AgentwatchError):
    """The store cannot be reached or refused a query; the message says what to do."""


def clickhouse_url() -> str:
    return os.environ.get(ENV_URL, "").strip() or DEFAULT_URL


@st.cache_resource(show_spinner=False)
def _connect(url: str) -> ServerStore:
    return ServerStore(url, connect_timeout_s=5.0)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False, max_entries=512)
def _run(url: str, name: str, args: tuple[Any, ...], kwargs: tuple[tuple[str, Any], ...]) -> Any:
    return _QUERIES[name](_connect(url), *args, **dict(kwargs))


def query(fn: Callable[Concatenate[Store, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run a dashboard query (one of ``_QUERIES``) against the configured store, cached.

    Raises ``Unavailable`` when the store cannot be reached or configured, or fails the query;
    a ``ValueError`` from the query's own argument checks is a bug of the caller and propagates.
    """
    name = fn.__name__
    if _QUERIES.get(name) is not fn:
        raise ValueError(f"{name} is not a dashboard query")
    url = clickhouse_url()
    try:
        _connect(url)
    except Exception as exc:
        raise _unavailable(url, exc) from exc
    try:
        return cast(R, _run(url, name, args, tuple(sorted(kwargs.items()))))
    except ValueError:
        raise
    except Exception as exc:
        raise _unavailable(url, exc) from exc


def _unavailable(url: str, exc: Exception) -> Unavailable:
    return Unavailable(
        f"Cannot read ClickHouse at {safe_url(url)}: {exc}".rstrip(". ") + ". "
        "Start the collector with `agentwatch up` (or `agentwatch up --demo`), or point "
        f"{ENV_URL} at your ClickHouse (http://user:password@host:8123/database)."
    )

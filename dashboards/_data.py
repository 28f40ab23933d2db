"""Where the dashboard reads from: ClickHouse over HTTP with clickhouse-connect, cached briefly.

``AGENTWATCH_CLICKHOUSE_URL`` says where (``http://user:pass@host:8123/database``). In embedded
mode that is the collector's read-only query endpoint (``agentwatch up`` sets it); with a
ClickHouse server it is the server. Either way the store is ``ServerStore``, and every query
is a function of the dashboard's query modules in ``agentwatch.storage`` (``_overview_queries``,
``_cost_queries``, ``_decision_queries``, ``_trace_queries``, ``_sidebar_queries``), of the alert
and health reads, or passive health's check, run through ``query()`` so that results are cached
for ``CACHE_TTL_S`` seconds per (URL, query, arguments).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Concatenate, Final, ParamSpec, TypeVar, cast

import streamlit as st

from agentwatch._errors import AgentwatchError
from agentwatch.alerts._passive import check_passive_health
from agentwatch.dashboards._format import safe_url
from agentwatch.storage._action_log import trace_action_log
from agentwatch.storage._alert_queries import active_alerts, recent_alerts
from agentwatch.storage._audit_queries import access_patterns, risky_actions
from agentwatch.storage._cost_queries import (
    completion_by_task_type,
    cost_by_task_type,
    cost_over_time_by_model,
    cost_over_time_by_task_type,
    cost_summary,
    most_expensive_traces,
    unpriced_models,
)
from agentwatch.storage._decision_queries import (
    calibration,
    confidence_distribution,
    threshold_explorer,
)
from agentwatch.storage._health_queries import (
    alerts_table_exists,
    health_checks,
    health_pass_rate,
)
from agentwatch.storage._overview_queries import (
    declared_tools,
    error_categories,
    overview,
    tool_usage,
)
from agentwatch.storage._review_queries import review_answers, review_counts, review_queue
from agentwatch.storage._sidebar_queries import data_presence, filter_options
from agentwatch.storage._store import ServerStore, Store
from agentwatch.storage._trace_queries import trace_list, trace_spans

ENV_URL: Final = "AGENTWATCH_CLICKHOUSE_URL"
DEFAULT_URL: Final = "http://127.0.0.1:8123/agentwatch"
CACHE_TTL_S: Final = 15

P = ParamSpec("P")
R = TypeVar("R")

# The queries the pages may run, by name (the cache key names the query, not its code).
_QUERIES: Final[dict[str, Callable[..., Any]]] = {
    fn.__name__: fn
    for fn in (
        overview,
        completion_by_task_type,
        cost_by_task_type,
        confidence_distribution,
        calibration,
        threshold_explorer,
        tool_usage,
        declared_tools,
        error_categories,
        cost_over_time_by_model,
        cost_over_time_by_task_type,
        cost_summary,
        unpriced_models,
        most_expensive_traces,
        trace_list,
        trace_spans,
        trace_action_log,
        risky_actions,
        access_patterns,
        review_queue,
        review_counts,
        review_answers,
        filter_options,
        data_presence,
        active_alerts,
        recent_alerts,
        alerts_table_exists,
        health_checks,
        health_pass_rate,
        check_passive_health,
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


def forget_cached_reads() -> None:
    """Drop every cached result: after the dashboard sent data, every page reads it afresh."""
    _run.clear()


def _unavailable(url: str, exc: Exception) -> Unavailable:
    return Unavailable(
        f"Cannot read ClickHouse at {safe_url(url)}: {exc}".rstrip(". ") + ". "
        "Start the collector with `agentwatch up` (or `agentwatch up --demo`), or point "
        f"{ENV_URL} at your ClickHouse (http://user:password@host:8123/database)."
    )

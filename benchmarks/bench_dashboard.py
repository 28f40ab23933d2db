"""Dashboard query latency at scale, in embedded chDB.

    python -m benchmarks.bench_dashboard [--spans 10000000] [--days 7] [--runs 7]
                                         [--data-dir DIR] [--reuse] [--json PATH] [--check]
                                         [--baseline OLD_QUERIES_PY ...] [--backfill]

What is measured: the wall time of every query the Overview and Cost pages run (the functions
of ``agentwatch.storage``'s page query modules: ``_overview_queries``, ``_cost_queries``,
``_decision_queries``, ``_sidebar_queries``, called on an ``EmbeddedStore`` as the collector's
query endpoint runs them, result conversion included), and those of the Review and Audit pages
(``_review_queries`` with the demo's review rules, ``_audit_queries``), median over ``--runs``
runs after one warm-up run, and the sum of the Overview page's medians.

- **The data.** ``--spans`` spans (default 10 million) of realistic agent traces spread evenly
  over the last ``--days`` days, written through the storage insert path
  (``EmbeddedStore.insert_arrow``, Arrow batches in time order, as the collector writes them).
  Traces come from a pool of 4,000 traces built like the demo fleet's (an ``invoke_agent`` root
  with chat / lookup_order / search_kb iterations, a decision, a refund tool call on auto
  refunds, human feedback on 30% (half of it a reviewer's answer about the decision, a
  quarter of that on auto refunds about the refund call instead: feedback spans whose parent
  is the span they judge, as the Review page sends them; the rest about the agent run),
  outcomes from the decision's route, a runaway that hits its
  iteration limit now and then; four task types, four models, three services in two
  environments) and turned into rows by the collector's own ``spans_to_arrow`` (so they are
  priced by genai-prices). As the SDK does now, every span of an agent run carries
  ``agentwatch.task.type``, except in 2% of the traces, from a fourth service still on an older
  SDK (the type on the agent span only: its spend by task type needs each trace's agent span),
  and 1% of traces are a lone model call outside any agent. The agent spans of the current SDK
  declare their four tools (``agentwatch.agent.tools``), one of which (``close_account``) is
  never called. Each seeded trace is a pool trace with fresh ids and a start time of its own.
- **The schema.** Every migration is applied before seeding, so the trace facts (migration 3)
  are written by their materialized view as the spans are inserted. With ``--backfill`` the
  spans are seeded under migrations 1 and 2 only, and the run times migration 3 on them (its
  back-fill of the facts from the stored spans) before timing the queries.
- **What is timed.** Every query with the dashboard's "Last 7 days" filter over all the data
  (the worst case the sidebar offers for a store this size) and with "Last 24 hours"; the
  Overview's tiles run twice (this period and the previous one, for the trends).
- The store is merged (``OPTIMIZE TABLE ... FINAL``, spans and trace facts) after seeding, so
  that runs measure settled tables rather than the background merges.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from agentwatch.alerts._rules import demo_review_rules
from agentwatch.collector._decode import SpanColumns
from agentwatch.collector._pricing import PriceTable
from agentwatch.collector._rows import spans_to_arrow
from agentwatch.storage import (
    _audit_queries,
    _cost_queries,
    _decision_queries,
    _overview_queries,
    _review_queries,
    _sidebar_queries,
)
from agentwatch.storage._schema import (
    MIGRATIONS_TABLE,
    TRACE_FACTS_TABLE,
    migrations,
    migrations_table_ddl,
)
from agentwatch.storage._scope import Filters
from agentwatch.storage._store import EmbeddedStore, apply_migrations

QUERY_TARGET_MS = 300.0
OVERVIEW_TARGET_MS = 1500.0
POOL_TRACES = 4000
BATCH_SPANS = 500_000
_TS = pa.timestamp("ns", tz="UTC")

# (task type, weight, mean confidence, provider, model, tool error rate, steps)
PROFILES = (
    ("order_status", 0.4, 0.92, "openai", "gpt-4o-mini", 0.01, 1),
    ("refund", 0.25, 0.78, "openai", "gpt-4o", 0.03, 2),
    ("billing_dispute", 0.15, 0.62, "anthropic", "claude-3-5-sonnet-20241022", 0.05, 3),
    ("technical_issue", 0.2, 0.7, "anthropic", "claude-3-5-haiku-20241022", 0.08, 3),
)
SERVICES = (("support-fleet", "prod"), ("billing-fleet", "prod"), ("support-fleet", "staging"))
LEGACY_SERVICE = len(SERVICES)  # index of the service still on an older SDK (below)
SERVICE_NAMES = (*SERVICES, ("legacy-fleet", "prod"))
TOOLS = {
    "lookup_order": ("read", "Look an order up in the order system."),
    "search_kb": ("read", "Search the knowledge base."),
    "issue_refund": ("write_risky", "Refund an order."),
}
# What the agent declares (@aw.agent(tools=[...])), as the collector stores a string array.
DECLARED_TOOLS = '["lookup_order","search_kb","issue_refund","close_account"]'


# -- the pool of traces ----------------------------------------------------------------------------
@dataclass
class _Span:
    offset_ns: int
    parent: int  # position of the parent span in the trace, -1 for the root
    name: str
    kind: str
    duration_ns: int
    attrs: dict[str, str]
    error: bool = False


def _pool_trace(rng: random.Random) -> tuple[list[_Span], int]:
    """One trace as the demo fleet's SDK would export it; returns its spans and its service."""
    service = rng.randrange(len(SERVICES))
    if rng.random() < 0.01:  # a model call outside any agent run
        provider, model = ("openai", "gpt-4o-mini")
        attrs = _chat(rng, provider, model, "")
        return [_Span(0, -1, f"chat {model}", "Client", 800_000_000, attrs)], service
    task, _, mean, provider, model, tool_error_rate, steps = rng.choices(
        PROFILES, weights=[p[1] for p in PROFILES]
    )[0]
    # An older SDK (the task type on the agent span only) still runs in one service.
    legacy = rng.random() < 0.02
    if legacy:
        service = LEGACY_SERVICE
    child_task = "" if legacy else task
    spans: list[_Span] = [_Span(0, -1, "invoke_agent support", "Internal", 0, {})]
    clock = 1_000_000
    runaway = rng.random() < 0.03
    max_iterations = steps + 2
    outcome = ""
    iterations = 0
    for _ in range(steps + (3 if runaway else 0)):
        if iterations == max_iterations:
            outcome = "limit_exceeded"
            break
        iterations += 1
        duration = rng.randint(300, 3000) * 1_000_000
        chat_attrs = _chat(rng, provider, model, child_task)
        spans.append(_Span(clock, 0, f"chat {model}", "Client", duration, chat_attrs))
        clock += duration
        failed = False
        for name in ("lookup_order", "search_kb"):
            error = rng.random() < tool_error_rate
            duration = rng.randint(5, 400) * 1_000_000
            attrs = _tool(name, child_task, error)
            spans.append(
                _Span(clock, 0, f"execute_tool {name}", "Internal", duration, attrs, error)
            )
            clock += duration
            if error:
                failed = rng.random() < 0.5
                break
        if failed:
            outcome = "failed"
            break
    route = ""
    if not outcome:
        confidence = min(1.0, max(0.0, rng.gauss(mean, 0.12)))
        route = "auto" if confidence >= 0.85 else "review" if confidence >= 0.6 else "escalate"
        decision = {
            "gen_ai.operation.name": "decision",
            "agentwatch.decision.name": "resolve",
            "agentwatch.decision.confidence": repr(confidence),
            "agentwatch.decision.route": route,
            "gen_ai.agent.name": "support",
        }
        if child_task:
            decision["agentwatch.task.type"] = child_task
        decision_at = len(spans)
        spans.append(_Span(clock, 0, "decision resolve", "Internal", 50_000, decision))
        clock += 100_000
        outcome = "escalated" if route == "escalate" else "completed"
        refund_at = -1
        if task == "refund" and route == "auto":
            error = rng.random() < tool_error_rate
            duration = rng.randint(50, 900) * 1_000_000
            attrs = _tool("issue_refund", child_task, error)
            refund_at = len(spans)
            spans.append(_Span(clock, 0, "execute_tool issue_refund", "Internal", duration, attrs))
            clock += duration
            if error:
                outcome = "failed"
        if outcome != "failed" and rng.random() < 0.3:
            right = rng.random() < 0.5 + confidence / 2.1
            target = rng.getrandbits(64)
            feedback = {
                "gen_ai.operation.name": "feedback",
                "agentwatch.feedback.thumbs_up": str(right).lower(),
                "agentwatch.feedback.score": "1" if right else "0",
                "agentwatch.feedback.correct": str(right).lower(),
                "agentwatch.feedback.span_id": f"{target:016x}",
            }
            # Who judged what, from bits already drawn (the rest of the pool stays as it was):
            # half the feedback is a reviewer's answer about the decision (the Review page's),
            # a quarter of it on auto refunds about the refund call, the rest about the run.
            parent = 0
            if target % 4 < 2 or (target % 4 == 2 and refund_at >= 0):
                parent = decision_at if target % 4 < 2 else refund_at
                feedback["agentwatch.feedback.about"] = "decision" if target % 4 < 2 else "action"
                feedback["agentwatch.feedback.reviewer"] = f"reviewer-{target >> 60}"
            spans.append(_Span(clock, parent, "feedback", "Internal", 10_000, feedback))
    root = spans[0]
    root.duration_ns = clock + 1_000_000
    root.attrs = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "support",
        "agentwatch.task.type": task,
        "agentwatch.task.outcome": outcome,
        "agentwatch.task.iterations": str(iterations),
    }
    if not legacy:
        root.attrs["agentwatch.agent.tools"] = DECLARED_TOOLS
    if outcome == "limit_exceeded":
        root.attrs["agentwatch.limit.exceeded"] = "iterations"
        root.attrs["error.type"] = "AgentLimitExceeded"
        root.error = True
    elif outcome == "failed":
        root.attrs["error.type"] = "TimeoutError"
        root.error = True
    return spans, service


def _chat(rng: random.Random, provider: str, model: str, task: str) -> dict[str, str]:
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.response.model": model,
        "gen_ai.response.id": f"resp-{rng.getrandbits(48):x}",
        "gen_ai.usage.input_tokens": str(rng.randint(250, 2000)),
        "gen_ai.usage.output_tokens": str(rng.randint(60, 400)),
        "gen_ai.usage.cache_read.input_tokens": str(rng.choice((0, 0, 256))),
    }
    if task:
        attrs["agentwatch.task.type"] = task
    return attrs


def _tool(name: str, task: str, error: bool) -> dict[str, str]:
    tier, description = TOOLS[name]
    attrs = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": name,
        "gen_ai.tool.type": "function",
        "agentwatch.tool.tier": tier,
        "gen_ai.tool.description": description,
    }
    if task:
        attrs["agentwatch.task.type"] = task
    if error:
        attrs["error.type"] = "TimeoutError"
    return attrs


@dataclass
class Pool:
    rows: pa.Table  # every pool span, trace after trace, priced by the collector's code
    starts: np.ndarray  # first row of each trace
    lengths: np.ndarray  # spans per trace
    offsets: np.ndarray  # each row's start, ns after its trace's start
    positions: np.ndarray  # each row's position in its trace
    parents: np.ndarray  # position of each row's parent, -1 for roots


def build_pool(seed: int = 7, traces: int = POOL_TRACES) -> Pool:
    rng = random.Random(seed)
    cols = SpanColumns()
    resources = [
        {
            "service.name": name,
            "deployment.environment.name": env,
            "telemetry.sdk.language": "python",
            "telemetry.sdk.name": "opentelemetry",
            "telemetry.sdk.version": "1.45.2",
        }
        for name, env in SERVICE_NAMES
    ]
    starts, lengths, offsets, positions, parents = [], [], [], [], []
    for _ in range(traces):
        spans, service = _pool_trace(rng)
        starts.append(len(cols))
        lengths.append(len(spans))
        for position, span in enumerate(spans):
            offsets.append(span.offset_ns)
            positions.append(position)
            parents.append(span.parent)
            cols.timestamp.append(0)
            cols.trace_id.append("")
            cols.span_id.append("")
            cols.parent_span_id.append("")
            cols.trace_state.append("")
            cols.span_name.append(span.name)
            cols.span_kind.append(span.kind)
            cols.service_name.append(SERVICE_NAMES[service][0])
            cols.resource_attributes.append(resources[service])
            cols.scope_name.append("agentwatch")
            cols.scope_version.append("0.1.0")
            cols.span_attributes.append(span.attrs)
            cols.duration.append(span.duration_ns)
            cols.status_code.append("Error" if span.error else "Unset")
            cols.status_message.append("timed out" if span.error else "")
            for column in (
                cols.events_timestamp,
                cols.events_name,
                cols.events_attributes,
                cols.links_trace_id,
                cols.links_span_id,
                cols.links_trace_state,
                cols.links_attributes,
            ):
                column.append([])
    return Pool(
        spans_to_arrow(cols, PriceTable()),
        np.array(starts, dtype=np.int64),
        np.array(lengths, dtype=np.int64),
        np.array(offsets, dtype=np.int64),
        np.array(positions, dtype=np.int64),
        np.array(parents, dtype=np.int64),
    )


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex_ids(high: np.ndarray, low: np.ndarray | None) -> pa.Array:
    """Lowercase hex strings of 64-bit (or 128-bit, with ``low``) ids, built without Python
    loops."""
    parts = [high] if low is None else [high, low]
    nibbles = []
    for part in parts:
        big_endian = part.astype(">u8").view(np.uint8).reshape(-1, 8)
        nibbles.append(np.stack([big_endian >> 4, big_endian & 15], axis=2).reshape(-1, 16))
    chars = _HEX[np.concatenate(nibbles, axis=1)]
    width = chars.shape[1]
    count = chars.shape[0]
    offsets = np.arange(0, width * (count + 1), width, dtype=np.int32)
    return pa.StringArray.from_buffers(
        count, pa.py_buffer(offsets.tobytes()), pa.py_buffer(chars.tobytes())
    )


def make_batch(
    pool: Pool, rng: np.random.Generator, first_trace: int, traces: int, start_ns: int, end_ns: int
) -> pa.Table:
    """``traces`` pool traces with fresh ids, starting evenly in [start_ns, end_ns)."""
    picks = rng.integers(0, len(pool.starts), traces)
    lengths = pool.lengths[picks]
    trace_of_row = np.repeat(np.arange(traces), lengths)
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    rows = pool.starts[picks][trace_of_row] + within
    trace_start = np.sort(rng.integers(start_ns, end_ns, traces))
    timestamps = trace_start[trace_of_row] + pool.offsets[rows]
    trace_numbers = (first_trace + np.arange(traces)).astype(np.uint64)
    span_base = trace_numbers[trace_of_row] << np.uint64(6)  # at most 64 spans per trace
    span_ids = span_base | pool.positions[rows].astype(np.uint64)
    parents = pool.parents[rows]
    parent_ids = _hex_ids(span_base | np.maximum(parents, 0).astype(np.uint64), None)
    parent_ids = pc.if_else(pa.array(parents < 0), "", parent_ids)
    salt = np.uint64(0x9E3779B97F4A7C15)
    mix = np.uint64(0xBF58476D1CE4E5B9)
    table = pool.rows.take(pa.array(rows))
    replaced = {
        "Timestamp": pa.array(timestamps, type=pa.int64()).cast(_TS),
        "TraceId": _hex_ids(trace_numbers[trace_of_row] * salt, trace_numbers[trace_of_row] * mix),
        "SpanId": _hex_ids(span_ids, None),
        "ParentSpanId": parent_ids,
    }
    for name, column in replaced.items():
        table = table.set_column(table.schema.get_field_index(name), name, column)
    return table


def seed(store: EmbeddedStore, spans: int, days: float, now_ns: int) -> tuple[int, float]:
    """Insert about ``spans`` spans over the last ``days`` days; returns (rows, seconds)."""
    pool = build_pool()
    mean_spans = float(pool.lengths.mean())
    total_traces = int(spans / mean_spans)
    batches = max(1, round(spans / BATCH_SPANS))
    rng = np.random.default_rng(11)
    start_ns = now_ns - int(days * 86_400e9)
    step = (now_ns - start_ns) // batches
    began = time.perf_counter()
    first = 0
    for i in range(batches):
        traces = total_traces // batches + (1 if i < total_traces % batches else 0)
        # Leave a minute at the end for the last traces' spans to finish before now.
        end = start_ns + step * (i + 1) - (60_000_000_000 if i == batches - 1 else 0)
        table = make_batch(pool, rng, first, traces, start_ns + step * i, end)
        store.insert_arrow("otel_traces", table)
        first += traces
        print(f"\r  seeded {i + 1}/{batches} batches", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    store.command(f"OPTIMIZE TABLE {store.database}.otel_traces FINAL")
    if _has_facts(store):
        store.command(f"OPTIMIZE TABLE {store.database}.{TRACE_FACTS_TABLE} FINAL")
    seconds = time.perf_counter() - began
    rows = int(store.query(f"SELECT count() FROM {store.database}.otel_traces").scalar())
    return rows, seconds


def _has_facts(store: EmbeddedStore) -> bool:
    found = store.query(
        "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        {"db": store.database, "t": TRACE_FACTS_TABLE},
    ).scalar()
    return bool(found)


def apply_up_to(store: EmbeddedStore, version: int) -> None:
    """The schema as an older agentwatch left it: migrations up to ``version``, recorded."""
    db = store.database
    store.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    store.command(migrations_table_ddl(db))
    for migration in migrations(db, 30)[:version]:
        for statement in migration.statements:
            store.command(statement)
        store.command(
            f"INSERT INTO {db}.{MIGRATIONS_TABLE} (version, description) "
            "VALUES ({v:UInt32}, {d:String})",
            {"v": migration.version, "d": migration.description},
        )


def time_backfill(store: EmbeddedStore) -> dict[str, Any]:
    """Apply the migrations not applied yet (migration 3: its back-fill) and time it."""
    began = time.perf_counter()
    applied = apply_migrations(store)
    seconds = time.perf_counter() - began
    db = store.database
    rows = int(store.query(f"SELECT count() FROM {db}.{TRACE_FACTS_TABLE}").scalar())
    merged = time.perf_counter()
    store.command(f"OPTIMIZE TABLE {db}.{TRACE_FACTS_TABLE} FINAL")
    return {
        "applied": applied,
        "seconds": seconds,
        "fact_rows": rows,
        "optimize_s": time.perf_counter() - merged,
    }


def facts_size(store: EmbeddedStore) -> dict[str, int]:
    row = store.query(
        "SELECT sum(rows), sum(data_compressed_bytes) FROM system.parts WHERE active "
        "AND database = {db:String} AND table = {t:String}",
        {"db": store.database, "t": TRACE_FACTS_TABLE},
    ).rows[0]
    return {"rows": int(row[0]), "bytes": int(row[1])}


# -- timing ----------------------------------------------------------------------------------------
Query = Callable[[EmbeddedStore, Filters], Any]
Pages = dict[str, dict[str, Query]]


def page_queries(m: Any) -> Pages:
    """The queries each page runs, from anything with the page query functions as attributes
    (``CURRENT_QUERIES``, or a baseline: an older single-file ``_queries.py`` from before the
    split, or other versions of some page query modules). A page, or a query, the baseline has
    no function for is timed on this code's side only."""
    pages: Pages = {}
    if hasattr(m, "overview"):
        pages["Overview"] = {
            "data_presence": m.data_presence,
            "filter_options (sidebar)": m.filter_options,
            "overview (this period)": m.overview,
            "overview (previous period)": lambda s, f: m.overview(s, f.previous()),
            "completion_by_task_type": m.completion_by_task_type,
            "confidence_distribution": lambda s, f: m.confidence_distribution(s, f, 20),
            "tool_usage": m.tool_usage,
            # Tools never called: the page takes the called ones from tool_usage's rows.
            **({"declared_tools": m.declared_tools} if hasattr(m, "declared_tools") else {}),
            "error_categories": m.error_categories,
        }
    if hasattr(m, "cost_summary"):
        pages["Cost"] = {
            "cost_summary": m.cost_summary,
            "unpriced_models": m.unpriced_models,
            "cost_over_time_by_model": m.cost_over_time_by_model,
            "cost_over_time_by_task_type": m.cost_over_time_by_task_type,
            "cost_by_task_type": m.cost_by_task_type,
            "most_expensive_traces": lambda s, f: m.most_expensive_traces(s, f, 20),
        }
    review = review_queries(m)
    if review:
        pages["Review and audit"] = review
    return pages


def review_queries(m: Any) -> dict[str, Query]:
    """What the Review page runs (the demo's review rules, its default "Pending" view of 500
    items, the answers of one reviewed item) and the Audit page (no tier, tool or outcome
    chosen), for the functions ``m`` has."""
    rules = demo_review_rules()
    reviewed: dict[Filters, tuple[str, str]] = {}

    def answers(store: EmbeddedStore, filters: Filters) -> Any:
        # The newest reviewed item of the range, looked up once per range (in the warm-up run)
        # with this code's queue, so that both sides read the same item's answers.
        if filters not in reviewed:
            (item,) = _review_queries.review_queue(
                store, filters, rules, status="reviewed", limit=1
            ).dicts()
            reviewed[filters] = (item["trace_id"], item["span_id"])
        return m.review_answers(store, filters, *reviewed[filters])

    queries: dict[str, Query] = {
        "review_counts": lambda s, f: m.review_counts(s, f, rules),
        "review_queue (pending, 500)": lambda s, f: m.review_queue(
            s, f, rules, status="pending", limit=500
        ),
        "review_answers (one item)": answers,
        "risky_actions": lambda s, f: m.risky_actions(s, f),
        "access_patterns": lambda s, f: m.access_patterns(s, f),
    }
    needs = {
        "review_counts": "review_counts",
        "review_queue (pending, 500)": "review_queue",
        "review_answers (one item)": "review_answers",
        "risky_actions": "risky_actions",
        "access_patterns": "access_patterns",
    }
    return {name: query for name, query in queries.items() if hasattr(m, needs[name])}


# This code's page queries under one namespace, as a baseline module of an older single-file
# ``storage/_queries.py`` has them.
CURRENT_QUERIES: Final = SimpleNamespace(
    **{
        name: getattr(module, name)
        for module in (
            _overview_queries,
            _cost_queries,
            _decision_queries,
            _sidebar_queries,
            _review_queries,
            _audit_queries,
        )
        for name in dir(module)
        if not name.startswith("_")
    }
)


def load_baseline(paths: list[str]) -> Any:
    """Other versions of page query modules (e.g. ``git show REV:storage/_queries.py``, or
    ``REV:storage/_review_queries.py`` and ``REV:storage/_audit_queries.py``), to time against
    this code in the same process on the same data; their functions under one namespace."""
    functions: dict[str, Any] = {}
    for i, path in enumerate(paths):
        name = f"agentwatch.storage._baseline_{i}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise SystemExit(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        functions.update((n, getattr(module, n)) for n in dir(module) if not n.startswith("_"))
    return SimpleNamespace(**functions)


Times = dict[str, dict[str, list[float]]]


def time_queries(
    store: EmbeddedStore, filters: Filters, runs: int, sides: dict[str, Pages]
) -> dict[str, Times]:
    """Per side (this code, and the baseline if given), per page, per query: the wall times
    (ms) of ``runs`` runs after one warm-up run.

    Runs are interleaved (every query of every side once per round, the sides' order
    alternating), so background noise on this shared machine spreads evenly over them."""
    times: dict[str, Times] = {
        side: {p: {n: [] for n in qs} for p, qs in pages.items()} for side, pages in sides.items()
    }
    order = list(sides)
    for round_ in range(runs + 1):
        first = sides[order[0]]
        for page, queries in first.items():
            for name in queries:
                for side in order if round_ % 2 else reversed(order):
                    if name not in sides[side].get(page, {}):
                        continue  # a query the baseline does not have
                    began = time.perf_counter()
                    sides[side][page][name](store, filters)
                    elapsed = (time.perf_counter() - began) * 1000
                    if round_:
                        times[side][page][name].append(elapsed)
    return times


def report(label: str, times: dict[str, Times]) -> dict[str, Any]:
    out: dict[str, Any] = {"range": label, "pages": {}}
    now = times["current"]
    base = times.get("baseline")
    print(f"\n== {label}")
    head = f"{'query':30} {'median ms':>10} {'min':>7} {'max':>7}  target"
    print(head + ("   baseline ms  median ratio" if base else ""))
    for page, queries in now.items():
        rows = {}
        for name, values in queries.items():
            med = statistics.median(values)
            ok = med < QUERY_TARGET_MS
            row: dict[str, Any] = {
                "median_ms": med,
                "min_ms": min(values),
                "max_ms": max(values),
                "ok": ok,
            }
            line = f"{name:30} {med:10.1f} {min(values):7.1f} {max(values):7.1f}  "
            line += "PASS  " if ok else "FAIL  "
            if base and base.get(page, {}).get(name):
                before = base[page][name]
                ratios = [a / b for a, b in zip(values, before, strict=True)]
                row["baseline_median_ms"] = statistics.median(before)
                row["median_ratio"] = statistics.median(ratios)
                line += f"{row['baseline_median_ms']:11.1f}  {row['median_ratio']:12.2f}"
            rows[name] = row
            print(line)
        total = sum(r["median_ms"] for r in rows.values())
        summary: dict[str, Any] = {"queries": rows, "sum_of_medians_ms": total}
        line = f"{page + ' page total':30} {total:10.1f}{'':17}"
        if page == "Overview":
            line += "PASS  " if total < OVERVIEW_TARGET_MS else "FAIL  "
        else:
            line += "      "
        if base and page in base:
            summary["baseline_sum_of_medians_ms"] = sum(
                r.get("baseline_median_ms", 0.0) for r in rows.values()
            )
            line += f"{summary['baseline_sum_of_medians_ms']:11.1f}"
        out["pages"][page] = summary
        print(line)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--data-dir", default=os.path.join("/tmp", "agentwatch-bench-dashboard"))
    parser.add_argument(
        "--reuse", action="store_true", help="keep an already seeded --data-dir (same --spans)"
    )
    parser.add_argument("--json", default=None, help="write the figures here")
    parser.add_argument(
        "--baseline",
        default=None,
        nargs="+",
        metavar="PATH",
        help="other versions of page query modules (an older storage/_queries.py, or some of "
        "storage/_*_queries.py) to time interleaved with this code, on the same data",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--backfill",
        action="store_true",
        help="seed under migrations 1-2, then time migration 3 (its back-fill of the facts)",
    )
    args = parser.parse_args(argv)

    data_dir = Path(args.data_dir)
    marker = data_dir / "seeded.json"
    reuse = args.reuse and marker.exists() and json.loads(marker.read_text())["spans"] == args.spans
    if not reuse and data_dir.exists():
        shutil.rmtree(data_dir)
    store = EmbeddedStore(data_dir / "data")
    backfill: dict[str, Any] | None = None
    try:
        if args.backfill and not reuse:
            apply_up_to(store, 2)
        else:
            apply_migrations(store)
        if reuse:
            info = json.loads(marker.read_text())
        else:
            now_ns = time.time_ns()
            rows, seconds = seed(store, args.spans, args.days, now_ns)
            info = {"spans": args.spans, "rows": rows, "seed_s": seconds, "now_ns": now_ns}
            marker.write_text(json.dumps(info))
        print(
            f"{info['rows']:,} spans over {args.days:g} days "
            f"(seeded in {info['seed_s']:.0f} s, insert + OPTIMIZE FINAL)"
        )
        if args.backfill and not reuse:
            backfill = time_backfill(store)
            print(
                f"migration(s) {backfill['applied']} in {backfill['seconds']:.1f} s "
                f"({backfill['fact_rows']:,} fact rows back-filled; "
                f"OPTIMIZE FINAL {backfill['optimize_s']:.1f} s)"
            )
        facts = facts_size(store)
        print(f"trace facts: {facts['rows']:,} rows, {facts['bytes'] / 1e6:.1f} MB compressed")
        # Queries see the dashboard's filters as of the moment the data was seeded.
        now = dt.datetime.fromtimestamp(info["now_ns"] / 1e9, tz=dt.UTC)
        sides = {"current": page_queries(CURRENT_QUERIES)}
        if args.baseline:
            sides["baseline"] = page_queries(load_baseline(args.baseline))
        results = []
        for label, duration in (
            ("Last 7 days (all the data)", dt.timedelta(days=7)),
            ("Last 24 hours", dt.timedelta(days=1)),
        ):
            times = time_queries(store, Filters.last(duration, now=now), args.runs, sides)
            results.append(report(label, times))
    finally:
        store.close()
    summary = {
        "date": dt.datetime.now(dt.UTC).date().isoformat(),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
        "spans": info["rows"],
        "seed_s": info["seed_s"],
        "backfill": backfill,
        "facts": facts,
        "load_average": os.getloadavg(),
        "runs": args.runs,
        "results": results,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    missed = [
        name
        for result in results
        for page in result["pages"].values()
        for name, row in page["queries"].items()
        if not row["ok"]
    ] + [
        r["range"]
        for r in results
        if r["pages"]["Overview"]["sum_of_medians_ms"] >= OVERVIEW_TARGET_MS
    ]
    if args.check and missed:
        print(f"targets missed: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

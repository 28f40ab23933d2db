"""Alert evaluation cost over 10 million stored spans, and detection quality.

    python -m benchmarks.bench_alerts [--spans N] [--hours H] [--data-dir DIR] [--json PATH]
                                      [--passes P] [--check]

1. Seeds ``--spans`` spans (default 10,000,000) into an embedded chDB store through
   ``EmbeddedStore.insert_arrow``, in Arrow batches of 1M spans built with numpy (no per-row
   Python): tasks of three task types, four spans each (agent run, priced chat call, two tool
   calls), spread evenly over the last ``--hours`` hours (default 24: a fleet doing ~29 tasks
   a second), plus a health probe every 5 minutes. The last 5-minute window holds a staged
   incident: ``refund`` tasks cost x5 and ``billing`` tasks fail 30% of the time (2% before),
   and the last probe run failed. With ``--hours 2`` every span falls inside the range the
   default rules read (the worst case: nothing is pruned by time).
2. Times evaluation passes of the default rules (``Evaluator.evaluate``, every rule, a new
   evaluator per pass so nothing is cached by us; chDB's own caches stay warm after the first
   pass), first on the parts as inserted, then after ``OPTIMIZE TABLE ... FINAL``, and checks
   each pass found the staged incident: cost spike on refund, error spike on billing, failing
   probe.
3. Detection quality of the default anomaly rules on the labelled synthetic series of
   ``tests/alerts/synthetic.py`` (8 seeds x 500 windows, six spikes each): precision and recall
   per window, spikes caught within two windows, false-positive rate on steady series.

``--data-dir`` keeps the seeded store (re-runs with the same directory skip seeding when it
holds the requested number of spans). Results and their reading: benchmarks/BENCHMARKS.md,
"Alerts".
"""

from __future__ import annotations

import argparse
import binascii
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tests.alerts.synthetic import (
    cost_series,
    default_anomaly_rule,
    detect,
    error_rate_series,
    events_detected,
    settings_for,
    window_quality,
)

from agentwatch.alerts._evaluator import Evaluator, EvaluatorSettings
from agentwatch.alerts._rules import default_rules
from agentwatch.storage._schema import SPANS_TABLE
from agentwatch.storage._store import EmbeddedStore, apply_migrations

NS = 1_000_000_000
WINDOW_S = 300
SPANS_PER_TASK = 4
BATCH_SPANS = 1_000_000
TASK_TYPES = ("refund", "billing", "order_status")
TASK_WEIGHTS = np.array([0.3, 0.3, 0.4])
AGENTS = ("support", "support", "tracker")
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-3-5-haiku-20241022")
COST_PER_TASK = np.array([0.02, 0.01, 0.005])
OUTCOMES = ("completed", "escalated", "failed")
TOKEN_STEPS = np.arange(200, 2200, 100)  # quantized so the attribute maps repeat
_MAP = pa.map_(pa.string(), pa.string())
_TS = pa.timestamp("ns", tz="UTC")


# --- seeding ------------------------------------------------------------------------------------
def _hex_ids(rng: np.random.Generator, n: int, nbytes: int) -> pa.Array:
    """``n`` random hex ids of ``2 * nbytes`` characters, as one Arrow string buffer."""
    data = binascii.hexlify(rng.bytes(n * nbytes))
    width = 2 * nbytes
    offsets = np.arange(0, width * (n + 1), width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def _maps(dicts: list[dict[str, str]], indices: np.ndarray) -> pa.Array:
    distinct = pa.array([list(d.items()) for d in dicts], _MAP)
    return distinct.take(pa.array(indices, pa.int32()))


AGENT_MAPS = [
    {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": AGENTS[t],
        "agentwatch.task.type": TASK_TYPES[t],
        "agentwatch.task.outcome": OUTCOMES[o],
        **({"error.type": "TimeoutError"} if OUTCOMES[o] == "failed" else {}),
    }
    for t in range(len(TASK_TYPES))
    for o in range(len(OUTCOMES))
]
CHAT_MAPS = [
    {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": MODELS[m],
        "gen_ai.usage.input_tokens": str(i),
        "gen_ai.usage.output_tokens": str(o // 4),
    }
    for m in range(len(MODELS))
    for i in TOKEN_STEPS
    for o in TOKEN_STEPS
]
TOOL_MAPS = [
    {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
    for name in ("lookup_order", "search_kb")
]


def task_batch(
    rng: np.random.Generator, n: int, start_ns: int, end_ns: int, incident_from_ns: int
) -> pa.Table:
    """``n`` tasks (4 spans each) starting uniformly in ``[start, end)``; tasks from
    ``incident_from_ns`` on carry the staged incident."""
    starts = rng.integers(start_ns, end_ns, n, dtype=np.int64)
    kind = rng.choice(len(TASK_TYPES), n, p=TASK_WEIGHTS)
    incident = starts >= incident_from_ns
    fail_p = np.where(incident & (kind == 1), 0.30, 0.02)
    draw = rng.random(n)
    outcome = np.where(draw < fail_p, 2, np.where(draw < fail_p + 0.05, 1, 0))
    cost = rng.lognormal(np.log(COST_PER_TASK[kind]) - 0.15, 0.55, n)
    cost = np.where(incident & (kind == 0), cost * 5.0, cost)
    duration = rng.lognormal(np.log(9e8), 0.4, n).astype(np.uint64)
    tokens_in = rng.integers(0, len(TOKEN_STEPS), n)
    tokens_out = rng.integers(0, len(TOKEN_STEPS), n)
    trace_ids = _hex_ids(rng, n, 16)
    span_ids = _hex_ids(rng, n * SPANS_PER_TASK, 8)

    # Span j of task i is row i * 4 + j: agent, chat, tool, tool.
    task_of = np.repeat(np.arange(n), SPANS_PER_TASK)
    role = np.tile(np.arange(SPANS_PER_TASK), n)
    offsets_ns = np.array([0, 1_000_000, 2_000_000, 3_000_000], dtype=np.int64)
    timestamps = starts[task_of] + offsets_ns[role]
    agent_index = (kind * len(OUTCOMES) + outcome)[task_of]
    chat_index = ((kind * len(TOKEN_STEPS) + tokens_in) * len(TOKEN_STEPS) + tokens_out)[task_of]
    map_index = np.where(
        role == 0,
        agent_index,
        np.where(
            role == 1, len(AGENT_MAPS) + chat_index, len(AGENT_MAPS) + len(CHAT_MAPS) + role - 2
        ),
    )
    all_maps = AGENT_MAPS + CHAT_MAPS + TOOL_MAPS
    agent_span_ids = span_ids.take(pa.array(np.arange(n) * SPANS_PER_TASK))
    parents = pa.concat_arrays([pa.array([""] * 1, pa.string()), agent_span_ids])
    parent_index = np.where(role == 0, 0, task_of + 1)
    names = pa.array(
        [f"invoke_agent {a}" for a in AGENTS]
        + [f"chat {m}" for m in MODELS]
        + ["execute_tool lookup_order", "execute_tool search_kb"]
    )
    span_kind = kind[task_of]
    name_index = np.where(
        role == 0,
        span_kind,
        np.where(role == 1, len(AGENTS) + span_kind, len(AGENTS) + len(MODELS) + role - 2),
    )
    span_cost = np.where(role == 1, cost[task_of], 0.0)
    span_duration = duration[task_of] // np.array([1, 2, 4, 4], dtype=np.uint64)[role]
    status = np.where((role == 0) & (outcome[task_of] == 2), 1, 0)
    zeros = pa.array(np.zeros(n * SPANS_PER_TASK, np.int32))
    return pa.table(
        {
            "Timestamp": pa.array(timestamps, _TS),
            "TraceId": trace_ids.take(pa.array(task_of)),
            "SpanId": span_ids,
            "ParentSpanId": parents.take(pa.array(parent_index)),
            "SpanName": names.take(pa.array(name_index)),
            "SpanKind": pa.array(["Internal"]).take(zeros),
            "ServiceName": pa.array(["support-bot"]).take(zeros),
            "SpanAttributes": _maps(all_maps, map_index),
            "Duration": pa.array(span_duration, pa.uint64()),
            "StatusCode": pa.array(["Unset", "Error"]).take(pa.array(status)),
            "CostUsd": pa.array(span_cost, pa.float64()),
            "Priced": pa.array((role == 1).astype(np.uint8), pa.uint8()),
        }
    )


def probe_batch(start_ns: int, end_ns: int, every_s: int, last_fails: bool) -> pa.Table:
    """A health probe every ``every_s``: a root ``health_check`` span (no agent run inside,
    which would only add tasks the evaluator excludes anyway)."""
    times = np.arange(end_ns - every_s * NS, start_ns, -every_s * NS, dtype=np.int64)[::-1]
    n = len(times)
    passed = ["true"] * n
    if last_fails and n:
        passed[-1] = "false"
    rng = np.random.default_rng(99)
    return pa.table(
        {
            "Timestamp": pa.array(times, _TS),
            "TraceId": _hex_ids(rng, n, 16),
            "SpanId": _hex_ids(rng, n, 8),
            "SpanName": pa.array(["health_check refund-policy"] * n),
            "ServiceName": pa.array(["support-bot"] * n),
            "SpanAttributes": pa.array(
                [
                    [
                        ("agentwatch.health.check", "refund-policy"),
                        ("agentwatch.health.passed", p),
                        ("agentwatch.health.failed_expectation", "" if p == "true" else "contains"),
                    ]
                    for p in passed
                ],
                _MAP,
            ),
            "Duration": pa.array([NS] * n, pa.uint64()),
        }
    )


def seed(store: EmbeddedStore, spans: int, end_ns: int, hours: float) -> dict[str, Any]:
    start_ns = end_ns - round(hours * 3600 * NS)
    incident_from = end_ns - WINDOW_S * NS
    rng = np.random.default_rng(2026)
    tasks_total = spans // SPANS_PER_TASK
    per_batch = BATCH_SPANS // SPANS_PER_TASK
    build_s = insert_s = 0.0
    done = 0
    while done < tasks_total:
        n = min(per_batch, tasks_total - done)
        t0 = time.perf_counter()
        batch = task_batch(rng, n, start_ns, end_ns, incident_from)
        t1 = time.perf_counter()
        store.insert_arrow(SPANS_TABLE, batch)
        t2 = time.perf_counter()
        build_s, insert_s = build_s + t1 - t0, insert_s + t2 - t1
        done += n
        print(f"  seeded {done * SPANS_PER_TASK:,} spans", file=sys.stderr, flush=True)
    probes = probe_batch(start_ns, end_ns, 300, last_fails=True)
    store.insert_arrow(SPANS_TABLE, probes)
    return {
        "spans": tasks_total * SPANS_PER_TASK + probes.num_rows,
        "build_s": round(build_s, 2),
        "insert_s": round(insert_s, 2),
        "spans_per_s_insert": round(tasks_total * SPANS_PER_TASK / insert_s),
    }


def _parts(store: EmbeddedStore) -> int:
    return int(
        store.query(
            "SELECT count() FROM system.parts WHERE database = {db:String} "
            "AND table = {t:String} AND active",
            {"db": store.database, "t": SPANS_TABLE},
        ).scalar()
    )


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# --- evaluation ---------------------------------------------------------------------------------
def time_passes(store: EmbeddedStore, now: dt.datetime, passes: int) -> dict[str, Any]:
    """Cold passes (a new evaluator each: every rule's whole range is queried) and warm ones
    (an evaluator that judged the window before: only the new window is queried, as in the
    running service)."""
    rules = default_rules()
    settings = EvaluatorSettings(settle_s=0, record=False)
    cold, warm = [], []
    for _ in range(passes):
        cold.append(Evaluator(store, rules, settings=settings).evaluate(now))
        evaluator = Evaluator(store, rules, settings=settings)
        evaluator.evaluate(now - dt.timedelta(seconds=WINDOW_S))
        warm.append(evaluator.evaluate(now))
    first, rest = cold[0], cold[1:] or cold

    def fired(result: Any) -> list[str]:
        return sorted(f"{a.rule} [{a.group}]" for a in result.alerts if a.event == "fired")

    per_rule = {
        name: round(statistics.median(r.rule_seconds[name] for r in rest) * 1000, 1)
        for name in first.rule_seconds
    }
    return {
        "first_pass_s": round(first.seconds, 3),
        "median_pass_s": round(statistics.median(r.seconds for r in rest), 3),
        "max_pass_s": round(max(r.seconds for r in rest), 3),
        "warm_median_pass_s": round(statistics.median(r.seconds for r in warm), 3),
        "warm_max_pass_s": round(max(r.seconds for r in warm), 3),
        "passes": passes,
        "per_rule_median_ms": per_rule,
        "errors": first.errors,
        "fired": fired(first),
        "fired_warm": sorted({f for r in warm for f in fired(r)}),
    }


# --- detection quality --------------------------------------------------------------------------
LABELLED_SPIKES = ((40, 3), (90, 5), (150, 2), (220, 6), (300, 4), (360, 3))


def quality() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for metric in ("cost", "error_rate"):
        rule = default_anomaly_rule(metric)
        settings = settings_for(rule)
        labels: list[bool] = []
        flagged: list[bool] = []
        caught: list[float] = []
        steady_fp = steady_n = 0
        for seed_ in range(1, 9):
            if metric == "cost":
                spiked = cost_series(500, seed=seed_, tasks_per_window=100, spikes=LABELLED_SPIKES)
                steady = cost_series(500, seed=seed_, tasks_per_window=100)
            else:
                spiked = error_rate_series(
                    500, seed=seed_, tasks_per_window=100, spikes=LABELLED_SPIKES
                )
                steady = error_rate_series(500, seed=seed_, tasks_per_window=100)
            flags = [d.anomalous for d in detect(spiked, settings)]
            labels += spiked.labels
            flagged += flags
            caught.append(events_detected(spiked.labels, flags, within=2))
            steady_flags = [d.anomalous for d in detect(steady, settings)]
            steady_fp += sum(steady_flags)
            steady_n += len(steady_flags)
        q = window_quality(labels, flagged)
        out[metric] = {
            "precision": round(q.precision, 4),
            "recall": round(q.recall, 4),
            "true_positives": q.true_positives,
            "false_positives": q.false_positives,
            "false_negatives": q.false_negatives,
            "spikes_caught_within_2_windows": round(statistics.fmean(caught), 4),
            "steady_false_positive_windows": f"{steady_fp}/{steady_n}",
        }
    return out


# --- main ---------------------------------------------------------------------------------------
def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--hours", type=float, default=24.0, help="spread spans over this long")
    parser.add_argument("--passes", type=int, default=7, help="evaluation passes to time")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep the seeded store here")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)

    temporary = args.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="bench_alerts_")) if temporary else args.data_dir
    # The staged incident fills the last 5-minute window before ``now``: align it to the windows.
    now = dt.datetime.fromtimestamp(time.time() // WINDOW_S * WINDOW_S, dt.UTC)
    result: dict[str, Any] = {
        "date": now.date().isoformat(),
        "commit": _commit(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "spans_requested": args.spans,
        "hours": args.hours,
    }
    store = EmbeddedStore(data_dir / "data")
    try:
        apply_migrations(store)
        stored = int(store.query(f"SELECT count() FROM {store.database}.{SPANS_TABLE}").scalar())
        if stored >= args.spans:
            latest = store.query(
                f"SELECT toUnixTimestamp64Nano(max(Timestamp)) FROM {store.database}.{SPANS_TABLE}"
            ).scalar()
            end_s = -(-int(latest) // (WINDOW_S * NS)) * WINDOW_S  # the window end seeded
            now = dt.datetime.fromtimestamp(end_s, dt.UTC)
            result["seeding"] = {"reused": str(data_dir), "spans": stored}
        else:
            t0 = time.perf_counter()
            result["seeding"] = seed(store, args.spans, round(now.timestamp()) * NS, args.hours)
            result["seeding"]["total_s"] = round(time.perf_counter() - t0, 2)
        result["parts"] = _parts(store)
        result["evaluation_as_inserted"] = time_passes(store, now, args.passes)
        t0 = time.perf_counter()
        store.command(f"OPTIMIZE TABLE {store.database}.{SPANS_TABLE} FINAL")
        result["optimize_s"] = round(time.perf_counter() - t0, 1)
        result["parts_merged"] = _parts(store)
        result["disk_bytes"] = _du(data_dir)
        result["evaluation"] = time_passes(store, now, args.passes)
    finally:
        store.close()
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)
    result["detection"] = quality()
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    expected = {
        "cost spike [task_type=refund]",
        "error spike [task_type=billing]",
        "health check failing [check=refund-policy]",
    }
    ok = (
        result["evaluation"]["median_pass_s"] < 1.0
        and result["evaluation_as_inserted"]["median_pass_s"] < 1.0
        and all(
            set(result[k][f]) == expected
            for k in ("evaluation", "evaluation_as_inserted")
            for f in ("fired", "fired_warm")
        )
        and all(q["precision"] >= 0.95 and q["recall"] >= 0.9 for q in result["detection"].values())
    )
    print("targets met" if ok else "TARGET MISSED", file=sys.stderr)
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
